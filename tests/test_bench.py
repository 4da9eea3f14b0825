"""Benchmark plumbing: the FLOP count behind MFU, and the DINO batch sweep that sizes a paper run."""

import json
import shutil

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dinoxfer_lib.bench.dino import PAPER_DINO_EPOCHS, PAPER_DINO_IMAGES, bench_dino
from dinoxfer_lib.bench.flops import vit_flops_per_image
from dinoxfer_lib.models.backbones import create_backbone


@pytest.mark.parametrize("arch, img_size, in_chans", [("vit_micro", 64, 2), ("vit_micro", 32, 4),
                                                       ("vit_tiny_patch16", 64, 3)])
def test_vit_flops_match_pytorch_flop_counter(arch, img_size, in_chans):
    """MFU is only as right as the FLOP count: the formula must agree with what PyTorch counts for the model
    (attention through the math kernel, whose matrix products the counter sees; the fused CPU kernel it skips)."""
    model = create_backbone(arch, in_chans=in_chans, img_size=img_size).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model.forward_features(torch.rand(1, in_chans, img_size, img_size))
    assert vit_flops_per_image(arch, img_size, in_chans=in_chans) == pytest.approx(counter.get_total_flops(), rel=1e-3)


def test_vit_b8_costs_what_the_literature_says():
    """ViT-B/8 at 224 px: ~78 GMACs a forward pass (DINO paper's model zoo), i.e. ~156 GFLOPs here."""
    assert vit_flops_per_image("vit_base_patch8", 224, in_chans=3) / 1e9 == pytest.approx(156, rel=0.03)


def test_batch_sweep_times_each_batch_and_projects_the_paper_run():
    result = bench_dino(arch="vit_micro", img_size=32, batch_size=4, steps=2, n_local_crops=2, local_crop_size=16,
                        out_dim=64, rounds=1, batch_sweep=(8,), device="cpu")
    assert [row["batch_size"] for row in result["sweep"]] == [8]
    assert result["sweep"][0]["fits"] and result["sweep"][0]["images_per_s"] > 0
    assert result["largest_batch"] == 8
    rate = result["sweep"][0]["images_per_s"]
    assert result["paper_run_hours"] == pytest.approx(PAPER_DINO_EPOCHS * PAPER_DINO_IMAGES / rate / 3600, abs=0.06)
    assert result["ratio"] > 0


def test_model_variants_time_both_precisions_and_report_unavailable_kernels():
    from dinoxfer_lib.bench.variants import model_variants

    rows = model_variants(arch="vit_micro", img_size=16, batch_size=4, device="cpu", attention=("flash",),
                          compile_modes=(), repeats=1)
    assert [(r["precision"], r["attention"]) for r in rows] == [
        ("fp32 weights, bf16 autocast", "default"), ("fp32 weights, bf16 autocast", "flash"),
        ("bf16 weights", "default"), ("bf16 weights", "flash")]
    assert all(r["images_per_s"] > 0 for r in rows if r["attention"] == "default")
    assert all("images_per_s" in r or r["error"] for r in rows)  # a missing kernel is reported, not fatal


def test_recorded_gpu_runs_name_device_and_commit_and_feed_the_target_check():
    from dinoxfer_lib.bench.recorded import TARGETS, recorded_runs, recorded_summary, target_check

    runs = recorded_runs()
    assert runs, "the package ships the GPU figures the performance chapter shows"
    summary = recorded_summary(runs)
    assert summary[["gpu", "date", "commit"]].notna().all().all()
    assert {"embedding", "dino", "probe_suite"} <= set(summary["benchmark"])

    cpu_run = [{"benchmark": "embedding", "device": "cpu", "size": "demo", "ratio": 3.5},
               {"benchmark": "probe_suite", "device": "cpu", "size": "demo", "ratio": 4.0}]
    check = target_check(cpu_run, runs).set_index(["benchmark", "where"])
    assert len(check) == len(TARGETS)
    assert check.loc[("embedding", "cpu"), "met"] and check.loc[("embedding", "cpu"), "source"] == "this run"
    assert not check.loc[("probe_suite", "cpu"), "met"]
    assert check.loc[("dino", "cpu"), "met"] is None  # not run here, and CPU targets are never taken from records
    assert check.loc[("embedding", "gpu"), "source"].startswith("recorded")


def test_target_check_without_records_says_not_measured(tmp_path):
    from dinoxfer_lib.bench.recorded import recorded_runs, target_check

    check = target_check([], recorded_runs(tmp_path))
    assert (check["source"] == "not measured").all() and check["met"].isna().all()


def test_batch_sweep_stops_at_the_first_batch_that_does_not_fit(monkeypatch):
    """train_dino turns a GPU out-of-memory into BatchTooLarge (tested with the trainer); the sweep records it."""
    import dinoxfer_lib.bench.dino as bench_module
    from dinoxfer_lib.dino.train import BatchTooLarge

    real = bench_module._ours_with_memory

    def fits_up_to_4(images, config, **kwargs):
        if config.batch_size > 4:
            raise BatchTooLarge(f"dino.batch_size = {config.batch_size} does not fit")
        return real(images, config, **kwargs)

    monkeypatch.setattr(bench_module, "_ours_with_memory", fits_up_to_4)
    result = bench_dino(arch="vit_micro", img_size=32, batch_size=4, steps=2, n_local_crops=2, local_crop_size=16,
                        out_dim=64, rounds=1, batch_sweep=(8, 16), device="cpu")
    assert result["sweep"] == [{"batch_size": 8, "fits": False}]  # 16 is not tried after 8 failed
    assert result["largest_batch"] == 4 and result["paper_run_hours"] > 0


