"""KoLeo regulariser (Sablayrolles et al. 2019; DINOv2 §4): spread a batch's features over the sphere.

The Kozachenko-Leonenko estimate of differential entropy is, up to constants, the mean log distance of each point
to its nearest neighbour. DINOv2 maximises it on the L2-normalised CLS features of the student's global crops:

    loss = -1/n * sum_i log(||x_i - x_nn(i)|| + eps),   x_i = f_i / ||f_i||,   nn(i) = argmin_{j != i} ||x_i - x_j||

so that no two images of a batch sit on the same point. The gradient flows through both ends of every
nearest-neighbour pair; the neighbour's index is a constant.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

EPS = 1e-8


def koleo_loss(features: torch.Tensor, *, eps: float = EPS) -> torch.Tensor:
    """KoLeo loss of ``features`` (n, D), n >= 2, computed in float32 even under autocast (see the module
    docstring)."""
    with torch.autocast(features.device.type, enabled=False):
        x = F.normalize(features.float(), dim=-1, eps=eps)
        with torch.no_grad():
            similarity = x @ x.t()  # (n, n); on the unit sphere the nearest neighbour has the largest dot product
            similarity.fill_diagonal_(-torch.inf)
            nearest = similarity.argmax(dim=1)
        distances = (x - x[nearest]).norm(dim=-1)
        return -torch.log(distances + eps).mean()


def gather_with_local_grad(features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every process's ``features`` (n, D) concatenated in rank order, this process's rows keeping their gradient;
    and the number of processes (1, features as they are, without a process group).

    A loss computed on the result is the global batch's loss on every process, and its gradient reaches each feature
    on the process that owns it. Because DistributedDataParallel averages gradients over the N processes, the
    trainer multiplies such a loss by N before ``backward``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features, 1
    world, rank = dist.get_world_size(), dist.get_rank()
    parts = [torch.empty_like(features) for _ in range(world)]
    dist.all_gather(parts, features.detach().contiguous())
    parts[rank] = features
    return torch.cat(parts), world
