"""Turn one fold model's probabilities into tidy score rows (train / val / test x fixed / tuned threshold)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dinoxfer_lib.metrics import per_class_f1, tune_thresholds

SUBSETS = ("train", "val", "test")


def threshold_label(threshold: float) -> str:
    """How the fixed threshold is named in the ``threshold`` column (``"0.5"`` for the paper's)."""
    return f"{threshold:g}"


def score_fold(
    probs: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    *,
    class_names: Sequence[str],
    threshold: float,
    tune: bool,
) -> tuple[list[dict], np.ndarray | None]:
    """Macro and per-class F1 of one model on each subset, at the fixed threshold and optionally at tuned ones.

    Parameters
    ----------
    probs, truth
        Per subset (``train``, ``val``, ``test``): ``(rows, K)`` probabilities and boolean labels.
    class_names
        The K class names, for the per-class rows.
    threshold
        The fixed decision threshold (paper: 0.5).
    tune
        Also score at per-class thresholds tuned on this model's ``val`` subset
        (:func:`~dinoxfer_lib.metrics.tune_thresholds`); the ``val`` rows at them are optimistic by construction.

    Returns
    -------
    rows : list of dict
        Keys ``subset, threshold, class, metric, value``; ``class`` is None on the macro rows.
    tuned : numpy.ndarray or None
        ``(K,)`` tuned thresholds, when ``tune``.
    """
    decision = {threshold_label(threshold): np.float64(threshold)}
    tuned = tune_thresholds(probs["val"], truth["val"]) if tune else None
    if tune:
        decision["tuned"] = tuned  # (K,) broadcast over rows
    rows = []
    for subset in SUBSETS:
        for label, cut in decision.items():
            f1 = per_class_f1(truth[subset], probs[subset] >= cut)  # (K,)
            rows.append({"subset": subset, "threshold": label, "class": None, "metric": "f1",
                         "value": float(f1.mean())})
            rows += [{"subset": subset, "threshold": label, "class": name, "metric": "f1", "value": float(v)}
                     for name, v in zip(class_names, f1)]
    return rows, tuned
