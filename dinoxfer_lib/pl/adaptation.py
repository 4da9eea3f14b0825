"""Figures of chapter 08 (Adaptation and EM): the regimes beside Table III, 004's IoU bars, and predicted masks
over true ones.

Overlays colour each pixel by what the model got right or wrong, so one panel shows both masks: true positives
yellow, false positives (predicted, not true) magenta, false negatives (true, missed) cyan.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dinoxfer_lib.pl.analysis import DOMAIN_COLORS, DOMAIN_LABELS, OTHER_COLOR

REGIME_COLOURS = {"table_iii": "#74c476", "frozen": "#bdbdbd", "lora": "#2b8cbe", "full": "#e6550d"}
# Overlay colours (RGB in [0, 1]): true positive, false positive, false negative.
OVERLAY = {"true positive": (1.0, 0.85, 0.0), "false positive": (0.9, 0.1, 0.8), "false negative": (0.0, 0.8, 0.9)}


def plot_adaptation(table: pd.DataFrame, differences: pd.DataFrame) -> Figure:
    """Left: test macro F1 of each regime (mean ± std over its folds) per adapted set, Table III's MLP first.
    Right: each regime minus Table III's MLP, fold by fold: mean and t interval (a dot alone: one fold).

    ``table`` is :func:`~dinoxfer_lib.report.adaptation.adaptation_table`, ``differences``
    :func:`~dinoxfer_lib.report.adaptation.paired_differences`.
    """
    sets = list(dict.fromkeys(table["set"]))
    fig = Figure(figsize=(10, 0.9 * len(table) + 1.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.1, 1))
    labels = [f"{s}\n{m}" if len(sets) > 1 else m for s, m in zip(table["set"], table["method"])]
    y = np.arange(len(table))
    left.barh(y, table["test_f1_mean"], xerr=table["test_f1_std"].fillna(0), capsize=3,
              color=[REGIME_COLOURS.get(r, OTHER_COLOR) for r in table["regime"]])
    left.set_yticks(y, labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("test macro F1 (mean ± std over folds)")
    left.set_xlim(0, 1)
    y = np.arange(len(differences))
    span = np.vstack([differences["difference"] - differences["low"], differences["high"] - differences["difference"]])
    right.errorbar(differences["difference"], y, xerr=np.nan_to_num(span), fmt="o", color="black", capsize=3)
    right.axvline(0, color="0.5", linestyle=":")
    right.set_yticks(y, [f"{s}\n{m}" if len(sets) > 1 else m for s, m in zip(differences["set"],
                                                                             differences["method"])], fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("− Table III's MLP, paired by fold (95 % t interval)")
    return fig


def plot_seg_iou(scores: pd.DataFrame) -> Figure:
    """Foreground IoU per test domain (groups) for every training set x regime (bars), one panel per backbone.

    ``scores`` is :func:`~dinoxfer_lib.report.adaptation.seg_scores`. Bars are coloured by the training set
    (each single domain in its own colour, joint training black), LoRA hatched; in-domain bars are outlined.
    """
    backbones = list(dict.fromkeys(scores["backbone"]))
    domains = list(dict.fromkeys(scores["test_domain"]))
    models = list(dict.fromkeys(zip(scores["train_set"], scores["regime"])))
    fig = Figure(figsize=(3.2 * len(backbones) + 1.5, 3.2), layout="constrained")
    axes = fig.subplots(1, len(backbones), squeeze=False, sharey=True)[0]
    width = 0.8 / len(models)
    for ax, backbone in zip(axes, backbones):
        rows = scores[scores["backbone"] == backbone].set_index(["train_set", "regime", "test_domain"])
        for k, (train_set, regime) in enumerate(models):
            x = np.arange(len(domains)) - 0.4 + width * (k + 0.5)
            values = [rows["iou"].get((train_set, regime, d), np.nan) for d in domains]
            inside = [bool(rows["in_domain"].get((train_set, regime, d), False)) for d in domains]
            ax.bar(x, values, width * 0.92, color=DOMAIN_COLORS.get(train_set, "0.15"),
                   hatch="///" if regime == "lora" else None, edgecolor=["black" if i else "white" for i in inside],
                   linewidth=1.0)
        ax.set_xticks(range(len(domains)), [f"test: {DOMAIN_LABELS.get(d, d)}" for d in domains], fontsize=8)
        ax.set_title(backbone, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("foreground IoU")
    handles = [Patch(color=DOMAIN_COLORS.get(t, "0.15"),
                     label=f"trained on {DOMAIN_LABELS.get(t, 'both' if '+' in t else t)}")
               for t in dict.fromkeys(t for t, _ in models)]
    handles += [Patch(facecolor="white", edgecolor="black", hatch="///", label="LoRA (plain: frozen)")]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False)
    return fig


def overlay(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """An 8-bit greyscale patch ``(H, W)`` as RGB in [0, 1] with true positives, false positives and false
    negatives of ``predicted`` against ``truth`` tinted (:data:`OVERLAY`)."""
    rgb = np.repeat((image.astype(np.float32) / 255)[..., None], 3, axis=-1)  # (H, W, 3)
    for mask, colour in zip((predicted & truth, predicted & ~truth, ~predicted & truth), OVERLAY.values()):
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour)
    return rgb


def plot_seg_overlays(data: Mapping, result, *, title: str = "") -> Figure:
    """Example test patches of each domain (rows): the image with its true mask, then every model's prediction.

    Parameters
    ----------
    data
        Domain → :class:`~dinoxfer_lib.data.em.EMSet` (its ``test`` rows are the examples' source).
    result
        :class:`~dinoxfer_lib.seg.train.SegResult` with ``examples`` and their ``example_rows``.
    title
        Shown above the grid (e.g. the backbone).
    """
    examples, rows = result.examples, result.example_rows
    models = list(dict.fromkeys((t, r) for t, r, _ in examples))
    panels = [(domain, i, row) for domain in data for i, row in enumerate(rows[domain])]
    fig = Figure(figsize=(1.25 * (len(models) + 1) + 0.4, 1.3 * len(panels) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), len(models) + 1, squeeze=False)
    for r, (domain, i, row) in enumerate(panels):
        test = data[domain].split("test")
        image, truth = test.images[row, 0], test.masks[row]
        axes[r, 0].imshow(overlay(image, truth, truth))
        axes[r, 0].set_ylabel(f"{DOMAIN_LABELS.get(domain, domain)}\n#{row}", fontsize=7)
        for c, (train_set, regime) in enumerate(models, start=1):
            axes[r, c].imshow(overlay(image, examples[(train_set, regime, domain)][i], truth))
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_title("true mask", fontsize=7)
    for c, (train_set, regime) in enumerate(models, start=1):
        axes[0, c].set_title(f"{train_set}\n{regime}", fontsize=7)
    handles = [Patch(color=colour, label=name) for name, colour in OVERLAY.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
