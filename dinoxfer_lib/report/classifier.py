"""Chapter 04 (Classifier): Table III and its companions, from a :class:`~dinoxfer_lib.probes.ProbeResult`.

Every number here is computed from the run's own probe models; the paper's numbers (:mod:`dinoxfer_lib.paper`)
sit beside them only where the paper reports one, so a reader can always tell which is which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib import paper
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.common import recipe_table

_SETS = {spec.name: spec for spec in EMBEDDING_SETS}


def table_iii(result: ProbeResult, *, probe: str = "mlp", threshold: str | None = None,
              weights: Mapping[str, str] | None = None, present: Sequence[str] | None = None) -> pd.DataFrame:
    """Table III: one row per embedding set, our test macro F1 (mean ± std over fold models) beside the paper's.

    Columns: ``weights`` (what this run's backbone is: ``weights`` maps a pretraining domain to its label, e.g.
    from :func:`~dinoxfer_lib.pipeline.backbones.backbone_labels`; the paper's label where not given),
    ``paper_weights``, ``approach``, ``set``, ``test_f1_mean``, ``test_f1_std``, ``paper_mean``, ``paper_std`` (NaN
    where the paper has no row: the DINOv2 rows Cell-DINO, Cell-DINO+, DINO BoC), ``val_f1_mean``,
    ``train_f1_mean``, ``folds``. With ``present`` (the classes the data use, :func:`present_classes`) fewer than
    all, also ``present_f1_mean``/``present_f1_std``: macro F1 over those classes only, since an absent class scores
    0 and pulls the all-class mean down.
    """
    table = result.table(threshold=threshold)
    table = table[table["probe"] == probe].drop(columns="probe")
    if table.empty:
        raise DataError(f"no {probe!r} probe in this result: it has {sorted(result.scores['probe'].unique())}")
    order = [name for name in _SETS if name in set(table["set"])] + sorted(set(table["set"]) - set(_SETS))
    table = table.set_index("set").loc[order].reset_index()
    paper_labels = [_SETS[s].weights_label if s in _SETS else s for s in table["set"]]
    ours = [(weights or {}).get(_SETS[s].pretraining, paper_labels[i]) if s in _SETS else s
            for i, s in enumerate(table["set"])]
    table.insert(0, "weights", ours)
    table.insert(1, "paper_weights", paper_labels)
    table.insert(2, "approach", [_SETS[s].approach_label if s in _SETS else "" for s in table["set"]])
    reported = [paper.TABLE_III.get(s, (np.nan, np.nan, None)) for s in table["set"]]
    table["paper_mean"] = [r[0] for r in reported]
    table["paper_std"] = [r[1] for r in reported]
    if present is not None and len(present) < len(result.class_names):
        scores = present_class_f1(result, present, probe=probe, threshold=threshold)
        table = table.merge(scores, on="set", how="left")
        table.attrs["present_classes"] = tuple(present)
    return table


def present_classes(dataset) -> tuple[str, ...]:
    """The classes at least one image of ``dataset`` carries (a lab's data may use a few of the study's)."""
    return tuple(name for name, count in zip(dataset.class_names, dataset.labels.sum(axis=0)) if count)


def present_class_f1(result: ProbeResult, present: Sequence[str], *, probe: str = "mlp",
                     threshold: str | None = None) -> pd.DataFrame:
    """Test macro F1 over the ``present`` classes only, mean and std over the fold models, per set."""
    s = result.scores
    rows = s[(s["probe"] == probe) & (s["subset"] == "test") & (s["metric"] == "f1") & s["class"].isin(present)
             & (s["threshold"] == (threshold or _fixed_threshold(result)))]
    per_fold = rows.groupby(["set", "fold"])["value"].mean()
    grouped = per_fold.groupby("set")
    return pd.DataFrame({"present_f1_mean": grouped.mean(), "present_f1_std": grouped.std(ddof=1)}).reset_index()


def _fixed_threshold(result: ProbeResult) -> str:
    """The fixed threshold's label in a result's scores (``"0.5"`` for the paper's)."""
    labels = [t for t in result.scores["threshold"].unique() if t != "tuned"]
    return str(labels[0])


def format_table_iii(table: pd.DataFrame) -> pd.DataFrame:
    """Table III as the book prints it: ``mean ± std`` strings, ours beside the paper's (with the paper's weights)."""

    def pm(mean, std) -> str:
        return "—" if pd.isna(mean) else f"{mean:.4f} ± {std:.4f}"

    shown = {
        "weights, this run": table["weights"],
        "embedding": table["approach"],
        "macro F1, this run (test)": [pm(m, s) for m, s in zip(table["test_f1_mean"], table["test_f1_std"])],
    }
    if "present_f1_mean" in table:
        n = len(table.attrs.get("present_classes", ()))
        shown[f"macro F1 over the {n} classes present"] = [
            pm(m, s) for m, s in zip(table["present_f1_mean"], table["present_f1_std"])]
    shown["macro F1, paper"] = [pm(m, s) if pd.isna(m) else f"{pm(m, s)} ({w})"
                                for m, s, w in zip(table["paper_mean"], table["paper_std"], table["paper_weights"])]
    shown["validation"] = table["val_f1_mean"].map("{:.3f}".format)
    shown["train"] = table["train_f1_mean"].map("{:.3f}".format)
    return pd.DataFrame(shown).set_index("weights, this run")


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
                 f"resolved by {int(table['folds'].iloc[0])} folds.")
    rows = table.dropna(subset=["paper_mean"]).set_index("set")
    if len(rows) >= 2:
        paper_rank = rows["paper_mean"].rank(ascending=False)
        our_rank = rows["test_f1_mean"].rank(ascending=False)
        agree = float(np.corrcoef(paper_rank, our_rank)[0, 1]) if len(rows) > 2 else float(
            (paper_rank == our_rank).all())
        lines.append(f"The paper's best is **{rows['paper_mean'].idxmax()}** ({rows['paper_mean'].max():.4f}); "
                     f"rank correlation of our {len(rows)} rows with the paper's: {agree:+.2f}.")
    if "present_f1_mean" in table:
        n = len(table.attrs.get("present_classes", ()))
        lines.append(f"These images use {n} of the study's classes: macro F1 over all of them counts each absent class "
                     f"as 0, so the column over the {n} present classes is the one to compare with other data.")
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




def threshold_note(result: ProbeResult, *, probe: str = "mlp") -> str:
    """What per-class thresholds tuned on validation do to test macro F1, and why: how many classes the fixed
    threshold never predicts correctly, and where the tuned thresholds sit."""
    if not (result.scores["threshold"] == "tuned").any():
        return "Threshold tuning is off in this profile (`probe.tune_thresholds: false`)."
    fixed = table_iii(result, probe=probe).set_index("set")["test_f1_mean"]
    tuned = table_iii(result, probe=probe, threshold="tuned").set_index("set")["test_f1_mean"].reindex(fixed.index)
    zero_fixed = np.mean([(result.per_class(s, probe=probe)["mean"] == 0).sum() for s in fixed.index])
    zero_tuned = np.mean([(result.per_class(s, probe=probe, threshold="tuned")["mean"] == 0).sum()
                          for s in fixed.index])
    cuts = np.concatenate([result.thresholds[(s, probe)].ravel() for s in fixed.index
                           if (s, probe) in result.thresholds] or [np.array([np.nan])])
    ratio = float((tuned / fixed.where(fixed > 0)).mean())
    text = (f"Per-class thresholds tuned on each validation fold move test macro F1 from "
            f"{fixed.min():.3f}–{fixed.max():.3f} to {tuned.min():.3f}–{tuned.max():.3f}"
            + (f" ({ratio:.1f}× on average)" if np.isfinite(ratio) else "") + ". ")
    text += (f"At the fixed {result.fixed_threshold}, on average {zero_fixed:.1f} of the {len(result.class_names)} "
             f"classes score F1 = 0 on test (their probabilities rarely reach the threshold), against "
             f"{zero_tuned:.1f} with tuned thresholds")
    if np.isfinite(cuts).any():
        text += f", whose median is {np.nanmedian(cuts):.2f}"
    text += (". A large gain means the probe ranks images sensibly but its probabilities are not calibrated at "
             f"{result.fixed_threshold}: rare classes and a short training push them low. Table III uses the "
             "paper's fixed threshold; the tuned column shows how much of the gap to a good score is only the cut.")
    return text


def what_this_means(table: pd.DataFrame, split_frame: pd.DataFrame, *, synthetic: bool) -> str:
    """The chapter's conclusion, from this run: which pretraining ranks first and whether the folds resolve it, how
    our scores sit against the paper's, and what the leakage-free split costs (``table`` from :func:`table_iii`,
    ``split_frame`` from :func:`split_comparison`)."""
    rows = table.set_index("set")
    ranked = rows["test_f1_mean"].sort_values(ascending=False)
    best, second = ranked.index[0], ranked.index[min(1, len(ranked) - 1)]
    margin = ranked.iloc[0] - ranked.iloc[min(1, len(ranked) - 1)]
    spread = float(np.hypot(rows.loc[best, "test_f1_std"], rows.loc[second, "test_f1_std"]))
    resolved = margin > 2 * spread
    lines = [f"- **Ranking.** **{best}** scores highest ({ranked.iloc[0]:.3f} ± {rows.loc[best, 'test_f1_std']:.3f}), "
             f"{margin:.3f} ahead of {second}: "
             + ("more than twice the fold spread, so the folds resolve the order at the top."
                if resolved else f"within twice the fold spread ({spread:.3f}), so the folds do not resolve which "
                "of the two is better.")]
    paper_rows = rows.dropna(subset=["paper_mean"])
    if len(paper_rows):
        share = float((paper_rows["test_f1_mean"] / paper_rows["paper_mean"]).mean())
        lines.append(f"- **Against the paper.** Our macro F1 is on average {share:.0%} of the paper's for the same "
                     "rows" + (": synthetic images and a CPU recipe, so the level is not comparable — only the "
                               "protocol is." if synthetic else "."))
    difference = split_frame["difference"]
    if difference.mean() < -2 * split_frame["test_f1_std_by_image"].mean():
        lines.append(f"- **Leakage.** Grouping by protein lowers macro F1 by {-difference.mean():.3f} on average: "
                     "part of the split-by-image score is recognising proteins seen in training.")
    else:
        lines.append(f"- **Leakage.** Grouping by protein changes macro F1 by {difference.mean():+.3f} on average, "
                     "within the fold spread: here the split by image does not inflate the score measurably.")
    return "\n".join(lines)
