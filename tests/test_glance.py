"""The targets table and the claim-by-claim table read a joined Table III result: known answers on a toy problem
whose rows differ by construction."""

import numpy as np
import pandas as pd
import pytest

from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.probes import ProbeConfig, run_probe_comparison
from dinoxfer_lib.probes.ceiling import FLOOR_SET
from dinoxfer_lib.report import classifier, glance

CLASSES = ("cytoplasmic", "nucleoplasm", "golgi")


@pytest.fixture(scope="module")
def toy():
    """Table III sets whose informativeness is set by hand: HPA-like rows strong, natural rows weak, the floor
    noise; the last rows of the dataset are Figure 2's pair of classes."""
    rng = np.random.default_rng(0)
    n = 240
    labels = rng.random((n, 3)) < 0.35
    labels[labels.sum(1) == 0, 2] = True
    labels[-60:] = [True, True, False]  # cytoplasmic and nucleoplasm, as the paper's Figure 2 images

    def features(signal: float) -> np.ndarray:
        return (labels * signal + rng.normal(size=(n, 3))).astype(np.float32)

    sets = {"hpa_mapping": features(4.0), "hpa_replication": features(1.0), "imagenet_mapping": features(1.0),
            "imagenet_replication": features(1.0), "opencell_native": features(4.0),
            FLOOR_SET: rng.normal(size=(n, 3)).astype(np.float32)}
    split = make_split(labels, n_folds=3, seed=0)
    config = ProbeConfig(epochs=20, lr=3e-3, batch_size=32, hidden=(16,), compare=())
    result = run_probe_comparison(sets, labels, split=split, config=config, class_names=CLASSES, seed=0,
                                  monitor_every=0)
    return result, labels


def test_targets_table_reads_each_target_from_the_joined_result(toy):
    result, labels = toy
    targets = classifier.targets_table({"by image": (result, labels)}, stage_minutes=20.0, n_resamples=300)
    rows = targets.set_index("target")
    assert rows.loc["DINO-trained OpenCell backbone minus random weights [95 % CI]", "met"] == "✓"
    assert rows.loc["HPA-like minus natural-image pretraining (mapping) [95 % CI]", "met"] == "✓"
    best = classifier.table_iii(result).query("role == 'table III'")
    assert rows.loc["best Table III row: test macro F1", "value"] == pytest.approx(
        best.loc[best["val_f1_mean"].idxmax(), "test_f1_mean"])
    assert rows.loc["the book's stages computed so far on this machine", "met"] == "✗"  # 20 > 15 minutes
    assert "share of the supervised ceiling" not in " ".join(targets["target"])  # no ceiling row, no share
    assert "the book's stages computed so far on this machine (20.0 min)" in classifier.targets_note(targets)


def test_claims_table_gives_a_verdict_per_claim_from_paired_intervals(toy):
    result, labels = toy
    claims = glance.claims_table(result, labels, synthetic=True, n_resamples=300).set_index("claim")
    assert set(claims["verdict"]) <= set(glance.VERDICTS)
    assert claims.iloc[0]["verdict"] == "not testable on these data"  # the level of synthetic data
    hpa_beats_imagenet = claims.loc[next(c for c in claims.index if c.startswith("Microscopy pretraining"))]
    assert hpa_beats_imagenet["verdict"] == "reproduced" and "planted" in hpa_beats_imagenet["why"]
    replication = claims.loc[next(c for c in claims.index if c.startswith("HPA FOV with channel replication"))]
    assert replication["verdict"] == "reproduced"  # the weak replication row falls behind, as in the paper
    hits, candidates, _ = glance.figure_2_check(result, labels)
    assert candidates == int(((labels[result.test_index]) == [True, True, False]).all(1).sum()) and hits <= candidates
    real = glance.claims_table(result, labels, synthetic=False, n_resamples=300)
    assert real.iloc[0]["verdict"] in ("reproduced", "not reproduced")
    assert "reproduces" in glance.claims_note(real)


def test_build_minutes_sums_each_kind_of_stage_and_lists_the_timed_notebooks(tmp_path):
    import json

    from dinoxfer_lib.store import ArtifactStore

    store = ArtifactStore(tmp_path, "demo")
    for stage in ("dino/opencell", "dino/hpa", "probes/opencell_by_image"):
        store.run_stage(stage, lambda folder: (folder / "out.txt").write_text("x"), config={"stage": stage})
    (store.root / "notebooks").mkdir()
    for name, seconds in (("01_datasets", 60.0), ("02_pretraining", 600.0)):
        (store.root / "notebooks" / f"{name}.run.json").write_text(json.dumps({"stages": {}, "seconds": seconds}))
    (store.root / "notebooks" / "03_old.run.json").write_text(json.dumps({"stages": {}}))  # written before timing
    minutes = classifier.build_minutes(store).set_index(["kind", "what"])
    wall = {s: store.load(s).provenance["wall_time_s"] / 60 for s in store.stages()}
    assert minutes.loc[("stages", "dino"), "minutes"] == pytest.approx(wall["dino/opencell"] + wall["dino/hpa"])
    assert minutes.loc[("stages", "dino"), "count"] == 2 and minutes.loc[("stages", "probes"), "count"] == 1
    assert list(minutes.loc["notebooks", "minutes"]) == [1.0, 10.0]  # the untimed record is left out
    note = classifier.build_minutes_note(minutes.reset_index())
    assert "The 2 notebooks the runner timed took 11.0 minutes" in note and "15 minutes" in note
    assert "faster" not in note  # within the budget: nothing to reach


def test_an_over_budget_build_says_how_far_off_it_is_and_which_kinds_alone_exceed_it():
    minutes = pd.DataFrame({"kind": ["stages", "stages", "stages"], "what": ["dino", "probes", "datasets"],
                            "minutes": [36.0, 21.0, 3.0], "count": [7, 20, 3], "largest": ["", "", ""]})
    note = classifier.build_minutes_note(minutes)
    assert "would have to run 4.0× faster" in note
    assert "dino and probes alone take more than the whole budget" in note and "frontier" in note
