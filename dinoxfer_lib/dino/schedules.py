"""Schedules as arrays with one value per iteration, as in the official DINO: easy to plot, test and resume."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base: float, final: float, *, epochs: int, steps_per_epoch: int, warmup_epochs: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs``, then a cosine from ``base`` to
    ``final``.

    Returns
    -------
    numpy.ndarray
        ``epochs * steps_per_epoch`` values, one per optimiser step.
    """
    warmup_steps = warmup_epochs * steps_per_epoch
    warmup = np.linspace(warmup_start, base, warmup_steps)
    steps = np.arange(epochs * steps_per_epoch - warmup_steps)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    return np.concatenate((warmup, cosine))
