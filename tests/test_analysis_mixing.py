"""Mixing scores (LISI, silhouette, k-NN accuracy) on cases with known answers, and Harmony on a planted batch effect."""

import anndata
import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib.config import load_config
from dinoxfer_lib.errors import ConfigError, DataError, MissingField
from dinoxfer_lib.tl.config import AnalysisConfig
from dinoxfer_lib.tl.harmony import (
    HARMONY_KEY, PCA_KEY, SPACES, UMAP_HARMONY_KEY, UMAP_KEY, correct_embeddings, harmonize, timing_table,
    usable_covariates,
)
from dinoxfer_lib.tl.mixing import (
    UNLABELLED, knn_label_accuracy, lisi, mixing_scores, mixing_table, primary_labels,
)
from dinoxfer_lib.tl.reduce import pca


def planted_batches(n_per_cell=40, n_labels=4, n_batches=3, d=20, batch_shift=2.0, seed=0):
    """Label clusters in ``d`` dimensions; every batch adds its own large offset to all of its points."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (n_labels, d))
    offsets = rng.normal(0, batch_shift, (n_batches, d))
    labels = np.repeat(np.arange(n_labels), n_batches * n_per_cell)
    batches = np.tile(np.repeat(np.arange(n_batches), n_per_cell), n_labels)
    X = centres[labels] + offsets[batches] + rng.normal(0, 1, (len(labels), d))
    return X, np.array([f"c{k}" for k in labels]), np.array([f"plate{b}" for b in batches])


# ---- LISI known answers


def test_lisi_is_one_when_every_neighbourhood_holds_one_batch():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (100, 5)), rng.normal(500, 1, (100, 5))])
    np.testing.assert_allclose(lisi(X, np.repeat(["a", "b"], 100), perplexity=10), 1.0)


def test_lisi_exact_value_when_neighbourhoods_are_known():
    """20 far-apart sites, each with 50 points of batch a and 50 of b at one location: with perplexity 33 the
    3 x 33 = 99 neighbours of a point are exactly the other 99 points of its site, all at distance 0 (equal
    weights): 49 of its own batch and 50 of the other, so LISI = 99² / (49² + 50²)."""
    sites = np.repeat(np.arange(20) * 1000.0, 100)[:, None] * np.ones((1, 3))
    batches = np.tile(np.repeat(["a", "b"], 50), 20)
    expected = 99**2 / (49**2 + 50**2)
    np.testing.assert_allclose(lisi(sites, batches, perplexity=33), expected, rtol=1e-9)


def test_lisi_of_random_batches_approaches_the_number_of_batches():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 5))
    values = lisi(X, rng.choice(["a", "b", "c"], 1500), perplexity=30)
    assert 2.5 < values.mean() <= 3.0


def test_lisi_shrinks_perplexity_on_small_data():
    rng = np.random.default_rng(0)
    values = lisi(rng.normal(size=(12, 3)), ["a", "b"] * 6, perplexity=30)
    assert values.shape == (12,) and np.all((values >= 1) & (values <= 2))


def test_lisi_rejects_bad_input():
    with pytest.raises(DataError, match="entries for 10 points"):
        lisi(np.zeros((10, 2)), ["a"] * 9)
    with pytest.raises(DataError, match="NaN"):
        lisi(np.full((10, 2), np.nan), ["a"] * 10)


# ---- other scores


def test_primary_label_is_the_strongest_grade_and_ties_go_to_the_rarer_class():
    grades = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
    # class a is in 4 images, b in 2: the tie in row 1 goes to b
    np.testing.assert_array_equal(primary_labels(grades, ["a", "b", "c"]), ["a", "b", UNLABELLED, "a", "a"])
    with pytest.raises(DataError, match="3 classes"):
        primary_labels(np.zeros((2, 2)), ["a", "b", "c"])


def test_knn_label_accuracy_is_one_on_separated_clusters_and_chance_on_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 100)
    separated = np.vstack([rng.normal(0, 1, (100, 4)), rng.normal(50, 1, (100, 4))])
    assert knn_label_accuracy(separated, labels, k=5) == 1.0
    assert abs(knn_label_accuracy(rng.normal(size=(200, 4)), labels, k=5) - 0.5) < 0.15


def test_mixing_scores_without_plates_score_labels_only_and_need_two_labels():
    X = np.random.default_rng(0).normal(size=(40, 3))
    one_plate = mixing_scores(X, batches=["p"] * 40, labels=["a", "b"] * 20)
    assert np.isnan([one_plate["ilisi"], one_plate["ilisi_scaled"], one_plate["batch_silhouette"]]).all()
    assert np.isfinite(one_plate["clisi_scaled"]) and one_plate["n_batches"] == 1
    with pytest.raises(DataError, match="2 distinct labels"):
        mixing_scores(X, batches=["p", "q"] * 20, labels=["a"] * 40)


# ---- Harmony


def test_harmony_removes_a_planted_batch_effect_and_keeps_the_labels():
    X, labels, batches = planted_batches()
    obs = pd.DataFrame({"batch": batches})
    pcs, _ = pca(X, n_components=10)
    corrected, used = harmonize(pcs, obs, covariates=("batch", "cell_line"), seed=0)
    assert used == ("batch",)  # cell_line is not in obs: skipped, and said so
    before = mixing_scores(pcs, batches=batches, labels=labels, perplexity=20)
    after = mixing_scores(corrected, batches=batches, labels=labels, perplexity=20)
    assert before["ilisi_scaled"] < 0.2  # plates form their own clusters
    assert after["ilisi_scaled"] > before["ilisi_scaled"] + 0.4  # ... and Harmony mixes them
    assert after["batch_silhouette"] < before["batch_silhouette"]
    assert after["clisi_scaled"] > 0.8 and after["knn_label_accuracy"] > 0.9  # labels stay apart


def test_harmony_needs_a_covariate_with_two_levels_and_leaves_the_data_alone_without_one():
    obs = pd.DataFrame({"batch": ["p"] * 30})
    with pytest.raises(MissingField, match="no Harmony covariate"):
        usable_covariates(obs, ("batch", "cell_line"))
    pcs = np.random.default_rng(0).normal(size=(30, 4))
    corrected, used = harmonize(pcs, obs, covariates=("batch", "cell_line"))
    assert used == () and np.allclose(corrected, pcs)


def test_correct_embeddings_writes_the_scanpy_slots_and_scores_improve():
    X, labels, batches = planted_batches(n_per_cell=20)
    codes = pd.factorize(labels)[0]
    adata = anndata.AnnData(X=X.astype(np.float32), obs=pd.DataFrame({"batch": batches}, index=[str(i) for i in range(len(X))]))
    adata.obsm["grades"] = np.eye(4, dtype=np.int8)[codes] * 3
    adata.obsm["labels"] = np.eye(4, dtype=np.uint8)[codes]
    adata.uns["class_names"] = ["c0", "c1", "c2", "c3"]
    config = AnalysisConfig(n_pcs=8, umap_n_neighbors=10, umap_n_epochs=30)
    corrected = correct_embeddings({"toy": adata}, config, seed=0)["toy"]
    assert corrected.obsm[PCA_KEY].shape == corrected.obsm[HARMONY_KEY].shape == (len(X), 8)
    assert corrected.obsm[UMAP_KEY].shape == corrected.obsm[UMAP_HARMONY_KEY].shape == (len(X), 2)
    assert corrected.uns["harmony"]["covariates"] == ["batch"]
    assert PCA_KEY not in adata.obsm  # the input is left alone
    again = correct_embeddings({"toy": adata}, config, seed=0)["toy"]
    np.testing.assert_array_equal(again.obsm[UMAP_KEY], corrected.obsm[UMAP_KEY])  # seeded: same layout
    table = mixing_table({"toy": corrected}, spaces=SPACES, perplexity=15, k=10)
    scores = table.set_index("space")
    assert scores.loc["after Harmony", "ilisi"] > scores.loc["before Harmony", "ilisi"]
    assert list(timing_table({"toy": corrected}).columns) == ["pca", "harmony", "umap (2 layouts)", "total"]


# ---- config


def test_analysis_config_is_registered_and_validated():
    assert load_config("smoke").analysis.n_pcs == 10
    with pytest.raises(ConfigError, match="analysis.n_pcs"):
        load_config("smoke", {"analysis": {"n_pcs": 1}})
    with pytest.raises(ConfigError, match="analysis.umap_nneighbors"):
        load_config("smoke", {"analysis": {"umap_nneighbors": 5}})
    with pytest.raises(ConfigError, match="analysis.harmony_covariates"):
        load_config("smoke", {"analysis": {"harmony_covariates": []}})
