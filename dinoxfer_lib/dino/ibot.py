"""iBOT's masked-patch loss (Zhou et al. 2022), weighted as DINOv2 weighs it.

The student sees its global crops with some patches replaced by a learnable mask token; the teacher sees them
whole. At each masked patch the student must predict the teacher's distribution over the patch prototypes:

    loss = 1 / n_crops * sum over crops c of  mean over masked patches m of c of  -sum_k q_m[k] log p_m[k]

with ``p_m = softmax(s_m / student_temp)`` and ``q_m`` the teacher's target (centred and sharpened, or
Sinkhorn-Knopp). Every masked crop weighs the same however many patches it hides; crops without a mask add 0 but
count in ``n_crops``. The centre here is the patches' own: an EMA of the mean teacher logit over the masked
patches of the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dinoxfer_lib.dino.masking import mask_weights


class IBOTPatchLoss(nn.Module):
    """Cross-entropy between teacher targets and student predictions at the masked patches.

    Parameters
    ----------
    out_dim
        Patch prototypes K (the iBOT head's, or the DINO head's when it is shared).
    student_temp, center_momentum
        As for the CLS loss (DINOv2: 0.1 and 0.9).

    ``forward(student_logits, teacher_probs, masks)`` takes the logits ``(M, K)`` and targets ``(M, K)`` of the M
    masked patches, in ``masks[masks]`` order, and the masks ``(n_crops, N)`` of this process's global crops.
    """

    def __init__(self, out_dim: int, *, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probabilities(self, teacher_logits: torch.Tensor, temp: float) -> torch.Tensor:
        """(M, K) teacher logits → centred, sharpened targets (M, K), without gradient."""
        return F.softmax((teacher_logits.float() - self.center) / temp, dim=-1).detach()

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor
                ) -> torch.Tensor:
        log_p = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)  # (M, K)
        cross = -(teacher_probs * log_p).sum(dim=-1)  # (M,): one cross-entropy per masked patch
        return (cross * mask_weights(masks)).sum() / len(masks)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the mean teacher logit over every process's masked patches (kept when there are none)."""
        total = teacher_logits.float().sum(dim=0, keepdim=True)  # (1, K)
        count = torch.tensor(float(len(teacher_logits)), device=total.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        moved = self.center * self.center_momentum + total / count.clamp(min=1) * (1 - self.center_momentum)
        self.center.copy_(torch.where(count > 0, moved, self.center))
