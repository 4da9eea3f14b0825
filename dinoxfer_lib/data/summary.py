"""Statistics of a dataset: label frequencies by grade, label co-occurrence, and plate intensity effects.

Every number here is computed from an :class:`~dinoxfer_lib.data.dataset.ImageSet` (memory-mapped images are read
in chunks); the Datasets chapter shows them through :mod:`dinoxfer_lib.report.datasets` and
:mod:`dinoxfer_lib.pl.datasets`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet

# Percentiles taken of every image and channel: background (5th), median, bright structures (99th).
_INTENSITY_QUANTILES = (0.05, 0.5, 0.99)


def label_frequency(dataset: ImageSet) -> pd.DataFrame:
    """How many images carry each class, split by grade, most frequent first.

    Returns
    -------
    DataFrame
        Columns ``class``, ``count`` (images with the label), ``fraction`` (count / all images, the prevalence
        a stratified split preserves) and ``grade 3``, ``grade 2``, ``grade 1`` (counts by grade; they sum to
        ``count``).
    """
    counts = dataset.labels.sum(axis=0)
    frame = pd.DataFrame(
        {
            "class": list(dataset.class_names),
            "count": counts.astype(int),
            "fraction": counts / max(len(dataset), 1),
            **{f"grade {g}": (dataset.grades == g).sum(axis=0).astype(int) for g in (3, 2, 1)},
        }
    )
    return frame.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def label_cooccurrence(dataset: ImageSet, *, normalize: bool = False) -> pd.DataFrame:
    """How often two classes label the same image.

    Parameters
    ----------
    dataset
        Any labelled ImageSet.
    normalize
        False: counts (the diagonal holds each class's image count). True: the conditional probability
        P(column | row) = count(row and column) / count(row), which shows asymmetric look-alike pairs that raw
        counts hide behind class size; rows of absent classes are NaN.

    Returns
    -------
    DataFrame
        ``K × K``, indexed and labelled by class name.
    """
    onehot = dataset.labels.astype(np.int64)
    counts = onehot.T @ onehot
    names = pd.Index(dataset.class_names, name="class")
    if not normalize:
        return pd.DataFrame(counts, index=names, columns=names)
    diagonal = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        conditional = counts / diagonal[:, None]
    conditional[diagonal == 0] = np.nan
    return pd.DataFrame(conditional, index=names, columns=names)


def image_intensity_stats(dataset: ImageSet, *, chunk_bytes: int = 64 * 2**20) -> pd.DataFrame:
    """Per image and channel: mean, median, 99th percentile and background (5th percentile) intensity.

    Images are read ``chunk_bytes`` worth of float32 at a time, so a memory-mapped uint16 array never needs to
    fit in memory as floats; within a chunk every statistic is one vectorised call.

    Returns
    -------
    DataFrame
        Tidy: one row per image and channel with columns ``image``, ``batch``, ``channel``, ``mean``,
        ``median``, ``p99``, ``background``.
    """
    n, n_channels, height, width = dataset.images.shape
    chunk = max(1, chunk_bytes // (n_channels * height * width * 4))
    means, quantiles = [], []
    for start in range(0, n, chunk):
        # (images, channels, pixels) as float32: the only float copy alive at any time.
        block = np.asarray(dataset.images[start : start + chunk], dtype=np.float32)
        block = block.reshape(len(block), n_channels, height * width)
        means.append(block.mean(axis=2, dtype=np.float64))
        quantiles.append(np.quantile(block, _INTENSITY_QUANTILES, axis=2).astype(np.float64))
    mean = np.concatenate(means)  # (N, C)
    background, median, p99 = np.concatenate(quantiles, axis=1)  # each (N, C)
    return pd.DataFrame(
        {
            "image": np.repeat(np.arange(n), n_channels),
            "batch": np.repeat(dataset.obs["batch"].astype(str).to_numpy(), n_channels),
            "channel": np.tile(dataset.channel_names, n),
            "mean": mean.ravel(),
            "median": median.ravel(),
            "p99": p99.ravel(),
            "background": background.ravel(),
        }
    )


def batch_intensity_stats(dataset: ImageSet, *, chunk_bytes: int = 64 * 2**20) -> pd.DataFrame:
    """Plate effects in numbers: per batch and channel, the average of each per-image intensity statistic.

    Statistics are computed per image first (see :func:`image_intensity_stats`) and then averaged, so a plate
    with many images does not weigh its pixels more than its images.

    Returns
    -------
    DataFrame
        Indexed by (``batch``, ``channel``); columns ``images``, ``mean``, ``median``, ``p99``,
        ``background``.
    """
    per_image = image_intensity_stats(dataset, chunk_bytes=chunk_bytes)
    grouped = per_image.groupby(["batch", "channel"], sort=True)
    stats = grouped[["mean", "median", "p99", "background"]].mean()
    stats.insert(0, "images", grouped.size())
    return stats


def batch_mean_images(
    dataset: ImageSet, *, channel: int = 0, chunk_bytes: int = 64 * 2**20
) -> dict[str, np.ndarray]:
    """The average image of each batch for one channel: illumination gradients and offsets show up here.

    Returns
    -------
    dict
        Batch name (sorted) → ``(H, W)`` float64 mean image.
    """
    batches = dataset.obs["batch"].astype(str).to_numpy()
    names, codes = np.unique(batches, return_inverse=True)
    height, width = dataset.image_size
    sums = np.zeros((len(names), height, width))
    chunk = max(1, chunk_bytes // (height * width * 8))
    for start in range(0, len(dataset), chunk):
        block = np.asarray(dataset.images[start : start + chunk, channel], dtype=np.float64)  # (n, H, W)
        block_codes = codes[start : start + chunk]
        for code in np.unique(block_codes):
            sums[code] += block[block_codes == code].sum(axis=0)
    counts = np.bincount(codes, minlength=len(names))
    return {name: sums[k] / counts[k] for k, name in enumerate(names)}
