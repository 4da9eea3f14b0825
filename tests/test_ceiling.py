"""The supervised ceiling: a small CNN on raw images, trained on the probes' folds and scored as they are."""

import dataclasses

import numpy as np
import pytest
import torch

from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.probes import ProbeConfig, ProbeResult, run_probe_suite
from dinoxfer_lib.probes.ceiling import CEILING_PROBE, CEILING_SET, dihedral, make_cnn, prepare_images, train_ceiling
from dinoxfer_lib.probes.config import CeilingConfig
from dinoxfer_lib.probes.scoring import SUBSETS
from dinoxfer_lib.stats import paired_bootstrap

CLASSES = ("square", "bar", "other_channel_bar")
TINY = CeilingConfig(widths=(8, 16), convs_per_stage=1, epochs=12, batch_size=16, lr=3e-2, monitor_every=4)


def shapes(n=150, size=16, seed=0):
    """uint16 2-channel images: class 0 = a bright square, 1 = a bar (channel 0), 2 = a bar in channel 1."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, 3)) < 0.4
    images = rng.normal(300, 20, (n, 2, size, size))
    for i in range(n):
        y, x = rng.integers(1, size - 5, 2)
        if labels[i, 0]:
            images[i, 0, y : y + 3, x : x + 3] += 2000
        if labels[i, 1]:
            images[i, 0, y + 2, 1 : size - 1] += 2000
        if labels[i, 2]:
            images[i, 1, 2 : size - 2, x] += 2000
    return np.clip(images, 0, 65535).astype(np.uint16), labels


@pytest.fixture(scope="module")
def data():
    images, labels = shapes()
    return images, labels, make_split(labels, n_folds=3, seed=0)


@pytest.fixture(scope="module")
def ceiling(data):
    images, labels, split = data
    torch.manual_seed(123)  # the result must not depend on the global stream
    return train_ceiling(images, labels, split=split, config=TINY, class_names=CLASSES, tune_thresholds=True)


def test_cnn_shapes():
    model = make_cnn(2, 17, widths=(8, 16, 32), convs_per_stage=2)
    assert model(torch.zeros(3, 2, 32, 32)).shape == (3, 17)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < sum(p.numel() for p in make_cnn(2, 17, widths=(16, 32, 64)).parameters())


def test_dihedral_applies_each_images_own_transform():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    for code in range(8):
        expected = torch.rot90(x[code].flip(-1) if code >= 4 else x[code], code % 4, (-2, -1))
        torch.testing.assert_close(out[code], expected)
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8  # the eight symmetries of a square, all distinct


def test_images_are_scaled_per_image_and_resized():
    images, _ = shapes(n=4)
    x = prepare_images(images * 3, img_size=8)  # a plate with 3x the gain looks the same after scaling
    torch.testing.assert_close(x, prepare_images(images, img_size=8), atol=1e-5, rtol=1e-5)
    assert x.shape == (4, 2, 8, 8) and 0 <= x.min() and x.max() <= 1


def test_ceiling_learns_and_is_scored_like_the_probes(ceiling, data):
    split = data[2]
    table = ceiling.table()
    assert list(table[["set", "probe", "folds"]].iloc[0]) == [CEILING_SET, CEILING_PROBE, 3]
    assert table["test_f1_mean"].item() > 0.8 and "test_f1_tuned_mean" in table
    scores = ceiling.scores
    assert set(scores["subset"]) == set(SUBSETS) and set(scores["threshold"]) == {"0.5", "tuned"}
    assert ceiling.probs(CEILING_SET, CEILING_PROBE).shape == (3, len(split.test), 3)
    np.testing.assert_array_equal(ceiling.test_index, split.test)
    history = ceiling.history
    assert list(history.groupby("fold")["epoch"].max()) == [12, 12, 12]
    assert history["val_macro_f1"].notna().sum() == 3 * 3  # epochs 4, 8, 12 of each fold
    assert history.loc[history["kept"], "epoch"].tolist() == [12, 12, 12]


def test_ceiling_is_deterministic_per_seed(ceiling, data):
    images, labels, split = data
    again = train_ceiling(images, labels, split=split, config=TINY, class_names=CLASSES, tune_thresholds=True)
    np.testing.assert_allclose(again.probs(CEILING_SET, CEILING_PROBE), ceiling.probs(CEILING_SET, CEILING_PROBE),
                               atol=1e-6)
    other = train_ceiling(images, labels, split=split, config=dataclasses.replace(TINY, epochs=2),
                          class_names=CLASSES, seed=1)
    assert not np.allclose(other.probs(CEILING_SET, CEILING_PROBE), ceiling.probs(CEILING_SET, CEILING_PROBE))


def test_ceiling_row_joins_table_iii_and_its_statistics(ceiling, data):
    _, labels, split = data
    floor = np.random.default_rng(0).normal(size=(len(labels), 8)).astype(np.float32)  # features that know nothing
    probes = run_probe_suite({"random": floor}, labels, split=split, class_names=CLASSES,
                             config=ProbeConfig(hidden=(16,), lr=3e-3, epochs=5, batch_size=32, tune_thresholds=True))
    joined = ProbeResult.concat([probes, ceiling])
    assert list(joined.table()["set"]) == ["random", CEILING_SET]
    frame = paired_bootstrap(joined, labels, pairs=[((CEILING_SET, CEILING_PROBE), "random")], n_resamples=1000)
    assert frame["excludes_zero"].item() and frame["low"].item() > 0


def test_bad_input_and_config(data):
    images, labels, split = data
    with pytest.raises(DataError, match="square"):
        train_ceiling(images[..., :-1], labels, split=split, config=TINY, class_names=CLASSES)
    with pytest.raises(DataError, match="labels of shape"):
        train_ceiling(images[:-1], labels, split=split, config=TINY, class_names=CLASSES)
    with pytest.raises(DataError, match="class names"):
        train_ceiling(images, labels, split=split, config=TINY, class_names=CLASSES[:2])
    with pytest.raises(ConfigError, match="ceiling.widths"):
        dataclasses.replace(TINY, widths=()).validate("ceiling")
    with pytest.raises(ConfigError, match="ceiling.img_size"):
        dataclasses.replace(TINY, img_size=2).validate("ceiling")
