"""A probe that fits: stopping once the validation F1 has plateaued (each model keeps its best check, whatever its
batch mates do), and the tuned-threshold F1 beside the fixed one in Table III."""

import dataclasses

import numpy as np
import pytest

from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.metrics import macro_f1
from dinoxfer_lib.probes import ProbeConfig, run_probe_suite, train_mlps

CLASSES = ("a", "b", "c")
# a high rate and many epochs: validation F1 peaks early, then the models only overfit
PLATEAU = ProbeConfig(hidden=(32,), lr=1e-2, epochs=60, batch_size=32, monitor_every=1, plateau_patience=3,
                      plateau_min_delta=0.0)


def noisy(n=240, d=12, seed=0):
    """Three classes along three directions, with enough noise that validation F1 stays well below 1."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, 3)) < 0.35
    features = (labels @ rng.normal(size=(3, d)) * 1.2 + rng.normal(size=(n, d)) * 1.5).astype(np.float32)
    return features, labels


@pytest.fixture(scope="module")
def data():
    features, labels = noisy()
    return features, labels, make_split(labels, n_folds=3, seed=0)


def train(features, labels, split, config, *, sets=(0,), folds=(0,)):
    stacked = features if features.ndim == 3 else features[None]
    return train_mlps(stacked, labels, sets=[s for s in sets for _ in folds],
                      train_rows=[split.folds[f][0] for _ in sets for f in folds],
                      keys=[100 * s + f for s in sets for f in folds], config=config, device="cpu",
                      monitor_rows=[split.folds[f][1] for _ in sets for f in folds], monitor_every=1)


def test_models_stop_on_a_plateau_and_keep_their_best_check(data):
    features, labels, split = data
    trained = train(features, labels, split, PLATEAU, folds=(0, 1, 2))
    stop = (~np.isnan(trained.loss)).sum(0)  # epochs each model trained
    assert (stop < PLATEAU.epochs).all(), stop  # none needed the maximum
    for m, fold in enumerate(range(3)):
        curve = trained.monitor_f1[: stop[m], m]
        assert trained.kept_epoch[m] == np.argmax(curve) + 1  # the first best check
        assert stop[m] - trained.kept_epoch[m] == PLATEAU.plateau_patience  # then `patience` checks without a rise
        val = split.folds[fold][1]
        probs = trained.predict_proba(val)[m]
        assert macro_f1(labels[val], probs >= 0.5) == pytest.approx(curve.max(), abs=1e-6)  # its best weights


def test_a_stopped_model_does_not_depend_on_its_batch_mates(data):
    """Models stop at different checks, and the batch drops each stopped one: whoever stops first, every model
    ends as it would have trained alone (its weights, its kept epoch, its curve)."""
    features, labels, split = data
    other = np.random.default_rng(5).normal(size=features.shape).astype(np.float32)  # a batch mate that learns nothing
    both = np.stack([features, other])
    together = train(both, labels, split, PLATEAU, sets=(0, 1))
    stops = (~np.isnan(together.loss)).sum(0)
    assert stops[0] != stops[1], stops  # one model trains on after the other has stopped
    for m in (0, 1):
        alone = train(both, labels, split, PLATEAU, sets=(m,))  # the same key, so the same start and draws
        assert together.kept_epoch[m] == alone.kept_epoch[0]
        np.testing.assert_allclose(together.predict_proba()[m], alone.predict_proba()[0], atol=1e-6)
        np.testing.assert_array_equal(np.isnan(together.loss[:, m]), np.isnan(alone.loss[:, 0]))
        np.testing.assert_allclose(together.loss[:, m], alone.loss[:, 0], atol=1e-6)


def test_without_patience_every_epoch_is_trained_and_the_last_kept(data):
    features, labels, split = data
    config = dataclasses.replace(PLATEAU, plateau_patience=0, epochs=8)
    trained = train(features, labels, split, config, folds=(0, 1))
    assert not np.isnan(trained.loss).any() and (trained.kept_epoch == 8).all()


def test_suite_history_ends_at_each_models_stop_and_marks_the_kept_epoch(data):
    features, labels, split = data
    result = run_probe_suite({"x": features}, labels, split=split, config=PLATEAU, class_names=CLASSES)
    for _, curve in result.history.groupby("fold"):
        assert curve["kept"].sum() == 1
        kept = curve.loc[curve["kept"], "epoch"].item()
        assert curve["val_macro_f1"].max() == curve.loc[curve["kept"], "val_macro_f1"].item()
        assert curve["epoch"].max() == kept + PLATEAU.plateau_patience < PLATEAU.epochs
        assert not curve["loss"].isna().any()


def test_plateau_stopping_needs_validation_checks(data):
    features, labels, split = data
    with pytest.raises(ConfigError, match="probe.plateau_patience"):
        dataclasses.replace(PLATEAU, monitor_every=0).validate("probe")
    with pytest.raises(ConfigError, match="plateau_patience"):
        run_probe_suite({"x": features}, labels, split=split, config=PLATEAU, class_names=CLASSES, monitor_every=0)
    with pytest.raises(ConfigError, match="probe.plateau_min_delta"):
        dataclasses.replace(PLATEAU, plateau_min_delta=-0.1).validate("probe")


def test_table_reports_tuned_thresholds_as_a_second_column(data):
    features, labels, split = data
    config = ProbeConfig(hidden=(32,), lr=3e-3, epochs=10, batch_size=32, tune_thresholds=True, monitor_every=0)
    result = run_probe_suite({"x": features}, labels, split=split, config=config, class_names=CLASSES)
    table, tuned = result.table(), result.table(threshold="tuned")
    assert table["test_f1_tuned_mean"].item() == pytest.approx(tuned["test_f1_mean"].item())
    assert table["test_f1_tuned_std"].item() == pytest.approx(tuned["test_f1_std"].item())
    assert "test_f1_tuned_mean" not in tuned.columns
    untuned = run_probe_suite({"x": features}, labels, split=split,
                              config=dataclasses.replace(config, tune_thresholds=False), class_names=CLASSES)
    assert "test_f1_tuned_mean" not in untuned.table().columns
