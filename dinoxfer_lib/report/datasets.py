"""Chapter 01 (Datasets): Table I from the loaded data, label statistics and plate intensity effects.

The Datasets chapter (Isselmann et al. 2026, *Materials and Methods: Datasets*, Table I) sets the paper's
description of ImageNet-1k, OpenCell and the HPA Image Classification set (:data:`dinoxfer_lib.paper.TABLE_I`)
beside the same quantities computed from whatever this run loaded, so a reader sees at once where the synthetic
stand-ins differ from the real data. Every number here is computed from an
:class:`~dinoxfer_lib.data.dataset.ImageSet`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.data.summary import label_cooccurrence, label_frequency
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.report.common import Skipped, Toggle, describe_data

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
        "Source": _source(dataset),
    }
    return pd.Series(rows, name=dataset.domain)


def _source(dataset: ImageSet) -> str:
    """Where the images came from, for Table I's last row."""
    kind = dataset.extra.get("source", {}).get("kind")
    if dataset.synthetic:
        return "generated (synthetic stand-in)"
    return {"opencell": "OpenCell layout", "hpa_kaggle": "HPA Kaggle layout", "table": "a table"}.get(kind, "files")


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




# What a reader should look for in each synthetic domain's montage: effects the generator plants on purpose.
_SYNTHETIC_MONTAGE_NOTES = {
    "opencell": "Look-alike pairs are planted on purpose: nucleoplasm vs chromatin, golgi vs centrosome, vesicles "
                "vs nuclear punctae vs mitochondrial fragments.",
    "natural": "The natural-image stand-in for ImageNet: random crops of the photographs scikit-image ships, one "
               "class per photograph.",
}
_DISPLAY = {
    "opencell": "protein in red and nucleus in green, as in the paper's Figure 2",
    "hpa": "the Kaggle display convention: protein green, microtubules red, nucleus blue, ER yellow",
    "natural": "their own colours",
}


def montage_note(dataset: ImageSet) -> str:
    """What the class montage of ``dataset`` shows: how its channels are drawn, and on the synthetic stand-ins
    which look-alikes were planted."""
    display = _DISPLAY.get(dataset.domain, f"channels {', '.join(dataset.channel_names)}")
    described = describe_data(dataset)
    text = (f"{described[:1].upper()}{described[1:]}, drawn with {display}; each row shows images whose most "
            "prominent label is that class.")
    if dataset.synthetic and dataset.domain in _SYNTHETIC_MONTAGE_NOTES:
        text += " " + _SYNTHETIC_MONTAGE_NOTES[dataset.domain]
    return text


def class_montage(dataset: ImageSet, *, per_class: int, seed: int) -> list:
    """The class montage of ``dataset`` as the chapter shows it: what it shows (:func:`montage_note`), the classes
    that fit one screen, and the other classes in a toggle, so a domain with 28 classes does not fill four screens.
    """
    from IPython.display import Markdown

    from dinoxfer_lib.pl.datasets import MONTAGE_ROWS_PER_SCREEN, plot_class_montage

    classes = [name for k, name in enumerate(dataset.class_names) if (dataset.grades[:, k] > 0).any()]
    first, rest = classes[:MONTAGE_ROWS_PER_SCREEN], classes[MONTAGE_ROWS_PER_SCREEN:]
    shown = [Markdown(montage_note(dataset)), plot_class_montage(dataset, per_class=per_class, classes=first,
                                                                 seed=seed)]
    if rest:
        name = {"opencell": "OpenCell", "hpa": "HPA", "natural": "natural-image"}.get(dataset.domain, dataset.domain)
        shown.append(Toggle(f"The other {len(rest)} {name} classes",
                            plot_class_montage(dataset, per_class=per_class, classes=rest, seed=seed)))
    return shown


