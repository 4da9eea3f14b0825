"""Figures of the DINO chapter: training curves, CLS attention maps, patch-feature PCA, and the objectives side by
side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dinoxfer_lib.pl.images import composite


def plot_training_curves(history: pd.DataFrame, *, out_dim: int | None = None) -> Figure:
    """Loss, teacher entropy (against log K when ``out_dim`` is given), KL between the two global views' teacher
    outputs, and the lr / weight-decay / teacher-momentum schedules, per step; collapsed steps shaded."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    step = history["step"]
    axes[0].plot(step, history["loss"], lw=1)
    axes[0].set_ylabel("DINO loss")
    axes[1].plot(step, history["teacher_entropy"], lw=1, label="teacher entropy")
    if out_dim is not None:
        axes[1].axhline(math.log(out_dim), color="grey", ls="--", lw=1, label="log K (uniform)")
    axes[1].set_ylabel("entropy (nats)")
    axes[1].legend(fontsize=8)
    axes[2].plot(step, history["kl_globals"], lw=1)
    axes[2].set_ylabel("KL(teacher view 1 ‖ view 2)")
    axes[3].plot(step, history["lr"] / max(history["lr"].max(), 1e-12), lw=1, label="lr / peak")
    axes[3].plot(step, history["weight_decay"] / max(history["weight_decay"].max(), 1e-12), lw=1,
                 label="weight decay / max")
    axes[3].plot(step, history["teacher_momentum"], lw=1, label="teacher momentum")
    axes[3].set_ylabel("schedules")
    axes[3].legend(fontsize=8)
    collapsed = history["collapse"].fillna("").astype(str) != "" if "collapse" in history else None
    for ax in axes:
        ax.grid(alpha=0.3)
        if collapsed is not None and collapsed.any():
            ax.fill_between(step, 0, 1, where=collapsed, transform=ax.get_xaxis_transform(), color="red", alpha=0.1,
                            label="collapse flagged")
    for ax in axes[2:]:
        ax.set_xlabel("step")
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
    fig = Figure(figsize=(1.8 * (heads + 2), 1.9 * b), layout="constrained")
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
        axes[0, j].set_title(title, fontsize=9)
    return fig


def plot_patch_pca(images: np.ndarray, pca_rgb: np.ndarray, *, channel_names: Sequence[str]) -> Figure:
    """Each image (composite) above its patch features' first three principal components as RGB (Cell-DINO)."""
    b = len(images)
    fig = Figure(figsize=(1.9 * b, 4.0), layout="constrained")
    axes = fig.subplots(2, b, squeeze=False)
    extent = (0, images.shape[-1], images.shape[-2], 0)
    for i in range(b):
        axes[0, i].imshow(composite(images[i], channel_names))
        axes[1, i].imshow(pca_rgb[i][..., :3], extent=extent, interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("patch PCA → RGB", fontsize=9)
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
