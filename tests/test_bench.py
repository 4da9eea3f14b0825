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


def test_recorded_gpu_runs_name_device_and_commit_and_feed_the_target_table():
    from dinoxfer_lib.bench.records import recorded_runs, recorded_summary
    from dinoxfer_lib.report.performance import GPU_TARGETS, target_table

    runs = recorded_runs()
    assert runs, "the book ships the GPU figures the performance chapter shows"
    summary = recorded_summary(runs)
    assert summary[["gpu", "date", "commit"]].notna().all().all()
    assert {"embedding", "dino", "probe_suite"} <= set(summary["benchmark"])

    cpu_run = [{"benchmark": "embedding", "device": "cpu", "size": "demo", "ratio": 3.5,
                "model_only_images_per_s": 40.0, "reference_images_per_s": 10.0},
               {"benchmark": "probe_suite", "device": "cpu", "size": "demo", "ratio": 4.0}]
    table = target_table(cpu_run, runs)
    gpu = table.xs("GPU", level="where")
    assert len(gpu) == len(GPU_TARGETS) and set(gpu["met"]) <= {"✓", "✗", "—"}
    assert (gpu["source"].str.startswith("recorded")).all()
    cpu = table.xs("CPU", level="where")
    assert list(cpu.index) == ["embedding", "probe_suite"] and (cpu["target"] == "information").all()
    assert cpu.loc["embedding", "note"] == "ceiling 4.00× (backbone alone)" and (cpu["met"] == "—").all()
    # the shipped DINO ratio was measured against an fp32 reference: shown, but not judged
    ratio = gpu[gpu["target"].str.startswith("ratio")].loc["dino"]
    assert ratio["met"] == "—" and "fp32 reference" in ratio["note"]


def test_target_table_without_records_says_not_measured(tmp_path):
    from dinoxfer_lib.bench.records import recorded_runs
    from dinoxfer_lib.report.performance import target_table

    table = target_table([], recorded_runs(tmp_path))
    assert (table["source"] == "not measured").all() and (table["met"] == "—").all()


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
    assert result["reference"] == "fp32, DataLoader without workers"  # main_dino.py's fp16 only on a GPU


def test_readings_work_with_and_without_the_optional_profiles(tmp_path):
    """A record written by ``dinoxfer bench --record`` has no hand-made extras; the chapter's readings still work."""
    from dinoxfer_lib.bench.records import GpuRecord, latest_result, recorded_runs, write_record
    from dinoxfer_lib.report.performance import dino_reading, embedding_reading

    embedding, shipped = latest_result(recorded_runs(), "embedding")
    assert "MFU" in embedding_reading(embedding, shipped)
    assert "pays for itself only after about" in embedding_reading(embedding, shipped)  # the compiled figures
    dino, run = latest_result(recorded_runs(), "dino")
    assert "300-epoch" in dino_reading(dino, run) and "fp32" in dino_reading(dino, run)
    overhead = next(run for run in recorded_runs() if run.overhead())
    assert "fixed cost per call" in embedding_reading(overhead.result("embedding"), overhead)

    extras = ("embedding_steps", "embedding_batch_profile", "embedding_overhead")
    plain = {key: value for key, value in shipped.data.items() if key not in extras}
    first = write_record(plain, tmp_path)
    second = write_record(plain, tmp_path)  # same machine and day: kept apart, nothing overwritten
    assert first.name == f"h200_{plain['date']}.json" and second.name == f"h200_{plain['date']}_2.json"
    embedding, run = latest_result(recorded_runs(tmp_path), "embedding")
    assert isinstance(run, GpuRecord)
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

    import dinoxfer_lib.bench.records as records
    from dinoxfer_lib.bench.dino import reference_recipe
    from dinoxfer_lib.provenance import source_sha256
    from dinoxfer_lib.report.performance import embedding_reading, target_table

    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85e9))
    monkeypatch.setattr(records, "bf16_matmul_tflops", lambda device: 790)
    shipped = records.recorded_runs()
    latest = [records.latest_result(shipped, name)[0] for name in ("embedding", "dino", "probe_suite")]
    latest[1] = {**latest[1], "reference": reference_recipe(torch.device("cuda")), "ratio": 2.5}  # a new record
    rows = records.latest_result(shipped, "embedding")[1].data["embedding_model_variants"]["rows"]
    record = records.make_record(latest, rows, torch.device("cuda"))
    assert record["gpu"] == "NVIDIA H100 80GB HBM3" and record["bf16_matmul_tflops"] == 790
    assert all(result["commit"] for result in record["results"]) and "torch" in record["software"]
    assert {result["source_sha256"] for result in record["results"]} == {source_sha256()[:12]}
    path = records.write_record(record, tmp_path)
    assert path.name.startswith("h100_80gb_hbm3_")
    runs = records.recorded_runs(tmp_path)
    assert len(records.recorded_summary(runs)) == 3
    gpu = target_table([], runs).xs("GPU", level="where")
    assert gpu[gpu["target"].str.startswith("ratio")].loc["dino", "met"] == "✓"
    embedding, run = records.latest_result(runs, "embedding")
    compiled = next(row for row in rows if row["precision"] == "bf16 weights" and row["mode"] == "torch.compile")
    assert f"{compiled['mfu']:.1%} compiled" in embedding_reading(embedding, run)

    # a later run of one benchmark (``--record --only dino``) supersedes only that one; no variants are timed
    dino_only = records.make_record([{**latest[1], "ratio": 1.5}], None, torch.device("cuda"))
    assert "embedding_model_variants" not in dino_only
    records.write_record({**dino_only, "time": "23:59 UTC"}, tmp_path)
    runs = records.recorded_runs(tmp_path)
    gpu = target_table([], runs).xs("GPU", level="where")
    ratio = gpu[gpu["target"].str.startswith("ratio")].loc["dino"]
    assert ratio["measured"] == "1.50×" and ratio["met"] == "✗"
    assert gpu[gpu["target"].str.startswith("MFU >=")].loc["embedding", "measured"] == f"{latest[0]['mfu']:.1%}"
    assert f"{compiled['mfu']:.1%} compiled" in embedding_reading(*records.latest_result(runs, "embedding"))


def test_record_dir_is_beside_the_book_and_can_be_chosen(capsys, tmp_path):
    from dinoxfer_lib.bench.records import RECORD_DIR
    from dinoxfer_lib.cli import main

    assert RECORD_DIR.parts[-3:] == ("book", "performance", "records") and "dinoxfer_lib" not in RECORD_DIR.parts
    assert main(["bench", "--size", "small", "--device", "cpu", "--record", "--record-dir", str(tmp_path)]) == 2
    assert "--record keeps GPU figures" in capsys.readouterr().err  # still refused off a GPU
