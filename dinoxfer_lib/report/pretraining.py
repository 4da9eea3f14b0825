"""Chapter 02 (DINO pretraining): the recipe beside the official one, each run's summary, trained vs random."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.report.common import recipe_table


def dino_recipe_table(config: DinoConfig) -> pd.DataFrame:
    """The profile's DINO recipe beside the official ``main_dino.py`` defaults and the paper's values."""
    return recipe_table(config, DinoConfig())


def dino_summary_table(runs: Mapping) -> pd.DataFrame:
    """One row per trained domain: the run's ``summary.json`` (steps, throughput, final loss and entropy, health)."""
    return pd.DataFrame({domain: dino_run.summary for domain, dino_run in runs.items()}).T


def trained_vs_random_note(table: pd.DataFrame) -> str:
    """Whether DINO beat its own random initialisation, in numbers (rows ``DINO-trained`` and ``random init``)."""
    rows = table.set_index("set")
    trained, random = rows.loc["DINO-trained"], rows.loc["random init"]
    gain = trained["test_f1_mean"] - random["test_f1_mean"]
    noise = float(np.hypot(trained["test_f1_std"], random["test_f1_std"]))
    verdict = ("**beats**" if gain > 2 * noise else "does **not** clearly beat" if gain > 0 else "does **not** beat")
    return (f"The DINO-trained backbone {verdict} the same architecture with random weights: test macro F1 "
            f"{trained['test_f1_mean']:.3f} ± {trained['test_f1_std']:.3f} against {random['test_f1_mean']:.3f} ± "
            f"{random['test_f1_std']:.3f} (difference {gain:+.3f}; fold spread of the difference ≈ {noise:.3f}).")
