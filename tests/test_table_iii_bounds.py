"""Table III's companions as stages: the ceiling and floor rows, the grade >= 2 variant, and the grouped split's own
OpenCell backbone (trained on the grouped split's training proteins only)."""

import copy
import json

import numpy as np
import pytest
from conftest import _SMALL_RUN as SMALL_RUN

from dinoxfer_lib import paper, pipeline
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.dino.train import SUMMARY_FILE
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.pipeline.dino import opencell_stage, train_backbone
from dinoxfer_lib.pipeline.probes import TARGET_SETS
from dinoxfer_lib.probes.ceiling import CEILING_PROBE, CEILING_SET, FLOOR_SET
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report import classifier


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One store for the module: its tests share the DINO backbones and embeddings they all need."""
    overrides = copy.deepcopy(SMALL_RUN)
    overrides["ceiling"] = {"widths": [8, 16], "convs_per_stage": 1, "epochs": 2, "batch_size": 16}
    overrides["probe"] = {"epochs": 2, "compare": []}
    return pipeline.open_run("smoke", overrides, runs_root=tmp_path_factory.mktemp("runs"))


def test_grouped_backbone_trains_only_on_the_grouped_splits_training_proteins(run):
    artifact = train_backbone(run, "opencell", grouped=True, progress=False)
    assert artifact.name == opencell_stage(run, True) == "dino/opencell_grouped"
    assert opencell_stage(run, False) == opencell_stage(run) == "dino/opencell"
    dataset = load_imageset(pipeline.make_dataset(run, "opencell").path)
    grouped = pipeline.load_split(run, "opencell", grouped=True)
    by_image = pipeline.load_split(run, "opencell", grouped=False)
    summary = json.loads((artifact.path / SUMMARY_FILE).read_text())
    assert summary["n_images"] == len(grouped.dev) != len(by_image.dev)
    test_proteins = set(dataset.obs["group"].to_numpy()[grouped.test])
    assert test_proteins and not test_proteins & set(dataset.obs["group"].to_numpy()[grouped.dev])
    # its split is an input: the stage is recomputed when the grouped split changes, not the by-image one
    inputs = set(artifact.provenance["inputs"])
    assert "splits/opencell_grouped" in inputs and "splits/opencell_by_image" not in inputs
    # the grouped Table III embeds its OpenCell row with this backbone, the by-image one with dino/opencell
    grouped_sets = pipeline.split_embeddings(run, grouped=True, names=("opencell_native", "hpa_mapping"))
    assert grouped_sets["opencell_native"].name == "embeddings/opencell_native_grouped"
    assert grouped_sets["hpa_mapping"].name == "embeddings/hpa_mapping"  # HPA saw no OpenCell image
    backbone = grouped_sets["opencell_native"].provenance["config"]["backbone"]
    assert backbone["stage"] == "dino/opencell_grouped"


def test_ceiling_and_floor_join_table_iii_as_its_last_rows(run):
    by_image = pipeline.load_probe_results(run)
    references = pipeline.load_reference_rows(run)
    assert set(references.test_probs) == {(CEILING_SET, CEILING_PROBE), (FLOOR_SET, "mlp")}
    assert np.array_equal(references.test_index, by_image.test_index)  # same test images: pairs are possible
    joined = ProbeResult.concat([by_image, references])
    labels = load_imageset(pipeline.make_dataset(run, "opencell").path).labels
    table = classifier.table_iii(joined, labels=labels, n_resamples=200)
    assert list(table["role"].iloc[-2:]) == ["floor", "ceiling"]
    assert (table["role"] == "table III").sum() == len(by_image.table())
    ceiling = table.set_index("role").loc["ceiling"]
    assert ceiling["of_ceiling"] == 1.0 and ceiling["probe"] == CEILING_PROBE
    best = table.attrs["best"]
    assert table.set_index("set").loc[best, "vs_best"] == 0.0
    assert (table["vs_best_low"] <= table["vs_best"]).all() and (table["vs_best"] <= table["vs_best_high"]).all()
    shown = classifier.format_table_iii(table)
    assert "share of the ceiling" in shown and any("(ceiling)" in name for name in shown.index)
    # chapter 02's trained-vs-random rows are Table III's OpenCell row and the floor: the chapters agree
    chapter_02 = pipeline.load_trained_vs_random(run).table().set_index("set")["test_f1_mean"]
    rows = table[table["probe"].isin(["mlp"])].set_index("set")["test_f1_mean"]
    assert chapter_02["random init"] == pytest.approx(rows[FLOOR_SET])
    assert chapter_02["DINO-trained"] == pytest.approx(rows["opencell_native"], abs=1e-4)
    # so are the frontier's target rows, probed alone
    targets = pipeline.load_target_rows(run).table().set_index("set")["test_f1_mean"]
    assert set(targets.index) == {*TARGET_SETS, FLOOR_SET}
    assert targets.to_dict() == pytest.approx(rows[targets.index].to_dict(), abs=1e-4)


def test_grade_two_variant_counts_only_grade_two_and_three(run):
    dataset = load_imageset(pipeline.make_dataset(run, "opencell").path)
    two = pipeline.grade_labels(dataset, 2)
    assert np.array_equal(two, dataset.grades >= 2) and two.sum() < dataset.labels.sum()
    assert np.array_equal(pipeline.grade_labels(dataset, 1), dataset.labels)
    with pytest.raises(ConfigError, match="min_grade"):
        pipeline.grade_labels(dataset, 4)
    grade1 = pipeline.load_probe_results(run)
    grade2 = pipeline.load_probe_results(run, min_grade=2)
    assert run.store.load("probes/opencell_by_image_grade2").provenance["config"]["min_grade"] == 2
    frame = classifier.grade_comparison(grade1, grade2, dataset.labels, two, n_resamples=200)
    assert set(frame["set"]) == set(paper.TABLE_III)  # the paper's five sets are retrained
    assert ((frame["low"] <= frame["difference"]) & (frame["difference"] <= frame["high"])).all()
    assert "grade 3 and 2" in classifier.grade_note(frame)
