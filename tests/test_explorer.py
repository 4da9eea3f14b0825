"""The embedding explorer: one self-contained HTML page; hovering a point shows its thumbnail and labels, in a
browser, standalone and inside a book page's iframe."""

import re

import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib.browser import chromium, serve_folder, unavailable_reason
from dinoxfer_lib.checks.book import check_book, format_report
from dinoxfer_lib.checks.explorer import hover_point
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.pl.explorer import IFRAME_CLASS, embedding_explorer, probe_probabilities
from dinoxfer_lib.probes.result import ProbeResult

BROWSER_MISSING = unavailable_reason()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"browser check skipped: {BROWSER_MISSING}")


def test_page_is_self_contained_with_one_thumbnail_per_point(tiny_embedding_set):
    adata, images = tiny_embedding_set(30)
    page = embedding_explorer(adata, images).html()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http", page)  # Bokeh inlined: works offline
    assert page.count("data:image/webp;base64,") == 30
    assert "tiny_set: 30 images" in page


def test_800_points_stay_under_3_mb(tiny_embedding_set):
    """The size the book can afford per explorer page: Bokeh's JavaScript plus 800 small thumbnails."""
    adata, images = tiny_embedding_set(900, size=64)
    explorer = embedding_explorer(adata, images)
    assert explorer.n_points == 800 and "800 images (a random sample of 900, seed 0)" in explorer.title
    assert len(explorer.html().encode()) < 3_000_000


def test_sample_keeps_predicted_images_first(tiny_embedding_set):
    adata, images = tiny_embedding_set(50)
    predicted = adata.obs_names[-10:]
    probabilities = pd.DataFrame(0.9, index=predicted, columns=adata.uns["class_names"])
    explorer = embedding_explorer(adata, probabilities=probabilities, max_points=20)
    shown = explorer.layout.select_one({"name": "embedding"}).renderers[0].data_source.data["image_id"]
    assert set(predicted) <= set(shown) and len(shown) == 20
    again = embedding_explorer(adata, probabilities=probabilities, max_points=20)
    assert again.layout.select_one({"name": "embedding"}).renderers[0].data_source.data["image_id"] == shown


def test_tooltip_texts_say_labels_grades_and_predictions(tiny_embedding_set):
    adata, _ = tiny_embedding_set(6)
    classes = adata.uns["class_names"]
    adata.obsm["grades"][0] = [3, 0, 1, 0, 0]
    probabilities = pd.DataFrame([[0.91, 0.2, 0.55, 0.0, 0.1], [0.3, 0.4, 0.1, 0.0, 0.2]],
                                 index=adata.obs_names[:2], columns=classes)
    data = embedding_explorer(adata, probabilities=probabilities).layout.select_one(
        {"name": "embedding"}).renderers[0].data_source.data
    assert data["true_labels"][0] == f"{classes[0]} (3), {classes[2]} (1)"
    assert data["predicted"][0] == f"{classes[0]} 0.91, {classes[2]} 0.55"
    assert data["predicted"][1] == f"none ≥ 0.5 (top: {classes[1]} 0.40)"
    assert data["predicted"][2] == "— (not a test image)"
    assert data["protein"][0] == "P000" and data["plate"][1] == "plate1"


def test_bad_inputs_say_what_is_wrong(tiny_embedding_set):
    adata, images = tiny_embedding_set(10)
    with pytest.raises(DataError, match=r"no obsm\['X_tsne'\] \(have grades, labels, X_umap\)"):
        embedding_explorer(adata, basis="X_tsne")
    with pytest.raises(DataError, match=r"coordinates of shape \(9, 2\): expected \(10, 2\)"):
        embedding_explorer(adata, coordinates=np.zeros((9, 2)))
    with pytest.raises(DataError, match="color_by 'plate'"):
        embedding_explorer(adata, color_by=("label", "plate"))
    with pytest.raises(DataError, match="probabilities column 'golgi_x' is not a class"):
        embedding_explorer(adata, probabilities=pd.DataFrame({"golgi_x": [0.5]}, index=adata.obs_names[:1]))
    with pytest.raises(DataError, match="image 'oc_0009' of the embedding set is not among the 9 images"):
        embedding_explorer(adata, images.subset(np.arange(9)))


