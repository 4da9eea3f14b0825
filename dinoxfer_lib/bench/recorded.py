"""Benchmarks recorded on GPU machines, and the design's speed targets checked against them.

The book is built on machines without a GPU, so GPU figures cannot come from the run that builds it. They are
measured with ``dinoxfer bench --size paper --record`` on a GPU machine, which also times the backbone variants
(:mod:`dinoxfer_lib.bench.variants`) and writes one JSON file per machine and day into this package's ``recorded``
folder, naming the device, the software and the commit of every figure. The performance chapter shows them as
recorded figures, never as this run's.
"""

from __future__ import annotations

import datetime
import json
import operator
import time
from pathlib import Path

import pandas as pd
import torch

from dinoxfer_lib.bench.dino import OPENCELL_IMAGES
from dinoxfer_lib.provenance import git_state, package_versions

RECORDED = Path(__file__).with_name("recorded")

# (benchmark, where, field, comparison, target): the design's targets (issues #3, #4, #5)
TARGETS = (
    ("embedding", "cpu", "ratio", ">=", 3.0),
    ("embedding", "gpu", "mfu", ">=", 0.40),
    ("embedding", "gpu, compiled", "compiled_mfu", ">=", 0.40),
    ("dino", "cpu", "ratio", ">=", 2.0),
    ("dino", "gpu", "ratio", ">=", 2.0),
    ("probe_suite", "cpu", "ratio", ">=", 10.0),
    ("probe_suite", "gpu", "ours_s", "<=", 30.0),
)
_COMPARE = {">=": operator.ge, "<=": operator.le}


def bf16_matmul_tflops(device: torch.device, side: int = 8192, repeats: int = 20) -> float:
    """The card's practical bf16 ceiling: TFLOP/s of a large matrix product on random data."""
    a = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize(device)
    return round(repeats * 2 * side**3 / (time.perf_counter() - started) / 1e12)


def make_record(results: list[dict], variants: list[dict] | None, device: torch.device) -> dict:
    """One recorded GPU run: the device, the software, the commit and every figure (what the chapter reads);
    ``variants`` (the backbone alone, :mod:`~dinoxfer_lib.bench.variants`) where the run timed the extractor.
    The chapter reads each benchmark from the latest run that recorded it."""
    properties = torch.cuda.get_device_properties(device)
    versions, git = package_versions(), git_state()
    record = {
        "device": f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB)",
        "gpu": properties.name,
        "date": datetime.date.today().isoformat(),
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M UTC"),
        "software": f"Python {versions['python']}, torch {torch.__version__}, timm {versions.get('timm', '?')}, "
                    f"CUDA {torch.version.cuda}",
        "bf16_matmul_tflops": bf16_matmul_tflops(device),
        "results": [{**result, "commit": (git["commit"] or "unknown")[:7] + ("+dirty" if git["dirty"] else ""),
                     "source_sha256": git["source_sha256"][:12]} for result in results],
    }
    if variants is not None:
        record["embedding_model_variants"] = {"command": "python -m dinoxfer_lib.bench.variants", "rows": variants}
    return record


def write_record(record: dict, folder: Path = RECORDED) -> Path:
    """``<gpu>_<date>.json`` in ``folder``; an existing file of that name is kept and the new one numbered."""
    stem = f"{record['gpu'].lower().replace('nvidia', '').strip().replace(' ', '_')}_{record['date']}"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}_{n}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))
    return path


def recorded_runs(folder: Path = RECORDED) -> list[dict]:
    """Every recorded GPU run, oldest first (by date, then time of day where recorded)."""
    return sorted((json.loads(path.read_text()) for path in folder.glob("*.json")),
                  key=lambda run: (run["date"], run.get("time", "")))


def recorded_summary(runs: list[dict]) -> pd.DataFrame:
    """One row per recorded benchmark: where and when, ours vs the reference, the ratio, MFU and GPU memory."""
    rows = []
    for run in runs:
        for result in run["results"]:
            rate = "ours_images_per_s" in result
            rows.append({
                "benchmark": result["benchmark"], "gpu": run["gpu"], "date": run["date"],
                "unit": "images/s" if rate else "seconds",
                "ours": result["ours_images_per_s" if rate else "ours_s"],
                "reference": result["reference_images_per_s" if rate else "reference_s"],
                "ratio": result["ratio"], "mfu": result.get("mfu"), "peak_memory_gib": result.get("peak_memory_gib"),
                "commit": result.get("commit"),
            })
    return pd.DataFrame(rows)


def recorded_result(runs: list[dict], benchmark: str) -> tuple[dict, dict] | None:
    """(the latest recorded result of ``benchmark``, its run), or None."""
    found = [(result, run) for run in runs for result in run["results"] if result["benchmark"] == benchmark]
    return found[-1] if found else None


