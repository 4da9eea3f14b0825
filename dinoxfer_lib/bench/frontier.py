"""The measured frontier: what more CPU minutes of DINO buy the OpenCell backbone.

The book's targets (chapter 04) ask that the DINO-trained OpenCell backbone beat the same network with random weights
within the book's CPU budget. This measures what each budget buys: the profile's DINO recipe at several epoch counts
(the schedules stretch with them; by default a quarter, half, all and twice the profile's), each trained on the
non-test images of the split by image and probed as chapter 02 does (the profile's MLP probe on the trained and the
random-weights embeddings, the same folds and test images, a paired bootstrap over the test images), with the wall
time of the training. It runs for many minutes, so the book does not run it: ``dinoxfer frontier`` writes a record
(machine, date, commit, every point) into ``book/performance/frontier/``, and chapter 04 shows the latest record of
its profile as a recorded measurement, never as the build's own.

Each budget trains in its own store, ``<runs>/frontier/e<epochs>/`` (the OpenCell dataset is generated there again,
a few seconds), so the book's own stages are never replaced.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dinoxfer_lib.bench.records import write_numbered
from dinoxfer_lib.provenance import git_state

# The frontier records the book ships, in a checkout: ``book/performance/frontier`` at the repository's root.
FRONTIER_DIR = Path(__file__).resolve().parents[2] / "book" / "performance" / "frontier"


def default_epochs(profile_epochs: int) -> list[int]:
    """A quarter, half, all and twice the profile's epochs (those of at least one epoch, without repeats)."""
    return sorted({max(1, round(profile_epochs * f)) for f in (0.25, 0.5, 1, 2)})


def measure_frontier(profile: str, overrides: Mapping[str, Any] | None = None, *, epochs: Sequence[int],
                     runs_root: str | Path = "runs", progress: bool = False) -> list[dict]:
    """One point per epoch count: DINO steps and training seconds, test macro F1 of the trained and random-weights
    OpenCell embeddings (mean over fold models) and the paired bootstrap difference with its 95 % interval."""
    from dinoxfer_lib import pipeline
    from dinoxfer_lib.pipeline.dino import DinoRun, train_backbone
    from dinoxfer_lib.report import pretraining

    points = []
    for n_epochs in epochs:
        scaled = {**(overrides or {})}
        scaled["dino"] = {**scaled.get("dino", {}), "epochs": n_epochs}
        run = pipeline.open_run(profile, scaled, runs_root=Path(runs_root) / "frontier" / f"e{n_epochs}")
        dino_run = DinoRun.load(train_backbone(run, "opencell", grouped=False, progress=progress))
        result = pipeline.load_trained_vs_random(run)
        labels = pipeline.load_datasets(run, ("opencell",))["opencell"].labels
        table = result.table()
        rows = table[table["probe"] == "mlp"].set_index("set")
        paired = pretraining.trained_vs_random(result, labels, seed=run.config.seed).iloc[-1]
        health = pretraining.health_table({"opencell": dino_run}, out_dim=run.config.dino.out_dim)
        points.append({
            "epochs": n_epochs, "steps": dino_run.summary["steps"],
            "dino_seconds": round(dino_run.summary["wall_time_s"], 1),  # when trained, also if reused now
            "trained_f1": round(float(rows.loc["DINO-trained", "test_f1_mean"]), 4),
            "random_f1": round(float(rows.loc["random init", "test_f1_mean"]), 4),
            "difference": round(float(paired["difference"]), 4), "low": round(float(paired["low"]), 4),
            "high": round(float(paired["high"]), 4), "healthy": bool(health["healthy"].eq("✓").all()),
        })
    return points


def recipe_fields(config) -> dict:
    """The recipe a frontier was measured with (JSON-ready): ``{"dino": ..., "probe": ...}``, every field of the
    run config's DINO recipe but the epochs it varies, and every field of the probe that scores each budget."""
    def fields(section) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(section), default=list))

    dino = fields(config.dino)
    dino.pop("epochs")
    return {"dino": dino, "probe": fields(config.probe)}


def recipe_differences(record: dict, config) -> list[str]:
    """The recipe fields (``dino.<field>``, ``probe.<field>``) in which ``config`` differs from the recipe ``record``
    was measured with."""
    recorded, now = record.get("recipe", {}), recipe_fields(config)
    return [f"{section}.{key}" for section in now for key in sorted(now[section])
            if recorded.get(section, {}).get(key) != now[section][key]]


def make_frontier_record(points: list[dict], *, profile: str, config,
                         overrides: Mapping[str, Any] | None = None) -> dict:
    """The points with where, when and from which commit they were measured, and the recipe (``config``, the
    profile's run config with ``overrides``: its DINO epochs and the DINO and probe recipes)."""
    import torch

    git = git_state()
    return {
        "profile": profile, "profile_epochs": config.dino.epochs, "recipe": recipe_fields(config),
        "overrides": dict(overrides or {}),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads)",
        "date": datetime.date.today().isoformat(),
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M UTC"),
        "commit": (git["commit"] or "unknown")[:7] + ("+dirty" if git["dirty"] else ""),
        "command": f"dinoxfer frontier --profile {profile} --epochs " + " ".join(str(p["epochs"]) for p in points),
        "points": points,
    }


def write_frontier_record(record: dict, folder: str | Path = FRONTIER_DIR) -> Path:
    """``<profile>_<date>.json`` in ``folder`` (numbered when one exists, :func:`~.records.write_numbered`)."""
    return write_numbered(record, folder, f"{record['profile']}_{record['date']}")


def latest_frontier(profile: str, folder: str | Path = FRONTIER_DIR) -> dict | None:
    """The latest frontier record of ``profile`` (by date and time of day), or None."""
    records = [json.loads(path.read_text()) for path in Path(folder).glob("*.json")]
    records = [r for r in records if r["profile"] == profile]
    return max(records, key=lambda r: (r["date"], r["time"])) if records else None


def frontier_table(record: dict) -> pd.DataFrame:
    """One row per budget: steps, DINO minutes, trained and random F1, the paired difference and its interval."""
    table = pd.DataFrame(record["points"])
    table.insert(2, "dino_minutes", (table.pop("dino_seconds") / 60).round(2))
    table["interval"] = [f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(table.pop("low"), table.pop("high"))]
    table["healthy"] = table["healthy"].map({True: "✓", False: "✗"})
    table["this profile"] = (table["epochs"] == record["profile_epochs"]).map({True: "◀", False: ""})
    return table.set_index("epochs")
