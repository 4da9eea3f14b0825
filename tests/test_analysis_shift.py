"""Domain-shift diagnostics: Fréchet distance against closed forms and planted shifts, and the domain probe."""

import numpy as np
import pytest

from dinoxfer_lib.errors import DataError
from dinoxfer_lib.tl.shift import (
    domain_probe, domain_probe_table, frechet_distance, frechet_table, resampled_frechet,
)


def gaussian(n, d=8, shift=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).normal(shift, scale, (n, d))


def test_frechet_matches_the_closed_form_for_known_gaussians():
    """Isotropic Gaussians: FD = |mu1 - mu2|² + d (s1 - s2)²."""
    a, b = gaussian(20000, d=4, shift=0.0, scale=1.0, seed=1), gaussian(20000, d=4, shift=1.0, scale=2.0, seed=2)
    assert frechet_distance(a, b) == pytest.approx(4 * 1.0 + 4 * 1.0, rel=0.03)


def test_frechet_is_symmetric_and_zero_for_identical_samples():
    a, b = gaussian(300, seed=1), gaussian(300, shift=0.5, seed=2)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_near_zero_for_one_distribution_and_growing_with_a_planted_shift():
    base = gaussian(1000, seed=0)
    distances = [frechet_distance(base, gaussian(1000, shift=s, seed=1)) for s in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert distances[0] < 0.15  # only sampling noise (~d² / n)
    assert all(later > earlier for earlier, later in zip(distances, distances[1:]))
    assert distances[-1] == pytest.approx(8 * 2.0**2, rel=0.1)


def test_resampled_distance_separates_a_shift_from_the_within_domain_floor():
    a, b = gaussian(400, seed=0), gaussian(400, shift=0.5, seed=1)
    floor = resampled_frechet(a, size=200, resamples=10, seed=0)
    shifted = resampled_frechet(a, b, size=200, resamples=10, seed=0)
    same = resampled_frechet(a, gaussian(400, seed=2), size=200, resamples=10, seed=0)
    assert floor["low"] <= floor["distance"] <= floor["high"]
    assert shifted["low"] > floor["high"]  # the interval of a real shift clears the floor
    assert same["low"] < floor["high"]  # a second sample of the same distribution does not


def test_frechet_table_has_pairs_and_floors_at_one_sample_size():
    table = frechet_table({"x": gaussian(300, seed=0), "y": gaussian(200, shift=1.0, seed=1),
                           "z": gaussian(250, seed=2)}, resamples=5, seed=0)
    assert len(table) == 6 and set(table["size"]) == {100}
    pair = table[(table["domain_a"] == "x") & (table["domain_b"] == "y")].iloc[0]
    twin = table[(table["domain_a"] == "x") & (table["domain_b"] == "z")].iloc[0]
    assert pair["distance"] > pair["floor"] and twin["distance"] < pair["distance"]


def test_frechet_rejects_mismatched_or_too_small_inputs():
    with pytest.raises(DataError, match="one d"):
        frechet_distance(gaussian(10, d=3), gaussian(10, d=4))
    with pytest.raises(DataError, match="two disjoint samples of 60 from 100"):
        resampled_frechet(gaussian(100), size=60)


def test_domain_probe_is_at_chance_on_identical_domains_and_near_one_on_separated_ones():
    same = domain_probe({"a": gaussian(300, seed=0), "b": gaussian(300, seed=1)}, folds=5, seed=0)
    apart = domain_probe({"a": gaussian(300, seed=0), "b": gaussian(300, shift=1.5, seed=1)}, folds=5, seed=0)
    assert same["chance"] == 0.5 and abs(same["accuracy"] - 0.5) < 0.08
    assert apart["accuracy"] > 0.97


def test_domain_probe_balances_domains_and_covers_every_pair():
    table = domain_probe_table({"a": gaussian(100, seed=0), "b": gaussian(60, shift=3, seed=1),
                                "c": gaussian(80, shift=-3, seed=2)}, folds=3, seed=0)
    assert list(table["domains"]) == ["a vs b", "a vs c", "b vs c", "a vs b vs c"]
    assert table["per_domain"].tolist() == [60, 80, 60, 60]
    assert table["chance"].iloc[-1] == pytest.approx(1 / 3)
    assert (table["accuracy"] > 0.95).all()
