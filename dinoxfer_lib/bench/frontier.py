"""The measured frontier: what more CPU minutes of DINO buy the book's paired targets.

The book's targets (chapter 04) ask that the DINO-trained OpenCell backbone beat the same network with random weights
and that HPA-like pretraining beat natural-image pretraining, on the split by image and grouped by protein, within
the book's CPU budget. This measures what each budget buys: the profile's DINO recipe at several epoch counts (the
schedules stretch with them; by default a quarter, half, all and twice the profile's), training the four backbones
those comparisons need (:data:`BACKBONES`), then probing the rows they compare as chapter 04 does (the profile's MLP
probe, the same folds and test images, the paired bootstrap over the test images), with the wall time of the
training. It runs for many minutes, so the book does not run it: ``dinoxfer frontier`` writes a record (machine,
date, commit, recipe, every point) into ``book/performance/frontier/``, and chapter 04 shows the latest record of its
profile as a recorded measurement, never as the build's own (:func:`frontier_table`, :func:`frontier_targets_table`,
:func:`frontier_note`).

Each budget trains in its own store, ``<runs>/frontier/e<epochs>/`` (the datasets are generated there again, about
a minute on ``demo``), so the book's own stages are never replaced. A budget takes most of an hour on ``demo``, so a
record can be extended: ``--extend RECORD`` measures only new budgets with the same recipe and writes a new record
holding both runs' points, each run's provenance kept (:func:`read_extendable`, :func:`extend_frontier_record`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dinoxfer_lib.bench.records import write_numbered
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.provenance import commit_label, git_state

# The frontier records the book ships, in a checkout: ``book/performance/frontier`` at the repository's root.
FRONTIER_DIR = Path(__file__).resolve().parents[2] / "book" / "performance" / "frontier"
# What a point trains: name -> (domain, grouped), the OpenCell backbone of each split and the two pretraining domains.
BACKBONES = {"opencell": ("opencell", False), "opencell_grouped": ("opencell", True), "hpa": ("hpa", False),
             "natural": ("natural", False)}
# The splits each point probes, as chapter 04 labels them.
SPLITS = {"by image": False, "grouped by protein": True}
# Where, when and from which commit one `dinoxfer frontier` run measured its points.
PROVENANCE = ("command", "machine", "date", "time", "commit")


def default_epochs(profile_epochs: int) -> list[int]:
    """A quarter, half, all and twice the profile's epochs (those of at least one epoch, without repeats)."""
    return sorted({max(1, round(profile_epochs * f)) for f in (0.25, 0.5, 1, 2)})


def measure_frontier(profile: str, overrides: Mapping[str, Any] | None = None, *, epochs: Sequence[int],
                     runs_root: str | Path = "runs", progress: bool = False) -> list[dict]:
    """One point per epoch count: the OpenCell backbone's DINO steps and training seconds, test macro F1 of its
    trained and random-weights embeddings (mean over fold models) with the paired bootstrap difference and its
    95 % interval, and under ``comparisons`` every paired target of chapter 04 on both splits (:func:`comparisons`).
    """
    from dinoxfer_lib import pipeline
    from dinoxfer_lib.pipeline.dino import DinoRun, train_backbone
    from dinoxfer_lib.report import pretraining

    points = []
    for n_epochs in epochs:
        scaled = {**(overrides or {})}
        scaled["dino"] = {**scaled.get("dino", {}), "epochs": n_epochs}
        run = pipeline.open_run(profile, scaled, runs_root=Path(runs_root) / "frontier" / f"e{n_epochs}")
        runs = {name: DinoRun.load(train_backbone(run, domain, grouped=grouped, progress=progress))
                for name, (domain, grouped) in BACKBONES.items()}
        measured = comparisons(run)
        opencell, by_image = runs["opencell"], measured[0]
        health = pretraining.health_table(runs, out_dim=run.config.dino.out_dim)
        points.append({
            "epochs": n_epochs, "steps": opencell.summary["steps"],
            "dino_seconds": round(opencell.summary["wall_time_s"], 1),  # when trained, also if reused now
            "trained_f1": by_image["a_f1"], "random_f1": by_image["b_f1"], "difference": by_image["difference"],
            "low": by_image["low"], "high": by_image["high"],
            "healthy": bool(health.loc["opencell", "healthy"].eq("✓").all()),
            "dino_seconds_all": round(sum(r.summary["wall_time_s"] for r in runs.values()), 1),
            "comparisons": measured,
        })
    return points


