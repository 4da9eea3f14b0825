"""The hold-out + K-fold split: sizes, partition, determinism, multilabel stratification, zero group leakage."""

import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib.data.splits import Split, describe_splits, make_split, split_summary
from dinoxfer_lib.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    prevalence = np.geomspace(0.4, 0.02, 17)  # imbalanced like OpenCell
    return rng.random((1000, 17)) < prevalence


@pytest.fixture(scope="module")
def groups():
    return np.repeat(np.arange(250), 4).astype(str)


def test_sizes_and_partition(labels):
    split = make_split(labels, test_fraction=0.1, n_folds=5, seed=0)
    assert len(split.test) == 100
    vals = [val for _, val in split.folds]
    assert sorted(np.concatenate(vals).tolist()) == sorted(set(range(1000)) - set(split.test.tolist()))
    for train, val in split.folds:
        assert not set(train) & set(val) and not set(train) & set(split.test)
        assert len(train) + len(val) == 900
        assert 170 <= len(val) <= 190


def test_fold_of_and_dev(labels):
    split = make_split(labels, seed=0)
    fold = split.fold_of
    assert np.array_equal(np.flatnonzero(fold == -1), split.test)
    assert np.array_equal(split.dev, np.flatnonzero(fold >= 0))
    for k, (train, val) in enumerate(split.folds):
        assert np.array_equal(np.flatnonzero(fold == k), val)
        assert np.array_equal(train, np.setdiff1d(split.dev, val))


def test_unlabelled_rows_absent_classes_and_one_class_are_split():
    rng = np.random.default_rng(1)
    labels = rng.random((300, 17)) < 0.1
    labels[:40] = False  # unlabelled images
    labels[:, 3] = False  # a class nobody has
    split = make_split(labels, seed=0)
    assert len(split.test) == 30 and len(split.dev) == 270
    single = rng.random((300, 1)) < 0.3
    one_class = make_split(single, seed=0)
    assert abs(single[one_class.test].mean() - single.mean()) < 0.02


def test_deterministic_per_seed(labels):
    a, b, c = (make_split(labels, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.test, b.test) and all(np.array_equal(x[1], y[1]) for x, y in zip(a.folds, b.folds))
    assert not np.array_equal(a.test, c.test)


def deviation(index_sets, labels):
    overall = labels.mean(0)
    return max(np.abs(labels[idx].mean(0) - overall).max() for idx in index_sets)


def test_stratified_better_than_random(labels):
    split = make_split(labels, seed=0)
    ours = deviation([split.test] + [v for _, v in split.folds], labels)
    rng = np.random.default_rng(0)
    random_dev = np.mean(
        [deviation(np.array_split(rng.permutation(1000), 10), labels) for _ in range(10)]
    )
    assert ours < 0.02
    assert ours < random_dev / 2


def test_grouped_split_has_no_group_on_two_sides(labels, groups):
    split = make_split(labels, groups=groups, seed=0)
    assert split.grouped
    test_groups = set(groups[split.test])
    assert not test_groups & set(groups[split.dev])
    fold_groups = [set(groups[val]) for _, val in split.folds]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not fold_groups[i] & fold_groups[j]
    grouped_deviation = deviation([split.test] + [v for _, v in split.folds], labels)
    rng = np.random.default_rng(0)
    image_of_group = np.arange(1000) // 4
    random_grouped = np.mean(
        [
            deviation([np.flatnonzero(np.isin(image_of_group, part)) for part in np.array_split(rng.permutation(250), 10)], labels)
            for _ in range(10)
        ]
    )
    assert grouped_deviation < 0.75 * random_grouped  # stratifying the proteins still beats drawing them at random
    table = describe_splits({"g": split, "i": make_split(labels, seed=0)}, groups=groups)
    assert table.loc["proteins on both sides of the hold-out", "g"] == 0
    assert table.loc["proteins on both sides of the hold-out", "i"] > 0


def test_frame_round_trip_and_mismatch(labels):
    split = make_split(labels, seed=3)
    ids = [f"im{i}" for i in range(1000)]
    frame = split.to_frame(ids)
    assert set(frame["subset"]) == {"test", "dev"}
    back = Split.from_frame(frame, ids, grouped=False, seed=3)
    assert np.array_equal(back.test, split.test)
    for (tr_a, va_a), (tr_b, va_b) in zip(back.folds, split.folds):
        assert np.array_equal(np.sort(va_a), np.sort(va_b)) and np.array_equal(np.sort(tr_a), np.sort(tr_b))
    with pytest.raises(DataError, match="do not match"):
        Split.from_frame(frame, ids[::-1], grouped=False, seed=3)
    with pytest.raises(DataError, match="lacks columns"):
        Split.from_frame(frame.drop(columns="fold"), ids, grouped=False, seed=3)
    with pytest.raises(DataError, match="inconsistent"):
        Split.from_frame(frame.assign(subset="dev"), ids, grouped=False, seed=3)
    with pytest.raises(DataError, match="inconsistent"):
        Split.from_frame(frame.assign(fold=frame["fold"].replace(2, 7)), ids, grouped=False, seed=3)


def test_frame_round_trip_through_csv(labels, tmp_path):
    split = make_split(labels, groups=np.repeat(np.arange(250), 4), seed=0)
    ids = [f"{i:04d}" for i in range(1000)]  # numeric-looking ids must stay strings
    split.to_frame(ids).to_csv(tmp_path / "split.csv", index=False)
    frame = pd.read_csv(tmp_path / "split.csv", dtype={"image_id": str})
    back = Split.from_frame(frame, ids, grouped=True, seed=0)
    assert np.array_equal(back.fold_of, split.fold_of)


def test_summary_has_every_class_and_subset(labels):
    split = make_split(labels, n_folds=3, seed=0)
    frame = split_summary(split, labels, [f"c{i}" for i in range(17)])
    assert set(frame["subset"]) == {"all", "test", "fold 0", "fold 1", "fold 2"}
    assert len(frame) == 17 * 5
    prevalence = frame.set_index(["subset", "class"])["prevalence"]
    assert prevalence["fold 1", "c4"] == pytest.approx(labels[split.folds[1][1], 4].mean())
    assert prevalence["test", "c0"] == pytest.approx(labels[split.test, 0].mean())
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"n_folds": 1}, ConfigError, "split.n_folds"),
        ({"test_fraction": 0.0}, ConfigError, "split.test_fraction"),
        ({"test_fraction": 1.0}, ConfigError, "split.test_fraction"),
        ({"n_folds": 1000}, DataError, "1000 images cannot give"),  # fewer images than folds
        ({"groups": np.arange(10)}, DataError, "10 entries for 1000 images"),
        ({"n_folds": 50, "groups": np.repeat(np.arange(20), 50)}, DataError, "20 groups"),
    ],
)
def test_impossible_splits_are_one_line_errors(labels, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        make_split(labels, **kwargs)


@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros((10, 0)), np.zeros((2, 3, 4))])
def test_labels_must_be_2d(bad):
    with pytest.raises(DataError, match="2-D"):
        make_split(bad)


def test_too_few_images_for_the_folds():
    with pytest.raises(DataError, match="4 images cannot give"):
        make_split(np.eye(4, 3, dtype=bool), n_folds=5)