def split_note(split_config) -> str:
    """The paper's hold-out and folds beside this run's."""
    ours = f"{split_config.test_fraction:.0%} of the images held out and {split_config.n_folds}-fold cross-validation"
    same = split_config.test_fraction == 0.1 and split_config.n_folds == 5
    return ("The paper holds out 10 % of the images as an untouched test set and runs 5-fold cross-validation on "
            "the other 90 %, the same 90 % it trains the OpenCell DINO model on. "
            f"{'This run does the same' if same else f'This run: {ours}'}; both steps are drawn with multilabel "
            "stratification.")


def plate_effects(dataset: ImageSet) -> list:
    """The plate-effect figure and table of ``dataset``, or a :class:`Skipped` note when it records fewer than two
    plates (a table without a ``batch`` column, the HPA Kaggle layout)."""
    from dinoxfer_lib.data.summary import batch_intensity_stats
    from dinoxfer_lib.pl.datasets import plot_batch_effects

    plates = dataset.obs["batch"].astype(str)
    if plates[plates != ""].nunique() < 2:
        return [Skipped(f"plate effects of the {dataset.domain} images",
                        "They record fewer than two plates (no `batch` values), so there is no plate effect to show "
                        "and, later, none for Harmony to correct.")]
    return [plot_batch_effects(dataset), batch_intensity_stats(dataset).round(1)]


def summary_points(datasets: Mapping[str, ImageSet]) -> str:
    """The chapter's summary bullets, from the datasets this run loaded."""
    channels = ", ".join(f"{d.domain} {d.n_channels}" for d in datasets.values())
    classes = ", ".join(f"{len(d.class_names)} {d.domain}" for d in datasets.values())
    return "\n".join([
        f"- The domains differ in channels ({channels}), class vocabularies ({classes} classes), cell shape and pixel "
        "size: the transfer question of the paper.",
        "- Labels are multi-label and imbalanced; a protein (group) carries its labels across its images.",
        "- The hold-out and the folds are stored in `runs/<profile>/splits/` with their provenance and reused by every "
        "later chapter.",
    ])


def what_this_means(datasets: Mapping[str, ImageSet], split) -> str:
    """The chapter's conclusion, from this run's data: how many test images the rarest class leaves, and how many
    plates and proteins there are for later chapters to correct for and keep apart.

    ``split`` is the OpenCell split by image (:func:`~dinoxfer_lib.pipeline.load_split`).
    """
    opencell = datasets["opencell"]
    counts = pd.Series(opencell.labels.sum(axis=0), index=opencell.class_names)
    present = counts[counts > 0]
    in_test = pd.Series(opencell.labels[split.test].sum(axis=0), index=opencell.class_names)[present.index]
    rarest = present.idxmin()
    plates = _count_distinct(opencell.obs["batch"])
    proteins = _count_distinct(opencell.obs["group"])
    lines = [
        f"- **Rare classes set the noise floor.** Of the {len(split.test):,} OpenCell test images, "
        f"**{int(in_test[rarest])}** carry the rarest class ({rarest}; {int(present[rarest])} images in all), and "
        f"{int((in_test < 10).sum())} of the {len(present)} classes present have fewer than 10 test images. Macro F1 "
        "weighs each class equally, so a few images of a rare class move it visibly: later chapters report the "
        "spread over fold models beside every F1, and a difference smaller than that spread is noise.",
        f"- **Proteins repeat.** {len(opencell):,} images show {proteins:,} proteins "
        f"({len(opencell) / max(proteins, 1):.1f} images per protein), so a split by image puts images of one "
        "protein on both sides; the grouped split above is the check on what that is worth.",
    ]
    if plates >= 2:
        lines.append(f"- **Plates differ.** The {plates} plates differ in background and brightness (the plate-effect "
                     "figure): a probe could learn the plate instead of the biology, which is what the UMAP and "
                     "Harmony chapter measures.")
    else:
        lines.append("- **No plates recorded.** These images name fewer than two plates, so there is no plate effect "
                     "for the UMAP and Harmony chapter to correct.")
    if opencell.synthetic:
        lines.append("- These are the synthetic stand-ins: the counts describe this run's generator, not OpenCell.")
    return "\n".join(lines)
