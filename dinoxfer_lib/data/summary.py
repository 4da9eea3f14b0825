"""Tables and text that describe a dataset: the paper's Table I, label statistics and plate intensity effects.

The Datasets chapter (Isselmann et al. 2026, *Materials and Methods: Datasets*, Table I) sets the paper's
description of ImageNet-1k, OpenCell and the HPA Image Classification set beside the same quantities computed
from whatever this run loaded, so a reader sees at once where the synthetic stand-ins differ from the real
data. Every number here is computed from an :class:`~dinoxfer_lib.data.dataset.ImageSet`; nothing is typed in
except the paper's own table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.errors import DataError

# Table I of the paper, transcribed row by row (only the rows the book compares against).
PAPER_TABLE_I: pd.DataFrame = pd.DataFrame(
    {
        "ImageNet-1k": [
            "1.2 million",
            "3 (RGB images)",
            "1000 object categories",
            "Natural images",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
        ],
        "OpenCell": [
            "6,301",
            "2 (protein, nucleus)",
            (
                "17 localization labels available for 6120 images (grades 1–3); single-protein localization "
                "per cell (OpenCell ontology); only HEK293T cell line"
            ),
            "Fluorescence microscopy",
            "Spinning disk confocal (Andor Dragonfly)",
            "63× / 1.47 NA oil immersion",
            "0.102 µm (102.4 nm)",
            "16-bit",
            "~10–30 cells per field",
            "Typically 1024×1024 pixels, with cropped fields of view (FOVs) at 600×600 pixels",
        ],
        "HPA Image Classification": [
            "117,882",
            "4 (protein, microtubules, nucleus, endoplasmic reticulum)",
            (
                "28 expert-annotated localization classes; compartment-level annotations per image/cell; "
                "35 distinct cell lines"
            ),
            "Fluorescence microscopy",
            "Leica SP5 point-scanning confocal",
            "63× / 1.40 NA oil immersion",
            "0.08 µm (80 nm)",
            "16-bit",
            "~10–30 cells per field",
            "Typically 2048×2048 px",
        ],
    },
    index=[
        "Images",
        "Channels",
        "Labels",
        "Domain",
        "Microscope",
        "Objective",
        "Pixel size",
        "Bit depth",
        "Typical cells per image",
        "Image size",
    ],
)

# Percentiles taken of every image and channel: background (5th), median, bright structures (99th).
_INTENSITY_QUANTILES = (0.05, 0.5, 0.99)


def summarize_domains(datasets: Sequence[ImageSet]) -> pd.DataFrame:
    """Our analogue of the paper's Table I: one column per dataset, computed from its images and labels.

    Parameters
    ----------
    datasets
        The domains to describe; each becomes a column named by its ``domain``.

    Returns
    -------
    DataFrame
        Rows: images, channels, classes, labelled images, labels per image, grade counts, groups, batches,
        cell lines, image size, bit depth, pixel size, synthetic. Values are display strings, because the rows
        mix counts, ranges and names.
    """
    if not datasets:
        raise DataError("summarize_domains needs at least one dataset")
    return pd.concat([_domain_column(d) for d in datasets], axis=1)


def _domain_column(dataset: ImageSet) -> pd.Series:
    n_labels = dataset.labels.sum(axis=1)
    labelled = n_labels[n_labels > 0]
    per_image = f"{labelled.mean():.2f} ({labelled.min()}–{labelled.max()})" if len(labelled) else "–"
    grades = " / ".join(f"{int((dataset.grades == g).sum()):,}" for g in (3, 2, 1))
    pixel = f"{dataset.pixel_size_um:g} µm" if dataset.pixel_size_um is not None else "–"
    height, width = dataset.image_size
    rows = {
        "Images": f"{len(dataset):,}",
        "Channels": f"{dataset.n_channels} ({', '.join(dataset.channel_names)})",
        "Classes": str(len(dataset.class_names)),
        "Labelled images": f"{len(labelled):,}",
        "Labels per image (mean, min–max)": per_image,
        "Labels by grade (3 / 2 / 1)": grades,
        "Groups (proteins / antibodies)": f"{_count_distinct(dataset.obs['group']):,}",
        "Batches (plates)": f"{_count_distinct(dataset.obs['batch']):,}",
        "Cell lines": f"{_count_distinct(dataset.obs['cell_line'])}" if "cell_line" in dataset.obs else "–",
        "Image size": f"{height}×{width} px",
        "Bit depth (dtype)": _bit_depth(dataset.images.dtype),
        "Pixel size": pixel,
        "Synthetic": "yes" if dataset.synthetic else "no",
    }
    return pd.Series(rows, name=dataset.domain)


def _count_distinct(column: pd.Series) -> int:
    """Distinct non-empty values: readers leave unknown metadata as empty strings."""
    values = column.dropna().astype(str)
    return int(values[values != ""].nunique())


def _bit_depth(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        return f"{dtype.itemsize * 8}-bit ({dtype.name})"
    return dtype.name


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


def describe_labels(dataset: ImageSet) -> str:
    """A short Markdown paragraph about the label distribution, every number computed from ``dataset``.

    Chapters show it under the frequency and co-occurrence plots so the prose cannot drift from the data.
    """
    freq = label_frequency(dataset)
    present = freq[freq["count"] > 0]
    if present.empty:
        return f"The {dataset.domain} dataset has no labelled images."
    top, bottom = present.iloc[0], present.iloc[-1]
    n_labels = dataset.labels.sum(axis=1)
    labelled = n_labels[n_labels > 0]
    total_labels = int(dataset.labels.sum())
    grade_one = int((dataset.grades == 1).sum())
    sentences = [
        (
            f"{len(labelled):,} of {len(dataset):,} {dataset.domain} images carry at least one label, "
            f"{labelled.mean():.2f} labels per labelled image on average (at most {labelled.max()})."
        ),
        (
            f"The most frequent class is **{top['class']}** "
            f"({top['count']:,} images, {top['fraction']:.1%}), "
            f"the least frequent **{bottom['class']}** ({bottom['count']:,} images): "
            f"an imbalance ratio of {top['count'] / bottom['count']:.1f}."
        ),
    ]
    absent = freq.loc[freq["count"] == 0, "class"].tolist()
    if absent:
        sentences.append(f"No image carries {', '.join(absent)}.")
    sentences.append(f"{grade_one / total_labels:.1%} of all {total_labels:,} labels are weak (grade 1).")
    sentences.append(_most_frequent_pair(dataset))
    if dataset.synthetic:
        sentences.append("(Synthetic stand-in: these numbers describe the generator, not the real dataset.)")
    return " ".join(sentences)


def _most_frequent_pair(dataset: ImageSet) -> str:
    counts = label_cooccurrence(dataset).to_numpy()
    upper = np.triu(counts, k=1)
    if upper.max() == 0:
        return "No two classes share an image."
    i, j = np.unravel_index(np.argmax(upper), upper.shape)
    names = dataset.class_names
    return f"The most frequent pair is **{names[i]}** + **{names[j]}** ({upper[i, j]:,} images)."


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
