"""Figures of the Datasets chapter: class montages, label statistics, plate effects and the split.

Each function takes data or a result table (from :mod:`dinoxfer_lib.data.summary` or
:mod:`dinoxfer_lib.data.splits`) and returns a matplotlib Figure; saving is the caller's business.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dinoxfer_lib.data import summary
from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.pl.images import composite, default_mapping
from dinoxfer_lib.pl.palettes import batch_colors
from dinoxfer_lib.pl.style import FULL_WIDTH, SCREEN_HEIGHT, fit_width

CELL_INCHES = 1.1  # side of one montage image: 17-28 rows stay on a page and remain readable
_MONTAGE_TITLE, _MONTAGE_GAP = 0.5, 0.05  # inches: the 2-line title, between cells
# Class rows of a montage that fit one laptop screen (the rest of a domain's classes go in a second montage).
MONTAGE_ROWS_PER_SCREEN = int((SCREEN_HEIGHT - _MONTAGE_TITLE) // (CELL_INCHES + _MONTAGE_GAP))
GRADE_COLOURS: dict[int, str] = {3: "#08519c", 2: "#6baed6", 1: "#c6dbef"}  # darker = more prominent
MEAN_IMAGE_PERCENTILES = (1.0, 99.0)  # contrast of plate mean images: they are smooth, a mild clip suffices


def _figure_and_axes(ax: Axes | None, *, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The caller's axes and its root figure (``.figure`` of a subfigure), or a new figure of ``figsize``."""
    if ax is not None:
        return ax.figure.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _pick_class_images(
    dataset: ImageSet, column: int, *, per_class: int, rng: np.random.Generator
) -> list[int]:
    """Up to ``per_class`` images with the label, grade-3 images first: they show the pattern most clearly."""
    grades = dataset.grades[:, column]
    prominent = np.flatnonzero(grades == 3)
    weaker = np.flatnonzero((grades > 0) & (grades < 3))
    chosen = rng.permutation(prominent)[:per_class]
    fill = rng.permutation(weaker)[: per_class - len(chosen)]
    return [int(i) for i in np.concatenate([chosen, fill])]


def _montage_grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    """Square cells of ``CELL_INCHES``, margins fixed in inches: the grid never shrinks into whitespace."""
    label, title, gap, edge = 2.2, _MONTAGE_TITLE, _MONTAGE_GAP, 0.05  # inches: row labels, title, gaps, edges
    width = label + n_cols * CELL_INCHES + (n_cols - 1) * gap + edge
    height = title + n_rows * CELL_INCHES + (n_rows - 1) * gap + edge
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(
        n_rows,
        n_cols,
        squeeze=False,
        gridspec_kw={
            "left": label / width,
            "right": 1 - edge / width,
            "top": 1 - title / height,
            "bottom": edge / height,
            "wspace": gap / CELL_INCHES,
            "hspace": gap / CELL_INCHES,
        },
    )
    return fig, axes


def plot_class_montage(
    dataset: ImageSet, *, per_class: int = 3, classes: Sequence[str] | None = None, seed: int = 0
) -> Figure:
    """Example images per class, one row per class, as composites in the domain's display convention.

    Parameters
    ----------
    dataset
        Any ImageSet; images are read one at a time, so a memory map is fine.
    per_class
        Images per row. Images whose label has grade 3 are preferred; others with the label fill the row,
        marked with their grade.
    classes
        Rows to show, in order (default: all classes). Classes without images are skipped.
    seed
        Which images are drawn.
    """
    names = list(dataset.class_names) if classes is None else list(classes)
    unknown = [name for name in names if name not in dataset.class_names]
    if unknown:
        valid = ", ".join(dataset.class_names)
        raise DataError(f"{dataset.domain}: unknown classes {unknown}; valid: {valid}")
    rng = np.random.default_rng(seed)
    rows = {}
    for name in names:
        picks = _pick_class_images(dataset, dataset.class_names.index(name), per_class=per_class, rng=rng)
        if picks:
            rows[name] = picks
    if not rows:
        raise DataError(f"{dataset.domain}: none of the requested classes has a labelled image")

    fig, axes = _montage_grid(len(rows), per_class)
    mapping = default_mapping(dataset.channel_names)
    for axes_row, (name, picks) in zip(axes, rows.items()):
        column = dataset.class_names.index(name)
        for ax in axes_row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        for ax, index in zip(axes_row, picks):
            ax.imshow(composite(dataset.images[index], dataset.channel_names, mapping=mapping))
            grade = int(dataset.grades[index, column])
            if grade < 3:
                ax.text(0.04, 0.06, f"grade {grade}", transform=ax.transAxes, color="white", fontsize=6)
        axes_row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    # Name the colours unless they are the channels' own (photographs).
    legend = ", ".join(f"{channel} {colour}" for channel, colour in mapping.items() if channel != colour)
    title = f"{dataset.domain}: examples per class\n{legend}"
    fig.suptitle(title, fontsize=8, y=1 - 0.04 / fig.get_figheight())
    return fig


