"""Interactive embedding explorer: a UMAP where hovering a point shows the image behind it.

The first thing a reader wants in front of a UMAP is to see which cell a point is. The explorer draws the 2-D
layout of an embedding set with Bokeh, coloured by strongest localisation, plate or domain (a selector); hovering a
point shows the image's composite thumbnail (OpenCell: protein red, nucleus green, as in :mod:`.images`), its
true labels with grades, the probe's predicted labels with probabilities, its protein and plate; a lasso (or box)
selection lists the chosen images in a table.

Bokeh writes the figure, its data and its JavaScript into one HTML document (``INLINE`` resources), so the
explorer needs no network and no running kernel. In a notebook it is shown inside an ``<iframe srcdoc>``: Jupyter
Book 1.x copies that HTML output into the page as is, JupyterLab renders it, and the book theme's scripts and
Bokeh's never meet. Thumbnails are small lossy WebP images (every current browser decodes WebP), so Bokeh's own
JavaScript, not the data, makes most of the page (the README gives the measured size).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.pl.images import composite
from dinoxfer_lib.pl.palettes import batch_colors, class_colors
from dinoxfer_lib.tl.mixing import UNLABELLED, primary_labels

# What the colour selector offers by default: strongest localisation, then any obs column (plate, domain).
COLOR_BY: tuple[str, ...] = ("label", "batch", "domain")
_COLOR_TITLES = {"label": "strongest localisation", "batch": "plate", "domain": "domain", "group": "protein"}
# Points drawn at most: a random sample beyond this keeps the page light (the title says how many of how many).
MAX_POINTS = 800
# Long side of a thumbnail in pixels (never enlarged); the tooltip shows it at TOOLTIP_IMAGE_PX.
THUMBNAIL_PX = 64
TOOLTIP_IMAGE_PX = 128
# Lossy WebP quality of the thumbnails: 80 keeps cell outlines and puncta readable at a fraction of PNG's size.
WEBP_QUALITY = 80
# Height of the scatter plot and of the selection table, in CSS pixels.
PLOT_HEIGHT_PX = 520
TABLE_HEIGHT_PX = 220
# HTML classes of the explorer's iframe (the book checker hovers every explorer it finds by it) and tooltip.
IFRAME_CLASS = "dinoxfer-explorer"
TOOLTIP_CLASS = "dinoxfer-tooltip"
# Only the first hovered point gets a tooltip: stacked tooltips of overlapping points would cover the plot.
_TOOLTIP_LIMIT = 1


@dataclass(frozen=True)
class Explorer:
    """A built explorer: the Bokeh layout, and its HTML for a file or a notebook output.

    Displaying it in a notebook (or returning it from a cell) shows the explorer in an iframe.
    """

    layout: Any
    title: str
    n_points: int

    def html(self) -> str:
        """The explorer as a standalone HTML document, Bokeh's JavaScript inlined (works offline)."""
        from bokeh.embed import file_html
        from bokeh.resources import INLINE

        return file_html(self.layout, resources=INLINE, title=self.title)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`html` to ``path`` (open it in any browser)."""
        path = Path(path)
        path.write_text(self.html(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        height = PLOT_HEIGHT_PX + TABLE_HEIGHT_PX + 110  # selector row, selection count and margins
        return (f'<iframe class="{IFRAME_CLASS}" title="{html.escape(self.title)}" srcdoc="{html.escape(self.html())}" '
                f'style="width: 100%; height: {height}px; border: 0;" loading="eager"></iframe>')


def embedding_explorer(
    adata,
    images: ImageSet | None = None,
    *,
    basis: str = "X_umap",
    coordinates: np.ndarray | None = None,
    probabilities: pd.DataFrame | None = None,
    threshold: float = 0.5,
    color_by: Sequence[str] = COLOR_BY,
    max_points: int = MAX_POINTS,
    thumbnail_px: int = THUMBNAIL_PX,
    seed: int = 0,
    title: str | None = None,
) -> Explorer:
    """The 2-D layout of an embedding set as an interactive Bokeh explorer.

    Parameters
    ----------
    adata
        An embedding set as :func:`~dinoxfer_lib.embed.extract_embeddings` writes it (``obs`` indexed by image id
        with ``group``, ``batch``, ``domain``; ``obsm["grades"]`` over ``uns["class_names"]``) with its layout in
        ``obsm[basis]``, e.g. from :func:`~dinoxfer_lib.tl.harmony.correct_embeddings`.
    images
        The images, matched to ``adata`` by ``image_id``; without them the tooltips show no thumbnail.
    basis
        The ``obsm`` key of the layout (``"X_umap"``, ``"X_umap_harmony"``).
    coordinates
        ``(n_obs, 2)`` coordinates to use instead of ``obsm[basis]``.
    probabilities
        A probe's predicted probabilities, one row per image id, one column per class (e.g.
        :func:`probe_probabilities`); images without a row (not in the test set) say so.
    threshold
        Probability from which a class counts as predicted (the paper's fixed threshold: 0.5).
    color_by
        What the colour selector offers, the first shown first: ``"label"`` (strongest localisation) or any
        ``obs`` column.
    max_points
        Points drawn at most; beyond it a random sample (``seed``), images with probabilities first.
    thumbnail_px
        Long side of the thumbnails in pixels (larger images are shrunk, smaller ones kept).
    seed
        Seed of the sample.
    title
        Title above the plot (default: the embedding set's name and the number of points).

    Returns
    -------
    Explorer
        ``.html()`` / ``.save(path)`` for a file; shown in a notebook as an iframe.
    """
    from bokeh.layouts import column, row
    from bokeh.models import (BoxSelectTool, ColumnDataSource, CustomJS, DataTable, Div, HoverTool, LassoSelectTool,
                              Legend, LegendItem, Select, TableColumn)
    from bokeh.plotting import figure

    xy = _layout(adata, basis, coordinates)
    class_names = list(adata.uns.get("class_names", ()))
    if "grades" not in adata.obsm or not class_names:
        raise DataError("embedding_explorer: adata needs obsm['grades'] and uns['class_names'] (as "
                        "extract_embeddings writes them)")
    grades = np.asarray(adata.obsm["grades"])
    unknown = [key for key in color_by if key != "label" and key not in adata.obs.columns]
    if not color_by or unknown:
        raise DataError(f"embedding_explorer: color_by {unknown[0] if unknown else '()'!r}: expected 'label' or "
                        f"columns of adata.obs ({', '.join(map(str, adata.obs.columns))})")
    image_ids = adata.obs_names.astype(str).to_numpy()
    probabilities = _check_probabilities(probabilities, class_names)
    keep = _sample(image_ids, probabilities, max_points=max_points, seed=seed)

    data: dict[str, list] = {
        "x": xy[keep, 0].tolist(),
        "y": xy[keep, 1].tolist(),
        "image_id": image_ids[keep].tolist(),
        "protein": _obs_text(adata, "group", keep),
        "plate": _obs_text(adata, "batch", keep),
        "true_labels": [_true_labels(grades[i], class_names) for i in keep],
    }
    if probabilities is not None:
        data["predicted"] = [_predicted(probabilities, image_id, threshold) for image_id in image_ids[keep]]
    if images is not None:
        data["thumbnail"] = _thumbnails(images, image_ids[keep], thumbnail_px=thumbnail_px)

    legends_items: dict[str, list] = {}
    categories_by_key = {}
    for key in color_by:
        values = (primary_labels(grades, class_names) if key == "label" else
                  adata.obs[key].astype(str).to_numpy())[keep]
        palette = _palette(key, values, class_names)
        data[f"color_{key}"] = [palette[value] for value in values]
        categories_by_key[key] = (values, list(palette))
    data["color"] = list(data[f"color_{color_by[0]}"])
    source = ColumnDataSource(data)

    shown = len(keep)
    title = title or f"{adata.uns.get('embedding', {}).get('set', 'embeddings')}: {shown:,} images"
    if shown < len(image_ids):
        title += f" (a random sample of {len(image_ids):,}, seed {seed})"
    plot = figure(title=title, height=PLOT_HEIGHT_PX, sizing_mode="stretch_width", name="embedding",
                  tools="pan,wheel_zoom,reset,save", active_scroll="wheel_zoom", toolbar_location="above",
                  x_axis_label=f"{basis} 1", y_axis_label=f"{basis} 2")
    points = plot.scatter("x", "y", source=source, size=7, fill_color="color", line_color="color", fill_alpha=0.75,
                          selection_line_color="black", nonselection_fill_alpha=0.15, nonselection_line_alpha=0.15)
    plot.add_tools(HoverTool(renderers=[points], tooltips=_tooltip_html(images is not None, probabilities is not None),
                             limit=_TOOLTIP_LIMIT),
                   LassoSelectTool(renderers=[points]), BoxSelectTool(renderers=[points]))

    for key, (values, categories) in categories_by_key.items():
        first = {category: int(np.flatnonzero(values == category)[0]) for category in categories}
        # the swatch of a legend item is the colour of the point at `index`, so it follows the colour column
        legends_items[key] = [LegendItem(label=str(category), renderers=[points], index=first[category])
                              for category in categories]
    legend = Legend(items=legends_items[color_by[0]], label_text_font_size="9pt", glyph_height=12, glyph_width=12,
                    spacing=1, title=_COLOR_TITLES.get(color_by[0], color_by[0]))
    plot.add_layout(legend, "right")

    selector = Select(title="colour by", value=color_by[0],
                      options=[(key, _COLOR_TITLES.get(key, key)) for key in color_by], width=220)
    selector.js_on_change("value", CustomJS(args=dict(source=source, legend=legend, items=legends_items,
                                                      titles={k: _COLOR_TITLES.get(k, k) for k in color_by}), code="""
        const key = cb_obj.value;
        source.data["color"] = source.data["color_" + key];
        source.change.emit();
        legend.items = items[key];
        legend.title = titles[key];
    """))

    columns = ["image_id", "protein", "plate", "true_labels"] + (["predicted"] if probabilities is not None else [])
    chosen = ColumnDataSource({name: [] for name in columns})
    table = DataTable(source=chosen, height=TABLE_HEIGHT_PX, sizing_mode="stretch_width", index_position=None,
                      columns=[TableColumn(field=name, title=name.replace("_", " ")) for name in columns])
    count = Div(text="Draw a lasso (or box) around points to list their images here.")
    source.selected.js_on_change("indices", CustomJS(args=dict(source=source, chosen=chosen, count=count,
                                                               columns=columns), code="""
        const picked = source.selected.indices;
        const rows = {};
        for (const name of columns) rows[name] = picked.map((i) => source.data[name][i]);
        chosen.data = rows;
        count.text = `${picked.length} image(s) selected`;
    """))
    layout = column(row(selector, count), plot, table, sizing_mode="stretch_width")
    return Explorer(layout=layout, title=title, n_points=shown)


def probe_probabilities(result, image_ids: Sequence[str], *, set_name: str, probe: str = "mlp",
                        fold: int | None = None) -> pd.DataFrame:
    """A probe's test-set probabilities as the explorer takes them: one row per test image id, one column per class.

    Parameters
    ----------
    result
        A :class:`~dinoxfer_lib.probes.result.ProbeResult`.
    image_ids
        The ids of all images of the dataset the probe's split indexes (``dataset.obs["image_id"]``).
    set_name, probe
        Which embedding set and probe.
    fold
        One fold model (e.g. ``result.best_fold(set_name)``, as Figure 2 uses); default: the mean over the fold
        models.
    """
    probs = result.probs(set_name, probe)  # (folds, n_test, K)
    if fold is not None and not 0 <= fold < len(probs):
        raise DataError(f"probe_probabilities: fold {fold} of set {set_name!r}: expected 0 to {len(probs) - 1}")
    image_ids = np.asarray(image_ids, dtype=str)
    if len(image_ids) <= int(result.test_index.max()):
        raise DataError(f"probe_probabilities: {len(image_ids)} image ids, but the test index reaches "
                        f"{int(result.test_index.max())}: pass the ids of the whole dataset the split indexes")
    values = probs.mean(axis=0) if fold is None else probs[fold]
    return pd.DataFrame(values, index=pd.Index(image_ids[result.test_index], name="image_id"),
                        columns=list(result.class_names))


def _layout(adata, basis: str, coordinates: np.ndarray | None) -> np.ndarray:
    if coordinates is None:
        if basis not in adata.obsm:
            raise DataError(f"embedding_explorer: no obsm[{basis!r}] (have {', '.join(adata.obsm) or 'none'}); "
                            "compute a layout first (tl.harmony.correct_embeddings) or pass coordinates=")
        coordinates = adata.obsm[basis]
    xy = np.asarray(coordinates, dtype=float)
    if xy.ndim != 2 or xy.shape[0] != adata.n_obs or xy.shape[1] < 2:
        raise DataError(f"embedding_explorer: coordinates of shape {xy.shape}: expected ({adata.n_obs}, 2)")
    if not np.isfinite(xy[:, :2]).all():
        raise DataError("embedding_explorer: coordinates contain NaN or infinite values")
    return xy[:, :2]


def _check_probabilities(probabilities: pd.DataFrame | None, class_names: Sequence[str]) -> pd.DataFrame | None:
    if probabilities is None:
        return None
    unknown = [c for c in probabilities.columns if c not in class_names]
    if unknown:
        raise DataError(f"embedding_explorer: probabilities column {unknown[0]!r} is not a class of the embedding "
                        f"set ({', '.join(class_names)})")
    values = probabilities.to_numpy(dtype=float)
    if np.isnan(values).any() or (values < 0).any() or (values > 1).any():
        raise DataError("embedding_explorer: probabilities must lie in [0, 1] without NaN")
    return probabilities.set_axis(probabilities.index.astype(str), axis=0)


def _sample(image_ids: np.ndarray, probabilities: pd.DataFrame | None, *, max_points: int, seed: int) -> np.ndarray:
    """Indices of the points to draw, in data order: all when few; else a sample, images with predictions first."""
    if max_points < 1:
        raise DataError(f"embedding_explorer: max_points = {max_points}: expected >= 1")
    if len(image_ids) <= max_points:
        return np.arange(len(image_ids))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(image_ids))
    if probabilities is not None:  # stable: predicted images first, each part still in random order
        order = order[np.argsort(~np.isin(image_ids[order], probabilities.index), kind="stable")]
    return np.sort(order[:max_points])


def _obs_text(adata, column: str, keep: np.ndarray) -> list[str]:
    if column not in adata.obs.columns:
        return ["—"] * len(keep)
    return [str(value) if str(value) else "—" for value in adata.obs[column].to_numpy()[keep]]


def _true_labels(grades: np.ndarray, class_names: Sequence[str]) -> str:
    present = [(int(grade), name) for grade, name in zip(grades, class_names) if grade > 0]
    if not present:
        return UNLABELLED
    return ", ".join(f"{name} ({grade})" for grade, name in sorted(present, key=lambda item: -item[0]))


def _predicted(probabilities: pd.DataFrame, image_id: str, threshold: float) -> str:
    if image_id not in probabilities.index:
        return "— (not a test image)"
    row = probabilities.loc[image_id].sort_values(ascending=False)
    above = row[row >= threshold]
    if above.empty:
        return f"none ≥ {threshold:g} (top: {row.index[0]} {row.iloc[0]:.2f})"
    return ", ".join(f"{name} {value:.2f}" for name, value in above.items())


def _palette(key: str, values: np.ndarray, class_names: Sequence[str]) -> dict[str, str]:
    """Category → colour, in legend order: classes in vocabulary order (unlabelled last, grey), others sorted."""
    present = set(values)
    if key == "label":
        palette = class_colors([name for name in class_names if name in present])
        if UNLABELLED in present:
            palette[UNLABELLED] = "#b0b0b0"
        return palette
    return batch_colors(values)


def _thumbnails(images: ImageSet, image_ids: np.ndarray, *, thumbnail_px: int) -> list[str]:
    """A ``data:`` URL (small WebP) of each image's composite, in ``image_ids`` order."""
    from PIL import Image

    if thumbnail_px < 8:
        raise DataError(f"embedding_explorer: thumbnail_px = {thumbnail_px}: expected >= 8")
    position = pd.Index(images.obs["image_id"].astype(str))
    rows = position.get_indexer(image_ids)
    if (rows < 0).any():
        missing = image_ids[rows < 0][0]
        raise DataError(f"embedding_explorer: image {missing!r} of the embedding set is not among the "
                        f"{len(images)} images given ({images.domain})")
    urls = []
    for row_index in rows:
        rgb = (composite(images.images[row_index], images.channel_names) * 255).round().astype(np.uint8)
        picture = Image.fromarray(rgb)
        picture.thumbnail((thumbnail_px, thumbnail_px), Image.Resampling.LANCZOS)  # shrinks only
        buffer = io.BytesIO()
        picture.save(buffer, "WEBP", quality=WEBP_QUALITY)
        urls.append("data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return urls


def _tooltip_html(with_image: bool, with_prediction: bool) -> str:
    image = (f'<img src="@thumbnail" alt="@image_id" width="{TOOLTIP_IMAGE_PX}" '
             'style="float: left; margin: 0 8px 4px 0; image-rendering: pixelated;">') if with_image else ""
    prediction = "<div><b>predicted</b>: @predicted</div>" if with_prediction else ""
    return (f'<div class="{TOOLTIP_CLASS}" style="max-width: 420px; font-size: 12px;">{image}'
            f"<div><b>@image_id</b></div><div><b>true</b>: @true_labels</div>{prediction}"
            "<div><b>protein</b> @protein · <b>plate</b> @plate</div></div>")
