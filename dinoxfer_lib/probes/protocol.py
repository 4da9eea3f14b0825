"""The probe protocol's data pieces (paper, "Classifier Training"): input checks, resampling, standardisation.

Each is a plain function so the tests can check it against the paper's sentence, and both trainers (the batched
one and the references) use the same code.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dinoxfer_lib.errors import DataError

# A feature whose training-fold std is below this is constant there (a dead unit, a zeroed channel).
STD_FLOOR = 1e-6


def resampling_weights(labels: np.ndarray) -> np.ndarray:
    """Draw probability of each training image: inversely proportional to the frequency of its rarest label.

    "We first resampled each data point with a probability inversely proportional to the frequency of its
    rarest label." Frequencies are counted in ``labels`` (the training fold). An image without any label has no
    rarest label; it is treated as carrying one extra label, "none", with its own frequency. So a few
    unlabelled images are neither dropped (they still teach "predict nothing") nor drawn as often as a rare
    class; OpenCell's unlabelled images are normally filtered out before the probes anyway.

    Parameters
    ----------
    labels
        ``(N, K)`` boolean multi-hot labels of the training images.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 probabilities summing to 1.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.ndim != 2 or len(labels) == 0:
        raise DataError(f"resampling needs a non-empty (images, classes) label matrix, got shape {labels.shape}")
    with_none = np.column_stack([labels, ~labels.any(axis=1)])  # (N, K + 1)
    counts = with_none.sum(axis=0).astype(float)  # (K + 1,)
    # per image the smallest count among its labels; columns it lacks count as +inf
    rarest = np.where(with_none, counts, np.inf).min(axis=1)  # (N,)
    weights = 1.0 / rarest
    return weights / weights.sum()


def fit_standardizer(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0, float64 sums) of the training features, as float32 ``(d,)`` arrays.

    A std below :data:`STD_FLOOR` is replaced by 1, as scikit-learn's ``StandardScaler`` does: such a feature is
    only centred. Flooring it at a tiny value instead would multiply any variation it shows on validation or
    test images by a million.
    """
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Standardise ``train`` with its own mean/std and each of ``others`` (validation, test) with the same.

    "Feature vectors were standardized to have zero mean and unit variance, using statistics computed from the
    training set; the same normalization parameters were then applied to the validation and test sets."

    Returns
    -------
    tuple of numpy.ndarray
        float32 arrays, ``train`` first, then ``others`` in order.
    """
    mean, std = fit_standardizer(train)
    return tuple(((np.asarray(x, dtype=np.float32) - mean) / std) for x in (train, *others))


def check_embedding_sets(embedding_sets: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Check feature matrices against the labels; return the labels as a boolean ``(N, K)`` matrix.

    Raises
    ------
    DataError
        No sets; a set that is not 2-D, has another row count than ``labels``, or holds NaN/Inf (named).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] == 0:
        raise DataError(f"labels must be a 2-D (images, classes) matrix, got shape {labels.shape}")
    if not embedding_sets:
        raise DataError("no embedding sets given: expected a mapping of set name to (images, dim) features")
    for name, features in embedding_sets.items():
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] == 0:
            raise DataError(f"embedding set {name!r} has shape {features.shape}: expected (images, dim)")
        if len(features) != len(labels):
            raise DataError(f"embedding set {name!r} has {len(features)} rows but labels have {len(labels)}")
        bad = int((~np.isfinite(features)).sum())
        if bad:
            raise DataError(f"embedding set {name!r} has {bad} NaN/Inf values: re-extract or drop those images")
    return labels.astype(bool)


def check_split(split, n_images: int) -> None:
    """The split's indices must address the feature rows (a split of another dataset would silently mislead)."""
    if split.n_images != n_images:
        raise DataError(f"split covers {split.n_images} images but the features have {n_images} rows")
