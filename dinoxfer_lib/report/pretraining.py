"""Chapter 02 (pretraining): the recipes beside the official ones, each run's summary, trained vs random, and the
comparison of the objectives (DINO vs DINOv2, joint channels vs bag of channels, scratch vs "+" initialisation)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dinoxfer_lib.dino.config import DINOv2Config, DinoConfig
from dinoxfer_lib.dino.health import health_checks
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.common import recipe_table, summarise
from dinoxfer_lib.stats import fold_differences, paired_bootstrap

# The rows of the run summary a reader needs first; the rest (sizes, devices, settings) sit behind the toggle.
SUMMARY_ROWS = ("steps", "n_images", "wall_time_s", "images_per_s", "final_loss", "final_teacher_entropy",
                "max_entropy", "collapse")

# The comparisons of chapter 02, each a pair of embedding sets that differ in one choice: (choice, from, to).
OBJECTIVE_COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("DINO → DINOv2 (HPA-like, from scratch)", "hpa_mapping", "cell_dino_mapping"),
    ("from scratch → from the natural-image backbone (Cell-DINO+)", "cell_dino_mapping", "cell_dino_plus_mapping"),
    ("joint channels (Cell-DINO) → bag of channels (DINO BoC)", "cell_dino_mapping", "dino_boc"),
)
# Per-fold differences are summarised by a t-interval at this level.
CONFIDENCE = 0.95
_SETS = {spec.name: spec for spec in EMBEDDING_SETS}
# Bootstrap resamples of the test images behind the trained-vs-random interval (>= 1,000 for 95 %).
RESAMPLES = 1000


def dino_recipe_table(config: DinoConfig) -> pd.DataFrame:
    """The profile's DINO recipe beside the official ``main_dino.py`` defaults and the paper's values."""
    return recipe_table(config, DinoConfig())


def dinov2_recipe_table(config: DINOv2Config) -> pd.DataFrame:
    """The profile's DINOv2 recipe (``dinov2.recipe``) beside DINOv2's published defaults ("differs" marks this
    run's departures from them) and the DINO / paper values the DINO backbones train with."""
    table = recipe_table(config, DINOv2Config()).rename(columns={"paper": "DINOv2 default"})
    dino = recipe_table(DinoConfig(), DinoConfig())["this run"]
    table.insert(2, "DINO / paper", dino)
    return table


def dino_summary_table(runs: Mapping) -> pd.DataFrame:
    """One column per trained domain, one row per field of the run's ``summary.json`` (steps, throughput, final loss
    and entropy, health); the rows of :data:`SUMMARY_ROWS` are the table's summary on the page."""
    table = pd.DataFrame({domain: dino_run.summary for domain, dino_run in runs.items()})
    if "collapse" in table.index:
        table.loc["collapse"] = [value or "none" for value in table.loc["collapse"]]
    return summarise(table.rename_axis("summary.json"), [r for r in SUMMARY_ROWS if r in table.index],
                     what="the training's outcome")


def training_budget_table(runs: Mapping) -> pd.DataFrame:
    """One row per trained backbone (``name -> DinoRun``): objective, initialisation, what it trained on, steps,
    samples seen, CPU (or GPU) seconds and the final health, so runs of equal budget can be told apart (throughput
    is in :func:`dino_summary_table`)."""
    rows = {}
    for name, dino_run in runs.items():
        summary, data = dino_run.summary, dino_run.training_data
        init = (summary.get("init_from") or {}).get("source")
        rows[name] = {
            "objective": summary["objective"],
            "starts from": data.get("init_from") or ("random" if init is None else init),
            "trained on": ", ".join(f"{d} ({n})" for d, n in data.get("sources", {}).items()),
            "steps": summary["steps"],
            "samples seen": summary["steps"] * summary["batch_size"],
            "seconds": summary["wall_time_s"],
            "final loss": round(summary["final_loss"], 4) if summary["final_loss"] is not None else None,
            "collapse": summary["collapse"] or "none",
        }
    return pd.DataFrame(rows).T.rename_axis("backbone")


def budget_note(table: pd.DataFrame) -> str:
    """The training budgets of :func:`training_budget_table` in words: steps and seconds per backbone."""
    parts = [f"**{name}** {row['steps']} steps ({row['samples seen']:,} samples, {row['seconds']:.0f} s)"
             for name, row in table.iterrows()]
    dinov2 = table[table["objective"] == "dinov2"]
    same = dinov2["steps"].nunique() == 1 and len(dinov2) > 1
    text = "Training took " + "; ".join(parts) + "."
    if same:
        text += (f" The DINOv2 backbones took the same number of optimiser steps ({dinov2['steps'].iloc[0]}), so "
                 "their budgets differ only by the cost of a step.")
    return text


def attention_backbones(backbones: Mapping, channel_names) -> dict:
    """The models of ``backbones`` (name -> ResolvedBackbone) that read ``channel_names`` as they come, in [0, 1]
    (this run's, and DINO BoC's single channel), for :func:`~dinoxfer_lib.dino.inspect.mean_attention`; published
    weights with another slot order or their own standardisation are left out."""
    single = [name for name, b in backbones.items() if b.model.patch_embed.proj.in_channels == 1]
    return {name: b.model for name, b in backbones.items()
            if (name in single or tuple(b.slots) == tuple(channel_names)) and b.mean is None
            and not b.per_image_zscore}


def health_table(runs: Mapping, *, out_dim: int) -> pd.DataFrame:
    """Each run's health checks (:func:`~dinoxfer_lib.dino.health.health_checks`: the loss fell and stayed down,
    no uniform teacher, no whole or partial collapse onto few prototypes), one row per (run, check)."""
    frames = [health_checks(dino_run.history, out_dim).assign(run=name) for name, dino_run in runs.items()]
    table = pd.concat(frames, ignore_index=True)
    table["healthy"] = table["healthy"].map({True: "✓", False: "✗"})
    return table.set_index(["run", "check"])


def health_note(health: pd.DataFrame) -> str:
    """Which runs passed every health check, in one sentence."""
    failed = health[health["healthy"] == "✗"].reset_index()
    if failed.empty:
        return "Every run passed every health check: the loss fell and stayed down, and no teacher collapsed."
    return "Failed checks: " + "; ".join(f"**{run}**: {check}" for run, check in zip(failed["run"], failed["check"])) \
        + ". A backbone that fails them is suspect: read its rows in later chapters as checks of the pipeline."


def trained_vs_random(result: ProbeResult, labels: np.ndarray, *, n_resamples: int = RESAMPLES,
                      seed: int = 0) -> pd.DataFrame:
    """DINO-trained minus random weights (sets ``DINO-trained`` and ``random init`` of
    :func:`~dinoxfer_lib.pipeline.load_trained_vs_random`): the per-fold paired difference (mean, t interval) and
    the paired bootstrap over the test images (``n_resamples``), as two rows ``how``, ``difference``, ``low``,
    ``high``."""
    pair = [("DINO-trained", "random init")]
    folds = fold_differences(result, pairs=pair).iloc[0]
    boot = paired_bootstrap(result, labels, pairs=pair, n_resamples=n_resamples, seed=seed).iloc[0]
    return pd.DataFrame([
        {"how": f"per fold ({folds['folds']} folds, t interval)", "difference": folds["mean"], "low": folds["low"],
         "high": folds["high"]},
        {"how": f"paired bootstrap over test images ({n_resamples:,} resamples)", "difference": boot["difference"],
         "low": boot["low"], "high": boot["high"]},
    ]).set_index("how")


def trained_vs_random_note(table: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    """Whether DINO beat its own random initialisation, in numbers (rows ``DINO-trained`` and ``random init``;
    ``paired`` from :func:`trained_vs_random` decides, with its bootstrap interval)."""
    rows = table.set_index("set")
    trained, random = rows.loc["DINO-trained"], rows.loc["random init"]
    gain = trained["test_f1_mean"] - random["test_f1_mean"]
    text = (f"test macro F1 {trained['test_f1_mean']:.3f} ± {trained['test_f1_std']:.3f} against "
            f"{random['test_f1_mean']:.3f} ± {random['test_f1_std']:.3f} (difference {gain:+.3f}")
    if paired is None:
        verdict = "beats" if gain > 0 else "does **not** beat"
        return f"The DINO-trained backbone {verdict} the same architecture with random weights: {text})."
    boot = paired.iloc[-1]
    verdict = ("**beats**" if boot["low"] > 0 else "does **not** beat" if boot["high"] < 0
               else "is **not resolved** from")
    return (f"The DINO-trained backbone {verdict} the same architecture with random weights: {text}; paired 95 % "
            f"interval over the test images [{boot['low']:+.3f}, {boot['high']:+.3f}], over the folds "
            f"[{paired.iloc[0]['low']:+.3f}, {paired.iloc[0]['high']:+.3f}]).")


def what_this_means(runs: Mapping, comparison: pd.DataFrame, *, out_dim: int, paired: pd.DataFrame) -> str:
    """The chapter's conclusion, from this run: how far each backbone trained, whether its teacher collapsed, and
    whether DINO beat its random initialisation (``comparison`` and ``paired`` as for
    :func:`trained_vs_random_note`: the paired bootstrap interval decides)."""
    summaries = {domain: dino_run.summary for domain, dino_run in runs.items()}
    uniform = float(np.log(out_dim))
    entropy = ", ".join(f"{domain} {s['final_teacher_entropy'] / uniform:.0%}" for domain, s in summaries.items())
    collapsed = [domain for domain, s in summaries.items() if s.get("collapse")]
    steps = ", ".join(f"{domain} {s['steps']:,}" for domain, s in summaries.items())
    lines = [
        f"- **Training.** {steps} steps. The teacher's "
        f"entropy ended at {entropy} of its maximum (log K, a teacher that outputs the uniform distribution); "
        + (f"the collapse detector flagged **{', '.join(collapsed)}**: its embeddings are suspect."
           if collapsed else "no run was flagged as collapsed.")
    ]
    boot = paired.iloc[-1]
    shown = f"{boot['difference']:+.3f} macro F1 (paired 95 % interval [{boot['low']:+.3f}, {boot['high']:+.3f}])"
    if boot["low"] > 0:
        lines.append(f"- **DINO helped.** The trained OpenCell backbone beats its random initialisation by {shown}: "
                     "the later chapters compare backbones that learned something a probe can use.")
    else:
        lines.append(f"- **DINO has not clearly helped.** Trained minus random is {shown}, an interval that does not "
                     "exclude 0. On this profile's training budget the later chapters compare backbones that are "
                     "barely trained: read their differences as checks of the pipeline, not as evidence about "
                     "pretraining.")
    return "\n".join(lines)


def paired_differences(results: Mapping[str, ProbeResult | None], comparisons=OBJECTIVE_COMPARISONS, *,
                       probe: str = "mlp") -> pd.DataFrame:
    """Per task (``task name -> result``; None = a task the run cannot do) and comparison: the per-fold differences
    of test macro F1 (``to`` minus ``from``, fold models paired: same folds, same test images), their mean, sample
    std and a t-interval over the folds (:func:`~dinoxfer_lib.stats.fold_differences`).

    Pairs whose sets a result lacks (a profile without that backbone) are left out. The folds share most of their
    training images, so the interval is narrower than one over independent data sets would be: a difference is
    resolved only where the interval excludes 0 with room to spare.
    """
    rows = []
    for task, result in results.items():
        if result is None:
            continue
        present = set(result.scores["set"])
        wanted = [(choice, before, after) for choice, before, after in comparisons
                  if before in present and after in present]
        if not wanted:
            continue
        pairs = [((after, probe), (before, probe)) for _, before, after in wanted]
        table = fold_differences(result, pairs=pairs, confidence=CONFIDENCE)
        means = result.table()
        means = means[means["probe"] == probe].set_index("set")["test_f1_mean"]
        for (choice, before, after), diff in zip(wanted, table.itertuples()):
            rows.append({"task": task, "choice": choice, "from": before, "to": after, "folds": diff.folds,
                         "from F1": float(means[before]), "to F1": float(means[after]),
                         "difference": diff.mean, "std": diff.std, "low": diff.low, "high": diff.high,
                         "per fold": ", ".join(f"{d:+.3f}" for d in diff.per_fold)})
    return pd.DataFrame(rows)


def objectives_note(differences: pd.DataFrame, *, synthetic: bool) -> str:
    """What the paired differences say, one sentence per comparison and task."""
    if differences.empty:
        return "This profile trains none of the DINOv2 backbones (`dinov2.backbones: []`): nothing to compare."
    level = f"{CONFIDENCE:.0%}"
    lines = []
    for _, row in differences.iterrows():
        resolved = row["low"] > 0 or row["high"] < 0
        verdict = ("higher" if row["difference"] > 0 else "lower") if resolved else "not resolved from 0"
        lines.append(f"{row['task']}, {row['choice']}: {_signed(row['difference'])} macro F1 ({level} t-interval "
                     f"over {row['folds']} folds {_signed(row['low'])} to {_signed(row['high'])}; {verdict}).")
    if synthetic:
        lines.append("On the synthetic stand-ins and a few hundred CPU steps these differences say how the objectives "
                     "behave at this budget, not which is better on real microscopy.")
    return " ".join(lines)


def _signed(value: float) -> str:
    return f"{round(value, 3) + 0.0:+.3f}"  # + 0.0 turns a rounded -0.0 into 0.0


NO_CELL_LINES = ("Skipped: the HPA images of this profile name no cell line (the HPA Kaggle layout has none), and the "
                 "cell-line task needs one per image: a `cell_line` column of a table source provides it.")


def cell_line_table(result: ProbeResult) -> pd.DataFrame:
    """Cell-DINO's cell-line task: test macro F1 (mean ± std over fold models) per set (rows, in Table III order)
    and probe (columns), with the set's weights and approach labels."""
    table = result.table()
    table["F1"] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["test_f1_mean"], table["test_f1_std"])]
    wide = table.pivot(index="set", columns="probe", values="F1")
    wide = wide.loc[[s for s in _SETS if s in wide.index], list(dict.fromkeys(table["probe"]))]
    wide.insert(0, "approach", [_SETS[s].approach_label for s in wide.index])
    wide.insert(0, "weights", [_SETS[s].weights_label for s in wide.index])
    return wide
