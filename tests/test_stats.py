"""Paired statistics: known answers, shared resamples, agreement with a slow loop, and the Table III reading."""

import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib.errors import DataError
from dinoxfer_lib.metrics import macro_f1
from dinoxfer_lib.probes.result import SCORE_COLUMNS, ProbeResult
from dinoxfer_lib.stats import (
    bootstrap_difference,
    bootstrap_macro_f1,
    fold_differences,
    paired_bootstrap,
    resample_indices,
    row_bootstrap,
)

N_TEST, K, FOLDS = 40, 4, 3


def noisy_probs(truth: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """(folds, n, K) probabilities that lean towards the truth, each fold its own noise."""
    rng = np.random.default_rng(seed)
    return np.clip(truth[None] * 0.6 + 0.2 + rng.normal(0, noise, (FOLDS, *truth.shape)), 0, 1)


@pytest.fixture(scope="module")
def truth():
    return np.random.default_rng(0).random((N_TEST, K)) < 0.3


def slow_bootstrap(probs: dict, truth: np.ndarray, indices: np.ndarray, threshold: float) -> dict:
    """Reference: loop over resamples and folds, macro F1 with the project's metric on the resampled rows."""
    return {name: np.array([np.mean([macro_f1(truth[idx], p[f][idx] >= threshold) for f in range(len(p))])
                            for idx in indices]) for name, p in probs.items()}


def test_identical_rows_give_a_zero_interval(truth):
    p = noisy_probs(truth, 0.3, seed=1)
    boot = bootstrap_macro_f1({"a": p, "b": p.copy()}, truth, n_resamples=1000, seed=0)
    assert boot.difference("a", "b") == {"difference": 0.0, "low": 0.0, "high": 0.0}


def test_a_row_better_on_every_image_excludes_zero(truth):
    perfect = np.repeat(truth[None].astype(float), FOLDS, axis=0)
    wrong = 1.0 - perfect  # every image wrong in every class
    boot = bootstrap_macro_f1({"good": perfect, "bad": wrong}, truth, n_resamples=1000, seed=0)
    d = boot.difference("good", "bad")
    assert d["difference"] == pytest.approx(1.0) and d["low"] > 0.5


def test_resamples_are_shared_and_do_not_depend_on_the_rows_compared(truth):
    a, b, c = (noisy_probs(truth, 0.3, seed=s) for s in (1, 2, 3))
    both = bootstrap_macro_f1({"a": a, "b": b}, truth, n_resamples=1000, seed=7)
    alone = bootstrap_macro_f1({"c": c, "a": a}, truth, n_resamples=1000, seed=7)
    assert both.indices.shape == (1000, N_TEST)
    np.testing.assert_array_equal(both.indices, alone.indices)
    np.testing.assert_array_equal(both.indices, resample_indices(N_TEST, n_resamples=1000, seed=7))
    np.testing.assert_array_equal(both.scores[0], alone.scores[1])  # row a: same numbers beside b or beside c
    assert not np.array_equal(both.indices, resample_indices(N_TEST, n_resamples=1000, seed=8))


def test_vectorised_bootstrap_equals_a_slow_loop(truth):
    probs = {"a": noisy_probs(truth, 0.35, seed=1), "b": noisy_probs(truth, 0.5, seed=2)}
    boot = bootstrap_macro_f1(probs, truth, thresholds=0.5, n_resamples=30, seed=3)
    slow = slow_bootstrap(probs, truth, boot.indices, 0.5)
    np.testing.assert_allclose(boot.scores[0], slow["a"], atol=1e-12)
    np.testing.assert_allclose(boot.scores[1], slow["b"], atol=1e-12)
    observed = [np.mean([macro_f1(truth, p[f] >= 0.5) for f in range(FOLDS)]) for p in probs.values()]
    np.testing.assert_allclose(boot.observed, observed, atol=1e-12)


def test_per_class_thresholds_per_fold(truth):
    p = noisy_probs(truth, 0.35, seed=1)
    cuts = np.random.default_rng(0).uniform(0.3, 0.7, (FOLDS, K))
    boot = bootstrap_macro_f1({"a": p}, truth, thresholds={"a": cuts}, n_resamples=5, seed=0)
    expected = np.mean([macro_f1(truth, p[f] >= cuts[f]) for f in range(FOLDS)])
    assert boot.observed[0] == pytest.approx(expected, abs=1e-12)


def probe_result(truth: np.ndarray, rows: dict) -> ProbeResult:
    """A ProbeResult with fold-level test macro F1 computed from the given test probabilities."""
    n_total = N_TEST + 10
    test_index = np.arange(10, n_total)
    scores = []
    for (set_, probe), p in rows.items():
        for fold in range(FOLDS):
            value = macro_f1(truth, p[fold] >= 0.5)
            scores.append({"set": set_, "probe": probe, "fold": fold, "subset": "test", "threshold": "0.5",
                           "class": None, "metric": "f1", "value": value})
    return ProbeResult(scores=pd.DataFrame(scores, columns=list(SCORE_COLUMNS)), test_probs=dict(rows),
                       history=pd.DataFrame(), test_index=test_index, class_names=tuple("abcd"))


def test_paired_bootstrap_reads_a_probe_result(truth):
    rows = {("good", "mlp"): noisy_probs(truth, 0.2, seed=1), ("poor", "mlp"): noisy_probs(truth, 0.6, seed=2),
            ("ceiling", "cnn"): noisy_probs(truth, 0.1, seed=3)}
    result = probe_result(truth, rows)
    labels = np.vstack([np.zeros((10, K), bool), truth])  # the whole dataset; test rows at 10..
    frame = paired_bootstrap(result, labels, pairs=[("good", "poor"), (("ceiling", "cnn"), "good")],
                             n_resamples=1000, seed=0)
    assert list(frame["a"]) == ["good/mlp", "ceiling/cnn"] and list(frame["b"]) == ["poor/mlp", "good/mlp"]
    table_means = result.scores.groupby(["set", "probe"])["value"].mean()
    assert frame["difference"].iloc[0] == pytest.approx(table_means[("good", "mlp")] - table_means[("poor", "mlp")])
    assert (frame["low"] <= frame["difference"]).all() and (frame["difference"] <= frame["high"]).all()
    assert frame["excludes_zero"].iloc[0]
    assert len(paired_bootstrap(result, labels, n_resamples=10)) == 3  # default: every pair
    with pytest.raises(DataError, match="cover the result's test images"):
        paired_bootstrap(result, truth[:20], n_resamples=10)
    with pytest.raises(DataError, match="tuned thresholds"):
        paired_bootstrap(result, labels, threshold="tuned", n_resamples=10)


def test_fold_differences_mean_std_and_t_interval(truth):
    rows = {("a", "mlp"): noisy_probs(truth, 0.3, seed=1), ("b", "mlp"): noisy_probs(truth, 0.45, seed=2)}
    result = probe_result(truth, rows)
    frame = fold_differences(result, pairs=[("a", "b")])
    per_fold = [macro_f1(truth, rows[("a", "mlp")][f] >= 0.5) - macro_f1(truth, rows[("b", "mlp")][f] >= 0.5)
                for f in range(FOLDS)]
    row = frame.iloc[0]
    assert row["per_fold"] == pytest.approx(per_fold)
    assert row["mean"] == pytest.approx(np.mean(per_fold)) and row["std"] == pytest.approx(np.std(per_fold, ddof=1))
    half = 4.302652729911275 * np.std(per_fold, ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert (row["low"], row["high"]) == pytest.approx((np.mean(per_fold) - half, np.mean(per_fold) + half))
    same = fold_differences(probe_result(truth, {("a", "mlp"): rows[("a", "mlp")], ("c", "mlp"): rows[("a", "mlp")]}))
    assert same.iloc[0][["mean", "low", "high"]].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(DataError, match="no 'test' scores for row 'z/mlp'"):
        fold_differences(result, pairs=[("a", "z")])


def test_bootstrap_difference_paired_on_shared_resamples_and_independent_across_test_sets(truth):
    a, b = noisy_probs(truth, 0.2, seed=1), noisy_probs(truth, 0.5, seed=2)
    both = bootstrap_macro_f1({"a": a, "b": b}, truth, n_resamples=1000, seed=3)
    alone_a = bootstrap_macro_f1({"a": a}, truth, n_resamples=1000, seed=3)
    alone_b = bootstrap_macro_f1({"b": b}, truth, n_resamples=1000, seed=3)
    # the same test images and seed: the same resamples, so the difference is the paired one
    assert bootstrap_difference(alone_a, "a", alone_b, "b") == pytest.approx(both.difference("a", "b"))
    # another test set (other images, other seed): independent, so its interval is wider than the paired one
    other = np.random.default_rng(5).random((N_TEST + 7, K)) < 0.3
    elsewhere = bootstrap_macro_f1({"a": noisy_probs(other, 0.2, seed=4)}, other, n_resamples=1000, seed=4)
    d = bootstrap_difference(elsewhere, "a", alone_a, "a")
    assert d["difference"] == pytest.approx(elsewhere.observed[0] - alone_a.observed[0])
    paired = bootstrap_difference(alone_a, "a", alone_a, "a")
    assert paired == {"difference": 0.0, "low": 0.0, "high": 0.0}  # a row against itself on its own resamples
    assert d["high"] - d["low"] > 0.5 * (both.difference("a", "b")["high"] - both.difference("a", "b")["low"])
    with pytest.raises(DataError, match="1000 and 10 resamples"):
        bootstrap_difference(alone_a, "a", bootstrap_macro_f1({"b": b}, truth, n_resamples=10), "b")


def test_row_bootstrap_reads_the_rows_of_a_probe_result(truth):
    rows = {("a", "mlp"): noisy_probs(truth, 0.2, seed=1), ("c", "cnn"): noisy_probs(truth, 0.3, seed=2)}
    result = probe_result(truth, rows)
    labels = np.vstack([np.zeros((10, K), bool), truth])
    boot = row_bootstrap(result, labels, ["a", ("c", "cnn")], n_resamples=200, seed=0)
    direct = bootstrap_macro_f1({"a/mlp": rows[("a", "mlp")], "c/cnn": rows[("c", "cnn")]}, truth, n_resamples=200)
    assert boot.rows == ("a/mlp", "c/cnn") and np.array_equal(boot.scores, direct.scores)
