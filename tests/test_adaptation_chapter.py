"""Chapter 08: the adaptation and segmentation stages (stored, reused, recomputed), and the chapter's report."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dinoxfer_lib import pipeline
from dinoxfer_lib.adapt.train import AdaptResult
from dinoxfer_lib.errors import ConfigError, StoreError
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report import adaptation as report
from dinoxfer_lib.seg.train import SegResult


def _events(root, profile="smoke"):
    return [json.loads(line) for line in (root / profile / "events.jsonl").read_text().splitlines()]


def _actions(root, stage):
    return [e["action"] for e in _events(root) if e["stage"] == stage]


# --------------------------------------------------------------------------------------------------------------
# Stages


@pytest.fixture
def adapt_run(small_run):
    """small_run with one cheap set (native: one pass per image) and a few steps per regime."""
    return {**small_run, "adapt": {"sets": ["opencell_native"], "regimes": ["frozen", "lora"], "folds": 1,
                                   "epochs": 1, "images_per_epoch": 16, "batch_size": 8, "train_score_images": 10,
                                   "lora": {"rank": 2}}}


def test_adaptation_stage_starts_from_table_iii_and_is_reused_until_its_config_changes(tmp_path, adapt_run):
    import anndata
    import torch

    from dinoxfer_lib.adapt.train import embed_images
    from dinoxfer_lib.pipeline.adapt import make_adaptation
    from dinoxfer_lib.pipeline.embeddings import EMBEDDING_FILE, channel_encoder

    run = pipeline.open_run("smoke", adapt_run, runs_root=tmp_path)
    result = pipeline.load_adaptation(run)
    split = pipeline.load_split(run, "opencell", grouped=False)
    table = result.table()
    assert list(table["probe"]) == ["frozen", "lora"] and set(table["folds"]) == {1}
    assert np.array_equal(result.probe.test_index, split.test)
    assert result.probe.probs("opencell_native", "lora").shape == (1, len(split.test), 17)
    costs = result.costs.set_index(["probe", "fold"])
    head_steps = 2 * -(-len(split.folds[0][0]) // 8)  # the smoke profile's 2 head-only epochs in batches of 8
    assert costs.loc[("frozen", 0), "steps"] == head_steps and costs.loc[("lora", 0), "steps"] == 2
    assert (costs["predicted_images"] == 10 + len(split.folds[0][1]) + len(split.test)).all()
    assert costs.loc[("lora", 0), "trainable_params"] > costs.loc[("frozen", 0), "trainable_params"] == \
        costs.loc[("frozen", 0), "head_params"]
    assert (tmp_path / "smoke" / "adapt" / "opencell_native" / "models" / "lora" / "fold0").is_dir()

    # the adapted models start from exactly the encoder that made Table III's embeddings of this set
    dataset = pipeline.load_datasets(run, ("opencell",))["opencell"]
    encoder = channel_encoder(pipeline.load_backbones(run, ("opencell",))["opencell"], "native",
                              target_channels=dataset.channel_names, slot_table=None, feature="cls", reduce="concat")
    stored = anndata.read_h5ad(tmp_path / "smoke" / "embeddings" / "opencell_native" / EMBEDDING_FILE).X
    ours = embed_images(encoder, dataset.images, batch_size=32, device=torch.device("cpu"))
    np.testing.assert_allclose(ours, stored, atol=1e-4, rtol=1e-4)

    pipeline.load_adaptation(pipeline.open_run("smoke", adapt_run, runs_root=tmp_path))
    other_sets = {**adapt_run, "adapt": {**adapt_run["adapt"], "sets": ["opencell_native", "hpa_mapping"]}}
    other_run = pipeline.open_run("smoke", other_sets, runs_root=tmp_path)
    assert pipeline.adapted_sets(other_run) == ("opencell_native", "hpa_mapping")
    make_adaptation(other_run, "opencell_native")  # listing another set does not touch this one's models
    assert _actions(tmp_path, "adapt/opencell_native") == ["computed", "reused", "reused"]
    rank = {**adapt_run, "adapt": {**adapt_run["adapt"], "lora": {"rank": 4}}}
    pipeline.load_adaptation(pipeline.open_run("smoke", rank, runs_root=tmp_path))
    assert _actions(tmp_path, "adapt/opencell_native")[-1] == "computed"


def test_best_val_is_the_set_with_the_highest_validation_f1(monkeypatch, tmp_path, small_run):
    import dinoxfer_lib.pipeline.probes as probes

    table_iii = _probe_result({("hpa_mapping", "mlp"): [(0.9, 0.50, 0.1)] * 2,
                               ("opencell_native", "mlp"): [(0.9, 0.60, 0.0)] * 2,  # best on validation only
                               ("imagenet_mapping", "mlp"): [(0.9, 0.40, 0.9)] * 2,  # best on test: not chosen
                               ("opencell_native", "linear"): [(0.9, 0.99, 0.9)] * 2})  # not the paper's MLP
    monkeypatch.setattr(probes, "load_probe_results", lambda run: table_iii)
    both = {**small_run, "adapt": {"sets": ["best_val", "hpa_mapping", "opencell_native"]}}
    assert pipeline.adapted_sets(pipeline.open_run("smoke", both, runs_root=tmp_path)) == (
        "opencell_native", "hpa_mapping")
    note = report.choice_note(table_iii, ("opencell_native", "hpa_mapping"),
                              configured=("best_val", "hpa_mapping", "opencell_native"))
    assert "**opencell_native**" in note and "0.600" in note


@pytest.fixture
def seg_run(small_run):
    return {**small_run, "data": {**small_run["data"], "em": {"patch_size": 16, "pixel_nm": 40.0, "n_stacks": 3,
                                                                "n_slices": 2, "test_stacks": 1}},
            "seg": {"backbones": ["natural"], "epochs": 1, "batch_size": 4, "lora": {"rank": 2}}}


def test_seg_stage_gives_004_s_table_and_embeddings_and_is_reused(tmp_path, seg_run):
    run = pipeline.open_run("smoke", seg_run, runs_root=tmp_path)
    studies = pipeline.load_seg_studies(run)
    study = studies["natural"]
    table = study.result.table()
    assert table.shape == (6, 2) and list(table.columns) == ["lucchi", "vnc"]
    assert {d: e.shape for d, e in study.embeddings.items()} == {"lucchi": (6, 192), "vnc": (6, 192)}
    assert study.backbone["entry"] == "natural" and study.backbone["arch"] == "vit_micro"
    test = pipeline.load_em_data(run)["vnc"].split("test")
    rows = study.result.example_rows["vnc"]
    assert study.result.examples[("lucchi+vnc", "lora", "vnc")].shape == (len(rows), *test.masks.shape[1:])

    pipeline.load_seg_studies(pipeline.open_run("smoke", seg_run, runs_root=tmp_path))
    two = {**seg_run, "seg": {**seg_run["seg"], "backbones": ["natural", "opencell"]}}
    assert set(pipeline.load_seg_studies(pipeline.open_run("smoke", two, runs_root=tmp_path))) == {"natural",
                                                                                                   "opencell"}
    assert _actions(tmp_path, "seg/natural") == ["computed", "reused", "reused"]
    longer = {**seg_run, "seg": {**seg_run["seg"], "epochs": 2}}
    pipeline.load_seg_studies(pipeline.open_run("smoke", longer, runs_root=tmp_path))
    assert _actions(tmp_path, "seg/natural")[-1] == "computed"
    em_actions = _actions(tmp_path, "datasets/em")
    assert em_actions[0] == "computed" and set(em_actions[1:]) == {"reused"}


def test_seg_backbone_entries_fail_with_one_line(tmp_path, seg_run):
    from dinoxfer_lib.pipeline.adapt import seg_backbone, stage_slug

    run = pipeline.open_run("smoke", seg_run, runs_root=tmp_path)
    with pytest.raises(ConfigError, match="dinov2_vitb14"):  # a mistyped name lists the registered ones
        seg_backbone(run, "dinov2_vitz14")
    with pytest.raises(StoreError, match="dino/hpa"):
        seg_backbone(run, "store:dino/hpa")
    assert stage_slug("store:dino/hpa") == "store_dino_hpa"


# --------------------------------------------------------------------------------------------------------------
# Report


def _probe_result(folds: dict, *, test_index=np.arange(4)) -> ProbeResult:
    """A ProbeResult whose macro F1 per (set, probe) and fold is the given (train, val, test) triple."""
    rows = [{"set": s, "probe": p, "fold": k, "subset": subset, "threshold": "0.5", "class": None, "metric": "f1",
             "value": value}
            for (s, p), per_fold in folds.items() for k, triple in enumerate(per_fold)
            for subset, value in zip(("train", "val", "test"), triple)]
    return ProbeResult(scores=pd.DataFrame(rows), test_probs={}, history=pd.DataFrame(), test_index=test_index,
                       class_names=("a", "b"))


def _adapt_result(folds: dict, *, head=1000) -> AdaptResult:
    probe = _probe_result({("hpa_mapping", regime): v for regime, v in folds.items()})
    costs = pd.DataFrame([{"set": "hpa_mapping", "probe": regime, "fold": k, "trainable_params": head + extra,
                           "head_params": head, "total_params": 10_000, "steps": 40, "train_s": 2.0 + k,
                           "head_s": 0.25, "predict_s": 0.5, "predicted_images": 100, "device": "cpu"}
                          for (regime, extra) in (("frozen", 0), ("lora", 50), ("full", 9000)) if regime in folds
                          for k in range(len(folds[regime]))])
    return AdaptResult(probe=probe, costs=costs)


def test_adaptation_table_shows_table_iii_s_own_mlp_row_first():
    table_iii = _probe_result({("hpa_mapping", "mlp"): [(0.9, 0.6, 0.50), (0.9, 0.6, 0.60), (0.9, 0.6, 0.70)],
                               ("hpa_replication", "mlp"): [(0.9, 0.6, 0.3)] * 3})
    adapted = _adapt_result({"lora": [(0.95, 0.7, 0.55), (0.95, 0.7, 0.62)], "full": [(1.0, 0.6, 0.4)] * 2})
    table = report.adaptation_table(table_iii, adapted)
    assert list(table["regime"]) == ["table_iii", "lora", "full"]
    frozen = table.iloc[0]
    mlp = table_iii.table().set_index(["set", "probe"]).loc[("hpa_mapping", "mlp")]
    assert frozen["test_f1_mean"] == mlp["test_f1_mean"] and frozen["folds"] == 3  # the Table III numbers
    assert frozen["trainable_params"] == 1000 and table.iloc[1]["trainable_params"] == 1050
    assert table.iloc[1]["train_s_mean"] == 2.75  # its own steps and the head-only training it started from
    printed = report.format_adaptation_table(table)
    assert printed.iloc[0]["training / fold"] == "—" and printed.iloc[2]["trainable params"] == "10,000"
    assert printed.index[0] == ("hpa_mapping", "frozen + MLP (Table III)")


def test_paired_differences_match_a_hand_computed_t_interval():
    table_iii = _probe_result({("hpa_mapping", "mlp"): [(0, 0, 0.50), (0, 0, 0.60), (0, 0, 0.70), (0, 0, 0.65)]})
    adapted = _adapt_result({"lora": [(0, 0, 0.55), (0, 0, 0.62), (0, 0, 0.80)], "full": [(0, 0, 0.40)]})
    scores = report.fold_scores(table_iii, adapted)
    diffs = report.paired_differences(scores).set_index("regime")
    d = np.array([0.05, 0.02, 0.10])  # folds 0-2 only: the fourth has no LoRA model to pair with
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    lora = diffs.loc["lora"]
    assert lora["folds"] == 3 and lora["difference"] == pytest.approx(d.mean())
    assert (lora["low"], lora["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert lora["resolved"] == bool(d.mean() - half > 0)
    full = diffs.loc["full"]
    assert full["difference"] == pytest.approx(-0.10) and np.isnan(full["low"]) and not full["resolved"]


def _seg_result(iou: dict) -> SegResult:
    """SegResult from {(train_set, regime, test_domain): iou}."""
    scores = pd.DataFrame([{"train_set": t, "regime": r, "test_domain": d, "in_domain": d in t.split("+"),
                            "iou": v, "n_test": 8} for (t, r, d), v in iou.items()])
    return SegResult(scores=scores, history=pd.DataFrame(), costs=pd.DataFrame())


def _iou(single_frozen, single_lora, joint_frozen, joint_lora, cross=0.05) -> dict:
    values = {}
    for domain, other in (("lucchi", "vnc"), ("vnc", "lucchi")):
        values |= {(domain, "frozen", domain): single_frozen, (domain, "lora", domain): single_lora,
                   (domain, "frozen", other): cross, (domain, "lora", other): cross,
                   ("lucchi+vnc", "frozen", domain): joint_frozen, ("lucchi+vnc", "lora", domain): joint_lora}
    return values


def test_findings_follow_their_rules():
    # dinov2: LoRA helps in-domain, but its joint model recovers what joint training lost; natural: LoRA hurts
    results = {"dinov2_vits14": _seg_result(_iou(0.6, 0.7, 0.3, 0.65)),
               "natural": _seg_result(_iou(0.6, 0.5, 0.3, 0.45))}
    frechet = pd.DataFrame([
        {"backbone": b, "domain_a": a, "domain_b": c, "distance": dist, "low": low, "high": dist + 1, "floor": 1.0}
        for b in results for a, c, dist, low in (("lucchi", "lucchi", 1.0, 0.8), ("lucchi", "vnc", 9.0, 8.0),
                                                 ("vnc", "vnc", 0.9, 0.7))])
    probes = pd.DataFrame([{"backbone": "dinov2_vits14", "domains": "lucchi vs vnc", "accuracy": 0.99,
                            "accuracy_std": 0.01, "chance": 0.5, "per_domain": 8},
                           {"backbone": "natural", "domains": "lucchi vs vnc", "accuracy": 0.6,
                            "accuracy_std": 0.01, "chance": 0.5, "per_domain": 8}])
    findings = report.findings_table(results, frechet, probes, baseline={"lucchi": 0.1, "vnc": 0.2},
                                     synthetic=True)
    assert list(findings["verdict"]) == ["reproduced", "partly", "reproduced", "partly", "partly",
                                         "not testable here"]
    assert "this run (synthetic stand-ins)" in findings.columns
    assert "holds in 2 of 4" in findings.iloc[1]["this run (synthetic stand-ins)"]
    # joint − single: −0.3 (frozen) and −0.05 (LoRA) for both backbones, against a mean single-domain IoU of 0.6
    assert "mean -0.175, -29% of the single-domain IoU" in findings.iloc[2]["this run (synthetic stand-ins)"]
    assert "DINOv3" in findings.iloc[5]["this run (synthetic stand-ins)"]
    html = report.format_findings(findings).to_html()
    assert findings.iloc[4]["finding (paper 004)"] in html  # printed in full

    table = report.seg_table(results, baseline={"lucchi": 0.1, "vnc": 0.2})
    assert table.loc[("—", "predict all foreground", "—")].tolist() == [0.1, 0.2]
    assert table.loc[("natural", "lucchi+vnc", "lora"), "vnc"] == 0.45


def test_overlay_colours_each_pixel_by_its_outcome():
    from dinoxfer_lib.pl.adaptation import OVERLAY, overlay

    image = np.zeros((2, 2), np.uint8)
    predicted = np.array([[True, True], [False, False]])
    truth = np.array([[True, False], [True, False]])
    rgb = overlay(image, predicted, truth, alpha=1.0)
    assert tuple(rgb[0, 0]) == OVERLAY["true positive"] and tuple(rgb[0, 1]) == OVERLAY["false positive"]
    assert tuple(rgb[1, 0]) == OVERLAY["false negative"] and tuple(rgb[1, 1]) == (0, 0, 0)
