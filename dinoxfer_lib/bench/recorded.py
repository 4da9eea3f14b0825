"""Benchmarks recorded on GPU machines, and the design's speed targets checked against them.

The book is built on machines without a GPU, so GPU figures cannot come from the run that builds it. They are
measured with ``dinoxfer bench --size paper`` (and ``python -m dinoxfer_lib.bench.variants``) on a GPU machine and
kept as JSON in this package's ``recorded`` folder, one file per machine and day, naming the device, the software
and the commit of every figure. The performance chapter shows them as recorded figures, never as this run's.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

import pandas as pd

RECORDED = Path(__file__).with_name("recorded")

# (benchmark, where, field, comparison, target): the design's targets (issues #3, #4, #5)
TARGETS = (
    ("embedding", "cpu", "ratio", ">=", 3.0),
    ("embedding", "gpu", "mfu", ">=", 0.40),
    ("dino", "cpu", "ratio", ">=", 2.0),
    ("dino", "gpu", "ratio", ">=", 2.0),
    ("probe_suite", "cpu", "ratio", ">=", 10.0),
    ("probe_suite", "gpu", "ours_s", "<=", 30.0),
)
_COMPARE = {">=": operator.ge, "<=": operator.le}


def recorded_runs(folder: Path = RECORDED) -> list[dict]:
    """Every recorded GPU run, oldest first."""
    return sorted((json.loads(path.read_text()) for path in folder.glob("*.json")), key=lambda run: run["date"])


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
            latest = recorded_result(runs, benchmark) if where == "gpu" else None
            result, source = (None, "") if latest is None else (
                latest[0], f"recorded {latest[1]['date']} on {latest[1]['gpu']}")
        value = None if result is None else result.get(field)
        rows.append({"benchmark": benchmark, "where": where, "target": f"{field} {comparison} {target:g}",
                     "measured": value, "source": source or "not measured",
                     "met": None if value is None else bool(_COMPARE[comparison](value, target))})
    return pd.DataFrame(rows)
