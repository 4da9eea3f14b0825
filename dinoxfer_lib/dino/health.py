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

import pandas as pd
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


# A finished run is judged on its last HEALTH_WINDOW share of steps (at least one step).
HEALTH_WINDOW = 0.1
# Partial collapse: more than this share of a batch's teacher outputs on one prototype (half of them, in a run that
# looked healthy by entropy alone, is what a too-sharp, too-fast teacher does).
MAX_ARGMAX_SHARE = 0.25
# The loss has fallen: the last window's mean is at most this share of the first window's ...
MAX_LOSS_RATIO = 0.8
# ... and stayed down: at most this much above the lowest window mean of the run (nats).
MAX_LOSS_REBOUND = 0.25


def health_checks(history: pd.DataFrame, out_dim: int) -> pd.DataFrame:
    """Is a finished DINO run healthy? One row per check on its per-step ``history`` (``history.csv``).

    Checks, on windows of :data:`HEALTH_WINDOW` of the steps: the loss fell (last window ≤ :data:`MAX_LOSS_RATIO` ×
    first) and stayed down (last ≤ lowest window + :data:`MAX_LOSS_REBOUND`); the teacher is not uniform (entropy
    < :data:`UNIFORM_FRACTION` · log K) and not collapsed onto few prototypes, wholly or in part (argmax share ≤
    :data:`MAX_ARGMAX_SHARE`).

    Returns
    -------
    pandas.DataFrame
        Columns ``check``, ``value``, ``bound``, ``healthy`` (bool).
    """
    window = max(1, round(HEALTH_WINDOW * len(history)))
    loss = history["loss"].rolling(window).mean().dropna()
    first, last, lowest = float(loss.iloc[0]), float(loss.iloc[-1]), float(loss.min())
    tail = history.iloc[-window:]
    entropy, share = float(tail["teacher_entropy"].mean()), float(tail["argmax_share"].mean())
    max_entropy = math.log(out_dim)
    rows = [
        ("loss fell (last / first window)", last / first, f"<= {MAX_LOSS_RATIO}", last <= MAX_LOSS_RATIO * first),
        ("loss stayed down (last − lowest window, nats)", last - lowest, f"<= {MAX_LOSS_REBOUND}",
         last - lowest <= MAX_LOSS_REBOUND),
        ("teacher entropy / log K (last window)", entropy / max_entropy, f"< {UNIFORM_FRACTION}",
         entropy < UNIFORM_FRACTION * max_entropy),
        ("share of a batch on its top prototype (last window)", share, f"<= {MAX_ARGMAX_SHARE}",
         share <= MAX_ARGMAX_SHARE),
    ]
    return pd.DataFrame(rows, columns=["check", "value", "bound", "healthy"])
