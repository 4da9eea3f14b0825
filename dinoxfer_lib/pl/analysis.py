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
from dinoxfer_lib.pl.style import FULL_WIDTH, HALF_WIDTH, SMALL_FONT_SIZE, fit_width
from dinoxfer_lib.tl.harmony import UMAP_HARMONY_KEY, UMAP_KEY
from dinoxfer_lib.tl.mixing import SCORE_DIRECTIONS, primary_labels

# The EM pair of chapter 08 (Lucchi++, VNC) continues the same Dark2 palette.
DOMAIN_COLORS: dict[str, str] = {"opencell": "#1b9e77", "hpa": "#d95f02", "natural": "#7570b3", "lucchi": "#e7298a",
                                 "vnc": "#66a61e"}
DOMAIN_LABELS: dict[str, str] = {"opencell": "OpenCell", "hpa": "HPA", "natural": "natural images",
                                 "lucchi": "Lucchi++ (FIB-SEM)", "vnc": "VNC (ssTEM)"}
_SHORT_DOMAIN_LABELS: dict[str, str] = {**DOMAIN_LABELS, "natural": "natural"}
OTHER_COLOR = "#d9d9d9"
_POINT = dict(s=3, linewidths=0, rasterized=True)


def _scatter(ax, xy: np.ndarray, categories: np.ndarray, colors: Mapping[str, str], *, legend: bool) -> None:
    """Points coloured by category; categories without a colour are drawn first, in grey, underneath. Square panel
    without ticks (a UMAP's axes have no units)."""
    categories = np.asarray(categories).astype(str)
    grey = ~np.isin(categories, list(colors))
    ax.scatter(*xy[grey].T, c=OTHER_COLOR, **_POINT)
    for name, colour in colors.items():
        mask = categories == name
        if mask.any():
            ax.scatter(*xy[mask].T, c=colour, label=name, **_POINT)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_box_aspect(1)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("0.8")
    if legend:
        ax.legend(markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))