def plot_label_frequency(freq_frame: pd.DataFrame, *, log: bool = False, ax: Axes | None = None) -> Figure:
    """Images per class as horizontal bars stacked by grade (3 dark, 1 light), in the frame's row order.

    Parameters
    ----------
    freq_frame
        From :func:`dinoxfer_lib.data.summary.label_frequency`.
    log
        Log-scaled counts: rare classes (HPA's Rods & rings, OpenCell's big_aggregates) stay visible beside
        classes a hundred times larger, at the cost of making the grade segments harder to compare.
    ax
        Draw into this axes instead of a new figure.
    """
    fig, ax = _figure_and_axes(ax, figsize=(6.5, 0.28 * len(freq_frame) + 1.2))
    positions = np.arange(len(freq_frame))
    left = np.zeros(len(freq_frame))
    for grade, colour in GRADE_COLOURS.items():
        values = freq_frame[f"grade {grade}"].to_numpy()
        ax.barh(positions, values, left=left, color=colour, label=f"grade {grade}")
        left += values
    for y, count in zip(positions, freq_frame["count"]):
        if count > 0 or not log:  # zero has no place on a log axis
            ax.text(count, y, f" {count:,}", va="center", fontsize=7)
    ax.set_yticks(positions, freq_frame["class"], fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("images with the label" + (" (log scale)" if log else ""))
    ax.margins(x=0.1)
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    sns.despine(ax=ax)
    return fig


def plot_cooccurrence(cooc_frame: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """Class co-occurrence as a heatmap.

    The colour scale ends at the largest off-diagonal value: the diagonal (class sizes) would otherwise swamp
    the pairs the plot is about, so diagonal cells saturate while their numbers stay readable.

    Parameters
    ----------
    cooc_frame
        From :func:`dinoxfer_lib.data.summary.label_cooccurrence` (counts or normalised).
    """
    k = len(cooc_frame)
    fig, ax = _figure_and_axes(ax, figsize=fit_width(0.42 * k + 2.5, 0.38 * k + 1.5))
    values = cooc_frame.to_numpy(dtype=float)
    off_diagonal = values[~np.eye(k, dtype=bool)]
    finite = off_diagonal[np.isfinite(off_diagonal)]
    vmax = finite.max() if finite.size and finite.max() > 0 else None
    integer = pd.api.types.is_integer_dtype(cooc_frame.to_numpy().dtype)
    sns.heatmap(
        cooc_frame,
        ax=ax,
        vmin=0,
        vmax=vmax,
        cmap="rocket_r",
        annot=k <= 20,
        fmt="d" if integer else ".2f",
        annot_kws={"fontsize": 6},
        square=True,
        cbar_kws={"label": "images" if integer else "P(column | row)", "shrink": 0.6},
    )
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(labelsize=7)
    return fig


def plot_batch_effects(dataset: ImageSet, *, images_per_row: int = 8) -> Figure:
    """Plate effects at a glance: per-plate intensity distributions and each plate's mean image.

    Top: boxplots of per-image background (5th percentile) and mean intensity by plate, one column per
    channel; offsets and gains between plates show as shifted boxes. Bottom: the mean image of each plate for
    the first channel, each on its own contrast, so an illumination gradient shows as a tilt in brightness.

    Parameters
    ----------
    dataset
        Any ImageSet with ``obs["batch"]``.
    images_per_row
        Mean images per row before wrapping.
    """
    stats = summary.image_intensity_stats(dataset)
    means = summary.batch_mean_images(dataset, channel=0)
    colours = batch_colors(means)
    n_rows = math.ceil(len(means) / images_per_row)
    n_cols = min(len(means), images_per_row)
    width = min(max(3.2 * dataset.n_channels, 1.3 * n_cols, 6.0), FULL_WIDTH)
    image_row = min(1.4, width / n_cols + 0.3)
    fig = Figure(figsize=(width, 5.2 + image_row * n_rows), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[5.2, image_row * n_rows])

    box_axes = top.subplots(2, dataset.n_channels, squeeze=False)
    for column, channel in enumerate(dataset.channel_names):
        frame = stats[stats["channel"] == channel]
        for ax, statistic in zip(box_axes[:, column], ("background", "mean")):
            with warnings.catch_warnings():
                # seaborn 0.13 passes matplotlib 3.11's deprecated ``vert``: not the reader's concern.
                warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
                sns.boxplot(
                    data=frame,
                    x="batch",
                    y=statistic,
                    order=list(means),
                    hue="batch",
                    palette=colours,
                    legend=False,
                    ax=ax,
                    fliersize=2,
                )
            if statistic == "background":
                ax.set_title(channel)
            ax.set_xlabel("plate" if statistic == "mean" else "")
            ax.set_ylabel(f"per-image {statistic}\n(intensity)" if column == 0 else "")
            ax.tick_params(axis="x", labelrotation=90 if len(means) > 6 else 0, labelsize=7)

    image_axes = bottom.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (batch, image) in zip(image_axes, means.items()):
        low, high = np.percentile(image, MEAN_IMAGE_PERCENTILES)
        ax.imshow(image, cmap="gray", vmin=low, vmax=high)
        ax.set_title(batch, fontsize=8, color=colours[batch])
        ax.set_axis_off()
    for ax in image_axes[len(means) :]:
        ax.remove()
    bottom.suptitle(f"mean {dataset.channel_names[0]} image per plate (each on its own contrast)", fontsize=9)
    return fig


def plot_split(split_summary_frame: pd.DataFrame) -> Figure:
    """Does the split keep every class's prevalence? Test set and each fold against the whole dataset.

    Left: overall prevalence per class (grey bars) with the test set and each validation fold as dots. Right:
    each subset's deviation from the overall prevalence in percentage points, where a good multilabel
    stratification keeps every dot near zero.

    Parameters
    ----------
    split_summary_frame
        Tidy frame with columns ``class``, ``subset`` (``all``, ``test``, ``fold 0``, ...) and ``prevalence``,
        as :func:`dinoxfer_lib.data.splits.split_summary` returns.
    """
    wide = split_summary_frame.pivot(index="class", columns="subset", values="prevalence")
    if "all" not in wide.columns:
        raise DataError("plot_split needs the overall prevalence (subset 'all') in the frame")
    wide = wide.sort_values("all", ascending=False)
    subsets = [s for s in split_summary_frame["subset"].unique() if s != "all"]
    palette = dict(zip(subsets, ["black", *sns.color_palette("tab10", max(len(subsets) - 1, 1))]))
    markers = {subset: "D" if subset == "test" else "o" for subset in subsets}
    positions = np.arange(len(wide))
    offsets = np.linspace(-0.3, 0.3, len(subsets)) if len(subsets) > 1 else np.zeros(1)

    fig = Figure(figsize=(FULL_WIDTH, 0.3 * len(wide) + 1.5), layout="constrained")
    ax_prev, ax_diff = fig.subplots(1, 2, sharey=True)
    ax_prev.barh(positions, wide["all"], color="0.85", label="all")
    ax_diff.axvline(0, color="0.6", linewidth=0.8)
    for offset, subset in zip(offsets, subsets):
        style = {"color": palette[subset], "marker": markers[subset], "s": 14, "label": subset}
        ax_prev.scatter(wide[subset], positions + offset, **style)
        ax_diff.scatter(100 * (wide[subset] - wide["all"]), positions + offset, **style)
    ax_prev.set_yticks(positions, wide.index, fontsize=8)
    ax_prev.invert_yaxis()
    ax_prev.set_xlabel("prevalence")
    ax_diff.set_xlabel("difference from overall (percentage points)")
    ax_prev.legend(loc="lower right", frameon=False, fontsize=7)
    sns.despine(fig=fig)
    return fig
