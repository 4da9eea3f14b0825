"""Is DINO learning? Per-step statistics of the teacher and a collapse detector.

DINO's two failure modes (Caron et al. 2021, §5.3) show in the teacher's centred, sharpened output distribution:

- **uniform collapse**: every output is flat, entropy ≈ log K (too little sharpening: teacher_temp too high);
- **one-hot collapse**: every image lands on the same prototype, entropy ≈ 0 and one argmax for all
  (too little centring).

A healthy run sits in between, with a KL between the teacher outputs of two views of the same image that falls
over training while the entropy stays well below log K.
"""

from __future__ import annotations

import math
import warnings

import torch

# Entropy above this fraction of log K counts as uniform; below ONE_HOT_ENTROPY · log K with more than
# ONE_HOT_SHARE of the batch on one prototype counts as one-hot.
UNIFORM_FRACTION = 0.95
ONE_HOT_ENTROPY = 0.1
ONE_HOT_SHARE = 0.9
STEP_COLUMNS = ("loss", "teacher_entropy", "kl_globals", "argmax_share", "center_norm")


class CollapseWarning(UserWarning):
    """DINO's teacher outputs became uniform or one-hot: the backbone is no longer learning."""


@torch.no_grad()
def teacher_statistics(probabilities: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """(teacher_entropy, kl_globals, argmax_share, center_norm) of one step, as one tensor (no host sync).

    Parameters
    ----------
    probabilities
        Centred, sharpened teacher probabilities ``(2 * B, K)``, the two global views stacked view-major.
    center
        The loss's centre ``(1, K)``.
    """
    q = probabilities.float()
    log_q = q.clamp_min(1e-12).log()
    entropy = -(q * log_q).sum(-1).mean()
    q0, q1 = q.chunk(2)
    kl = (q0 * (log_q[: len(q0)] - log_q[len(q0):])).sum(-1).mean()  # KL(view 1 || view 2), mean over images
    counts = torch.bincount(q.argmax(-1), minlength=q.shape[-1])
    share = counts.max().float() / len(q)
    return torch.stack((entropy, kl, share, center.float().norm()))


def collapse_state(entropy: float, argmax_share: float, out_dim: int) -> str:
    """``"uniform"``, ``"one_hot"`` or ``""`` (healthy) for a teacher entropy (nats) and argmax share."""
    max_entropy = math.log(out_dim)
    if entropy >= UNIFORM_FRACTION * max_entropy:
        return "uniform"
    if entropy <= ONE_HOT_ENTROPY * max_entropy and argmax_share >= ONE_HOT_SHARE:
        return "one_hot"
    return ""


def warn_collapse(state: str, epoch: int) -> None:
    """A :class:`CollapseWarning` naming the failure, the epoch and the setting to change."""
    advice = {
        "uniform": "teacher outputs are uniform (entropy ~ log K): lower dino.teacher_temp or raise dino.out_dim",
        "one_hot": "teacher outputs are one-hot on one prototype: lower dino.center_momentum (faster centring) "
        "or raise dino.teacher_temp",
    }[state]
    warnings.warn(f"DINO collapse at epoch {epoch}: {advice}", CollapseWarning, stacklevel=3)
