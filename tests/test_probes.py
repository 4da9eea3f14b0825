"""The probe protocol piece by piece, the batched trainer against the exact one-model reference, and the suite."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dinoxfer_lib.data.splits import Split, make_split
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.probes import (
    BatchedMLP, ProbeConfig, knn_fractions, low_label_curve, make_mlp, resampling_weights, run_probe_comparison,
    run_probe_suite, standardize, train_mlp_dataloader, train_mlp_sequential, train_mlps,
)
from dinoxfer_lib.probes.keyed_random import (
    derive_keys, dropout_mask, key_table, keyed_dropout, mix32, mix32_int, model_key, random_words,
)
from dinoxfer_lib.probes.mlp import make_optimizer, make_scheduler

# small and quick: the paper's lr 1e-4 needs ~1000 steps; 3e-3 reaches the same place in ~100
FAST = ProbeConfig(hidden=(64, 32), lr=3e-3, epochs=30, batch_size=64)
CLASSES = ("a", "b", "c")


def separable(n=300, d=16, seed=0):
    """Three classes, each a direction in feature space: a linear read-out separates them."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, 3)) < 0.35
    directions = rng.normal(size=(3, d))
    features = (labels @ directions * 3 + rng.normal(size=(n, d))).astype(np.float32)
    return features, labels


@pytest.fixture(scope="module")
def data():
    features, labels = separable()
    return features, labels, make_split(labels, n_folds=3, seed=0)


# ---- protocol pieces


