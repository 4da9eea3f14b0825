"""Multi-label F1 (the paper's metric, its Eq. 4-6) and per-class threshold tuning.

Per class, F1 = 2·tp / (2·tp + fp + fn), which equals the harmonic mean of precision and recall wherever those are
defined and is 0 when tp = 0 but fp + fn > 0. Macro F1 is the unweighted mean over the classes, so a rare class
counts as much as a common one.

Classes absent from a split. A class with no true and no predicted positives in the rows scored has 0/0 for F1.
The paper does not say what it did; ``absent`` makes the choice explicit:

- ``"zero"`` (default): the class scores 0, as scikit-learn's ``f1_score(average="macro", zero_division=0)``
  does. It never flatters a model: a split that happens to lack a class can only lower the score.
- ``"one"``: the class scores 1 ("nothing to find, nothing wrongly found"), scikit-learn's ``zero_division=1``.
- ``"skip"``: the mean runs over the classes present in the truth or in the predictions only, scikit-learn's
  ``labels=`` restricted to those classes. NaN when no class is present.

With the paper's 10 % test split of OpenCell every class has test images, so the options agree there; they differ
on small synthetic splits and on validation folds of rare classes.

:func:`batched_per_class_f1` and :func:`batched_macro_f1` compute the same numbers in torch for many models at once
(predictions ``(models, rows, classes)``), so a training loop can score all its fold models without leaving the
device.
"""

from __future__ import annotations

import numpy as np
import torch

from dinoxfer_lib.errors import ConfigError, DataError

ABSENT_OPTIONS = ("zero", "one", "skip")
# 0.05, 0.10, ..., 0.95: includes the fixed 0.5, so tuning can always fall back to it.
DEFAULT_THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, *, absent: str = "zero") -> np.ndarray:
    """F1 of each class of a multi-label prediction.

    Parameters
    ----------
    y_true, y_pred
        ``(N, K)`` boolean (or 0/1) matrices: truth and prediction.
    absent
        Score of a class with no true and no predicted positives: ``"zero"`` → 0, ``"one"`` → 1, ``"skip"`` →
        NaN (left out of :func:`macro_f1`). See the module docstring for why ``"zero"`` is the default.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` float64 F1 per class.
    """
    _check_absent(absent)
    y_true, y_pred = _as_bool_pair(y_true, y_pred)
    tp = (y_true & y_pred).sum(0)
    fp = (~y_true & y_pred).sum(0)
    fn = (y_true & ~y_pred).sum(0)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
    f1[denominator == 0] = {"zero": 0.0, "one": 1.0, "skip": np.nan}[absent]
    return f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, *, absent: str = "zero") -> float:
    """Unweighted mean of :func:`per_class_f1` over all K classes (``"skip"``: over the classes present)."""
    f1 = per_class_f1(y_true, y_pred, absent=absent)
    present = ~np.isnan(f1)
    return float(f1[present].mean()) if present.any() else float("nan")


def batched_per_class_f1(
    y_true: torch.Tensor, y_pred: torch.Tensor, *, mask: torch.Tensor | None = None, absent: str = "zero"
) -> torch.Tensor:
    """:func:`per_class_f1` for M models at once, on their device.

    Parameters
    ----------
    y_true
        ``(N, K)`` truth shared by all models, or ``(M, N, K)``.
    y_pred
        ``(M, N, K)`` boolean predictions of the M models.
    mask
        Optional ``(M, N)`` or ``(N,)`` boolean: the rows each model is scored on (e.g. each fold's validation
        rows inside one padded row set). Rows outside the mask count for nothing.
    absent
        As in :func:`per_class_f1`.

    Returns
    -------
    torch.Tensor
        ``(M, K)`` float32 F1 per model and class (NaN for absent classes under ``"skip"``).
    """
    _check_absent(absent)
    y_true = y_true.bool()
    y_pred = y_pred.bool()
    if y_true.dim() == 2:
        y_true = y_true.unsqueeze(0)  # (1, N, K): broadcast over the models
    if y_pred.dim() != 3 or y_true.shape[1:] != y_pred.shape[1:]:
        raise DataError(f"batched F1 needs predictions (models, rows, classes) matching the truth, got "
                        f"{tuple(y_pred.shape)} and {tuple(y_true.shape)}")
    if mask is not None:
        mask = mask.bool()
        y_pred = y_pred & (mask if mask.dim() == 2 else mask.unsqueeze(0)).unsqueeze(-1)  # (M, N, K)
        y_true = y_true & (mask if mask.dim() == 2 else mask.unsqueeze(0)).unsqueeze(-1)
    tp = (y_true & y_pred).sum(1)  # (M, K)
    fp = (~y_true & y_pred).sum(1)
    fn = (y_true & ~y_pred).sum(1)
    denominator = (2 * tp + fp + fn).float()
    f1 = 2 * tp.float() / denominator.clamp(min=1)
    fill = {"zero": 0.0, "one": 1.0, "skip": float("nan")}[absent]
    return torch.where(denominator > 0, f1, torch.full_like(f1, fill))


