"""The results chapters' stages and tables: stored probe results reload exactly, Table III sits beside the paper's
values, Figure 2 shows test images only, and the error gallery really lists wrong decisions."""

import re

import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib import paper, pipeline
from dinoxfer_lib.report import classifier, predictions
from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.pl import results as pl_results
from dinoxfer_lib.probes import ProbeConfig, ProbeResult, run_probe_comparison

CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def toy():
    """Two embedding sets named like Table III rows, one informative and one noise, on a 3-class problem."""
    rng = np.random.default_rng(0)
    labels = rng.random((150, 3)) < 0.35
    labels[labels.sum(1) == 0, 0] = True
    informative = (labels * 3.0 + rng.normal(size=(150, 3))).astype(np.float32)
    sets = {"hpa_mapping": informative, "imagenet_mapping": rng.normal(size=(150, 3)).astype(np.float32)}
    split = make_split(labels, n_folds=3, seed=0)
    config = ProbeConfig(epochs=15, lr=3e-3, batch_size=32, tune_thresholds=True, knn_k=(1, 3))
    result = run_probe_comparison(sets, labels, split=split, config=config, class_names=CLASSES, seed=0,
                                  monitor_every=5)
    return result, labels


def test_probe_result_round_trips_through_its_files(toy, tmp_path):
    result, _ = toy
    result.save(tmp_path)
    loaded = ProbeResult.load(tmp_path)
    pd.testing.assert_frame_equal(loaded.table(), result.table())
    pd.testing.assert_frame_equal(loaded.table(threshold="tuned"), result.table(threshold="tuned"))
    assert loaded.test_probs.keys() == result.test_probs.keys()
    assert all(np.array_equal(loaded.test_probs[k], result.test_probs[k]) for k in result.test_probs)
    assert np.array_equal(loaded.test_index, result.test_index) and loaded.class_names == CLASSES
    assert loaded.best_fold("hpa_mapping") == result.best_fold("hpa_mapping")