def test_readings_work_with_and_without_the_optional_profiles(tmp_path):
    """A record written by ``dinoxfer bench --record`` has no hand-made extras; the chapter's readings still work."""
    from dinoxfer_lib.bench.recorded import (dino_reading, embedding_reading, recorded_result, recorded_runs,
                                             write_record)

    embedding, shipped = recorded_result(recorded_runs(), "embedding")
    assert "MFU" in embedding_reading(embedding, shipped)
    assert "pays for itself only after about" in embedding_reading(embedding, shipped)  # the compiled figures
    dino, run = recorded_result(recorded_runs(), "dino")
    assert "300-epoch" in dino_reading(dino, run)
    overhead = next(run for run in recorded_runs() if "embedding_overhead" in run)
    assert "fixed cost per call" in embedding_reading(recorded_result([overhead], "embedding")[0], overhead)

    extras = ("embedding_steps", "embedding_batch_profile", "embedding_overhead")
    plain = {key: value for key, value in shipped.items() if key not in extras}
    first = write_record(plain, tmp_path)
    second = write_record(plain, tmp_path)  # same machine and day: kept apart, nothing overwritten
    assert first.name == f"h200_{shipped['date']}.json" and second.name == f"h200_{shipped['date']}_2.json"
    embedding, run = recorded_result(recorded_runs(tmp_path), "embedding")
    assert "fixed cost" not in embedding_reading(embedding, run) and "MFU" in embedding_reading(embedding, run)


@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_bench_times_the_extractor_compiled_in_the_mode_asked(capsys, tmp_path):
    from dinoxfer_lib.cli import main

    assert main(["bench", "--size", "small", "--only", "embedding", "--device", "cpu", "--compile",
                 "max-autotune-no-cudagraphs", "--out", str(tmp_path / "b.json")]) == 0
    (result,) = json.loads((tmp_path / "b.json").read_text())
    assert result["compile_mode"] == "max-autotune-no-cudagraphs" and result["compiled_images_per_s"] > 0
    assert main(["bench", "--size", "small", "--only", "embedding", "--compile", "fastest"]) == 2
    assert "compile = 'fastest': expected true, false or one of" in capsys.readouterr().err


def test_record_refuses_anything_but_a_paper_size_gpu_run(capsys):
    from dinoxfer_lib.cli import main

    assert main(["bench", "--size", "small", "--device", "cpu", "--record"]) == 2
    assert "--record keeps GPU figures" in capsys.readouterr().err


def test_a_record_made_from_bench_results_feeds_the_chapter(monkeypatch, tmp_path):
    """What ``--record`` writes on a GPU (the CUDA queries stubbed here) is what the chapter's tables read."""
    import types

    import dinoxfer_lib.bench.recorded as recorded
    from dinoxfer_lib.provenance import source_sha256

    monkeypatch.setattr(recorded.torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85e9))
    monkeypatch.setattr(recorded, "bf16_matmul_tflops", lambda device: 790)
    shipped = recorded.recorded_runs()
    latest = [recorded.recorded_result(shipped, name)[0] for name in ("embedding", "dino", "probe_suite")]
    rows = recorded.recorded_result(shipped, "embedding")[1]["embedding_model_variants"]["rows"]
    record = recorded.make_record(latest, rows, torch.device("cuda"))
    assert record["gpu"] == "NVIDIA H100 80GB HBM3" and record["bf16_matmul_tflops"] == 790
    assert all(result["commit"] for result in record["results"]) and "torch" in record["software"]
    assert {result["source_sha256"] for result in record["results"]} == {source_sha256()[:12]}
    path = recorded.write_record(record, tmp_path)
    assert path.name.startswith("h100_80gb_hbm3_")
    runs = recorded.recorded_runs(tmp_path)
    assert len(recorded.recorded_summary(runs)) == 3
    assert recorded.target_check([], runs).set_index(["benchmark", "where"]).loc[("dino", "gpu"), "met"]
    embedding, run = recorded.recorded_result(runs, "embedding")
    compiled = next(row for row in rows if row["precision"] == "bf16 weights" and row["mode"] == "torch.compile")
    assert f"{compiled['mfu']:.1%} compiled" in recorded.embedding_reading(embedding, run)

    # a later run of one benchmark (``--record --only dino``) supersedes only that one; no variants are timed
    dino_only = recorded.make_record([{**latest[1], "ratio": 1.5}], None, torch.device("cuda"))
    assert "embedding_model_variants" not in dino_only
    recorded.write_record({**dino_only, "time": "23:59 UTC"}, tmp_path)
    runs = recorded.recorded_runs(tmp_path)
    check = recorded.target_check([], runs).set_index(["benchmark", "where"])
    assert check.loc[("dino", "gpu"), "measured"] == 1.5 and not check.loc[("dino", "gpu"), "met"]
    assert check.loc[("embedding", "gpu"), "measured"] == latest[0]["mfu"]
    assert f"{compiled['mfu']:.1%} compiled" in recorded.embedding_reading(*recorded.recorded_result(runs, "embedding"))
