"""Sinkhorn-Knopp centring of teacher outputs (SwAV, Caron et al. 2020; DINOv2's ``centering: sinkhorn_knopp``).

Instead of subtracting a running centre, the teacher's targets for a batch are made an equipartition: starting
from ``exp(logits / temp)``, rows (prototypes) and columns (samples) are rescaled in turn so that every prototype
gets the same share of the batch and every sample one unit of probability. Each target is a distribution over the
prototypes (rows of the result sum to 1), and summed over the batch each prototype receives ``B / K``. No state is
kept from step to step, so nothing can lag behind the teacher.

Under ``torch.distributed`` the batch is the global batch: the prototype sums and the sample count are all-reduced,
so N processes compute what one process computes on all the samples. Without a process group it runs as is.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, *, iterations: int = 3) -> torch.Tensor:
    """Equipartitioned targets of this process's ``logits`` (B, K): (B, K) float32, each row summing to 1.

    Parameters
    ----------
    logits
        Teacher logits of this process's samples (the head's output before any softmax).
    temp
        Teacher temperature (sharpening).
    iterations
        Alternating normalisations (DINOv2: 3).
    """
    distributed = dist.is_available() and dist.is_initialized()
    # exp of a max-shifted copy: the same after normalisation, and no overflow at low temperatures
    shifted = logits.float() / temp
    top = shifted.max() if shifted.numel() else shifted.new_tensor(-torch.inf)  # a process may have no samples
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(shifted - top).t()  # (K, B): prototypes x samples
    n_samples = torch.tensor(float(q.shape[1]), device=q.device)
    total = q.sum()
    if distributed:
        dist.all_reduce(n_samples)
        dist.all_reduce(total)
    q /= total
    n_prototypes = q.shape[0]
    for _ in range(iterations):
        per_prototype = q.sum(dim=1, keepdim=True)  # (K, 1), over the global batch
        if distributed:
            dist.all_reduce(per_prototype)
        q /= per_prototype * n_prototypes  # each prototype holds 1 / K of the mass
        q /= q.sum(dim=0, keepdim=True) * n_samples  # each sample holds 1 / B of the mass
    return (q * n_samples).t()  # each sample's target sums to 1
