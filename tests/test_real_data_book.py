"""The whole book on data in the documented real layouts: every chapter runs, and every page speaks of that data.

The files come from ``tests/realdata.py`` (OpenCell ``annotations.csv`` + 2-channel uint16 TIFFs, HPA Kaggle
``train.csv`` + RGBY PNGs, a table of 3-channel PNGs), which knows nothing of the synthetic generator. The profile
follows *Your own data*: a shipped base, sources by layout, paths relative to the profile file.
"""

import re
from pathlib import Path

import pandas as pd
import pytest

from dinoxfer_lib.book import build_book
from dinoxfer_lib.runner import discover_notebooks, run_notebooks

from realdata import write_hpa_kaggle, write_opencell, write_table

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
# Words that describe data as the synthetic stand-ins: no page built from real data may use them about its data.
SYNTHETIC_ONLY = ("synthetic data", "stand-in", "photographs scikit-image ships", "planted", "look-alike pairs",
                  "by the generator")


@pytest.fixture(scope="module")
def real_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    write_opencell(root / "opencell", 50, size=48, seed=0, n_unlabelled=2)
    write_hpa_kaggle(root / "hpa", 24, size=48, seed=1)
    write_table(root / "photos", 24, size=48, seed=2)
    profile = root / "lab.yaml"
    profile.write_text(
        "base: smoke\n"
        "data:\n"
        "  opencell: {source: opencell, path: opencell, image_size: 32}\n"
        "  hpa: {source: hpa_kaggle, path: hpa, image_size: 32}\n"
        "  natural: {source: table, path: photos/table.csv, image_size: 32, channels: [red, green, blue]}\n"
        "split: {test_fraction: 0.25, n_folds: 3}\n"
        "dino: {batch_size: 8}\n"
        "dinov2: {recipe: {batch_size: 8}}\n")
    runs = root / "runs"
    results = run_notebooks(profile=str(profile), notebook_dir=REPO / "notebooks", runs_root=runs, log=lambda s: None)
    build_book(profile=str(profile), runs_root=runs, repo_root=REPO, output_dir=root)
    return root, results


def pages(root: Path) -> dict[str, str]:
    html = root / "_build" / "html"
    found = {"intro": (html / "book" / "intro.html").read_text()}
    found.update({p.stem: p.read_text() for p in (html / "book" / "notebooks").glob("*.html")})
    return found


def text_of(html: str) -> str:
    """The page's visible prose: tags, scripts and styles removed."""
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_chapter_runs_on_the_real_layouts(real_book):
    _, results = real_book
    assert [r.name for r in results] == [p.stem for p in discover_notebooks(REPO / "notebooks")]


def test_pages_describe_the_real_data_and_never_the_generator(real_book):
    root, _ = real_book
    shown = {name: text_of(html) for name, html in pages(root).items()}
    assert "This build: profile lab" in shown["intro"] and f"{root / 'opencell'}" in shown["intro"]
    assert "48 OpenCell images read from" in shown["01_datasets"] and "2 unlabelled row(s) dropped" in shown["01_datasets"]
    assert "24 HPA images read from" in shown["01_datasets"]
    for name, text in shown.items():
        if name == "08_adaptation_em":  # this lab gave no EM data: the EM pair is the stand-in, and says so alone
            assert "48 OpenCell images read from" in text and "synthetic Lucchi++ stand-in" in text
            continue
        lowered = text.lower()
        assert not [word for word in SYNTHETIC_ONLY if word in lowered], name
    classifier = shown["04_classifier"]
    assert "DINO on OpenCell data (OpenCell layout), this run" in classifier  # what this run's backbone is
    used = {name for column in ("grade_3", "grade_2", "grade_1")
            for cell in pd.read_csv(root / "opencell" / "annotations.csv")[column].dropna() for name in cell.split(";")}
    assert len(used) < 17 and f"macro F1 over the {len(used)} classes present" in classifier
    assert "Skipped: Harmony on the HPA images" in shown["06_umap_harmony"]  # the Kaggle layout has no plate