def _figure_legend(fig: Figure, colors: Mapping[str, str], *, title: str, loc: str, ncols: int) -> None:
    """A legend of coloured dots outside the panels (``loc``: ``"outside lower center"`` and the like), so no
    panel shrinks to make room for it."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", ms=4, color=colour, label=name) for name, colour in colors.items()]
    fig.legend(handles=handles, title=title, loc=loc, ncols=max(1, min(ncols, len(handles))), columnspacing=0.8,
               handletextpad=0.2, borderaxespad=0.2)


def _localisation(adata) -> np.ndarray:
    return primary_labels(adata.obsm["grades"], adata.uns["class_names"])


def plot_harmony_umaps(corrected: Mapping, *, batch_key: str = "batch") -> Figure:
    """One row per embedding set: UMAP by plate (or another ``obs`` column) and by strongest localisation, before
    and after Harmony, in square panels; the two legends (plates, classes) below the grid, shared by every row.
    ``corrected`` is the output of :func:`~dinoxfer_lib.tl.harmony.correct_embeddings`.
    """
    names = list(corrected)
    what = {"batch": "plate", "cell_line": "cell line"}.get(batch_key, batch_key)
    batches = {name: corrected[name].obs[batch_key].astype(str).to_numpy() for name in names}
    labels = {name: _localisation(corrected[name]) for name in names}
    batch_palette = batch_colors(np.concatenate(list(batches.values())))
    present = set(np.concatenate(list(labels.values())))
    label_palette = class_colors([c for c in corrected[names[0]].uns["class_names"] if c in present])
    n_legend_rows = int(np.ceil(len(label_palette) / 4)) + int(np.ceil(len(batch_palette) / 6))
    panel = (FULL_WIDTH - 0.3) / 4
    fig = Figure(figsize=(FULL_WIDTH, (panel + 0.2) * len(names) + 1.0 + 0.18 * n_legend_rows),
                 layout="constrained")
    axes = fig.subplots(len(names), 4, squeeze=False)
    for row, name in enumerate(names):
        adata = corrected[name]
        panels = [(UMAP_KEY, batches[name], batch_palette, f"{what}, before"),
                  (UMAP_HARMONY_KEY, batches[name], batch_palette, f"{what}, after Harmony"),
                  (UMAP_KEY, labels[name], label_palette, "localisation, before"),
                  (UMAP_HARMONY_KEY, labels[name], label_palette, "localisation, after Harmony")]
        for col, (key, values, palette, title) in enumerate(panels):
            ax = axes[row, col]
            _scatter(ax, adata.obsm[key], values, palette, legend=False)
            if row == 0:
                ax.set_title(title)
        axes[row, 0].set_ylabel(name)
    covariates = ", ".join(corrected[names[0]].uns["harmony"]["covariates"]) or "none"
    _figure_legend(fig, batch_palette, title=f"{what} (Harmony covariates: {covariates})", loc="outside upper center",
                   ncols=6)
    _figure_legend(fig, label_palette, title="strongest localisation", loc="outside lower center", ncols=4)
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
    side = min(1.9, FULL_WIDTH / n_cols)
    fig = Figure(figsize=(side * n_cols, (side + 0.15) * n_rows + 0.4), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, name in zip(axes, classes):
        grade = grades[:, list(adata.uns["class_names"]).index(name)]
        ax.scatter(*xy.T, c=OTHER_COLOR, **_POINT)
        on = grade > 0
        strength = 0.35 + 0.65 * grade[on] / max(int(grade.max()), 1)  # grade 3 = full colour
        ax.scatter(*xy[on].T, c=[(*to_rgb(palette[name]), a) for a in strength], **_POINT)
        ax.set_title(f"{name} ({int(on.sum())})", fontsize=SMALL_FONT_SIZE - 1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_box_aspect(1)
    for ax in axes[len(classes):]:
        ax.set_axis_off()
    fig.suptitle("each class on its own (opacity = grade)")
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
    ax.set_title(f"the {len(largest)} largest protein groups")
    return fig


def plot_mixing_scores(table: pd.DataFrame, *, scores: Sequence[str] = ("ilisi_scaled", "batch_silhouette",
                       "clisi_scaled", "knn_label_accuracy")) -> Figure:
    """Bars per set and score, before vs after Harmony (``table`` from :func:`~dinoxfer_lib.tl.mixing.mixing_table`)."""
    spaces = list(dict.fromkeys(table["space"]))
    fig = Figure(figsize=(FULL_WIDTH, 0.35 * table["set"].nunique() + 1.6), layout="constrained")
    axes = fig.subplots(1, len(scores), sharey=True, squeeze=False)[0]
    for ax, score in zip(axes, scores):
        wide = table.pivot(index="set", columns="space", values=score).reindex(index=table["set"].unique(),
                                                                                columns=spaces)
        wide.plot.barh(ax=ax, legend=False, color=["#9e9e9e", "#2b8cbe"][: wide.shape[1]])
        ax.set_title(f"{score.replace('_', ' ')}\n({SCORE_DIRECTIONS[score]} = better)")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelsize=SMALL_FONT_SIZE - 1)
        ax.invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(spaces))
    return fig


def plot_pca_by_domain(pcas: Mapping[str, tuple[pd.DataFrame, np.ndarray]]) -> Figure:
    """PC1 vs PC2 of all domains together, one panel per backbone (``pcas``: backbone → :func:`pooled_pca`), the
    domains' legend below the panels."""
    width, height = FULL_WIDTH, FULL_WIDTH / max(len(pcas), 2) + 0.9
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, len(pcas), squeeze=False)[0]
    for ax, (backbone, (frame, variance)) in zip(axes, pcas.items()):
        for domain, rows in frame.groupby("domain", sort=False):
            ax.scatter(rows["pc1"], rows["pc2"], c=DOMAIN_COLORS.get(domain, OTHER_COLOR),
                       label=DOMAIN_LABELS.get(domain, domain), **{**_POINT, "s": 5})
        ax.set_xlabel(f"PC1 ({variance[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({variance[1]:.0%})")
        ax.set_title(f"{DOMAIN_LABELS.get(backbone, backbone)} backbone")
    fig.legend(*axes[0].get_legend_handles_labels(), markerscale=3, loc="outside lower center", ncols=3)
    return fig


