"""The DINOv2 backbones as stages (Cell-DINO, Cell-DINO+, DINO BoC), their rows, and the cell-line task."""

import json

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.neighbors import NearestNeighbors

from dinoxfer_lib import pipeline
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.pipeline.dino import TRAINING_DATA_FILE, train_dinov2_backbone
from dinoxfer_lib.pipeline.probes import cell_line_labels

TINY_RECIPE = {"epochs": 2, "batch_size": 8, "out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8,
               "n_local_crops": 1, "local_crop_size": 8, "warmup_epochs": 0, "warmup_teacher_temp_epochs": 0,
               "checkpoint_every": 1}
TINY_RUN = {
    "data": {"opencell": {"n_images": 40, "image_size": 16, "n_groups": 20, "n_batches": 2},
             "hpa": {"n_images": 32, "image_size": 16, "n_groups": 16, "n_batches": 2, "n_cell_lines": 2},
             "natural": {"n_images": 12, "image_size": 16, "n_groups": 4}},
    "split": {"n_folds": 2},
    "embed": {"img_size": 16},
    "dino": {**TINY_RECIPE, "epochs": 1},
    "dinov2": {"recipe": TINY_RECIPE, "boc_images_per_source": 6},
    "probe": {"epochs": 2, "knn_k": [1, 3]},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with its three DINOv2 backbones trained once (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = pipeline.open_run("smoke", TINY_RUN, runs_root=tmp_path_factory.mktemp("runs"))
        yield run, pipeline.load_dinov2_runs(run, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_cell_dino_trains_on_hpa_and_plus_starts_from_the_natural_backbone(trained):
    run, runs = trained
    scratch, plus = runs["cell_dino"], runs["cell_dino_plus"]
    assert scratch.summary["objective"] == "dinov2" and scratch.summary["channels"] == ["protein", "microtubules",
                                                                                          "nucleus", "er"]
    assert scratch.summary["n_images"] == 32 and scratch.summary["init_from"] is None
    natural = run.store.load("dino/natural")  # trained first, as the "+" stage's input
    assert plus.summary["init_from"]["sha256"] == natural.provenance["files"][BACKBONE_FILE]["sha256"]
    assert plus.training_data["init_from"] == "dino/natural (this run)"
    # DINO weights have no LayerScale: the "+" backbone is built without, Cell-DINO with DINOv2's
    scratch_weights = load_file(scratch.artifact.path / BACKBONE_FILE)
    plus_weights = load_file(plus.artifact.path / BACKBONE_FILE)
    assert "blocks.0.ls1.gamma" in scratch_weights and "blocks.0.ls1.gamma" not in plus_weights
    assert {"dino_loss", "ibot_loss", "koleo_loss"} <= set(scratch.history.columns)
    assert train_dinov2_backbone(run, "cell_dino_plus", progress=False).reused
    with pytest.raises(ConfigError, match="unknown DINOv2 backbone 'cell_dino_xl'"):
        train_dinov2_backbone(run, "cell_dino_xl")
    too_large = pipeline.open_run("smoke", {**TINY_RUN, "dinov2": {"recipe": {**TINY_RECIPE, "batch_size": 64}}},
                                  runs_root=run.store.root.parent)
    with pytest.raises(ConfigError, match=r"'dinov2\.recipe\.batch_size' = 64: expected <= the 32 training images"):
        train_dinov2_backbone(too_large, "cell_dino")  # the message names the key the user must change


def test_dino_boc_trains_one_channel_on_a_balanced_bag_of_every_domain(trained):
    run, runs = trained
    boc = runs["dino_boc"]
    data = json.loads((boc.artifact.path / TRAINING_DATA_FILE).read_text())
    assert data["sources"] == {"natural": 6, "hpa": 6, "opencell": 6}
    assert set(data["channel_images"].values()) == {18}  # balanced: 18 channel images from each source
    assert data["mean_channels"] == pytest.approx((3 + 4 + 2) / 3)
    assert len(pipeline.load_split(run, "opencell").dev) < 40  # OpenCell's 6 come from its non-test images
    # as many epochs over the bag as a joint model over the 18 images: mean channel count x its steps
    assert boc.summary["channels"] == ["channel"] and boc.summary["n_images"] == 54 and boc.summary["epochs"] == 2
    assert boc.summary["steps"] == 2 * (54 // 8)
    assert load_file(boc.artifact.path / BACKBONE_FILE)["patch_embed.proj.weight"].shape[1] == 1


def test_boc_row_is_its_own_encoder_not_replication(trained):
    """The old bag-of-channels row summed the HPA backbone's filters: arithmetically replication, the same
    neighbours and so equal k-NN scores. Its own encoder gives each image other neighbours (scores on 40 tiny
    images are too coarse to tell apart: both can be 0)."""
    run, _ = trained
    embeddings = pipeline.load_embeddings(run, ("hpa_replication", "dino_boc"))
    boc, replication = embeddings["dino_boc"], embeddings["hpa_replication"]
    assert boc.uns["embedding"]["backbone"]["stage"] == "dino/dino_boc" and boc.n_vars == replication.n_vars

    def nearest(x) -> np.ndarray:  # each image's nearest other image
        return NearestNeighbors(n_neighbors=1).fit(np.asarray(x)).kneighbors(return_distance=False)[:, 0]

    assert (nearest(boc.X) != nearest(replication.X)).mean() > 0.2


def test_runs_list_the_dinov2_rows_they_train(trained):
    run, _ = trained
    sets = list(pipeline.load_embeddings(run))
    assert sets[-3:] == ["cell_dino_mapping", "cell_dino_plus_mapping", "dino_boc"]
    assert "hpa_bag_of_channels" not in sets
    paper_only = pipeline.open_run("smoke", {**TINY_RUN, "dinov2": {"backbones": []}}, runs_root=run.store.root.parent)
    assert list(pipeline.load_embeddings(paper_only)) == sets[:5]
    assert pipeline.transfer_backbones(run) == ("opencell", "hpa", "natural", "dino_boc")
    assert pipeline.transfer_backbones(paper_only) == pipeline.DOMAINS


def test_cell_line_task_probes_the_hpa_lines_with_the_same_probes(trained):
    run, _ = trained
    assert pipeline.has_cell_lines(run)
    result = pipeline.load_cell_line_results(run)
    hpa = pipeline.load_datasets(run, ("hpa",))["hpa"]
    assert result.class_names == tuple(sorted(hpa.obs["cell_line"].unique()))
    table = result.table()
    assert set(table["set"]) == {"imagenet_mapping", "hpa_mapping", "cell_dino_mapping", "cell_dino_plus_mapping",
                                 "dino_boc"}
    assert set(table["probe"]) == {"mlp", "linear", "knn1", "knn3"}
    split = pd.read_csv(run.store.load("probes/hpa_cell_line").path / "split.csv")
    assert len(split) == 32 and set(split["subset"]) == {"test", "dev"}
    assert pipeline.load_cell_line_results(run).table().equals(table)  # reused


def test_cell_line_task_on_a_sample_probes_the_images_it_embedded(trained):
    run, _ = trained
    sampled = pipeline.open_run("smoke", {**TINY_RUN, "dinov2": {**TINY_RUN["dinov2"], "cell_line_images": 20}},
                                runs_root=run.store.root.parent)
    pipeline.load_cell_line_results(sampled)
    split = pd.read_csv(sampled.store.load("probes/hpa_cell_line").path / "split.csv")
    embedded = anndata.read_h5ad(sampled.store.load("hpa_embeddings/hpa_mapping").path / "embeddings.h5ad")
    assert len(split) == 20 and list(split["image_id"]) == list(embedded.obs["image_id"])


def test_cell_line_labels_are_one_hot_and_need_a_cell_line_column(trained):
    run, _ = trained
    hpa = load_imageset(run.store.load("datasets/hpa").path)
    lines, labels = cell_line_labels(hpa)
    assert labels.shape == (32, len(lines)) and (labels.sum(axis=1) == 1).all()
    assert [lines[i] for i in labels.argmax(axis=1)] == list(hpa.obs["cell_line"])
    hpa.obs = hpa.obs.drop(columns="cell_line")
    with pytest.raises(DataError, match="no cell line \\(obs column 'cell_line'\\)"):
        cell_line_labels(hpa)