def target_check(measured: list[dict], runs: list[dict]) -> pd.DataFrame:
    """Each target beside the figure it is judged on: this run's for CPU targets when it ran on a CPU (and for GPU
    targets when it ran the paper size on a GPU), else the latest recorded GPU figure."""
    here = {result["benchmark"]: result for result in measured}
    rows = []
    for benchmark, where, field, comparison, target in TARGETS:
        result, source = here.get(benchmark), "this run"
        this_run_counts = result is not None and (
            result["device"] == "cpu" if where == "cpu" else result["device"] == "cuda" and result["size"] == "paper")
        if not this_run_counts:
            latest = recorded_result(runs, benchmark) if where != "cpu" else None
            result, source = (None, "") if latest is None else (
                latest[0], f"recorded {latest[1]['date']} on {latest[1]['gpu']}")
        value = None if result is None else result.get(field)
        rows.append({"benchmark": benchmark, "where": where, "target": f"{field} {comparison} {target:g}",
                     "measured": value, "source": source or "not measured",
                     "met": None if value is None else bool(_COMPARE[comparison](value, target))})
    return pd.DataFrame(rows)


def dino_reading(result: dict, run: dict) -> str:
    """What the recorded DINO figures mean for a user: the batch that fits and the paper run's cost."""
    text = (f"Our step is {result['ratio']:.1f}× the usual fp32 DataLoader step at batch {result['batch_size']} on "
            f"the {run['gpu']}.")
    if "largest_batch" in result:
        text += (f" The largest batch tried that fits is **{result['largest_batch']}**, and the paper's 300-epoch "
                 f"OpenCell run would take about **{result['paper_run_hours']} h** on that one GPU.")
    return text


def embedding_reading(result: dict, run: dict) -> str:
    """Where the recorded extractor stands against the backbone alone and the 40 % MFU target, and why."""
    variants = pd.DataFrame(run["embedding_model_variants"]["rows"])
    bf16 = variants.query("precision == 'bf16 weights' and attention == 'default'").set_index("mode")
    text = (f"End to end over {result['n_images']:,} images (uint16 {result['stored_size']} px images resized and "
            f"scaled on the GPU, then embedded) the extractor reaches **{result['mfu']:.1%} MFU** "
            f"({result['ours_images_per_s']:.0f} images/s), "
            f"{result['ours_images_per_s'] / result['model_only_images_per_s']:.0%} of the backbone alone over as "
            f"many images.")
    if "compiled_mfu" in result:
        payback = result["compile_seconds"] / (1 / result["ours_images_per_s"] - 1 / result["compiled_images_per_s"])
        mode = result.get("compile_mode", "default")
        how = ("`compile=True` (`embed.compile: true` in a profile)" if mode == "default"
               else f"`compile=\"{mode}\"` (`embed.compile: {mode}`)")
        text += (f" With {how} it reaches **{result['compiled_mfu']:.1%}"
                 f"** ({result['compiled_images_per_s']:.0f} images/s) after {result['compile_seconds']:.0f} s of "
                 f"compilation on a fresh machine, which pays for itself only after about {round(payback, -4):,.0f} "
                 f"images in one process: not on OpenCell's {OPENCELL_IMAGES:,}, so it is off by default.")
    text += (f" The backbone alone with bf16 weights reaches {bf16.loc['eager', 'mfu']:.1%} eager")
    if "torch.compile" in bf16.index:
        text += f" and {bf16.loc['torch.compile', 'mfu']:.1%} compiled"
    for mode in (m for m in bf16.index if m.startswith("torch.compile ")):  # the other compile modes
        text += f" ({bf16.loc[mode, 'mfu']:.1%} with {mode.removeprefix('torch.compile ')})"
    text += " in a short burst (table above): that bounds any extractor of this model on this card."
    overhead = run.get("embedding_overhead")
    if overhead:
        drop = 1 - overhead["backbone_sustained_images_per_s"] / overhead["backbone_burst_images_per_s"]
        fixed_ms = 1000 * (overhead["one_batch_extractor_s"] - overhead["one_batch_backbone_s"])
        text += (f" Run for 24 batches in a row instead of 4 it is {drop:.0%} slower (under sustained load; the clocks "
                 f"were not read). The rest is a fixed cost per call of about {fixed_ms:.0f} ms (one batch through "
                 f"the extractor against the backbone alone: the bf16 copy of the backbone, the first batch's read "
                 f"and transfer, the output's setup) and the per-batch conversion, resize and percentile scaling")
        profile = run.get("embedding_batch_profile", {}).get("ms")
        if profile:
            preprocess = sum(v for k, v in profile.items() if k.startswith(("uint16", "antialiased", "percentile")))
            encoder_ms = profile["encoder (scaling + bf16 ViT-B/8)"]
            text += f" ({preprocess:.1f} ms against the encoder's {encoder_ms:.0f} ms per batch of 256; one profile)"
        text += "."
    return text