def batched_macro_f1(
    y_true: torch.Tensor, y_pred: torch.Tensor, *, mask: torch.Tensor | None = None, absent: str = "zero"
) -> torch.Tensor:
    """``(M,)`` macro F1 of M models: :func:`batched_per_class_f1` averaged over classes (NaN-aware for skip)."""
    return batched_per_class_f1(y_true, y_pred, mask=mask, absent=absent).nanmean(dim=1)


def tune_thresholds(
    probs_val: np.ndarray, y_val: np.ndarray, *, grid: tuple[float, ...] = DEFAULT_THRESHOLD_GRID,
    absent: str = "zero",
) -> np.ndarray:
    """Per-class decision thresholds that maximise each class's F1 on validation data (Cell-DINO's practice).

    Each class is tuned on its own, which is exact for macro F1: it is a sum of per-class terms. Ties (a flat F1,
    e.g. a class without validation positives) go to the grid value closest to 0.5, so a class the validation
    set says nothing about keeps the untuned threshold. The validation F1 at the tuned thresholds is optimistic
    (they were chosen on it); only the test F1 at them is a fair estimate.

    Parameters
    ----------
    probs_val
        ``(N, K)`` predicted probabilities on the validation rows.
    y_val
        ``(N, K)`` boolean truth of the same rows.
    grid
        Candidate thresholds, each in (0, 1).
    absent
        As in :func:`per_class_f1`.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` threshold per class, taken from ``grid``.
    """
    probs_val = np.asarray(probs_val, dtype=float)
    y_val = np.asarray(y_val).astype(bool)
    if probs_val.shape != y_val.shape or probs_val.ndim != 2:
        raise DataError(f"tune_thresholds needs probabilities and labels of one (rows, classes) shape, got "
                        f"{probs_val.shape} and {y_val.shape}")
    grid_array = np.asarray(grid, dtype=float)
    if grid_array.ndim != 1 or len(grid_array) == 0 or ((grid_array <= 0) | (grid_array >= 1)).any():
        raise ConfigError(f"threshold grid must be a non-empty list of values in (0, 1), got {grid!r}")
    predictions = probs_val[None] >= grid_array[:, None, None]  # (G, N, K)
    f1 = torch.nan_to_num(batched_per_class_f1(torch.from_numpy(y_val), torch.from_numpy(predictions),
                                               absent=absent), nan=-1.0).numpy()  # (G, K)
    best = f1.max(axis=0)
    # among the grid values reaching the best F1, the one closest to 0.5
    distance = np.where(f1 >= best - 1e-12, np.abs(grid_array - 0.5)[:, None], np.inf)  # (G, K)
    return grid_array[distance.argmin(axis=0)]


def _as_bool_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(y_pred).astype(bool)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise DataError(f"F1 needs truth and prediction of one (rows, classes) shape, got {y_true.shape} and "
                        f"{y_pred.shape}")
    return y_true, y_pred


def _check_absent(absent: str) -> None:
    if absent not in ABSENT_OPTIONS:
        raise ConfigError(f"absent = {absent!r}: expected one of {', '.join(ABSENT_OPTIONS)}")
