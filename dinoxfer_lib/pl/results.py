"""Figures of the results chapters: Figure 1 (macro F1 per configuration), per-class F1, train/test gap, probe
comparison, low-annotation curves, and Figure 2 (an image with its true and predicted compartments)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from dinoxfer_lib.pl.images import composite

APPROACH_COLOURS = {
    "channel mapping": "#2b8cbe",
    "channel replication": "#fdae6b",
    "-": "#74c476",
    "bag of channels (extension)": "#9e9ac8",
}


def plot_f1_by_configuration(summary: pd.DataFrame, *, ax=None) -> Figure:
    """Figure 1: mean test macro F1 per configuration, ±1 std over the fold models, grouped by pretraining data
    (``weights``) and coloured by embedding approach; the paper's values as open diamonds where it has one.

    ``summary`` has columns weights, approach, mean, std and optionally paper_mean, paper_std.
    """
    fig = ax.figure if ax is not None else Figure(figsize=(7.5, 4), layout="constrained")
    ax = ax or fig.subplots()
    groups = list(dict.fromkeys(summary["weights"]))
    approaches = list(dict.fromkeys(summary["approach"]))
    width = 0.8 / len(approaches)
    for j, approach in enumerate(approaches):
        rows = summary[summary["approach"] == approach]
        x = np.array([groups.index(w) for w in rows["weights"]]) - 0.4 + width * (j + 0.5)
        ax.bar(x, rows["mean"], width * 0.9, yerr=rows["std"], capsize=3, label=approach,
               color=APPROACH_COLOURS.get(approach, "0.6"))
        if "paper_mean" in rows and rows["paper_mean"].notna().any():
            ax.errorbar(x, rows["paper_mean"], yerr=rows["paper_std"], fmt="D", mfc="white", mec="black",
                        ecolor="black", ms=6, capsize=2, label="paper" if j == 0 else None)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("test macro F1 (mean ± std over folds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_per_class_f1(per_class: pd.DataFrame) -> Figure:
    """Heatmap of mean test F1, configurations × classes: which compartments each embedding gets right."""
    fig = Figure(figsize=(0.45 * per_class.shape[1] + 3, 0.45 * per_class.shape[0] + 2), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(per_class, vmin=0, vmax=1, cmap="viridis", annot=per_class.shape[1] <= 20, fmt=".2f",
                annot_kws={"fontsize": 7}, cbar_kws={"label": "test F1"}, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return fig


def plot_train_test_gap(summary: pd.DataFrame, *, ax=None) -> Figure:
    """Train, validation and test macro F1 per configuration (the paper saw ≥ 0.94 train vs ~0.8 test)."""
    fig = ax.figure if ax is not None else Figure(figsize=(7, 0.45 * len(summary) + 1.5), layout="constrained")
    ax = ax or fig.subplots()
    subsets = [c for c in ("train", "val", "test") if c in summary]
    summary[subsets].plot.barh(ax=ax, color=["#bdbdbd", "#6baed6", "#08519c"][: len(subsets)])
    ax.set_xlabel("macro F1 (mean over folds)")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    return fig


def plot_probe_comparison(frame: pd.DataFrame) -> Figure:
    """Test macro F1 of each probe (MLP, linear, k-NN) per embedding set; ``frame``: set × probe, mean and std."""
    fig = Figure(figsize=(8, 0.5 * frame["set"].nunique() + 1.8), layout="constrained")
    ax = fig.subplots()
    sns.barplot(frame, y="set", x="mean", hue="probe", ax=ax, orient="h")
    ax.set_xlabel("test macro F1 (mean over folds)")
    ax.set_xlim(0, 1)
    return fig


def plot_low_label_curves(frame: pd.DataFrame) -> Figure:
    """Macro F1 against the fraction of training labels used (log axis), one line per embedding set."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(frame, x="fraction", y="macro_f1", hue="set", marker="o", errorbar="sd", ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test macro F1")
    return fig


def plot_prediction(image: np.ndarray, channel_names: Sequence[str], table: pd.DataFrame, *, title: str) -> Figure:
    """Figure 2 panel: composite (protein red, nucleus green), each channel alone, and the compartment table
    (``table``: class, true, predicted, probability) for one test image."""
    fig = Figure(figsize=(11, 3.0), layout="constrained")
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