def test_resampling_weight_inverse_to_rarest_label_count():
    labels = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    counts = labels.sum(0)  # [4, 2, 0]
    w = resampling_weights(labels)
    assert w.sum() == pytest.approx(1.0)
    rarest = np.array([4, 4, 4, 2, 2, 2, 2])  # rows 5-6 have no label: "none" counts 2
    assert counts[1] == 2
    np.testing.assert_allclose(w * rarest, (w * rarest)[0])  # w ∝ 1 / count of the rarest label
    assert w[3] == pytest.approx(2 * w[0])  # the shared image gets its rarer label's weight


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    train = rng.normal(3, 2, (100, 4))
    train[:, 3] = 7.0  # constant on the training fold
    other = rng.normal(0, 1, (10, 4))
    z_train, z_other = standardize(train, other)
    np.testing.assert_allclose(z_train[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train[:, :3].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(z_other[:, :3], (other[:, :3] - train[:, :3].mean(0)) / train[:, :3].std(0),
                               rtol=1e-5)
    np.testing.assert_allclose(z_other[:, 3], other[:, 3] - 7.0, rtol=1e-5)  # constant feature: only centred
    z_train_again, _ = standardize(train, other * 100)
    np.testing.assert_array_equal(z_train, z_train_again)  # the other sets do not leak into the statistics


def test_mlp_architecture():
    mlp = make_mlp(384, 17)
    kinds = [type(m) for m in mlp]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] == [(384, 512), (512, 256),
                                                                                          (256, 17)]
    assert all(m.p == 0.5 for m in mlp if isinstance(m, nn.Dropout))
    batched = BatchedMLP([1, 2, 3], [384, 512, 256, 17], mean=torch.zeros(3, 384), std=torch.ones(3, 384),
                         dropout=0.5)
    assert [tuple(w.shape) for w in batched.weights] == [(3, 384, 512), (3, 512, 256), (3, 256, 17)]
    assert [tuple(b.shape) for b in batched.biases] == [(3, 1, 512), (3, 1, 256), (3, 1, 17)]
    assert [type(m) for m in make_mlp(8, 2, hidden=())] == [nn.Linear]


def test_batched_dropout_rate_scale_and_eval_mode():
    batched = BatchedMLP([1, 2], [8, 4, 2], mean=torch.zeros(2, 8), std=torch.ones(2, 8), dropout=0.5)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(batched(x), batched(x))  # no keys: evaluation, deterministic
    h = torch.ones(2, 400, 500)
    dropped = keyed_dropout(h, torch.tensor([5, 6], dtype=torch.int32), 0.5)
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert (dropped == 0).float().mean().item() == pytest.approx(0.5, abs=0.005)
    assert not torch.equal(dropped[0], dropped[1])  # each model its own mask
    for p in (0.25, 0.3):  # two random bits per unit; a whole word per unit
        dropped = keyed_dropout(h[:1], torch.tensor([5], dtype=torch.int32), p)
        assert (dropped == 0).float().mean().item() == pytest.approx(p, abs=0.005)
        assert dropped.max().item() == pytest.approx(1 / (1 - p))


def test_optimizer_and_cosine_schedule():
    config = ProbeConfig(epochs=10)
    params = [nn.Parameter(torch.zeros(3))]
    optimizer = make_optimizer(params, config)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (group["lr"], group["weight_decay"], tuple(group["betas"])) == (1e-4, 0.04, (0.9, 0.999))
    scheduler = make_scheduler(optimizer, config)
    lrs = []
    for _ in range(config.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[5] == pytest.approx(0.5e-4)  # halfway down the cosine
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # after the last epoch
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_probe_config_validation():
    ProbeConfig().validate("probe")
    for field, value in [("dropout", 1.0), ("lr", 0.0), ("betas", (0.9,)), ("epochs", 0), ("knn_k", ()),
                         ("hidden", (0,)), ("threshold", 1.5)]:
        with pytest.raises(ConfigError, match=f"probe.{field}"):
            dataclasses.replace(ProbeConfig(), **{field: value}).validate("probe")


# ---- keyed random numbers


def test_hash_matches_python_reference_and_tables_match_derivation():
    values = torch.randint(-(2**31), 2**31 - 1, (1000,), dtype=torch.int32)
    hashed = mix32(values)
    assert [int(h) & 0xFFFFFFFF for h in hashed] == [mix32_int(int(v)) for v in values]
    keys = torch.tensor([model_key(0, "a", "mlp", f) for f in range(3)], dtype=torch.int32)
    table = key_table(keys, 2, (4, 3))  # (4, 3, models)
    torch.testing.assert_close(table[2, 1], derive_keys(keys, 2, 2, 1))
    alone = random_words(keys[1:2], (7, 5))
    torch.testing.assert_close(random_words(keys, (7, 5))[1:2], alone)  # a model's words ignore the batch
    mask = dropout_mask(keys, (7, 40), 0.5)  # 40 units: two words a row, the second read in part
    assert mask.shape == (3, 7, 40)
    torch.testing.assert_close(dropout_mask(keys[1:2], (7, 40), 0.5), mask[1:2])
    bits = (random_words(keys, (7, 2))[..., None] >> torch.arange(32, dtype=torch.int32)) & 1  # unit j: bit j
    torch.testing.assert_close(mask, 2.0 * bits.flatten(-2)[..., :40].float())


# ---- batched trainer == exact sequential reference


def test_batched_equals_sequential_reference():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 200, 16)).astype(np.float32)  # two sets of one dimension
    labels = rng.random((200, 5)) < 0.3
    config = ProbeConfig(epochs=3, batch_size=64)  # the paper's head, 3 steps an epoch, a short last batch
    sets, keys = [0, 1, 0], [11, 22, 33]
    train_rows = [np.arange(0, 150), np.arange(10, 150), np.arange(30, 200)]  # 150, 140, 170 images
    trained = train_mlps(features, labels, sets=sets, train_rows=train_rows, keys=keys, config=config)
    probs = trained.predict_proba()
    for m in range(3):
        reference_probs, reference_loss = train_mlp_sequential(features[sets[m]], labels, train_rows=train_rows[m],
                                                               key=keys[m], config=config)
        np.testing.assert_allclose(probs[m], reference_probs, atol=1e-5)
        np.testing.assert_allclose(trained.loss[:, m], reference_loss, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_draws_equal_cpu_draws():
    values = torch.randint(-(2**31), 2**31 - 1, (4096,), dtype=torch.int32)
    torch.testing.assert_close(mix32(values.cuda()).cpu(), mix32(values))
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(1, 120, 8)).astype(np.float32), rng.random((120, 3)) < 0.3
    config = ProbeConfig(hidden=(16,), epochs=2, batch_size=32)
    cpu = train_mlps(features, labels, sets=[0], train_rows=[np.arange(100)], keys=[5], config=config, device="cpu")
    gpu = train_mlps(features, labels, sets=[0], train_rows=[np.arange(100)], keys=[5], config=config, device="cuda")
    np.testing.assert_allclose(gpu.predict_proba(), cpu.predict_proba(), atol=1e-4)


