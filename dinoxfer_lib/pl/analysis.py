"""Figures of the UMAP/Harmony and domain-shift chapters: UMAP panels, mixing scores, PCA by domain, Fréchet
distances, distance against F1, and the transfer matrix.

Classes and plates keep the book's colours (:mod:`dinoxfer_lib.pl.palettes`); domains have their own fixed colours
below, the same in every figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dinoxfer_lib.pl.palettes import batch_colors, class_colors
from dinoxfer_lib.tl.harmony import UMAP_HARMONY_KEY, UMAP_KEY
from dinoxfer_lib.tl.mixing import SCORE_DIRECTIONS, primary_labels

# The EM pair of chapter 08 (Lucchi++, VNC) continues the same Dark2 palette.
DOMAIN_COLORS: dict[str, str] = {"opencell": "#1b9e77", "hpa": "#d95f02", "natural": "#7570b3", "lucchi": "#e7298a",
                                 "vnc": "#66a61e"}
DOMAIN_LABELS: dict[str, str] = {"opencell": "OpenCell", "hpa": "HPA", "natural": "natural images",
                                 "lucchi": "Lucchi++ (FIB-SEM)", "vnc": "VNC (ssTEM)"}
OTHER_COLOR = "#d9d9d9"
_POINT = dict(s=3, linewidths=0, rasterized=True)


def _scatter(ax, xy: np.ndarray, categories: np.ndarray, colors: Mapping[str, str], *, legend: bool) -> None:
    """Points coloured by category; categories without a colour are drawn first, in grey, underneath."""
    categories = np.asarray(categories).astype(str)
    grey = ~np.isin(categories, list(colors))
    ax.scatter(*xy[grey].T, c=OTHER_COLOR, **_POINT)
    for name, colour in colors.items():
        mask = categories == name
        if mask.any():
            ax.scatter(*xy[mask].T, c=colour, label=name, **_POINT)
    ax.set_xticks([]), ax.set_yticks([])
    if legend:
        ax.legend(fontsize=6, markerscale=3, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))


def _localisation(adata) -> np.ndarray:
    return primary_labels(adata.obsm["grades"], adata.uns["class_names"])


def plot_harmony_umaps(corrected: Mapping, *, batch_key: str = "batch") -> Figure:
    """One row per embedding set: UMAP by plate (or another ``obs`` column) and by strongest localisation, before
    and after Harmony. ``corrected`` is the output of :func:`~dinoxfer_lib.tl.harmony.correct_embeddings`.
    """
    names = list(corrected)
    fig = Figure(figsize=(13, 2.6 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), 4, squeeze=False)
    for row, name in enumerate(names):
        adata = corrected[name]
        batches = adata.obs[batch_key].astype(str).to_numpy()
        labels = _localisation(adata)
        batch_palette = batch_colors(batches)
        label_palette = class_colors([c for c in adata.uns["class_names"] if c in set(labels)])
        what = {"batch": "plate", "cell_line": "cell line"}.get(batch_key, batch_key)
        panels = [(UMAP_KEY, batches, batch_palette, f"{what}, before"), (UMAP_HARMONY_KEY, batches, batch_palette,
                  f"{what}, after Harmony"), (UMAP_KEY, labels, label_palette, "localisation, before"),
                  (UMAP_HARMONY_KEY, labels, label_palette, "localisation, after Harmony")]
        for col, (key, values, palette, title) in enumerate(panels):
            ax = axes[row, col]
            _scatter(ax, adata.obsm[key], values, palette, legend=row == 0 and col in (1, 3))
            ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(name, fontsize=9)
    covariates = ", ".join(corrected[names[0]].uns["harmony"]["covariates"])
    fig.suptitle(f"UMAP of each embedding set (Harmony covariates: {covariates})", fontsize=10)
    return fig


def plot_umap_by_class(adata, *, key: str = UMAP_HARMONY_KEY, n_cols: int = 6) -> Figure:
    """One small panel per class: images carrying the class in its colour (darker = higher grade), others grey.

    Shows multi-label images under every class they carry, which the strongest-label colouring hides.
    """
    from matplotlib.colors import to_rgb

    xy, grades = adata.obsm[key], np.asarray(adata.obsm["grades"])
    classes = [c for k, c in enumerate(adata.uns["class_names"]) if (grades[:, k] > 0).any()]
    palette = class_colors(classes)
    n_rows = int(np.ceil(len(classes) / n_cols))
    fig = Figure(figsize=(1.9 * n_cols, 1.9 * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, name in zip(axes, classes):
        grade = grades[:, list(adata.uns["class_names"]).index(name)]
        ax.scatter(*xy.T, c=OTHER_COLOR, **_POINT)
        on = grade > 0
        strength = 0.35 + 0.65 * grade[on] / max(int(grade.max()), 1)  # grade 3 = full colour
        ax.scatter(*xy[on].T, c=[(*to_rgb(palette[name]), a) for a in strength], **_POINT)
        ax.set_title(f"{name} ({int(on.sum())})", fontsize=7)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes[len(classes):]:
        ax.set_axis_off()
    fig.suptitle("each class on its own (opacity = grade)", fontsize=9)
    return fig


def plot_umap_by_group(adata, *, key: str = UMAP_HARMONY_KEY, n_groups: int = 8) -> Figure:
    """UMAP with the ``n_groups`` largest protein groups coloured (all images of one protein), the rest grey.

    Images of one protein share its labels; if they sit together while the localisation classes are spread, the
    embedding recognises proteins (or their plates) more than patterns.
    """
    groups = adata.obs["group"].astype(str)
    largest = groups.value_counts().index[:n_groups]
    palette = class_colors([f"__group_{g}" for g in largest])  # stable colours for a user's own names
    colors = {g: palette[f"__group_{g}"] for g in largest}
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    _scatter(ax, adata.obsm[key], groups.to_numpy(), colors, legend=True)
    ax.set_title(f"the {len(largest)} largest protein groups", fontsize=9)
    return fig


def plot_mixing_scores(table: pd.DataFrame, *, scores: Sequence[str] = ("ilisi_scaled", "batch_silhouette",
                       "clisi_scaled", "knn_label_accuracy")) -> Figure:
    """Bars per set and score, before vs after Harmony (``table`` from :func:`~dinoxfer_lib.tl.mixing.mixing_table`)."""
    spaces = list(dict.fromkeys(table["space"]))
    fig = Figure(figsize=(3.2 * len(scores), 0.35 * table["set"].nunique() + 2.0), layout="constrained")
    axes = fig.subplots(1, len(scores), sharey=True, squeeze=False)[0]
    for ax, score in zip(axes, scores):
        wide = table.pivot(index="set", columns="space", values=score).reindex(index=table["set"].unique(),
                                                                                columns=spaces)
        wide.plot.barh(ax=ax, legend=False, color=["#9e9e9e", "#2b8cbe"][: wide.shape[1]])
        ax.set_title(f"{score} ({SCORE_DIRECTIONS[score]} = better)", fontsize=9)
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelsize=7)
        ax.invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(spaces), fontsize=8,
               frameon=False)
    return fig


def plot_pca_by_domain(pcas: Mapping[str, tuple[pd.DataFrame, np.ndarray]]) -> Figure:
    """PC1 vs PC2 of all domains together, one panel per backbone (``pcas``: backbone → :func:`pooled_pca`)."""
    fig = Figure(figsize=(3.6 * len(pcas) + 1.2, 3.4), layout="constrained")
    axes = fig.subplots(1, len(pcas), squeeze=False)[0]
    for ax, (backbone, (frame, variance)) in zip(axes, pcas.items()):
        for domain, rows in frame.groupby("domain", sort=False):
            ax.scatter(rows["pc1"], rows["pc2"], c=DOMAIN_COLORS.get(domain, OTHER_COLOR),
                       label=DOMAIN_LABELS.get(domain, domain), **{**_POINT, "s": 5})
        ax.set_xlabel(f"PC1 ({variance[0]:.0%})", fontsize=8)
        ax.set_ylabel(f"PC2 ({variance[1]:.0%})", fontsize=8)
        ax.set_title(f"{DOMAIN_LABELS.get(backbone, backbone)} backbone", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1].legend(fontsize=7, markerscale=3, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    return fig


def plot_frechet(frechet: pd.DataFrame) -> Figure:
    """Fréchet distance heatmap per backbone: each cell ``mean [2.5-97.5 %]``; the diagonal is the floor."""
    backbones = list(dict.fromkeys(frechet["backbone"]))
    fig = Figure(figsize=(3.9 * len(backbones), 3.5), layout="constrained")
    axes = fig.subplots(1, len(backbones), squeeze=False)[0]
    vmax = frechet["distance"].max()
    for ax, backbone in zip(axes, backbones):
        rows = frechet[frechet["backbone"] == backbone]
        domains = list(dict.fromkeys([*rows["domain_a"], *rows["domain_b"]]))
        grid = np.full((len(domains),) * 2, np.nan)
        text = np.full(grid.shape, "", dtype=object)
        for _, r in rows.iterrows():
            i, j = domains.index(r["domain_a"]), domains.index(r["domain_b"])
            grid[i, j] = grid[j, i] = r["distance"]
            text[i, j] = text[j, i] = f"{r['distance']:.3g}\n[{r['low']:.3g}, {r['high']:.3g}]"
        image = ax.imshow(grid, cmap="magma_r", vmin=0, vmax=vmax)
        for (i, j), label in np.ndenumerate(text):
            ax.text(j, i, label, ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] > 0.6 * vmax else "black")
        ticks = [DOMAIN_LABELS.get(d, d) for d in domains]
        ax.set_xticks(range(len(domains)), ticks, fontsize=7, rotation=20)
        ax.set_yticks(range(len(domains)), ticks, fontsize=7)
        ax.set_title(f"{DOMAIN_LABELS.get(backbone, backbone)} backbone", fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="Fréchet distance (diagonal: within-domain floor)")
    return fig


def plot_domain_probe(probes: pd.DataFrame) -> Figure:
    """Cross-validated accuracy of the domain probe per backbone and domain group, with chance marked."""
    backbones = list(dict.fromkeys(probes["backbone"]))
    groups = list(dict.fromkeys(probes["domains"]))
    fig = Figure(figsize=(7, 0.45 * len(groups) * len(backbones) + 1.2), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(backbones)
    for b, backbone in enumerate(backbones):
        rows = probes[probes["backbone"] == backbone].set_index("domains").reindex(groups)
        y = np.arange(len(groups)) + b * height
        ax.barh(y, rows["accuracy"], height=height, xerr=rows["accuracy_std"],
                color=DOMAIN_COLORS.get(backbone, OTHER_COLOR), label=f"{DOMAIN_LABELS.get(backbone, backbone)} backbone")
        ax.vlines(rows["chance"], y - height / 2, y + height / 2, colors="black", linestyles=":")
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, groups, fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("domain probe accuracy (dotted: chance)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return fig


def plot_distance_vs_f1(table: pd.DataFrame, *, target: str = "opencell") -> Figure:
    """Our and the paper's Table III macro F1 against the Fréchet distance from the backbone's pretraining domain to
    ``target`` (``table`` from :func:`~dinoxfer_lib.tl.transfer.distance_vs_f1`); shaded: the floor range."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.axvspan(0, table["floor"].max(), color="#eeeeee", label="within-domain floor (up to)")
    for _, r in table.iterrows():
        colour = DOMAIN_COLORS.get(r["backbone"], OTHER_COLOR)
        xerr = [[r["distance"] - r["low"]], [r["high"] - r["distance"]]]
        ax.errorbar(r["distance"], r["f1"], xerr=xerr, yerr=r["f1_std"], fmt="o", color=colour, capsize=2)
        ax.annotate(r["set"], (r["distance"], r["f1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if np.isfinite(r["paper_f1"]):
            ax.plot(r["distance"], r["paper_f1"], marker="*", ms=10, color=colour, mec="black", mew=0.5, ls="")
    ax.plot([], [], "o", color="grey", label="this run")
    ax.plot([], [], "*", color="grey", mec="black", ms=10, label="paper (Table III)")
    ax.set_xlabel(f"Fréchet distance, backbone's pretraining domain → {DOMAIN_LABELS.get(target, target)}")
    ax.set_ylabel("test macro F1")
    ax.legend(fontsize=7, frameon=False)
    return fig


def plot_transfer_matrix(table: pd.DataFrame) -> Figure:
    """Heatmap of test macro F1: backbones (rows) x labelled domains the probe trains on (columns), ± std."""
    mean = table.pivot(index="backbone", columns="domain", values="test_f1_mean")
    std = table.pivot(index="backbone", columns="domain", values="test_f1_std").reindex_like(mean)
    fig = Figure(figsize=(1.8 * mean.shape[1] + 2.4, 0.8 * mean.shape[0] + 1.4), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(mean.to_numpy(), cmap="viridis", vmin=0, vmax=max(float(mean.max().max()), 1e-6))
    for (i, j), value in np.ndenumerate(mean.to_numpy()):
        ax.text(j, i, f"{value:.3f}\n± {std.iloc[i, j]:.3f}", ha="center", va="center", fontsize=8,
                color="white" if value < 0.6 * float(mean.max().max()) else "black")
    ax.set_xticks(range(mean.shape[1]), [f"probe on {DOMAIN_LABELS.get(d, d)}" for d in mean.columns], fontsize=8)
    ax.set_yticks(range(mean.shape[0]), [f"{DOMAIN_LABELS.get(b, b)} backbone" for b in mean.index], fontsize=8)
    fig.colorbar(image, ax=ax, label="test macro F1")
    return fig

