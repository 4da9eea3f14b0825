"""Fixtures shared by test modules.

The smoke book is run and built once per test session: both the smoke-book tests and the browser check of the
built pages read the same run and the same HTML, so the notebooks execute once and Jupyter Book builds once.
"""

import copy
import time
from pathlib import Path

import pytest

from dinoxfer_lib.book import build_book
from dinoxfer_lib.runner import run_notebooks

REPO = Path(__file__).resolve().parents[1]
# A profile small enough for a stage test to run in seconds: every domain synthetic at 32 px, three folds, DINO
# batches small enough for the 12 natural images (a stage that embeds trains the backbones it needs first).
_SMALL_RUN = {
    "data": {
        "opencell": {"n_images": 90, "n_groups": 30, "n_batches": 2, "image_size": 32},
        "hpa": {"n_images": 24, "n_groups": 8, "n_batches": 2, "image_size": 32},
        "natural": {"n_images": 12, "n_groups": 4, "image_size": 32},
    },
    "split": {"n_folds": 3},
    "embed": {"img_size": 32, "batch_size": 64},
    "dino": {"batch_size": 8, "n_local_crops": 1},
    "dinov2": {"recipe": {"batch_size": 8, "n_local_crops": 1}, "boc_images_per_source": 8},
}


@pytest.fixture
def small_run():
    """Overrides of the smoke profile for stage tests (a fresh copy: a test may add its own sections)."""
    return copy.deepcopy(_SMALL_RUN)


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


@pytest.fixture
def tiny_embedding_set():
    """A factory of small OpenCell-like embedding sets for the explorer: ``make(n, seed) -> (adata, images)``.

    Images are blurred blobs on a dark field (they compress like microscopy, unlike noise); the AnnData has what
    ``extract_embeddings`` writes plus a layout in ``obsm["X_umap"]``.
    """
    import anndata
    import numpy as np
    import pandas as pd
    from scipy.ndimage import gaussian_filter

    from dinoxfer_lib.data.classes import OPENCELL_CHANNELS, OPENCELL_CLASSES
    from dinoxfer_lib.data.dataset import ImageSet

    def make(n: int = 40, seed: int = 0, size: int = 24):
        rng = np.random.default_rng(seed)
        spots = np.zeros((n, 2, size, size), dtype=np.float32)
        rows, cols = rng.integers(2, size - 2, (2, n, 2, 6))
        for i in range(n):
            for channel in range(2):
                spots[i, channel, rows[i, channel], cols[i, channel]] = 1.0
        images = (gaussian_filter(spots, sigma=(0, 0, 2, 2)) * 60_000 + 200).astype(np.uint16)
        classes = OPENCELL_CLASSES[:5]
        grades = np.zeros((n, len(classes)), dtype=np.int8)
        grades[np.arange(n), rng.integers(0, len(classes), n)] = 3
        grades[rng.random((n, len(classes))) < 0.15] = 1
        obs = pd.DataFrame({"image_id": [f"oc_{i:04d}" for i in range(n)],
                            "group": [f"P{i // 4:03d}" for i in range(n)],
                            "batch": [f"plate{i % 3}" for i in range(n)], "domain": "opencell"})
        dataset = ImageSet(images=images, labels=grades > 0, grades=grades, obs=obs, class_names=classes,
                           channel_names=OPENCELL_CHANNELS, domain="opencell", synthetic=True)
        adata = anndata.AnnData(X=rng.normal(size=(n, 8)).astype(np.float32), obs=obs.set_index("image_id", drop=False))
        adata.obs_names = obs["image_id"].to_numpy()
        adata.obsm["grades"], adata.obsm["labels"] = grades, (grades > 0).astype(np.uint8)
        adata.obsm["X_umap"] = rng.normal(size=(n, 2))
        adata.uns["class_names"] = list(classes)
        adata.uns["embedding"] = {"set": "tiny_set"}
        return adata, dataset

    return make
