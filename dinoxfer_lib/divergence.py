"""Stop a training run whose loss is no longer finite, with one line naming the step and the value.

A NaN or infinite loss never recovers: every later step trains on NaN weights, and a result scored from them (macro
F1 of 0.0, a collapsed backbone) looks like a finding. Every training loop (DINO, the probes, LoRA and full
fine-tuning, the segmentation heads) checks its losses with :func:`stop_on_divergence` and raises
:class:`~dinoxfer_lib.errors.TrainingError` before it writes anything, so the run store keeps no stage of it.
"""

from __future__ import annotations

import numpy as np

from dinoxfer_lib.errors import TrainingError


def stop_on_divergence(losses: float | np.ndarray, *, what: str, hint: str, steps_per_epoch: int,
                       first_step: int = 0) -> None:
    """Raise :class:`~dinoxfer_lib.errors.TrainingError` at the first loss that is NaN or infinite.

    Parameters
    ----------
    losses
        One step's loss, or the losses of consecutive steps ``(steps,)``, or of models trained together
        ``(steps, models)``.
    what
        The loss, for the message (``"DINO loss"``).
    hint
        The setting to change (``"lower probe.lr"``).
    steps_per_epoch, first_step
        To name the step: ``losses[0]`` is the run's step ``first_step`` (counted from 0).
    """
    losses = np.atleast_1d(np.asarray(losses, dtype=np.float64))  # (steps,) or (steps, models)
    bad = np.flatnonzero(~np.isfinite(losses))
    if not len(bad):
        return
    index = np.unravel_index(bad[0], losses.shape)  # the first bad step (and model)
    step = first_step + int(index[0])
    model = f" (model {int(index[1]) + 1} of {losses.shape[1]} trained together)" if losses.ndim == 2 else ""
    raise TrainingError(
        f"{what}{model} is {float(losses[index])} at step {step + 1} (epoch {step // steps_per_epoch + 1}, step "
        f"{step % steps_per_epoch + 1} of {steps_per_epoch}): {hint}; training stopped and nothing was stored"
    )