def _compact(value: float) -> str:
    """A distance in a heatmap cell: two significant digits below 10 (no exponent), whole numbers above."""
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.{max(1, 1 - int(np.floor(np.log10(abs(value)))))}f}" if value else "0"


def plot_frechet(frechet: pd.DataFrame) -> Figure:
    """Fréchet distance heatmap per backbone on a log colour scale (microscopy pairs sit orders of magnitude
    below the natural images): each cell its mean over the resamples (the intervals are in
    :func:`~dinoxfer_lib.report.shift.frechet_table`, beside it in the book); the diagonal is the within-domain
    floor. One colour bar for all panels."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter, LogLocator

    backbones = list(dict.fromkeys(frechet["backbone"]))
    positive = frechet.loc[frechet["distance"] > 0, "distance"]
    norm = LogNorm(vmin=float(positive.min()) if len(positive) else 1e-3,
                   vmax=float(positive.max()) if len(positive) else 1.0)
    cmap = "magma_r"
    fig = Figure(figsize=(FULL_WIDTH, FULL_WIDTH / max(len(backbones), 2) + 0.3), layout="constrained")
    axes = fig.subplots(1, len(backbones), squeeze=False)[0]
    for ax, backbone in zip(axes, backbones):
        rows = frechet[frechet["backbone"] == backbone]
        domains = list(dict.fromkeys([*rows["domain_a"], *rows["domain_b"]]))
        grid = np.full((len(domains),) * 2, np.nan)
        text = np.full(grid.shape, "", dtype=object)
        for _, r in rows.iterrows():
            i, j = domains.index(r["domain_a"]), domains.index(r["domain_b"])
            grid[i, j] = grid[j, i] = r["distance"]
            text[i, j] = text[j, i] = _compact(r["distance"])
        image = ax.imshow(np.clip(grid, norm.vmin, None), cmap=cmap, norm=norm)
        for (i, j), label in np.ndenumerate(text):
            if label:
                shade = image.cmap(norm(max(grid[i, j], norm.vmin)))
                dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
                ax.text(j, i, label, ha="center", va="center", color="white" if dark else "black")
        ticks = [_SHORT_DOMAIN_LABELS.get(d, d) for d in domains]
        ax.set_xticks(range(len(domains)), ticks)
        ax.set_yticks(range(len(domains)), ticks if ax is axes[0] else [])
        ax.grid(False)
        ax.set_title(f"{DOMAIN_LABELS.get(backbone, backbone)} backbone")
    bar = fig.colorbar(image, ax=list(axes), shrink=0.8, label="Fréchet distance (log scale)")
    decades = np.log10(norm.vmax / norm.vmin)
    bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0,) if decades > 2 else (1.0, 2.0, 5.0)))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    return fig


def plot_domain_probe(probes: pd.DataFrame) -> Figure:
    """Cross-validated accuracy of the domain probe per backbone and domain group, with chance marked."""
    backbones = list(dict.fromkeys(probes["backbone"]))
    groups = list(dict.fromkeys(probes["domains"]))
    fig = Figure(figsize=(HALF_WIDTH + 1.6, 0.3 * len(groups) * len(backbones) + 1.3), layout="constrained")
    ax = fig.subplots()
    height = 0.8 / len(backbones)
    for b, backbone in enumerate(backbones):
        rows = probes[probes["backbone"] == backbone].set_index("domains").reindex(groups)
        y = np.arange(len(groups)) + b * height
        ax.barh(y, rows["accuracy"], height=height, xerr=rows["accuracy_std"],
                color=DOMAIN_COLORS.get(backbone, OTHER_COLOR), label=f"{DOMAIN_LABELS.get(backbone, backbone)} backbone")
        ax.vlines(rows["chance"], y - height / 2, y + height / 2, colors="black", linestyles=":")
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, groups)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("domain probe accuracy (dotted: chance)")
    ax.invert_yaxis()
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(backbones))
    return fig


def plot_distance_vs_f1(table: pd.DataFrame, *, target: str = "opencell") -> Figure:
    """Our and the paper's Table III macro F1 against the Fréchet distance from the backbone's pretraining domain to
    ``target`` (``table`` from :func:`~dinoxfer_lib.report.shift.distance_vs_f1`); shaded: the floor range. The
    distance axis is logarithmic when the distances span more than a factor of ten (natural images against
    microscopy). Set names are placed by adjustText so they overlap neither each other nor the points."""
    from adjustText import adjust_text

    fig = Figure(figsize=(HALF_WIDTH + 1.6, 4), layout="constrained")
    ax = fig.subplots()
    low = float(table["low"].min()) if len(table) else 0.0
    if low > 0 and table["high"].max() > 10 * low:
        ax.set_xscale("log")
    points, labels = [], []
    for _, r in table.iterrows():
        colour = DOMAIN_COLORS.get(r["backbone"], OTHER_COLOR)
        xerr = [[r["distance"] - r["low"]], [r["high"] - r["distance"]]]
        ax.errorbar(r["distance"], r["f1"], xerr=xerr, yerr=r["f1_std"], fmt="o", color=colour, capsize=2)
        points.append((r["distance"], r["f1"]))
        labels.append(ax.text(r["distance"], r["f1"], r["set"].replace("_", " "), fontsize=SMALL_FONT_SIZE - 1))
        if np.isfinite(r["paper_f1"]):
            ax.plot(r["distance"], r["paper_f1"], marker="*", ms=10, color=colour, mec="black", mew=0.5, ls="")
            points.append((r["distance"], r["paper_f1"]))
    left, right = ax.get_xlim()
    ax.axvspan(left, table["floor"].max(), color="#eeeeee", zorder=0, label="within-domain floor (up to)")
    ax.set_xlim(left, right)
    ax.plot([], [], "o", color="grey", label="this run")
    ax.plot([], [], "*", color="grey", mec="black", ms=10, label="paper (Table III)")
    ax.set_xlabel(f"Fréchet distance, pretraining domain → {DOMAIN_LABELS.get(target, target)}")
    ax.set_ylabel("test macro F1")
    ax.set_ylim(0, 1)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3)
    if labels:
        fig.draw_without_rendering()  # the final layout first: adjustText measures the labels where they end up
        x, y = np.array(points).T
        adjust_text(labels, x=x, y=y, ax=ax, arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
    return fig


def plot_transfer_matrix(table: pd.DataFrame) -> Figure:
    """Heatmap of test macro F1: backbones (rows) x labelled domains the probe trains on (columns), ± std."""
    mean = table.pivot(index="backbone", columns="domain", values="test_f1_mean")
    std = table.pivot(index="backbone", columns="domain", values="test_f1_std").reindex_like(mean)
    fig = Figure(figsize=fit_width(1.8 * mean.shape[1] + 2.4, 0.8 * mean.shape[0] + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.grid(False)
    image = ax.imshow(mean.to_numpy(), cmap="viridis", vmin=0, vmax=max(float(mean.max().max()), 1e-6))
    for (i, j), value in np.ndenumerate(mean.to_numpy()):
        ax.text(j, i, f"{value:.3f}\n± {std.iloc[i, j]:.3f}", ha="center", va="center",
                color="white" if value < 0.6 * float(mean.max().max()) else "black")
    ax.set_xticks(range(mean.shape[1]), [f"probe on {DOMAIN_LABELS.get(d, d)}" for d in mean.columns])
    ax.set_yticks(range(mean.shape[0]), [f"{DOMAIN_LABELS.get(b, b)} backbone" for b in mean.index])
    fig.colorbar(image, ax=ax, label="test macro F1")
    return fig

