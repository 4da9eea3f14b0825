"""The neighbour check finds label structure where there is some, reports chance where there is none."""

import numpy as np

from dinoxfer_lib.tl.neighbours import neighbour_label_agreement


def clustered(n=300, classes=5, informative=True, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    labels = np.eye(classes, dtype=bool)[y]
    centres = rng.normal(size=(classes, 16)) * 5
    X = (centres[y] if informative else 0) + rng.normal(size=(n, 16))
    groups = np.arange(n) // 3
    return X, labels, groups


def test_structured_embedding_beats_chance():
    X, labels, groups = clustered()
    result = neighbour_label_agreement(X, labels, groups=groups, k=5)
    assert result["agreement"] > 0.9 and result["chance"] < 0.3
    assert result["agreement_other_proteins"] > 0.9


def test_random_embedding_is_at_chance():
    X, labels, groups = clustered(informative=False)
    result = neighbour_label_agreement(X, labels, groups=groups, k=5)
    assert abs(result["agreement"] - result["chance"]) < 0.08


def test_same_group_neighbours_are_excluded():
    # each group is a tight pair sharing a random label: plain agreement is high, other-group agreement is chance
    rng = np.random.default_rng(1)
    n_groups = 150
    centres = rng.normal(size=(n_groups, 8))
    X = np.repeat(centres, 2, axis=0) + 1e-3 * rng.normal(size=(2 * n_groups, 8))
    labels = np.repeat(np.eye(4, dtype=bool)[rng.integers(0, 4, n_groups)], 2, axis=0)
    groups = np.repeat(np.arange(n_groups), 2)
    result = neighbour_label_agreement(X, labels, groups=groups, k=1)
    assert result["agreement"] == 1.0
    assert abs(result["agreement_other_proteins"] - result["chance_other_proteins"]) < 0.15