# ---- the suite


@pytest.fixture(scope="module")
def comparison(data):
    features, labels, split = data
    config = dataclasses.replace(FAST, tune_thresholds=True)
    return run_probe_comparison({"good": features, "mirror": features[:, ::-1].copy()}, labels, split=split,
                                config=config, class_names=CLASSES, monitor_every=10)


def test_cross_validation_learns_separable_data(comparison, data):
    table = comparison.table()
    assert (table.loc[table["probe"] == "mlp", "test_f1_mean"] > 0.9).all()
    features, labels, split = data
    shuffled = np.random.default_rng(1).permutation(labels)
    chance = run_probe_suite({"good": features}, shuffled, split=split, config=FAST, class_names=CLASSES).table()
    assert chance["test_f1_mean"].iloc[0] < table["test_f1_mean"].iloc[0] - 0.3


def test_comparison_has_every_probe_on_the_same_folds(comparison, data):
    _, labels, split = data
    scores = comparison.scores
    assert set(scores["probe"]) == {"mlp", "linear", "knn1", "knn10"}
    assert set(scores["threshold"]) == {"0.5", "tuned"}
    assert set(scores["subset"]) == {"train", "val", "test"}
    assert list(scores.columns) == ["set", "probe", "fold", "subset", "threshold", "class", "metric", "value"]
    per_model = scores.groupby(["set", "probe"])["fold"].nunique()
    assert (per_model == len(split.folds)).all()
    assert comparison.probs("good", "knn10").shape == (len(split.folds), len(split.test), 3)
    assert comparison.thresholds[("good", "mlp")].shape == (len(split.folds), 3)
    history = comparison.history
    assert set(history["probe"]) == {"mlp", "linear"}
    assert history.groupby(["set", "probe", "fold"]).size().eq(FAST.epochs).all()
    assert history["val_macro_f1"].notna().sum() == 2 * 2 * len(split.folds) * 3  # epochs 10, 20, 30
    assert history.groupby(["set", "probe", "fold"])["loss"].apply(lambda x: x.iloc[-1] < x.iloc[0]).all()
    assert comparison.best_fold("good") in range(len(split.folds))
    per_class = comparison.per_class("good")
    assert list(per_class.index) == list(CLASSES) and list(per_class.columns) == ["mean", "std"]


def test_table_equals_manual_mean_and_sample_std(comparison):
    s = comparison.scores
    test = s[(s["set"] == "good") & (s["probe"] == "mlp") & (s["subset"] == "test") & s["class"].isna()
             & (s["threshold"] == "0.5")]["value"].to_numpy()
    row = comparison.table().query("set == 'good' and probe == 'mlp'").iloc[0]
    assert row["test_f1_mean"] == pytest.approx(test.mean())
    assert row["test_f1_std"] == pytest.approx(test.std(ddof=1))
    assert row["folds"] == len(test)


def test_a_sets_results_do_not_depend_on_its_batch_mates(comparison, data):
    features, labels, split = data
    config = dataclasses.replace(FAST, tune_thresholds=True)
    alone = run_probe_suite({"good": features}, labels, split=split, config=config, class_names=CLASSES)
    np.testing.assert_allclose(alone.probs("good"), comparison.probs("good"), atol=1e-5)


