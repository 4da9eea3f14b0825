"""Chapter 01 (Datasets): Table I from the loaded data, label statistics and plate intensity effects.

The Datasets chapter (Isselmann et al. 2026, *Materials and Methods: Datasets*, Table I) sets the paper's
description of ImageNet-1k, OpenCell and the HPA Image Classification set (:data:`dinoxfer_lib.paper.TABLE_I`)
beside the same quantities computed from whatever this run loaded, so a reader sees at once where the synthetic
stand-ins differ from the real data. Every number here is computed from an
:class:`~dinoxfer_lib.data.dataset.ImageSet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.data.summary import label_cooccurrence, label_frequency
from dinoxfer_lib.errors import DataError

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


