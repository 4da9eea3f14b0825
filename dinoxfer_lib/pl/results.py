"""Figures of the results chapters: Figure 1 (macro F1 per configuration), per-class F1, train/test gap, probe
comparison, low-annotation curves, and Figure 2 (an image with its true and predicted compartments)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dinoxfer_lib.pl.images import composite
from dinoxfer_lib.pl.style import FULL_WIDTH

APPROACH_COLOURS = {
    "channel mapping": "#2b8cbe",
    "channel replication": "#fdae6b",
    "-": "#74c476",
    "bag of channels (extension)": "#9e9ac8",
}


def plot_f1_by_configuration(summary: pd.DataFrame, *, ax=None) -> Figure:
    """Figure 1: mean test macro F1 per configuration, ±1 std over the fold models, grouped by pretraining data
    (``weights``) and coloured by embedding approach; the paper's values as open diamonds where it has one.

    ``summary`` is :func:`dinoxfer_lib.report.classifier.table_iii` (weights, approach, test_f1_mean, test_f1_std,
    paper_mean, paper_std).
    """
    fig = ax.figure if ax is not None else Figure(figsize=(7.5, 4), layout="constrained")
    ax = ax or fig.subplots()
    groups = list(dict.fromkeys(summary["weights"]))
    approaches = list(dict.fromkeys(summary["approach"]))
    width = 0.8 / len(approaches)
    for j, approach in enumerate(approaches):
        rows = summary[summary["approach"] == approach]
        x = np.array([groups.index(w) for w in rows["weights"]]) - 0.4 + width * (j + 0.5)
        ax.bar(x, rows["test_f1_mean"], width * 0.9, yerr=rows["test_f1_std"], capsize=3,
               label="native" if approach == "-" else approach,
               color=APPROACH_COLOURS.get(approach, "0.6"))
        if "paper_mean" in rows and rows["paper_mean"].notna().any():
            ax.errorbar(x, rows["paper_mean"], yerr=rows["paper_std"], fmt="D", mfc="white", mec="black",
                        ecolor="black", ms=6, capsize=2, label="paper" if j == 0 else None)
    ax.set_xticks(range(len(groups)), [textwrap.fill(str(group), 24) for group in groups])  # long weights labels
    ax.set_ylabel("test macro F1 (mean ± std over folds)")
    ax.set_ylim(0, 1)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    return fig


def plot_f1_with_bounds(table: pd.DataFrame) -> Figure:
    """Figure 1 (:func:`plot_f1_by_configuration`) of the Table III rows, with the ceiling and the floor of
    ``table`` (``role`` column of :func:`dinoxfer_lib.report.classifier.table_iii`) as dashed lines."""
    fig = plot_f1_by_configuration(table[table["role"] == "table III"])
    ax = fig.axes[0]
    for role, style in (("ceiling", "--"), ("floor", ":")):
        rows = table[table["role"] == role]
        if len(rows):
            ax.axhline(rows["test_f1_mean"].iloc[0], color="0.3", ls=style, lw=1)
            ax.annotate(f"{role} {rows['test_f1_mean'].iloc[0]:.2f}", (1.0, rows["test_f1_mean"].iloc[0]),
                        xycoords=("axes fraction", "data"), xytext=(-2, 2), textcoords="offset points",
                        ha="right", va="bottom", fontsize=8, color="0.3")
    return fig


def plot_per_class_f1(per_class: pd.DataFrame) -> Figure:
    """Heatmap of mean test F1, configurations × classes: which compartments each embedding gets right."""
    fig = Figure(figsize=(FULL_WIDTH, 0.35 * per_class.shape[0] + 2.2), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(per_class, vmin=0, vmax=1, cmap="viridis", annot=per_class.shape[1] <= 20, fmt=".2f",
                annot_kws={"fontsize": 6}, cbar_kws={"label": "test F1", "shrink": 0.8}, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return fig


def plot_train_test_gap(summary: pd.DataFrame, *, ax=None) -> Figure:
    """Train, validation and test macro F1 per configuration (the paper saw ≥ 0.94 train vs ~0.8 test).

    ``summary`` is :func:`dinoxfer_lib.report.classifier.table_iii`.
    """
    fig = ax.figure if ax is not None else Figure(figsize=(7, 0.5 * len(summary) + 1.5), layout="constrained")
    ax = ax or fig.subplots()
    frame = summary.set_index("set")[["train_f1_mean", "val_f1_mean", "test_f1_mean"]]
    frame.columns = ["train", "validation", "test"]
    frame.plot.barh(ax=ax, color=["#bdbdbd", "#6baed6", "#08519c"])
    ax.set_ylabel("")
    ax.set_xlabel("macro F1 (mean over folds)")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    return fig


def plot_probe_comparison(frame: pd.DataFrame) -> Figure:
    """Test macro F1 of each probe (MLP, linear, k-NN) per embedding set, ±1 std over folds;
    ``frame`` is :func:`dinoxfer_lib.report.classifier.probe_comparison`."""
    fig = Figure(figsize=(FULL_WIDTH, 0.6 * frame["set"].nunique() + 1.8), layout="constrained")
    ax = fig.subplots()
    sets, probes = list(dict.fromkeys(frame["set"])), list(dict.fromkeys(frame["probe"]))
    height = 0.8 / len(probes)
    for j, probe in enumerate(probes):
        rows = frame[frame["probe"] == probe]
        y = np.array([sets.index(s) for s in rows["set"]]) - 0.4 + height * (j + 0.5)
        ax.barh(y, rows["mean"], height * 0.9, xerr=rows["std"], capsize=2, label=probe,
                color=sns.color_palette("colorblind", len(probes))[j])
    ax.set_yticks(range(len(sets)), sets)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("test macro F1 (mean over folds)")
    ax.set_xlim(0, 1)
    return fig


def plot_low_label_curves(frame: pd.DataFrame) -> Figure:
    """Macro F1 against the fraction of training labels used (log axis), one line per embedding set, ±1 std over
    seeds and folds; ``frame`` is :func:`dinoxfer_lib.probes.low_label_curve` output with a ``set`` column."""
    fig = Figure(figsize=(FULL_WIDTH, 3.8), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(frame, x="fraction", y="test_macro_f1", hue="set", marker="o", errorbar="sd", ax=ax)
    ax.set_xscale("log")
    fractions = sorted(frame["fraction"].unique())
    ax.set_xticks(fractions, [f"{f:.0%}" if f >= 0.01 else f"{f:.1%}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test macro F1")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def plot_prediction(image: np.ndarray, channel_names: Sequence[str], table: pd.DataFrame, *, title: str) -> Figure:
    """Figure 2 panel: composite (protein red, nucleus green), each channel alone, and the compartment table
    (``table``: class, true, predicted, probability) for one test image."""
    fig = Figure(figsize=(FULL_WIDTH, FULL_WIDTH / (2.6 + len(channel_names)) + 0.4), layout="constrained")
    axes = fig.subplots(1, 2 + len(channel_names), width_ratios=[1] * (1 + len(channel_names)) + [1.6])
    axes[0].imshow(composite(image, channel_names))
    axes[0].set_title("composite", fontsize=9)
    for ax, (i, name) in zip(axes[1:], enumerate(channel_names)):
        ax.imshow(composite(image[i : i + 1], (name,), mapping={name: "white"}))
        ax.set_title(name, fontsize=9)
    for ax in axes[:-1]:
        ax.set_xticks([]), ax.set_yticks([])
    table_ax = axes[-1]
    table_ax.axis("off")
    cells = [[r["class"], "✓" if r["true"] else "", "✓" if r["predicted"] else "", f"{r['probability']:.2f}"]
             for _, r in table.iterrows()]
    shown = table_ax.table(cellText=cells, colLabels=["compartment", "true", "pred.", "p"], loc="center",
                           cellLoc="center", colWidths=[0.5, 0.15, 0.15, 0.2])
    shown.auto_set_font_size(False)
    shown.set_fontsize(8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_split_comparison(frame: pd.DataFrame, *, ax=None) -> Figure:
    """Test macro F1 with the paper's split by image beside the split grouped by protein (±1 std over folds);
    ``frame`` is :func:`dinoxfer_lib.report.classifier.split_comparison`."""
    fig = ax.figure if ax is not None else Figure(figsize=(7, 0.55 * len(frame) + 1.5), layout="constrained")
    ax = ax or fig.subplots()
    y = np.arange(len(frame))
    for offset, split, colour in ((-0.2, "by_image", "#08519c"), (0.2, "grouped", "#e6550d")):
        ax.barh(y + offset, frame[f"test_f1_mean_{split}"], 0.38, xerr=frame[f"test_f1_std_{split}"], capsize=2,
                color=colour, label={"by_image": "split by image (paper)", "grouped": "grouped by protein"}[split])
    ax.set_yticks(y, frame["set"])
    ax.invert_yaxis()
    ax.set_xlabel("test macro F1 (mean ± std over folds)")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_probe_training(history: pd.DataFrame, *, probe: str = "mlp") -> Figure:
    """Training loss and validation macro F1 against epoch, one line per set (mean over folds): has the probe
    converged in the profile's epochs?"""
    rows = history[history["probe"] == probe]
    fig = Figure(figsize=(FULL_WIDTH, 3.2), layout="constrained")
    loss_ax, f1_ax = fig.subplots(1, 2)
    sns.lineplot(rows, x="epoch", y="loss", hue="set", errorbar=None, ax=loss_ax, legend=False)
    loss_ax.set_ylabel("training loss (BCE)")
    monitored = rows.dropna(subset=["val_macro_f1"])
    sns.lineplot(monitored, x="epoch", y="val_macro_f1", hue="set", errorbar="sd", marker="o", ax=f1_ax)
    f1_ax.set_ylabel("validation macro F1")
    f1_ax.legend(fontsize=7)
    for ax in (loss_ax, f1_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    return fig


def plot_error_gallery(images: np.ndarray, channel_names: Sequence[str], errors: pd.DataFrame) -> Figure:
    """Composites of the test images behind the most confident errors, each titled with the wrong decision;
    ``errors`` is :func:`dinoxfer_lib.report.predictions.confident_errors` and ``images`` the dataset's image array."""
    n = len(errors)
    cols = min(4, max(n, 1))
    rows = int(np.ceil(n / cols)) or 1
    side = min(3.0, FULL_WIDTH / cols)
    fig = Figure(figsize=(side * cols, (side + 0.4) * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (_, error) in zip(axes, errors.iterrows()):
        ax.imshow(composite(np.asarray(images[error["image"]]), channel_names))
        true = textwrap.fill(f"true: {error['true labels'] or 'none'}", 30)
        ax.set_title(f"{error['class']}: {error['error']}, p = {error['probability']:.2f}\n{true}", fontsize=7)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes[n:]:
        ax.axis("off")
    return fig


def plot_frontier(record: dict, *, profile_epochs: int | None = None) -> Figure:
    """The recorded frontier: test macro F1 of both rows of each recorded comparison (one panel each: the OpenCell
    backbone trained vs random weights, HPA-like vs natural-image pretraining) against CPU minutes of the OpenCell
    backbone's DINO training, solid by image and dashed grouped by protein (``record`` as
    :mod:`~dinoxfer_lib.bench.frontier` writes it); ``profile_epochs`` (the build's; by default the profile's when
    the record was made) is marked "this profile"."""
    from dinoxfer_lib.bench.frontier import frontier_comparisons

    rows = frontier_comparisons(record)
    rows["minutes"] = rows["dino_seconds"] / 60
    panels = list(dict.fromkeys(zip(rows["a"], rows["b"])))
    marked = record["profile_epochs"] if profile_epochs is None else profile_epochs
    fig = Figure(figsize=(min(FULL_WIDTH, 6 * len(panels)), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (a, b) in zip(axes, panels):
        pair = rows[(rows["a"] == a) & (rows["b"] == b)]
        for (split, line), style in zip(pair.groupby("split", sort=False), ("o-", "s--")):
            ax.plot(line["minutes"], line["a_f1"], style, color=APPROACH_COLOURS["-"], label=f"{a}, {split}")
            ax.plot(line["minutes"], line["b_f1"], style, color="0.55", label=f"{b}, {split}")
        first = pair.drop_duplicates("epochs")
        last = first["minutes"].max()
        for x, y, epochs in zip(first["minutes"], first["a_f1"], first["epochs"]):
            mark = " (this profile)" if epochs == marked else ""
            right = x == last  # the last label reads leftwards, inside the panel
            ax.annotate(f"{epochs} epochs{mark}", (x, y), textcoords="offset points", xytext=(-4 if right else 4, 4),
                        ha="right" if right else "left", fontsize=8)
        ax.set_title(f"{a} vs {b}")
        ax.set_xlabel("CPU minutes of DINO (OpenCell backbone)")
        ax.margins(x=0.1)
        # below the panel: inside it the legend hides points and their labels
        ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    axes[0].set(ylabel="test macro F1 (OpenCell)")
    return fig
