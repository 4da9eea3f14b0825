"""JupyterLab as `make lab` starts it: a book notebook's .py opens as a notebook, runs through the UI, shows figures.

Skipped, with the reason in pytest's summary, where Chromium, Playwright or JupyterLab is missing; `make check-lab`
runs the same check regardless.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

from dinoxfer_lib.browser import unavailable_reason
from dinoxfer_lib.checks.lab import check_lab

REPO = Path(__file__).resolve().parents[1]
MISSING = unavailable_reason() or (None if importlib.util.find_spec("jupyterlab") else
                                   "jupyterlab is not installed (pip install -e '.[test]')")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=f"JupyterLab check skipped: {MISSING}")]


def test_datasets_notebook_runs_in_jupyterlab_through_the_ui(tmp_path):
    report = check_lab(REPO / "notebooks" / "01_datasets.py", tmp_path, profile="smoke")
    print(report.summary())
    assert report.failures() == []
    assert report.code_cells >= 10 and report.executed_cells == report.code_cells
    assert report.images >= 5  # the class montages, label and plate figures, the split
    assert (tmp_path / "runs" / "smoke" / "datasets" / "opencell" / "images.npy").is_file()  # its own run store
    saved = nbformat.read(report.notebook.with_suffix(".ipynb"), as_version=4)
    assert saved.metadata.kernelspec.name == "python3"  # Lab's save wrote the pair, kernelspec kept


def test_a_cell_error_in_jupyterlab_is_reported(tmp_path):
    notebook = tmp_path / "01_broken.py"
    header = (REPO / "notebooks" / "01_datasets.py").read_text().split("\n\n")[0]  # jupytext header: kernelspec
    notebook.write_text(header + '\n\n# %% tags=["parameters"]\nprofile = "demo"\nruns_root = "../runs"\n\n'
                        "# %%\nprint(profile)\n\n# %%\nraise ValueError('plate 3 is empty')\n\n# %%\nprint('never')\n")
    report = check_lab(notebook, tmp_path / "work", profile="smoke")
    assert report.code_cells == 4 and report.executed_cells == 3  # Lab stops Run All at the error
    assert report.errors == ["cell 3: ValueError: plate 3 is empty"]
    assert "cell error: cell 3: ValueError: plate 3 is empty" in report.failures()
    assert "only 3 of 4 code cells ran" in report.failures() and "no figure rendered" in report.failures()