def test_the_same_embeddings_get_the_same_probe_under_any_name(comparison, data):
    """Chapter 02 probes the OpenCell embeddings as "DINO-trained", Table III as "opencell_native": one number."""
    features, labels, split = data
    config = dataclasses.replace(FAST, tune_thresholds=True)
    renamed = run_probe_suite({"DINO-trained": features, "noise": np.random.default_rng(2).normal(
        size=features.shape).astype(np.float32)}, labels, split=split, config=config, class_names=CLASSES)
    np.testing.assert_allclose(renamed.probs("DINO-trained"), comparison.probs("good"), atol=1e-5)
    other_seed = run_probe_suite({"good": features}, labels, split=split, config=config, class_names=CLASSES,
                                 seed=1)
    assert not np.allclose(other_seed.probs("good"), comparison.probs("good"), atol=1e-3)


def test_one_nn_on_duplicated_points_is_perfect():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 8)).astype(np.float32)
    labels = rng.random((40, 4)) < 0.4
    order = rng.permutation(40)
    fractions = knn_fractions(points, labels, points[order], ks=(1,))[1]
    np.testing.assert_array_equal(fractions >= 0.5, labels[order])
    twins = np.vstack([points, points])  # leave-one-out: each image's nearest other image is its twin
    loo = knn_fractions(twins, np.vstack([labels, labels]), twins, ks=(1,), leave_one_out=True)[1]
    np.testing.assert_array_equal(loo >= 0.5, np.vstack([labels, labels]))


def test_low_label_curve_rises_with_fraction(data):
    features, labels, split = data
    curve = low_label_curve(features, labels, split=split, config=FAST, fractions=(0.05, 0.25, 1.0), seeds=(0, 1))
    assert list(curve.columns) == ["fraction", "seed", "fold", "n_train", "test_macro_f1"]
    assert len(curve) == 3 * 2 * len(split.folds)
    assert curve.loc[curve["fraction"] == 0.05, "n_train"].min() >= 10
    means = curve.groupby("fraction")["test_macro_f1"].mean()
    assert means.is_monotonic_increasing and means[1.0] > means[0.05] + 0.1


def test_bad_features_are_data_errors(data):
    features, labels, split = data
    broken = features.copy()
    broken[3, 2] = np.nan
    with pytest.raises(DataError, match="'broken'.*NaN"):
        run_probe_suite({"fine": features, "broken": broken}, labels, split=split, config=FAST, class_names=CLASSES)
    with pytest.raises(DataError, match="'short' has 299 rows"):
        run_probe_suite({"short": features[:-1]}, labels, split=split, config=FAST, class_names=CLASSES)
    with pytest.raises(DataError, match="class names"):
        run_probe_suite({"fine": features}, labels, split=split, config=FAST, class_names=("a", "b"))
    with pytest.raises(ConfigError, match="unknown probe"):
        run_probe_comparison({"fine": features}, labels, split=split, config=FAST, class_names=CLASSES,
                             probes=("svm",))
    other = Split(test=np.arange(5), folds=((np.arange(5, 10), np.arange(10, 15)),), grouped=False, seed=0)
    with pytest.raises(DataError, match="split covers 10 images"):
        run_probe_suite({"fine": features}, labels, split=other, config=FAST, class_names=CLASSES)


def test_dataloader_reference_learns(data):
    features, labels, split = data
    train, val = split.folds[0]
    probs, loss = train_mlp_dataloader(features[train], labels[train], features[split.test], config=FAST)
    assert probs.shape == (len(split.test), 3) and loss[-1] < loss[0]


def test_bench_runs_and_reports_a_ratio():
    from dinoxfer_lib.bench.probes import bench_probe_suite

    result = bench_probe_suite(n=120, dim=(8, 6), n_sets=2, n_folds=2, n_classes=3, epochs=1, reference_models=1)
    assert result["reference_scaled"] and result["n_models"] == 4
    assert result["ratio"] > 0 and isinstance(pd.Series(result).to_dict(), dict)
