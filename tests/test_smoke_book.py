"""The smoke book end to end: every notebook runs with papermill, a second run reuses every stage, the HTML builds.

This is what `make book` does on the demo profile, on the tiny smoke profile so CI can afford it. The run and the
build are the session fixtures ``smoke_runs`` and ``smoke_book`` of conftest.py (the browser check reads them too).
"""

import re
from pathlib import Path

import pytest

from dinoxfer_lib.book import build_book, toc_notebooks
from dinoxfer_lib.errors import StoreError
from dinoxfer_lib.runner import discover_notebooks, run_notebooks

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_every_notebook_runs_on_smoke(smoke_runs):
    runs, first, _ = smoke_runs
    assert [r.name for r in first] == [p.stem for p in discover_notebooks(REPO / "notebooks")]
    assert all(r.output.is_file() for r in first)
    assert sum(len(r.computed) for r in first) > 0


def test_second_run_reuses_every_stage(smoke_runs):
    runs, first, _ = smoke_runs
    second = run_notebooks(profile="smoke", notebook_dir=REPO / "notebooks", runs_root=runs, log=lambda s: None)
    assert all(r.computed == () for r in second), [r.summary() for r in second]
    assert sum(len(r.reused) for r in second) >= sum(len(r.computed) for r in first)


def test_toc_lists_every_notebook():
    listed, run_order = toc_notebooks(REPO / "_toc.yml"), [p.stem for p in discover_notebooks(REPO / "notebooks")]
    assert sorted(listed) == run_order and len(set(listed)) == len(listed)
    assert listed[0] == "95_at_a_glance"  # the results come first in the book, though their page runs last


def test_book_needs_executed_notebooks(tmp_path):
    with pytest.raises(StoreError, match="dinoxfer run --profile smoke"):
        build_book(profile="smoke", runs_root=tmp_path / "empty", repo_root=REPO, output_dir=tmp_path)


def test_book_builds_with_tables_and_rendered_figures(smoke_book):
    page = smoke_book / "book" / "notebooks" / "01_datasets.html"
    html = page.read_text()
    assert "<table" in html and "Synthetic data" in html
    images = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(images) >= 5
    for src in images:
        if src.startswith("data:image/png;base64,"):  # inlined: the rest of a montage, in a toggle
            continue
        assert (page.parent / src).resolve().is_file(), src[:80]
    assert "Traceback" not in html


def test_results_chapters_show_table_iii_beside_the_paper_and_figure_2(smoke_book):
    pages = smoke_book / "book" / "notebooks"
    classifier = (pages / "04_classifier.html").read_text()
    assert "0.8221 ± 0.0062" in classifier  # the paper's best row, beside ours
    assert "macro F1, this run (test)" in classifier and "Synthetic data" in classifier
    predictions = (pages / "05_predictions.html").read_text()
    assert len(re.findall(r"<img", predictions)) >= 3  # two Figure 2 panels and the error gallery
    for page in ("02_pretraining", "06_umap_harmony", "07_domain_shift", "08_adaptation_em"):
        html = (pages / f"{page}.html").read_text()
        assert "Traceback" not in html and "<img" in html, page
    adaptation = (pages / "08_adaptation_em.html").read_text()
    assert "frozen + MLP (Table III)" in adaptation and "predict all foreground" in adaptation
    assert "finding (paper 004)" in adaptation and "not testable here" in adaptation
    performance = (pages / "90_performance.html").read_text()
    assert "Traceback" not in performance and "Recorded on GPU machines" in performance
    assert "NVIDIA H200" in performance  # recorded GPU figures name their device
    assert "300-epoch OpenCell run would take about" in performance
