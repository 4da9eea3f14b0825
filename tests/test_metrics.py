"""Macro F1 against scikit-learn (absent classes under each option), the batched torch F1, threshold tuning."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.metrics import (
    batched_macro_f1, batched_per_class_f1, macro_f1, per_class_f1, tune_thresholds,
)


@pytest.fixture
def with_absent():
    """Random multi-label truth/prediction; class 2 absent (no true, no predicted), class 4 only predicted."""
    rng = np.random.default_rng(0)
    y_true = rng.random((60, 6)) < 0.3
    y_pred = rng.random((60, 6)) < 0.3
    y_true[:, 2] = y_pred[:, 2] = False
    y_true[:, 4] = False
    return y_true, y_pred


@pytest.mark.parametrize("absent, zero_division", [("zero", 0), ("one", 1)])
def test_macro_f1_matches_sklearn(with_absent, absent, zero_division):
    y_true, y_pred = with_absent
    expected = f1_score(y_true, y_pred, average="macro", zero_division=zero_division)
    assert macro_f1(y_true, y_pred, absent=absent) == pytest.approx(expected, abs=1e-12)
    per_class = f1_score(y_true, y_pred, average=None, zero_division=zero_division)
    np.testing.assert_allclose(per_class_f1(y_true, y_pred, absent=absent), per_class, atol=1e-12)


def test_skip_matches_sklearn_labels(with_absent):
    y_true, y_pred = with_absent
    present = np.flatnonzero(y_true.any(0) | y_pred.any(0))
    assert 2 not in present and 4 in present  # only-predicted classes are present (they score 0)
    expected = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred, absent="skip") == pytest.approx(expected, abs=1e-12)
    assert np.isnan(per_class_f1(y_true, y_pred, absent="skip")[2])


def test_default_is_zero_and_never_flatters(with_absent):
    y_true, y_pred = with_absent
    assert macro_f1(y_true, y_pred) == macro_f1(y_true, y_pred, absent="zero")
    assert macro_f1(y_true, y_pred) < macro_f1(y_true, y_pred, absent="skip") < macro_f1(y_true, y_pred, absent="one")


def test_nothing_present_under_skip_is_nan():
    empty = np.zeros((5, 3), bool)
    assert np.isnan(macro_f1(empty, empty, absent="skip"))
    assert macro_f1(empty, empty) == 0.0 and macro_f1(empty, empty, absent="one") == 1.0


def test_perfect_and_bad_inputs():
    y = np.eye(4, dtype=bool)
    assert macro_f1(y, y) == 1.0
    with pytest.raises(DataError):
        macro_f1(y, y[:3])
    with pytest.raises(ConfigError, match="absent"):
        macro_f1(y, y, absent="ignore")


@pytest.mark.parametrize("absent", ["zero", "one", "skip"])
def test_batched_torch_equals_numpy(absent):
    rng = np.random.default_rng(1)
    y_true = rng.random((50, 5)) < 0.2
    y_true[:, 3] = False
    y_pred = rng.random((4, 50, 5)) < 0.25  # (models, rows, classes)
    y_pred[1, :, 3] = False  # model 1 sees class 3 as absent
    mask = rng.random((4, 50)) < 0.7  # each model scored on its own rows
    batched = batched_per_class_f1(torch.from_numpy(y_true), torch.from_numpy(y_pred),
                                   mask=torch.from_numpy(mask), absent=absent).numpy()
    macro = batched_macro_f1(torch.from_numpy(y_true), torch.from_numpy(y_pred), mask=torch.from_numpy(mask),
                             absent=absent).numpy()
    for m in range(4):
        rows = mask[m]
        expected = per_class_f1(y_true[rows], y_pred[m][rows], absent=absent)
        np.testing.assert_allclose(batched[m], expected, atol=1e-6, equal_nan=True)
        assert macro[m] == pytest.approx(macro_f1(y_true[rows], y_pred[m][rows], absent=absent), abs=1e-6)


def test_threshold_tuning_improves_validation_f1():
    rng = np.random.default_rng(2)
    y = np.zeros((200, 3), bool)
    y[:60, 0] = y[100:140, 1] = True  # class 2 has no positives
    # class 0: a well-ranked but under-confident score (positives ~0.3, negatives ~0.1)
    probs = np.column_stack([
        np.where(y[:, 0], 0.3, 0.1) + rng.normal(0, 0.02, 200),
        np.where(y[:, 1], 0.8, 0.2),
        rng.random(200) * 0.3,
    ]).clip(0, 1)
    thresholds = tune_thresholds(probs, y)
    assert 0.1 < thresholds[0] <= 0.3
    assert thresholds[2] == 0.5  # flat F1: keeps the untuned threshold
    before = macro_f1(y, probs >= 0.5)
    after = macro_f1(y, probs >= thresholds)
    assert after > before + 0.3
    assert per_class_f1(y, probs >= thresholds)[0] > 0.95


def test_threshold_grid_is_checked():
    with pytest.raises(ConfigError, match="grid"):
        tune_thresholds(np.zeros((3, 2)), np.zeros((3, 2), bool), grid=(0.0, 0.5))
