"""Chapter 02 (DINO pretraining): the recipe beside the official one, each run's summary, trained vs random."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.report.common import recipe_table, summarise

# The rows of the run summary a reader needs first; the rest (sizes, devices, settings) sit behind the toggle.
SUMMARY_ROWS = ("steps", "n_images", "wall_time_s", "images_per_s", "final_loss", "final_teacher_entropy",
                "max_entropy", "collapse")


def dino_recipe_table(config: DinoConfig) -> pd.DataFrame:
    """The profile's DINO recipe beside the official ``main_dino.py`` defaults and the paper's values."""
    return recipe_table(config, DinoConfig())


def dino_summary_table(runs: Mapping) -> pd.DataFrame:
    """One column per trained domain, one row per field of the run's ``summary.json`` (steps, throughput, final loss
    and entropy, health); the rows of :data:`SUMMARY_ROWS` are the table's summary on the page."""
    table = pd.DataFrame({domain: dino_run.summary for domain, dino_run in runs.items()})
    if "collapse" in table.index:
        table.loc["collapse"] = [value or "none" for value in table.loc["collapse"]]
    return summarise(table.rename_axis("summary.json"), [r for r in SUMMARY_ROWS if r in table.index],
                     what="the training's outcome")


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


def what_this_means(runs: Mapping, comparison: pd.DataFrame, *, out_dim: int) -> str:
    """The chapter's conclusion, from this run: how far each backbone trained, whether its teacher collapsed, and
    whether DINO beat its random initialisation (``comparison`` as for :func:`trained_vs_random_note`)."""
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
    rows = comparison.set_index("set")
    trained, random = rows.loc["DINO-trained"], rows.loc["random init"]
    gain = trained["test_f1_mean"] - random["test_f1_mean"]
    noise = float(np.hypot(trained["test_f1_std"], random["test_f1_std"]))
    if gain > 2 * noise:
        lines.append(f"- **DINO helped.** The trained OpenCell backbone beats its random initialisation by "
                     f"{gain:+.3f} macro F1 (fold spread ≈ {noise:.3f}): the later chapters compare backbones that "
                     "learned something a probe can use.")
    else:
        lines.append(f"- **DINO has not clearly helped yet.** Trained minus random is {gain:+.3f} macro F1, within "
                     f"about twice the fold spread ({noise:.3f}). On this profile's training budget the later "
                     "chapters compare backbones that are barely trained: read their differences as checks of the "
                     "pipeline, not as evidence about pretraining.")
    return "\n".join(lines)
