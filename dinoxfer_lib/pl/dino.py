"""Figures of the DINO chapter: training curves, CLS attention maps, patch-feature PCA, and the objectives side by
side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dinoxfer_lib.pl.images import composite
from dinoxfer_lib.pl.style import FULL_WIDTH


def plot_training_curves(history: pd.DataFrame | Mapping[str, pd.DataFrame], *, out_dim: int | None = None) -> Figure:
    """Loss, teacher entropy (against log K when ``out_dim`` is given), KL between the two global views' teacher
    outputs, and the lr / weight-decay / teacher-momentum schedules, per step; collapsed steps shaded.

    ``history`` is one run's per-step history, or several runs' by name (e.g. the domain each backbone trained on):
    then each is one coloured line in every panel, and the schedules are those of the first.
    """
    runs = dict(history) if isinstance(history, Mapping) else {"": history}
    fig = Figure(figsize=(FULL_WIDTH, 4.8), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for name, rows in runs.items():
        step = rows["step"]
        line = axes[0].plot(step, rows["loss"], lw=1, label=name or None)[0]
        axes[1].plot(step, rows["teacher_entropy"], lw=1, color=line.get_color())
        axes[2].plot(step, rows["kl_globals"], lw=1, color=line.get_color())
        collapsed = rows["collapse"].fillna("").astype(str) != "" if "collapse" in rows else None
        if collapsed is not None and collapsed.any():
            for ax in axes[:3]:
                ax.fill_between(step, 0, 1, where=collapsed, transform=ax.get_xaxis_transform(),
                                color=line.get_color(), alpha=0.12, lw=0)
    first = next(iter(runs.values()))
    axes[0].set_ylabel("DINO loss")
    if out_dim is not None:
        axes[1].axhline(math.log(out_dim), color="grey", ls="--", lw=1, label="log K (uniform)")
        axes[1].legend()
    axes[1].set_ylabel("teacher entropy (nats)")
    axes[2].set_ylabel("KL(teacher view 1 ‖ view 2)")
    step = first["step"]
    axes[3].plot(step, first["lr"] / max(first["lr"].max(), 1e-12), lw=1, color="black", label="lr / peak")
    axes[3].plot(step, first["weight_decay"] / max(first["weight_decay"].max(), 1e-12), lw=1, color="0.4",
                 ls="--", label="weight decay / max")
    axes[3].plot(step, first["teacher_momentum"], lw=1, color="0.6", ls=":", label="teacher momentum")
    axes[3].set_ylabel("schedules" + (f" ({next(iter(runs))})" if len(runs) > 1 else ""))
    axes[3].legend()
    for ax in axes[2:]:
        ax.set_xlabel("step")
    if len(runs) > 1 or next(iter(runs)):
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(runs),
                   title="trained on (shaded: steps flagged as collapsed)")
    return fig


def plot_attention_maps(images: np.ndarray, attention: np.ndarray, *, channel_names: Sequence[str]) -> Figure:
    """Each image (composite) beside its last-block CLS attention map per head and their mean.

    Parameters
    ----------
    images
        ``(B, C, H, W)`` raw images, as shown to the backbone (any intensity range).
    attention
        ``(B, heads, gh, gw)`` from :func:`~dinoxfer_lib.dino.inspect.cls_attention`.
    channel_names
        Names of the ``C`` channels (for the composite's colours).
    """
    b, heads = attention.shape[:2]
    side = min(1.8, FULL_WIDTH / (heads + 2))  # ViT-B's 12 heads still fit the column
    fig = Figure(figsize=(side * (heads + 2), (side + 0.1) * b + 0.2), layout="constrained")
    axes = fig.subplots(b, heads + 2, squeeze=False)
    extent = (0, images.shape[-1], images.shape[-2], 0)
    for i in range(b):
        axes[i, 0].imshow(composite(images[i], channel_names))
        maps = list(attention[i]) + [attention[i].mean(0)]
        for j, amap in enumerate(maps):
            axes[i, j + 1].imshow(amap, cmap="inferno", extent=extent, interpolation="nearest")
        for ax in axes[i]:
            ax.set_xticks([]), ax.set_yticks([])
    for j, title in enumerate(["image"] + [f"head {h}" for h in range(heads)] + ["mean"]):
        axes[0, j].set_title(title)
    return fig


def plot_patch_pca(images: np.ndarray, pca_rgb: np.ndarray, *, channel_names: Sequence[str]) -> Figure:
    """Each image (composite) above its patch features' first three principal components as RGB (Cell-DINO)."""
    b = len(images)
    side = min(1.9, FULL_WIDTH / b)
    fig = Figure(figsize=(side * b, 2 * side + 0.2), layout="constrained")
    axes = fig.subplots(2, b, squeeze=False)
    extent = (0, images.shape[-1], images.shape[-2], 0)
    for i in range(b):
        axes[0, i].imshow(composite(images[i], channel_names))
        axes[1, i].imshow(pca_rgb[i][..., :3], extent=extent, interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("patch PCA → RGB")
    return fig


def plot_objective_curves(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Several runs' training side by side, per step: the DINO term (the whole loss of a DINO run, the ``dino_loss``
    term of a DINOv2 one: the same cross-entropy), the teacher entropy, and DINOv2's iBOT and KoLeo terms."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for i, (name, history) in enumerate(histories.items()):
        step, style = history["step"], {"lw": 1, "label": name, "color": f"C{i % 10}"}  # one colour per run
        axes[0].plot(step, history["dino_loss"] if "dino_loss" in history else history["loss"], **style)
        axes[1].plot(step, history["teacher_entropy"], **style)
        for ax, term in zip(axes[2:], ("ibot_loss", "koleo_loss")):
            if term in history:
                ax.plot(step, history[term], **style)
    for ax, label in zip(axes, ("DINO term (CLS cross-entropy)", "teacher entropy (nats)", "iBOT term (masked patches)",
                                "KoLeo term")):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    for ax in axes[2:]:
        ax.set_xlabel("step")
    return fig


def plot_attention_comparison(images: np.ndarray, attention: Mapping[str, np.ndarray], *,
                              channel_names: Sequence[str]) -> Figure:
    """Each image (composite) beside every backbone's CLS attention averaged over heads (one column per backbone).

    ``attention`` is :func:`~dinoxfer_lib.dino.inspect.mean_attention`'s name → ``(B, gh, gw)``.
    """
    b, names = len(images), list(attention)
    fig = Figure(figsize=(1.9 * (len(names) + 1), 1.9 * b), layout="constrained")
    axes = fig.subplots(b, len(names) + 1, squeeze=False)
    extent = (0, images.shape[-1], images.shape[-2], 0)
    for i in range(b):
        axes[i, 0].imshow(composite(images[i], channel_names))
        for j, name in enumerate(names):
            axes[i, j + 1].imshow(attention[name][i], cmap="inferno", extent=extent, interpolation="nearest")
        for ax in axes[i]:
            ax.set_xticks([]), ax.set_yticks([])
    for j, title in enumerate(["image", *names]):
        axes[0, j].set_title(title, fontsize=9)
    return fig
