"""Chapter 02 (DINO pretraining): the recipe beside the official one, each run's summary, trained vs random."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.health import health_checks
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.common import recipe_table
from dinoxfer_lib.stats import fold_differences, paired_bootstrap

# Bootstrap resamples of the test images behind the trained-vs-random interval (>= 1,000 for 95 %).
RESAMPLES = 1000


def dino_recipe_table(config: DinoConfig) -> pd.DataFrame:
    """The profile's DINO recipe beside the official ``main_dino.py`` defaults and the paper's values."""
    return recipe_table(config, DinoConfig())


def dino_summary_table(runs: Mapping) -> pd.DataFrame:
    """One row per trained domain: the run's ``summary.json`` (steps, throughput, final loss and entropy, health)."""
    return pd.DataFrame({domain: dino_run.summary for domain, dino_run in runs.items()}).T


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
