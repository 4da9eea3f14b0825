"""Domain embeddings through the store, the transfer matrix, distance against F1, the notes and the figures."""

import json

import anndata
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dinoxfer_lib import pipeline
from dinoxfer_lib.config import SplitConfig
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.pl import analysis as pl_analysis
from dinoxfer_lib.probes import ProbeConfig
from dinoxfer_lib.pipeline import data as pipeline_data
from dinoxfer_lib.report import harmony as report_harmony, shift as report_shift
from dinoxfer_lib.tl.config import AnalysisConfig
from dinoxfer_lib.tl.harmony import SPACES, correct_embeddings
from dinoxfer_lib.tl.mixing import mixing_table
from dinoxfer_lib.tl.shift import pooled_pca, shift_tables
from dinoxfer_lib.tl.transfer import transfer_matrix

FAST = ProbeConfig(hidden=(16,), lr=3e-3, epochs=5, batch_size=32)


def toy_domain(n, d=12, shift=0.0, seed=0, classes=("a", "b", "c")):
    """An AnnData of one labelled domain: labels that shift the features, groups and plates."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, len(classes))) < 0.4
    X = (labels @ rng.normal(0, 3, (len(classes), d)) + rng.normal(shift, 1, (n, d))).astype(np.float32)
    obs = pd.DataFrame({"group": [f"g{i % 10}" for i in range(n)], "batch": [f"plate{i % 3}" for i in range(n)]},
                       index=[f"img{i}" for i in range(n)])
    adata = anndata.AnnData(X=X, obs=obs)
    adata.obsm["labels"] = labels.astype(np.uint8)
    adata.obsm["grades"] = labels.astype(np.int8) * 3
    adata.uns["class_names"] = list(classes)
    return adata


def test_domain_embeddings_share_one_width_and_are_reused(tmp_path, small_run):
    small_run["analysis"] = {"max_images_per_domain": 20}
    run = pipeline.open_run("smoke", small_run, runs_root=tmp_path)
    embedded = pipeline.load_domain_embeddings(run, "hpa", ("opencell", "natural"))
    assert {d: a.shape for d, a in embedded.items()} == {"opencell": (20, 192), "natural": (12, 192)}
    assert embedded["opencell"].uns["embedding"]["strategy"] == "bag_of_channels"
    assert embedded["opencell"].uns["embedding"]["reduce"] == "mean"
    again = pipeline.load_domain_embeddings(pipeline.open_run("smoke", small_run, runs_root=tmp_path), "hpa",
                                            ("opencell",))
    np.testing.assert_array_equal(again["opencell"].X, embedded["opencell"].X)
    events = [json.loads(line) for line in (tmp_path / "smoke" / "events.jsonl").read_text().splitlines()]
    assert {"stage": "domain_embeddings/hpa/opencell", "action": "reused"}.items() <= events[-1].items()
    with pytest.raises(ConfigError, match="unknown backbone"):
        pipeline.load_domain_embeddings(run, "imagenet")


def test_sample_indices_are_seeded_sorted_and_capped():
    first = pipeline_data.sample_indices(100, max_images=10, seed=3)
    np.testing.assert_array_equal(first, pipeline_data.sample_indices(100, max_images=10, seed=3))
    assert len(first) == 10 and np.all(np.diff(first) > 0)
    assert len(pipeline_data.sample_indices(5, max_images=10, seed=0)) == 5


def test_transfer_matrix_has_one_cell_per_backbone_and_domain():
    embeddings = {backbone: {"opencell": toy_domain(90, seed=1), "hpa": toy_domain(90, seed=2, classes=("x", "y"))}
                  for backbone in ("natural", "hpa")}
    table = transfer_matrix(embeddings, split_config=SplitConfig(n_folds=3), probe_config=FAST, seed=0)
    assert sorted(zip(table["backbone"], table["domain"])) == [
        ("hpa", "hpa"), ("hpa", "opencell"), ("natural", "hpa"), ("natural", "opencell")]
    assert table["test_f1_mean"].between(0, 1).all() and (table["n_images"] == 90).all()
    embeddings["hpa"]["opencell"] = toy_domain(90, seed=1)[::-1].copy()
    with pytest.raises(DataError, match="other opencell images"):
        transfer_matrix(embeddings, split_config=SplitConfig(n_folds=3), probe_config=FAST)


def test_distance_vs_f1_pairs_each_table_iii_set_with_its_backbone_distance():
    per_domain = {"opencell": toy_domain(60, seed=0).X, "hpa": toy_domain(60, shift=1, seed=1).X,
                  "natural": toy_domain(60, shift=4, seed=2).X}
    frechet, probes = shift_tables({b: per_domain for b in ("natural", "hpa", "opencell")}, resamples=3, folds=3)
    f1 = pd.DataFrame({"set": ["imagenet_mapping", "opencell_native", "not_a_set", "opencell_native"],
                       "probe": ["mlp", "mlp", "mlp", "knn_1"], "test_f1_mean": [0.5, 0.6, 0.1, 0.9],
                       "test_f1_std": [0.01, 0.02, 0.0, 0.0]})
    relation = report_shift.distance_vs_f1(frechet, f1, target="opencell")
    assert list(relation["set"]) == ["imagenet_mapping", "opencell_native"]
    native = relation.set_index("set").loc["opencell_native"]
    assert native["distance"] == native["floor"]  # its own domain: the within-domain floor
    assert relation.set_index("set").loc["imagenet_mapping", "paper_f1"] == pytest.approx(0.8057)
    assert "closest pair" in report_shift.shift_note(frechet, probes)
    for figure in (pl_analysis.plot_frechet(frechet), pl_analysis.plot_domain_probe(probes),
                   pl_analysis.plot_distance_vs_f1(relation),
                   pl_analysis.plot_pca_by_domain({"hpa": pooled_pca(per_domain)})):
        assert isinstance(figure, Figure) and figure.axes


def test_harmony_figures_and_note_from_one_toy_run():
    config = AnalysisConfig(n_pcs=6, umap_n_neighbors=8, umap_n_epochs=20, lisi_perplexity=10, knn_k=5)
    corrected = correct_embeddings({"toy": toy_domain(80)}, config, seed=0)
    scores = mixing_table(corrected, spaces=SPACES, perplexity=10, k=5)
    text = report_harmony.harmony_note(scores)
    assert "scaled iLISI" in text and "across the 1 set(s)" in text
    assert len(pl_analysis.plot_harmony_umaps(corrected).axes) == 4
    assert len([ax for ax in pl_analysis.plot_umap_by_class(corrected["toy"], n_cols=2).axes if ax.axison]) == 3
    assert pl_analysis.plot_umap_by_group(corrected["toy"], n_groups=3).axes
    assert len(pl_analysis.plot_mixing_scores(scores).axes) == 4
    transfer = pd.DataFrame({"backbone": ["hpa", "natural"], "domain": "opencell", "test_f1_mean": [0.6, 0.3],
                             "test_f1_std": [0.02, 0.03]})
    assert "**hpa** backbone gives the highest" in report_shift.transfer_note(transfer)
    assert pl_analysis.plot_transfer_matrix(transfer).axes