def comparisons(run) -> list[dict]:
    """Chapter 04's paired targets (DINO-trained OpenCell minus random weights, HPA-like minus natural-image
    pretraining) on the split by image and grouped by protein, from the rows alone
    (:func:`~dinoxfer_lib.pipeline.load_target_rows`) with the book's bootstrap: one dict per (split, pair) with
    both rows' test F1, the difference and its 95 % interval, rounded for the record."""
    from dinoxfer_lib import pipeline
    from dinoxfer_lib.report.classifier import PAIRED_TARGETS, RESAMPLES
    from dinoxfer_lib.stats import paired_bootstrap

    labels = pipeline.load_datasets(run, ("opencell",))["opencell"].labels
    measured = []
    for split, grouped in SPLITS.items():
        result = pipeline.load_target_rows(run, grouped=grouped)
        table = result.table()
        f1 = table[table["probe"] == "mlp"].set_index("set")["test_f1_mean"]
        pairs = list(PAIRED_TARGETS)
        paired = paired_bootstrap(result, labels, pairs=pairs, n_resamples=RESAMPLES, seed=run.config.seed)
        for ((a, _), (b, _)), (_, row) in zip(pairs, paired.iterrows()):
            measured.append({"split": split, "a": a, "b": b, "a_f1": round(float(f1[a]), 4),
                             "b_f1": round(float(f1[b]), 4), "difference": round(float(row["difference"]), 4),
                             "low": round(float(row["low"]), 4), "high": round(float(row["high"]), 4)})
    return measured


def recipe_fields(config) -> dict:
    """The recipe a frontier was measured with (JSON-ready): ``{"dino": ..., "probe": ..., "data": ...}``, every
    field of the run config's DINO recipe but the epochs it varies, every field of the probe that scores each
    budget, and the data it ran on (each domain's config and the synthetic world's version)."""
    from dinoxfer_lib.data.synthetic import WORLD_VERSION
    from dinoxfer_lib.pipeline.run import DOMAINS

    def fields(section) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(section), default=list))

    dino = fields(config.dino)
    dino.pop("epochs")
    data = {domain: fields(getattr(config.data, domain)) for domain in DOMAINS}
    return {"dino": dino, "probe": fields(config.probe), "data": {**data, "world": WORLD_VERSION}}


def recipe_differences(record: dict, config) -> list[str]:
    """The recipe fields (``dino.<field>``, ``probe.<field>``, ``data.<domain>``, ``data.world``) in which
    ``config`` differs from the recipe ``record`` was measured with; ``data (not recorded)`` for a record older
    than the data section."""
    recorded, now = record.get("recipe", {}), recipe_fields(config)
    differences = []
    for section, fields in now.items():
        if section not in recorded:
            differences.append(f"{section} (not recorded)")
        else:
            differences += [f"{section}.{key}" for key in sorted(fields) if recorded[section].get(key) != fields[key]]
    return differences


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
        "commit": commit_label(git),
        "command": f"dinoxfer frontier --profile {profile} --epochs " + " ".join(str(p["epochs"]) for p in points),
        "points": points,
    }


def measurements(record: dict) -> list[dict]:
    """The `dinoxfer frontier` runs behind a record, oldest first: each run's :data:`PROVENANCE` and the
    ``epochs`` it measured (one run unless the record was extended)."""
    return record.get("measurements") or [
        {"epochs": [point["epochs"] for point in record["points"]], **{key: record[key] for key in PROVENANCE}}]


