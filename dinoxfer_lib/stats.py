"""Paired statistics for comparing rows of Table III (issue 14, item 4).

Every embedding set is probed on the same folds and scored on the same test images, so two rows are best
compared pair by pair, not by whether their mean ± std bars overlap ("twice the std" ignores that both rows
share the test images' difficulty, which cancels in a difference):

- **Per-fold paired differences** (:func:`fold_differences`): fold k's model of row a against fold k's model
  of row b, on the same validation fold and the same test images; the mean difference over the folds with a
  Student t interval. The folds share most training images, so these intervals are optimistic (Nadeau & Bengio
  2003); they say how much the recipe's randomness moves the difference.
- **Paired bootstrap over test images** (:func:`bootstrap_macro_f1`, :func:`paired_bootstrap`): the test images
  are resampled with replacement (the same resamples for every row); on each resample, each fold model's test
  predictions give a macro F1, averaged over the folds as Table III does, and rows are differenced. The
  percentile interval of the difference says how much a different draw of test images could move it, the
  uncertainty that dominates with a few hundred test images and rare classes.

Two results on *different* test images (the split by image and the split grouped by protein) cannot be paired:
:func:`bootstrap_difference` differences two bootstraps drawn each on its own test images (with different seeds),
so its interval carries both test sets' sampling uncertainty. On the *same* test images with other labels (the
grade >= 2 variant) the two bootstraps share their resamples, and the same function gives a paired interval.

Both use the project's F1 (:mod:`dinoxfer_lib.metrics`, a class without true or predicted positives on a
resample scores 0). The bootstrap is vectorised: a resample is a vector of counts (how often each test image was
drawn), so true positives, false positives and false negatives of every resample, fold and class are three
matrix products ``(B, n) @ (n, folds * K)`` per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.result import ProbeResult

Row = str | tuple[str, str]  # a Table III row: (set, probe), or a set name for (set, "mlp")


@dataclass(frozen=True)
class Bootstrap:
    """Fold-averaged macro F1 of several rows on the same bootstrap resamples of the test images.

    Attributes
    ----------
    rows
        The rows' names, in the order of ``scores``.
    indices
        ``(B, n)`` positions (into the test images) drawn for each resample; shared by every row.
    scores
        ``(S, B)`` each row's fold-averaged macro F1 on each resample.
    observed
        ``(S,)`` the same on the test images themselves (Table III's test mean).
    """

    rows: tuple[str, ...]
    indices: np.ndarray
    scores: np.ndarray
    observed: np.ndarray

    def difference(self, a: str, b: str, *, confidence: float = 0.95) -> dict[str, float]:
        """Observed difference a − b and its percentile interval over the resamples."""
        i, j = (self._position(r) for r in (a, b))
        diff = self.scores[i] - self.scores[j]  # (B,)
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(diff, [tail, 100 - tail])
        return {"difference": float(self.observed[i] - self.observed[j]), "low": float(low), "high": float(high)}

    def _position(self, row: str) -> int:
        if row not in self.rows:
            raise DataError(f"no bootstrap scores for row {row!r}: have {', '.join(self.rows)}")
        return self.rows.index(row)


def resample_indices(n: int, *, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(B, n)`` positions drawn with replacement from ``range(n)``: one row per resample, from ``seed`` alone."""
    if n < 1 or n_resamples < 1:
        raise DataError(f"bootstrap needs test images and resamples, got {n} images and {n_resamples} resamples")
    return np.random.default_rng([seed, n]).integers(0, n, size=(n_resamples, n))


def bootstrap_macro_f1(
    probs: Mapping[str, np.ndarray],
    truth: np.ndarray,
    *,
    thresholds: Mapping[str, float | np.ndarray] | float = 0.5,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Bootstrap:
    """Each row's fold-averaged test macro F1 on the same bootstrap resamples of the test images.

    Parameters
    ----------
    probs
        Row name → ``(folds, n, K)`` test probabilities of its fold models (``ProbeResult.probs``).
    truth
        ``(n, K)`` boolean labels of the n test images, in the same order.
    thresholds
        One threshold for every row, or per row a float or ``(folds, K)`` per-class thresholds (tuned ones).
    n_resamples, seed
        Number of resamples (>= 1,000 for a 95 % interval) and their seed; the resamples depend on ``seed`` and
        n only, never on which rows are compared.

    Returns
    -------
    Bootstrap
        Scores per row and resample, the shared resample indices and the observed values.
    """
    truth = np.asarray(truth).astype(bool)
    if truth.ndim != 2:
        raise DataError(f"truth must be (test images, classes), got shape {truth.shape}")
    indices = resample_indices(len(truth), n_resamples=n_resamples, seed=seed)
    # counts[b, i] = how often test image i was drawn in resample b; the last row is the test set itself
    flat = (indices + len(truth) * np.arange(n_resamples)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_resamples * len(truth)).reshape(n_resamples, len(truth))
    counts = np.vstack([counts, np.ones(len(truth), dtype=counts.dtype)]).astype(np.float64)  # (B + 1, n)
    scores = []
    for name, p in probs.items():
        p = np.asarray(p)
        if p.ndim != 3 or p.shape[1:] != truth.shape:
            raise DataError(f"row {name!r}: probabilities of shape {p.shape}, expected (folds, {truth.shape[0]}, "
                            f"{truth.shape[1]})")
        cut = thresholds if np.isscalar(thresholds) else thresholds[name]
        cut = np.asarray(cut, dtype=float)
        predicted = p >= (cut[:, None, :] if cut.ndim == 2 else cut)  # (F, n, K)
        scores.append(_resampled_macro_f1(counts, truth, predicted))  # (B + 1,)
    scores = np.asarray(scores)
    return Bootstrap(rows=tuple(probs), indices=indices, scores=scores[:, :-1], observed=scores[:, -1])


def _resampled_macro_f1(counts: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``(B,)`` fold-averaged macro F1 for resample counts ``(B, n)``, truth ``(n, K)``, predictions ``(F, n, K)``."""
    n_folds, n, n_classes = predicted.shape

    def as_columns(hits: np.ndarray) -> np.ndarray:  # (F, n, K) → (n, F * K)
        return hits.transpose(1, 0, 2).reshape(n, n_folds * n_classes).astype(np.float64)

    tp = counts @ as_columns(truth & predicted)  # (B, F * K)
    fp = counts @ as_columns(~truth & predicted)
    fn = counts @ as_columns(truth & ~predicted)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)  # absent class: 0
    return f1.reshape(len(counts), n_folds, n_classes).mean(axis=(1, 2))


def paired_bootstrap(
    result: ProbeResult,
    labels: np.ndarray,
    *,
    pairs: Sequence[tuple[Row, Row]] | None = None,
    threshold: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Paired bootstrap intervals of the difference in test macro F1 between rows of a probe result.

    Parameters
    ----------
    result
        Probe results on one split (several can be joined with ``ProbeResult.concat``, e.g. Table III and the
        supervised ceiling).
    labels
        ``(N, K)`` labels of the whole dataset; the test rows are taken at ``result.test_index``.
    pairs
        ``(a, b)`` rows to compare (a − b); a row is ``(set, probe)`` or a set name for ``(set, "mlp")``.
        Default: every pair of rows in the result.
    threshold
        The fixed threshold (default) or ``"tuned"`` (each fold model's thresholds tuned on its validation fold).
    n_resamples, seed, confidence
        Resamples (>= 1,000), their seed and the interval's coverage.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``a``, ``b`` (``"set/probe"``), ``difference`` (observed, = the difference of the
        Table III test means), ``low``, ``high``, ``excludes_zero``, ``resamples``, ``threshold``.
    """
    rows = list(result.test_probs) if pairs is None else list(dict.fromkeys(_row(r) for pair in pairs for r in pair))
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :]]
    label = threshold or result.fixed_threshold
    boot = row_bootstrap(result, labels, rows, threshold=label, n_resamples=n_resamples, seed=seed)
    out = []
    for a, b in pairs:
        a, b = _name(_row(a)), _name(_row(b))
        out.append({"a": a, "b": b, **boot.difference(a, b, confidence=confidence)})
    frame = pd.DataFrame(out, columns=["a", "b", "difference", "low", "high"])
    frame["excludes_zero"] = (frame["low"] > 0) | (frame["high"] < 0)
    frame["resamples"] = n_resamples
    frame["threshold"] = label
    return frame


def fold_differences(
    result: ProbeResult,
    *,
    pairs: Sequence[tuple[Row, Row]] | None = None,
    subset: str = "test",
    threshold: str | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per-fold paired differences in macro F1 between rows: mean, sample std and Student t interval.

    Fold k of row a is paired with fold k of row b (same training, validation and test images).

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``a``, ``b``, ``folds``, ``mean``, ``std`` (ddof=1), ``low``, ``high``,
        ``excludes_zero``, ``subset``, ``threshold``, and ``per_fold`` (the differences, fold order).
    """
    label = threshold or result.fixed_threshold
    s = result.scores
    macro = s[s["class"].isna() & (s["metric"] == "f1") & (s["subset"] == subset) & (s["threshold"] == label)]
    if macro.empty:
        raise DataError(f"no {subset!r} macro-F1 scores at threshold {label!r}")
    by_row = {(set_, probe): rows.set_index("fold")["value"] for (set_, probe), rows in
              macro.groupby(["set", "probe"], sort=False)}
    if pairs is None:
        keys = list(by_row)
        pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    out = []
    for a, b in pairs:
        a, b = _row(a), _row(b)
        for row in (a, b):
            if row not in by_row:
                raise DataError(f"no {subset!r} scores for row {_name(row)!r}: have "
                                f"{', '.join(_name(r) for r in by_row)}")
        folds = by_row[a].index.intersection(by_row[b].index)
        diff = (by_row[a][folds] - by_row[b][folds]).to_numpy()
        mean, std = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
        half = sps.t.ppf(0.5 + confidence / 2, len(diff) - 1) * std / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
        out.append({"a": _name(a), "b": _name(b), "folds": len(diff), "mean": mean, "std": std,
                    "low": mean - half, "high": mean + half, "per_fold": diff.tolist()})
    frame = pd.DataFrame(out, columns=["a", "b", "folds", "mean", "std", "low", "high", "per_fold"])
    frame.insert(7, "excludes_zero", (frame["low"] > 0) | (frame["high"] < 0))
    frame["subset"] = subset
    frame["threshold"] = label
    return frame


def _row(row: Row) -> tuple[str, str]:
    return (row, "mlp") if isinstance(row, str) else tuple(row)


def _name(row: tuple[str, str]) -> str:
    return f"{row[0]}/{row[1]}"


def row_bootstrap(result: ProbeResult, labels: np.ndarray, rows: Sequence[Row], *, threshold: str | None = None,
                  n_resamples: int = 1000, seed: int = 0) -> Bootstrap:
    """:func:`bootstrap_macro_f1` of some rows of a probe result (``"set/probe"`` names), on its test images."""
    labels = np.asarray(labels).astype(bool)
    test = np.asarray(result.test_index)
    if labels.ndim != 2 or len(labels) <= test.max(initial=-1):
        raise DataError(f"labels of shape {labels.shape} do not cover the result's test images "
                        f"(largest index {test.max(initial=-1)}): pass the whole dataset's labels")
    label = threshold or result.fixed_threshold
    probs, cuts = {}, {}
    for row in map(_row, rows):
        name = _name(row)
        probs[name] = result.probs(*row)
        if label == "tuned":
            if row not in result.thresholds:
                raise DataError(f"row {name!r} has no tuned thresholds: run the probes with tune_thresholds")
            cuts[name] = result.thresholds[row]
        else:
            cuts[name] = float(label)
    return bootstrap_macro_f1(probs, labels[test], thresholds=cuts, n_resamples=n_resamples, seed=seed)


def bootstrap_difference(a: Bootstrap, row_a: str, b: Bootstrap, row_b: str, *,
                         confidence: float = 0.95) -> dict[str, float]:
    """Difference ``row_a`` (of bootstrap ``a``) − ``row_b`` (of ``b``) and its percentile interval, resample by
    resample, as :meth:`Bootstrap.difference` does within one bootstrap.

    Two bootstraps of *different* test images (drawn with different seeds) are independent, and the interval
    carries both sets' sampling uncertainty; two of the *same* test images with the same seed share their
    resamples (``indices``), and the interval is paired (e.g. one row scored against two label sets).
    """
    if a.scores.shape[1] != b.scores.shape[1]:
        raise DataError(f"the two bootstraps have {a.scores.shape[1]} and {b.scores.shape[1]} resamples: expected "
                        "the same number")
    i, j = a._position(row_a), b._position(row_b)
    diff = a.scores[i] - b.scores[j]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(diff, [tail, 100 - tail])
    return {"difference": float(a.observed[i] - b.observed[j]), "low": float(low), "high": float(high)}
