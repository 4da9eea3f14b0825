"""DINO's self-distillation loss: cross-entropy between a centred, sharpened teacher and the student.

For views v (2 global + n local) and teacher views t (the 2 globals), with teacher probabilities
``q_t = softmax((g_t - c) / tau_t)`` and student log-probabilities ``log p_v = log_softmax(s_v / tau_s)``:

    loss = mean over pairs (t, v), v != t, of  mean over images of  -sum_k q_t[k] log p_v[k]

The centre ``c`` is an EMA (momentum 0.9) of the batch mean of the teacher logits, summed over all processes when
a process group is running; centring keeps one prototype from winning everything, the low teacher temperature
keeps the outputs from going uniform (Caron et al. 2021, §3.1 and Algorithm 1). With ``sinkhorn_iterations`` the
targets are equipartitioned by Sinkhorn-Knopp instead (:mod:`.sinkhorn`, DINOv2's ``centering: sinkhorn_knopp``):
no prototype can take more than its share of a batch, which a running centre only corrects after the fact.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dinoxfer_lib.dino.sinkhorn import sinkhorn_knopp


def teacher_temperature_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """Teacher temperature per epoch: linear from ``warmup_temp`` to ``temp`` over ``warmup_epochs``, then flat."""
    return np.concatenate((np.linspace(warmup_temp, temp, warmup_epochs), np.full(epochs - warmup_epochs, temp)))


class DINOLoss(nn.Module):
    """Cross-entropy between teacher (global views only) and student (all views), except identical views.

    Parameters
    ----------
    out_dim
        Prototypes K.
    n_crops
        Views per image the student sees (2 + local crops).
    teacher_temps
        Teacher temperature per epoch (:func:`teacher_temperature_schedule`).
    student_temp, center_momentum
        Official 0.1 and 0.9.
    sinkhorn_iterations
        Make the teacher targets with this many Sinkhorn-Knopp iterations instead of the running centre (the
        centre is still kept, for the health log); None: the centre, as official DINO.

    ``forward(student_logits, teacher_logits, epoch)`` takes ``(n_crops * B, K)`` and ``(2 * B, K)`` logits stacked
    view-major and returns the scalar loss; it also updates the centre (no gradient flows through the teacher).
    """

    def __init__(self, out_dim: int, *, n_crops: int, teacher_temps: np.ndarray, student_temp: float = 0.1,
                 center_momentum: float = 0.9, sinkhorn_iterations: int | None = None) -> None:
        super().__init__()
        self.n_crops, self.student_temp, self.center_momentum = n_crops, student_temp, center_momentum
        self.teacher_temps = [float(t) for t in teacher_temps]
        self.sinkhorn_iterations = sinkhorn_iterations
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probabilities(self, teacher_logits: torch.Tensor, epoch: int) -> torch.Tensor:
        """(2B, K) teacher logits → centred (or equipartitioned), sharpened probabilities (2B, K), no gradient."""
        temp = self.teacher_temps[min(epoch, len(self.teacher_temps) - 1)]
        if self.sinkhorn_iterations is not None:
            return sinkhorn_knopp(teacher_logits, temp, iterations=self.sinkhorn_iterations)
        return F.softmax((teacher_logits.float() - self.center) / temp, dim=-1).detach()

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, epoch: int) -> torch.Tensor:
        loss = self.cross_entropy(student_logits, self.teacher_probabilities(teacher_logits, epoch))
        self.update_center(teacher_logits)
        return loss

    def cross_entropy(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
        """Mean over (teacher view, other student view) pairs of the mean cross-entropy: ``(n_crops * B, K)``
        student logits against ``(2 * B, K)`` teacher targets (centred here, or Sinkhorn-Knopp's)."""
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)
        log_p = log_p.reshape(self.n_crops, -1, log_p.shape[-1])  # (views, B, K)
        q = teacher_probs.reshape(2, -1, log_p.shape[-1])  # (2, B, K)
        batch = log_p.shape[1]
        cross = -torch.einsum("tbk,vbk->tv", q, log_p) / batch  # (2, views): mean CE of each pair
        keep = torch.ones_like(cross, dtype=torch.bool)
        keep[0, 0] = keep[1, 1] = False  # a global view is never compared with itself
        return cross[keep].mean()

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the batch mean of teacher logits over every process's images."""
        total = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor(float(len(teacher_logits)), device=total.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)