def read_extendable(path: str | Path, *, profile: str, config, overrides: Mapping[str, Any] | None,
                    epochs: Sequence[int]) -> dict:
    """The record at ``path``, when budgets ``epochs`` measured now (``profile``, its run ``config`` with
    ``overrides``) may join it: same profile, recipe and overrides, none of the budgets already measured. Checked
    before any training, so that an hour of it is never spent on points that cannot join.

    Raises
    ------
    ConfigError
        Naming the file and what differs.
    """
    try:
        earlier = json.loads(Path(path).read_text())
        recorded = {int(point["epochs"]) for point in earlier["points"]}
        recorded_profile = earlier["profile"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--extend {path}: not a readable frontier record (expected the JSON `dinoxfer frontier` "
                          f"writes, with profile and points): {error}") from None
    if recorded_profile != profile:
        raise ConfigError(f"--extend {path}: a record of the {recorded_profile!r} profile, not {profile!r}")
    differences = recipe_differences(earlier, config)
    if earlier.get("overrides", {}) != dict(overrides or {}):
        differences.append("overrides")
    if differences:
        raise ConfigError(f"--extend {path}: measured with another recipe (differs in {', '.join(differences)}); "
                          "its points cannot join these")
    if repeated := sorted(recorded & set(epochs)):
        raise ConfigError(f"--extend {path}: already holds {', '.join(map(str, repeated))} epochs; measure only new "
                          "budgets, or measure them all again without --extend")
    return earlier


def extend_frontier_record(earlier: dict, record: dict) -> dict:
    """``record`` (just measured) holding ``earlier``'s points too, in order of epochs, with every run's provenance
    under ``measurements`` (:func:`measurements`); ``earlier`` as checked by :func:`read_extendable`."""
    points = sorted(earlier["points"] + record["points"], key=lambda point: point["epochs"])
    return {**record, "points": points, "measurements": measurements(earlier) + measurements(record)}


def write_frontier_record(record: dict, folder: str | Path = FRONTIER_DIR) -> Path:
    """``<profile>_<date>.json`` in ``folder`` (numbered when one exists, :func:`~.records.write_numbered`)."""
    return write_numbered(record, folder, f"{record['profile']}_{record['date']}")


def latest_frontier(profile: str, folder: str | Path = FRONTIER_DIR) -> dict | None:
    """The latest frontier record of ``profile`` (by date and time of day), or None."""
    records = [json.loads(path.read_text()) for path in Path(folder).glob("*.json")]
    records = [r for r in records if r["profile"] == profile]
    return max(records, key=lambda r: (r["date"], r["time"])) if records else None


def frontier_table(record: dict, *, profile_epochs: int | None = None) -> pd.DataFrame:
    """One row per budget: steps, minutes of DINO (the OpenCell backbone; the four a point trains, where recorded),
    the OpenCell backbone's trained and random F1 by image, the paired difference and its interval, and ◀ at
    ``profile_epochs`` (the build's epochs; by default the profile's when the record was made)."""
    table = pd.DataFrame(record["points"]).drop(columns="comparisons", errors="ignore")
    table.insert(2, "dino_minutes", (table.pop("dino_seconds") / 60).round(2))
    if "dino_seconds_all" in table:
        table.insert(3, "minutes, 4 backbones", (table.pop("dino_seconds_all") / 60).round(1))
    table["interval"] = [f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(table.pop("low"), table.pop("high"))]
    table["healthy"] = table["healthy"].map({True: "✓", False: "✗"})
    marked = record["profile_epochs"] if profile_epochs is None else profile_epochs
    table["this profile"] = (table["epochs"] == marked).map({True: "◀", False: ""})
    return table.set_index("epochs")


def frontier_comparisons(record: dict) -> pd.DataFrame:
    """Every recorded paired comparison at every budget, one row each: ``epochs``, ``steps``, ``dino_seconds``,
    ``split``, ``a``, ``b``, ``a_f1``, ``b_f1``, ``difference``, ``low``, ``high`` and ``pair`` (its key in
    :data:`~dinoxfer_lib.report.classifier.PAIRED_TARGETS`). A record written before the frontier measured both
    splits holds the OpenCell backbone against random weights by image alone."""
    from dinoxfer_lib.probes.ceiling import FLOOR_SET

    rows = []
    for point in record["points"]:
        budget = {key: point[key] for key in ("epochs", "steps", "dino_seconds")}
        measured = point.get("comparisons") or [
            {"split": "by image", "a": "opencell_native", "b": FLOOR_SET, "a_f1": point["trained_f1"],
             "b_f1": point["random_f1"], **{key: point[key] for key in ("difference", "low", "high")}}]
        rows += [{**budget, **comparison} for comparison in measured]
    table = pd.DataFrame(rows)
    table["pair"] = [((a, "mlp"), (b, "mlp")) for a, b in zip(table["a"], table["b"])]  # the probe is the MLP
    return table


def frontier_note(record: dict | None, *, profile: str, config) -> str:
    """Where the recorded frontier comes from, whether it was measured with this build's DINO and probe recipes
    (``config``, the run config), and what it says about each target it measured, per split: the smallest budget
    that met it, or the best value measured and its cost."""
    from dinoxfer_lib.probes.ceiling import FLOOR_SET
    from dinoxfer_lib.report.classifier import PAIRED_TARGETS, TARGET_BEST_F1, interval, paired_target_met

    if record is None:
        return (f"No frontier is recorded for the `{profile}` profile: `dinoxfer frontier --profile {profile}` "
                "measures it and writes it beside the book.")
    runs = [f"`{run['command']}` on {run['machine']}, {run['date']} (commit {run['commit']})"
            for run in measurements(record)]
    listed = "; ".join(runs[:-1]) + " and " + runs[-1] if len(runs) > 1 else runs[0]  # a run's text holds commas
    source = f"Recorded by {listed}, not by this build."
    if differences := recipe_differences(record, config):
        source += (f" **It was measured with another recipe** (differs in {', '.join(differences)}): run the "
                   "command again to measure this one.")
    rows = frontier_comparisons(record)
    rows["rank"] = [list(PAIRED_TARGETS).index(pair) for pair in rows["pair"]]  # each target's splits together
    lines = []
    for _, group in rows.sort_values("rank", kind="stable").groupby(["rank", "split"], sort=False):
        pair, split = group["pair"].iloc[0], group["split"].iloc[0]
        name, required = PAIRED_TARGETS[pair]
        label = f"**{name.removesuffix(' [95 % CI]')}, {split}** ({required})"
        met = group[[paired_target_met(pair, d, lo) for d, lo in zip(group["difference"], group["low"])]]
        if len(met):
            first = met.iloc[0]
            lines.append(f"{label}: first met at {_budget(first)}: "
                         f"{interval(first['difference'], first['low'], first['high'])}.")
        else:
            best = group.loc[group["difference"].idxmax()]
            lines.append(f"{label}: no measured budget meets the target; the largest difference, "
                         f"{interval(best['difference'], best['low'], best['high'])}, took {_budget(best)}.")
    for split, group in rows.groupby("split", sort=False):
        scores = pd.concat([group[["epochs", "steps", "dino_seconds", side, f"{side}_f1"]].set_axis(
            ["epochs", "steps", "dino_seconds", "set", "f1"], axis=1) for side in ("a", "b")], ignore_index=True)
        scores = scores[scores["set"] != FLOOR_SET].drop_duplicates(["epochs", "set"]).sort_values(
            ["epochs", "f1"], ascending=[True, False])
        label = f"**Best of the probed Table III rows, {split}** (test macro F1 ≥ {TARGET_BEST_F1})"
        reached = scores[scores["f1"] >= TARGET_BEST_F1]
        best = reached.iloc[0] if len(reached) else scores.loc[scores["f1"].idxmax()]
        verb = "first reached at" if len(reached) else "not reached at any measured budget; the highest took"
        estimate = "" if len(reached) else _doubling_estimate(scores.groupby("epochs")["f1"].max(), TARGET_BEST_F1)
        lines.append(f"{label}: {verb} {_budget(best)}: {best['f1']:.3f} ({best['set']}).{estimate}")
    then = "" if record["profile_epochs"] == config.dino.epochs else f" (it trained {record['profile_epochs']} then)"
    return (f"{source} This profile trains {config.dino.epochs} epochs{then}.\n\n"
            + "\n".join(f"- {line}" for line in lines))


def frontier_targets_table(record: dict) -> pd.DataFrame:
    """The recorded frontier's paired comparisons: one row per (target, split), one column per budget, each cell
    "a F1 − b F1 = difference [95 % CI]" with ✓ where the target is met."""
    from dinoxfer_lib.report.classifier import PAIRED_TARGETS, interval, paired_target_met

    cells = []
    for row in frontier_comparisons(record).itertuples(index=False):
        mark = "✓" if paired_target_met(row.pair, row.difference, row.low) else "✗"
        cells.append({"target": PAIRED_TARGETS[row.pair][0].removesuffix(" [95 % CI]"), "split": row.split,
                      "budget": f"{row.epochs} epochs ({row.dino_seconds / 60:.1f} min)",
                      "cell": f"{row.a_f1:.3f} − {row.b_f1:.3f} = {interval(row.difference, row.low, row.high)} "
                              f"{mark}"})
    table = pd.DataFrame(cells)
    order = list(dict.fromkeys(table["budget"]))
    return table.pivot(index=["target", "split"], columns="budget", values="cell")[order].rename_axis(columns=None)


def _doubling_estimate(best_by_epochs: pd.Series, target: float) -> str:
    """What would reach ``target``, extrapolated at the rate of the last measured doubling of epochs (the largest
    budget against half of it); empty when the record has no such pair."""
    top = int(best_by_epochs.index.max())
    if top % 2 or top // 2 not in best_by_epochs.index:
        return ""
    rise = best_by_epochs[top] - best_by_epochs[top // 2]
    span = f"{top // 2} → {top} epochs"
    if rise <= 0:
        return (f" It did not rise over the last doubling ({span}: {rise:+.3f}), so more epochs alone are not seen to "
                "reach it.")
    doublings = math.ceil(round((target - best_by_epochs[top]) / rise, 6))  # 0.18 / 0.03 is 6, not 6.000000000000005
    return (f" At the rate of the last doubling ({span}: {rise:+.3f}) it would take about {doublings} more "
            f"doubling{'s' if doublings > 1 else ''}, {top * 2 ** doublings} epochs (extrapolated, not measured).")


def _budget(point) -> str:
    return (f"{point['epochs']} epochs ({point['steps']} steps, {point['dino_seconds'] / 60:.1f} CPU minutes of "
            "DINO)")
