"""Tables of the results chapters, built from a :class:`~dinoxfer_lib.probes.ProbeResult` and the paper's values.

Every number here is computed from the run's own probe models; the paper's numbers sit beside them only where
the paper reports one (Table III), so a reader can always tell which is which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dinoxfer_lib import report
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS, PAPER_TABLE_III
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.result import ProbeResult

_SETS = {spec.name: spec for spec in EMBEDDING_SETS}


def table_iii(result: ProbeResult, *, probe: str = "mlp", threshold: str | None = None) -> pd.DataFrame:
    """Table III: one row per embedding set, our test macro F1 (mean ± std over fold models) beside the paper's.

    Columns: ``weights``, ``approach`` (the paper's labels), ``set``, ``test_f1_mean``, ``test_f1_std``,
    ``paper_mean``, ``paper_std`` (NaN where the paper has no row: the bag-of-channels extension),
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
    paper = [PAPER_TABLE_III.get(s, (np.nan, np.nan, None)) for s in table["set"]]
    table["paper_mean"] = [p[0] for p in paper]
    table["paper_std"] = [p[1] for p in paper]
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


def best_configuration(result: ProbeResult, *, probe: str = "mlp") -> str:
    """The set with the highest mean validation macro F1 (chosen without looking at the test images)."""
    table = table_iii(result, probe=probe)
    return str(table.loc[table["val_f1_mean"].idxmax(), "set"])


def prediction_table(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int, image: int,
                     probe: str = "mlp", threshold: float = 0.5) -> pd.DataFrame:
    """Figure 2's table for one test image: every class that is true or predicted, with its probability.

    ``image`` is the dataset row of a test image; ``labels`` the dataset's ``(N, K)`` labels.
    """
    position = np.flatnonzero(result.test_index == image)
    if position.size == 0:
        raise DataError(f"image {image} is not in the test split: Figure 2 shows test images only")
    probs = result.probs(set_name, probe)[fold, position[0]]  # (K,)
    truth = labels[image]
    predicted = probs >= threshold
    shown = np.flatnonzero(truth | predicted)
    return pd.DataFrame({
        "class": [result.class_names[k] for k in shown],
        "true": truth[shown],
        "predicted": predicted[shown],
        "probability": probs[shown].round(3),
    }).sort_values("probability", ascending=False, ignore_index=True)


def example_test_images(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int, n: int = 2,
                        probe: str = "mlp", threshold: float = 0.5) -> list[int]:
    """Dataset rows of ``n`` test images for Figure 2: the paper's pair shows multi-label images, one predicted
    exactly and one with an error, so pick the most confident exact multi-label hit and the most confident miss."""
    probs = result.probs(set_name, probe)[fold]  # (n_test, K)
    truth = labels[result.test_index]
    predicted = probs >= threshold
    exact = (predicted == truth).all(1)
    confidence = np.abs(probs - 0.5).mean(1)
    multi = truth.sum(1) >= 2
    picks = []
    for pool in (exact & multi, ~exact & multi, exact, ~exact):
        for i in np.argsort(-confidence):
            if pool[i] and result.test_index[i] not in picks:
                picks.append(int(result.test_index[i]))
                break
        if len(picks) == n:
            break
    return picks


def confident_errors(result: ProbeResult, labels: np.ndarray, *, set_name: str, fold: int, n: int = 8,
                     probe: str = "mlp", threshold: float = 0.5) -> pd.DataFrame:
    """The ``n`` most confident wrong decisions on test images: one row per (image, class) decision.

    Confidence of a wrong decision is how far its probability sits on the wrong side of the threshold: a false
    positive at 0.97 is more telling than one at 0.52. Each image appears at most once (its worst decision).
    """
    probs = result.probs(set_name, probe)[fold]
    truth = labels[result.test_index]
    wrong = (probs >= threshold) != truth
    margin = np.where(wrong, np.abs(probs - threshold), -1.0)
    worst_class = margin.argmax(1)
    worst = margin[np.arange(len(margin)), worst_class]
    rows = []
    for i in np.argsort(-worst)[:n]:
        if worst[i] < 0:
            break
        k = worst_class[i]
        rows.append({
            "image": int(result.test_index[i]),
            "class": result.class_names[k],
            "error": "false positive" if probs[i, k] >= threshold else "false negative",
            "probability": round(float(probs[i, k]), 3),
            "true labels": ", ".join(np.asarray(result.class_names)[truth[i]]),
        })
    return pd.DataFrame(rows)


def low_label_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of test macro F1 per set and fraction (over seeds and folds), with the images actually used."""
    grouped = curves.groupby(["set", "fraction"], sort=False)
    return pd.DataFrame({
        "n_train": grouped["n_train"].mean().round().astype(int),
        "mean": grouped["test_macro_f1"].mean(),
        "std": grouped["test_macro_f1"].std(ddof=1),
        "models": grouped["test_macro_f1"].count(),
    }).reset_index()


def recipe_table(config: ProbeConfig) -> pd.DataFrame:
    """The profile's probe recipe beside the paper's, with every difference marked (a profile may train fewer
    epochs to fit a CPU budget; the book must say so next to the numbers it produces)."""
    return report.recipe_table(config, ProbeConfig(), compared=_PAPER_KEYS)


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


def table_iii_note(table: pd.DataFrame, *, synthetic: bool) -> str:
    """A reading of Table III written from its numbers: best set, spread, and whether the paper's ranking holds."""
    ours = table.set_index("set")["test_f1_mean"]
    best_val = table.loc[table["val_f1_mean"].idxmax(), "set"]
    lines = [f"Test macro F1 ranges from {ours.min():.3f} (**{ours.idxmin()}**) to {ours.max():.3f} "
             f"(**{ours.idxmax()}**); the set chosen on validation F1 is **{best_val}**."]
    spread = table["test_f1_std"].mean()
    lines.append(f"The mean fold-to-fold std is {spread:.3f}: differences smaller than about twice that are not "
                 "resolved by five folds.")
    paper = table.dropna(subset=["paper_mean"]).set_index("set")
    if len(paper) >= 2:
        paper_rank = paper["paper_mean"].rank(ascending=False)
        our_rank = paper["test_f1_mean"].rank(ascending=False)
        agree = float(np.corrcoef(paper_rank, our_rank)[0, 1]) if len(paper) > 2 else float(
            (paper_rank == our_rank).all())
        lines.append(f"The paper's best is **{paper['paper_mean'].idxmax()}** ({paper['paper_mean'].max():.4f}); "
                     f"rank correlation of our five rows with the paper's: {agree:+.2f}.")
    if synthetic:
        lines.append("These are synthetic images and a CPU-sized recipe: the ranking says how the pipeline behaves on "
                     "the stand-in domains, not which pretraining transfers best to real OpenCell images.")
    return " ".join(lines)


def gap_note(table: pd.DataFrame) -> str:
    """The generalisation gap in numbers (the paper: training F1 >= 0.94 against ~0.8 on test)."""
    gap = table["train_f1_mean"] - table["test_f1_mean"]
    return (f"Training macro F1 is {table['train_f1_mean'].min():.3f}–{table['train_f1_mean'].max():.3f} against "
            f"{table['test_f1_mean'].min():.3f}–{table['test_f1_mean'].max():.3f} on test: a gap of "
            f"{gap.min():.3f}–{gap.max():.3f} (the paper: training ≥ 0.94, test ≈ 0.77–0.82, a gap of ≈ 0.12–0.17).")


def split_note(frame: pd.DataFrame) -> str:
    """What grouping by protein costs, in numbers."""
    diff = frame.set_index("set")["difference"]
    return (f"Grouping by protein changes test macro F1 by {diff.min():+.3f} to {diff.max():+.3f} "
            f"(mean {diff.mean():+.3f}). A drop is what a split by image hides: images of one protein on both "
            "sides let a probe recognise the protein instead of its localisation.")


_PAPER_KEYS = ("hidden", "dropout", "lr", "weight_decay", "betas", "epochs", "batch_size", "threshold", "resample")


