"""Chapter 04 (Classifier): Table III and its companions, from a :class:`~dinoxfer_lib.probes.ProbeResult`.

Every number here is computed from the run's own probe models; the paper's numbers (:mod:`dinoxfer_lib.paper`)
sit beside them only where the paper reports one, so a reader can always tell which is which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dinoxfer_lib import paper
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.common import recipe_table

_SETS = {spec.name: spec for spec in EMBEDDING_SETS}


def table_iii(result: ProbeResult, *, probe: str = "mlp", threshold: str | None = None) -> pd.DataFrame:
    """Table III: one row per embedding set, our test macro F1 (mean ± std over fold models) beside the paper's.

    Columns: ``weights``, ``approach`` (the paper's labels), ``set``, ``test_f1_mean``, ``test_f1_std``,
    ``paper_mean``, ``paper_std`` (NaN where the paper has no row: the DINOv2 rows Cell-DINO, Cell-DINO+, DINO BoC),
    ``val_f1_mean``, ``train_f1_mean``, ``folds``.
    """
    table = result.table(threshold=threshold)
    table = table[table["probe"] == probe].drop(columns="probe")
    if table.empty:
        raise DataError(f"no {probe!r} probe in this result: it has {sorted(result.scores['probe'].unique())}")
    order = [name for name in _SETS if name in set(table["set"])] + sorted(set(table["set"]) - set(_SETS))
    table = table.set_index("set").loc[order].reset_index()
    table.insert(0, "weights", [_SETS[s].weights_label if s in _SETS else s for s in table["set"]])
    table.insert(1, "approach", [_SETS[s].approach_label if s in _SETS else "" for s in table["set"]])
    reported = [paper.TABLE_III.get(s, (np.nan, np.nan, None)) for s in table["set"]]
    table["paper_mean"] = [r[0] for r in reported]
    table["paper_std"] = [r[1] for r in reported]
    return table


def format_table_iii(table: pd.DataFrame) -> pd.DataFrame:
    """Table III as the book prints it: ``mean ± std`` strings, ours beside the paper's."""

    def pm(mean, std) -> str:
        return "—" if pd.isna(mean) else f"{mean:.4f} ± {std:.4f}"

    return pd.DataFrame({
        "weights": table["weights"],
        "embedding": table["approach"],
        "macro F1, this run (test)": [pm(m, s) for m, s in zip(table["test_f1_mean"], table["test_f1_std"])],
        "macro F1, paper": [pm(m, s) for m, s in zip(table["paper_mean"], table["paper_std"])],
        "validation": table["val_f1_mean"].map("{:.3f}".format),
        "train": table["train_f1_mean"].map("{:.3f}".format),
    })


def per_class_matrix(result: ProbeResult, *, probe: str = "mlp", subset: str = "test") -> pd.DataFrame:
    """Mean per-class F1 over the fold models: embedding sets (rows, Table III order) × classes (columns)."""
    sets = table_iii(result, probe=probe)["set"]
    return pd.DataFrame({s: result.per_class(s, probe=probe, subset=subset)["mean"] for s in sets}).T


def probe_comparison(result: ProbeResult, *, threshold: str | None = None) -> pd.DataFrame:
    """Test macro F1 of every probe on every set: ``set, probe, mean, std``, probes in the order they ran."""
    table = result.table(threshold=threshold)
    return table.rename(columns={"test_f1_mean": "mean", "test_f1_std": "std"})[["set", "probe", "mean", "std"]]


def threshold_comparison(result: ProbeResult, *, probe: str = "mlp") -> pd.DataFrame:
    """Test macro F1 at the fixed threshold and at per-class thresholds tuned on each validation fold."""
    fixed = table_iii(result, probe=probe)[["weights", "approach", "set", "test_f1_mean", "test_f1_std"]]
    tuned = table_iii(result, probe=probe, threshold="tuned")[["set", "test_f1_mean", "test_f1_std"]]
    merged = fixed.merge(tuned, on="set", suffixes=("_fixed", "_tuned"))
    merged["gain"] = merged["test_f1_mean_tuned"] - merged["test_f1_mean_fixed"]
    return merged


def split_comparison(by_image: ProbeResult, grouped: ProbeResult, *, probe: str = "mlp") -> pd.DataFrame:
    """Test macro F1 with the paper's split by image and with the leakage-free split grouped by protein."""
    a = table_iii(by_image, probe=probe)[["weights", "approach", "set", "test_f1_mean", "test_f1_std"]]
    b = grouped.table()
    b = b[b["probe"] == probe][["set", "test_f1_mean", "test_f1_std"]]
    merged = a.merge(b, on="set", suffixes=("_by_image", "_grouped"))
    merged["difference"] = merged["test_f1_mean_grouped"] - merged["test_f1_mean_by_image"]
    return merged


def low_label_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of test macro F1 per set and fraction (over seeds and folds), with the images actually used."""
    grouped = curves.groupby(["set", "fraction"], sort=False)
    return pd.DataFrame({
        "n_train": grouped["n_train"].mean().round().astype(int),
        "mean": grouped["test_macro_f1"].mean(),
        "std": grouped["test_macro_f1"].std(ddof=1),
        "models": grouped["test_macro_f1"].count(),
    }).reset_index()


def probe_recipe_table(config: ProbeConfig) -> pd.DataFrame:
    """The profile's probe recipe beside the paper's, with every difference marked (a profile may train fewer
    epochs to fit a CPU budget; the book must say so next to the numbers it produces)."""
    return recipe_table(config, ProbeConfig(), compared=_PAPER_KEYS)


def table_iii_note(table: pd.DataFrame, *, synthetic: bool) -> str:
    """A reading of Table III written from its numbers: best set, spread, and whether the paper's ranking holds."""
    ours = table.set_index("set")["test_f1_mean"]
    best_val = table.loc[table["val_f1_mean"].idxmax(), "set"]
    lines = [f"Test macro F1 ranges from {ours.min():.3f} (**{ours.idxmin()}**) to {ours.max():.3f} "
             f"(**{ours.idxmax()}**); the set chosen on validation F1 is **{best_val}**."]
    spread = table["test_f1_std"].mean()
    lines.append(f"The mean fold-to-fold std is {spread:.3f}: differences smaller than about twice that are not "
                 "resolved by five folds.")
    rows = table.dropna(subset=["paper_mean"]).set_index("set")
    if len(rows) >= 2:
        paper_rank = rows["paper_mean"].rank(ascending=False)
        our_rank = rows["test_f1_mean"].rank(ascending=False)
        agree = float(np.corrcoef(paper_rank, our_rank)[0, 1]) if len(rows) > 2 else float(
            (paper_rank == our_rank).all())
        lines.append(f"The paper's best is **{rows['paper_mean'].idxmax()}** ({rows['paper_mean'].max():.4f}); "
                     f"rank correlation of our five rows with the paper's: {agree:+.2f}.")
    if synthetic:
        lines.append("These are synthetic images and a CPU-sized recipe: the ranking says how the pipeline behaves on "
                     "the stand-in domains, not which pretraining transfers best to real OpenCell images.")
    return " ".join(lines)


def gap_note(table: pd.DataFrame) -> str:
    """The generalisation gap in numbers, beside the paper's (training F1 >= 0.94, test as in its Table III)."""
    gap = table["train_f1_mean"] - table["test_f1_mean"]
    paper_test = [mean for mean, _, _ in paper.TABLE_III.values()]
    return (f"Training macro F1 is {table['train_f1_mean'].min():.3f}–{table['train_f1_mean'].max():.3f} against "
            f"{table['test_f1_mean'].min():.3f}–{table['test_f1_mean'].max():.3f} on test: a gap of "
            f"{gap.min():.3f}–{gap.max():.3f} (the paper: training ≥ {paper.TRAIN_F1_MIN}, test "
            f"{min(paper_test):.2f}–{max(paper_test):.2f}).")


def split_note(frame: pd.DataFrame) -> str:
    """What grouping by protein costs, in numbers."""
    diff = frame.set_index("set")["difference"]
    return (f"Grouping by protein changes test macro F1 by {diff.min():+.3f} to {diff.max():+.3f} "
            f"(mean {diff.mean():+.3f}). A drop is what a split by image hides: images of one protein on both "
            "sides let a probe recognise the protein instead of its localisation.")


_PAPER_KEYS = ("hidden", "dropout", "lr", "weight_decay", "betas", "epochs", "batch_size", "threshold", "resample")