def test_table_iii_puts_the_papers_numbers_beside_ours_in_table_order(toy):
    result, _ = toy
    table = classifier.table_iii(result)
    assert list(table["set"]) == ["imagenet_mapping", "hpa_mapping"]  # Table III order, not run order
    assert table.set_index("set").loc["hpa_mapping", "paper_mean"] == paper.TABLE_III["hpa_mapping"][0]
    ours = result.table().query("probe == 'mlp'").set_index("set")["test_f1_mean"]
    assert table.set_index("set")["test_f1_mean"].to_dict() == ours.to_dict()
    # the informative set must beat noise, or the probe learned nothing
    assert ours["hpa_mapping"] > ours["imagenet_mapping"] + 0.2
    shown = classifier.format_table_iii(table)
    assert shown["macro F1, paper"].iloc[1] == "0.8221 ± 0.0062 (HPA FOV)"  # the paper's weights named
    assert all(re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", cell) for cell in shown["macro F1, this run (test)"])
    labelled = classifier.table_iii(result, weights={"hpa": "DINO on HPA data (HPA Kaggle layout), this run"})
    assert labelled.set_index("set").loc["hpa_mapping", "weights"].startswith("DINO on HPA data")
    assert labelled.set_index("set").loc["imagenet_mapping", "weights"] == "ImageNet-1k"  # not given: the paper's
    assert "synthetic" in classifier.table_iii_note(table, synthetic=True)
    with pytest.raises(DataError, match="no 'svm' probe"):
        classifier.table_iii(result, probe="svm")


def test_table_iii_scores_the_classes_the_data_use_beside_all_of_them(toy):
    result, labels = toy
    present = result.class_names[:2]
    table = classifier.table_iii(result, present=present)
    scores = result.scores
    test = scores[(scores["subset"] == "test") & (scores["metric"] == "f1") & (scores["probe"] == "mlp")
                  & (scores["threshold"] == "0.5") & (scores["set"] == "hpa_mapping")]
    by_hand = test[test["class"].isin(present)].groupby("fold")["value"].mean()
    row = table.set_index("set").loc["hpa_mapping"]
    assert row["present_f1_mean"] == pytest.approx(by_hand.mean()) and row["present_f1_std"] == pytest.approx(
        by_hand.std(ddof=1))
    assert f"over the {len(present)} classes present" in " ".join(classifier.format_table_iii(table).columns)
    assert "present_f1_mean" not in classifier.table_iii(result, present=result.class_names)  # all used: one F1


def test_prediction_table_refuses_images_outside_the_test_split(toy):
    result, labels = toy
    image = int(result.test_index[0])
    table = predictions.prediction_table(result, labels, set_name="hpa_mapping", fold=0, image=image)
    expected = result.probs("hpa_mapping")[0, 0]
    shown = set(np.flatnonzero(labels[image] | (expected >= 0.5)))
    assert set(table["class"]) == {CLASSES[k] for k in shown}
    training_image = int(np.setdiff1d(np.arange(len(labels)), result.test_index)[0])
    with pytest.raises(DataError, match="not in the test split"):
        predictions.prediction_table(result, labels, set_name="hpa_mapping", fold=0, image=training_image)


def test_confident_errors_are_wrong_and_ranked(toy):
    result, labels = toy
    errors = predictions.confident_errors(result, labels, set_name="imagenet_mapping", fold=0, n=5)
    assert len(errors) == 5 and errors["image"].is_unique
    probs = result.probs("imagenet_mapping")[0]
    for _, row in errors.iterrows():
        k = CLASSES.index(row["class"])
        position = int(np.flatnonzero(result.test_index == row["image"])[0])
        assert (probs[position, k] >= 0.5) != labels[row["image"], k]  # a wrong decision
    margins = (errors["probability"] - 0.5).abs().to_numpy()
    assert np.all(np.diff(margins) <= 1e-3)  # most confident first (probabilities are rounded)
    picks = predictions.example_test_images(result, labels, set_name="hpa_mapping", fold=0)
    assert len(picks) == 2 and set(picks) <= set(result.test_index)
    # as the paper's Figure 2: both images predicted exactly right (this informative set gets enough of them right)
    position = [int(np.flatnonzero(result.test_index == image)[0]) for image in picks]
    predicted = result.probs("hpa_mapping")[0][position] >= 0.5
    assert (predicted == labels[picks]).all()


def test_recipe_table_marks_every_departure_from_the_paper():
    table = classifier.probe_recipe_table(ProbeConfig(epochs=30, lr=3e-3))
    assert set(table.index[table["differs"] == "yes"]) == {"epochs", "lr"}
    assert table.loc["epochs", "paper"] == "300"


def test_result_figures_draw(toy):
    result, labels = toy
    table = classifier.table_iii(result)
    for fig in (pl_results.plot_f1_by_configuration(table), pl_results.plot_train_test_gap(table),
                pl_results.plot_probe_comparison(classifier.probe_comparison(result)),
                pl_results.plot_probe_training(result.history)):
        assert fig.axes and fig.axes[0].has_data()


PROBES = {"epochs": 2, "compare": ["knn"], "knn_k": [1], "low_label_fractions": [0.5, 1.0], "low_label_seeds": 1,
          "low_label_folds": 1}


def test_probe_stages_store_results_and_recompute_when_the_recipe_changes(tmp_path, small_run):
    run = pipeline.open_run("smoke", {**small_run, "probe": PROBES}, runs_root=tmp_path)
    by_image = pipeline.load_probe_results(run)
    assert set(by_image.table()["probe"]) == {"mlp", "knn1"}
    assert (tmp_path / "smoke" / "probes" / "opencell_by_image" / "scores.csv").is_file()
    grouped = pipeline.load_probe_results(run, grouped=True)
    assert set(grouped.table()["probe"]) == {"mlp"}  # the leakage-free split repeats Table III's probe
    assert list(classifier.split_comparison(by_image, grouped)["set"]) == list(paper.TABLE_III)  # the paper's five
    curves = pipeline.load_low_label_curves(run)
    assert set(curves["fraction"]) == {0.5, 1.0} and set(curves["fold"]) == {0}
    assert set(curves["set"]) == set(paper.TABLE_III)
    changed = pipeline.open_run("smoke", {**small_run, "probe": {**PROBES, "epochs": 3}}, runs_root=tmp_path)
    pipeline.load_probe_results(changed)
    events = (tmp_path / "smoke" / "events.jsonl").read_text()
    assert events.count('"stage": "probes/opencell_by_image", "action": "computed"') == 2