def test_probe_probabilities_index_the_test_images_by_id():
    probs = np.stack([np.full((2, 3), 0.2), np.full((2, 3), 0.6)])  # (folds, n_test, K)
    result = ProbeResult(scores=pd.DataFrame(), test_probs={("s", "mlp"): probs}, history=pd.DataFrame(),
                         test_index=np.array([3, 1]), class_names=("a", "b", "c"))
    ids = ["i0", "i1", "i2", "i3"]
    mean = probe_probabilities(result, ids, set_name="s")
    assert list(mean.index) == ["i3", "i1"] and list(mean.columns) == ["a", "b", "c"]
    assert np.allclose(mean.to_numpy(), 0.4)
    assert np.allclose(probe_probabilities(result, ids, set_name="s", fold=1).to_numpy(), 0.6)
    with pytest.raises(DataError, match="no probe results for set 'x'"):
        probe_probabilities(result, ids, set_name="x")
    with pytest.raises(DataError, match="pass the ids of the whole dataset"):
        probe_probabilities(result, ids[:2], set_name="s")


@needs_browser
def test_hover_selector_and_lasso_work_in_a_browser(tiny_embedding_set, tmp_path):
    adata, images = tiny_embedding_set(40)
    probabilities = pd.DataFrame(0.8, index=adata.obs_names[:5], columns=adata.uns["class_names"])
    embedding_explorer(adata, images, probabilities=probabilities, thumbnail_px=16).save(tmp_path / "explorer.html")
    with serve_folder(tmp_path) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{url}/explorer.html")
        tooltip = hover_point(page.main_frame, index=2)
        assert tooltip.image_id == "oc_0002" and tooltip.image_width == 16
        assert f"predicted: {adata.uns['class_names'][0]} 0.80" in tooltip.text
        assert "protein P000 · plate plate2" in tooltip.text

        page.locator("select").select_option(label="plate")  # colour by plate (obs "batch")
        legend_title = page.evaluate("() => Bokeh.documents[0].get_model_by_name('embedding').right[0].title")
        colours = page.evaluate("() => { const d = Bokeh.documents[0].get_model_by_name('embedding')"
                                ".renderers[0].data_source.data; return [d.color, d.color_batch]; }")
        assert legend_title == "plate" and colours[0] == colours[1]

        page.evaluate("() => { Bokeh.documents[0].get_model_by_name('embedding').renderers[0]"
                      ".data_source.selected.indices = [1, 4, 7]; }")  # what a lasso does
        page.get_by_text("3 image(s) selected").wait_for()
        table = page.locator(".slick-row")
        assert table.count() == 3 and "oc_0004" in table.nth(1).inner_text()
        assert errors == []


@needs_browser
def test_explorer_in_a_book_page_renders_offline_and_shows_thumbnails(tiny_embedding_set, tmp_path):
    """What chapter 06 will embed: the notebook output (an iframe) inside a Jupyter Book page, read by the
    book checker, which hovers every explorer it finds."""
    adata, images = tiny_embedding_set(20)
    html = tmp_path / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/page.html" />')
    iframe = embedding_explorer(adata, images)._repr_html_()
    assert iframe.startswith(f'<iframe class="{IFRAME_CLASS}"')
    (html / "book" / "page.html").write_text(f'<!DOCTYPE html><html><body><main><article class="bd-article">'
                                             f'<p>UMAP</p>{iframe}</article></main></body></html>')
    reports = check_book(html)
    assert [r.findings for r in reports] == [()], format_report(reports)
