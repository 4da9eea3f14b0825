"""Fixtures shared by test modules: the smoke book, run and built once per test session.

Both the smoke-book tests and the browser check of the built pages read the same run and the same HTML, so
the notebooks execute once and Jupyter Book builds once.
"""

import time
from pathlib import Path

import pytest

from dinoxfer_lib.book import build_book
from dinoxfer_lib.runner import run_notebooks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """Every notebook executed on the smoke profile: (runs root, the runs, seconds the first run took)."""
    runs = tmp_path_factory.mktemp("runs")
    started = time.perf_counter()
    first = run_notebooks(profile="smoke", notebook_dir=REPO / "notebooks", runs_root=runs, log=lambda s: None)
    first_seconds = time.perf_counter() - started
    return runs, first, first_seconds


@pytest.fixture(scope="session")
def smoke_book(smoke_runs, tmp_path_factory):
    """The smoke book built from :func:`smoke_runs`: the path of its ``_build/html``."""
    runs, _, _ = smoke_runs
    output = tmp_path_factory.mktemp("book")
    index = build_book(profile="smoke", runs_root=runs, repo_root=REPO, output_dir=output)
    assert index == output / "_build" / "html" / "index.html"
    return index.parent
