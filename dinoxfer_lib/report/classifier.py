"""Chapter 04 (Classifier): Table III and its companions, from a :class:`~dinoxfer_lib.probes.ProbeResult`.

Every number here is computed from the run's own probe models; the paper's numbers (:mod:`dinoxfer_lib.paper`)
sit beside them only where the paper reports one, so a reader can always tell which is which.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib import paper
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.ceiling import CEILING_PROBE, CEILING_SET, FLOOR_SET
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.report.common import recipe_table
from dinoxfer_lib.stats import paired_bootstrap

_SETS = {spec.name: spec for spec in EMBEDDING_SETS}
# The rows beside Table III (ProbeResult.concat with pipeline.load_reference_rows): (set, probe) -> (role, weights,
# approach) as the table prints them.
REFERENCE_ROWS = {
    (FLOOR_SET, "mlp"): ("floor", "random weights (no pretraining)", "native"),
    (CEILING_SET, CEILING_PROBE): ("ceiling", "none: a CNN trained with the labels", "raw images"),
}
# Bootstrap resamples of the test images behind every paired interval of the chapter (>= 1,000 for 95 %).
RESAMPLES = 1000


def table_iii(result: ProbeResult, *, probe: str = "mlp", threshold: str | None = None,
              weights: Mapping[str, str] | None = None, present: Sequence[str] | None = None,
              labels: np.ndarray | None = None, n_resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Table III: one row per embedding set, our test macro F1 (mean ± std over fold models) beside the paper's.

    Columns: ``role`` (``table III``, and ``floor`` / ``ceiling`` for the rows of
    :func:`~dinoxfer_lib.pipeline.load_reference_rows` when ``result`` holds them: they come last), ``weights``
    (what this run's backbone is: ``weights`` maps a pretraining domain to its label, e.g. from
    :func:`~dinoxfer_lib.pipeline.backbones.backbone_labels`; the paper's label where not given), ``paper_weights``,
    ``approach``, ``set``, ``probe``, ``test_f1_mean``, ``test_f1_std``, ``test_f1_tuned_mean``/``_std`` (where
    thresholds were tuned), ``paper_mean``, ``paper_std`` (NaN where the paper has no row: the DINOv2 rows
    Cell-DINO, Cell-DINO+, DINO BoC, the ceiling and the floor), ``val_f1_mean``,
    ``train_f1_mean``, ``folds``; with a ceiling row, ``of_ceiling`` (test mean / the ceiling's).

    With ``present`` (the classes the data use, :func:`present_classes`) fewer than all, also
    ``present_f1_mean``/``present_f1_std``: macro F1 over those classes only, since an absent class scores 0 and
    pulls the all-class mean down. With ``labels`` (the whole dataset's), ``vs_best``, ``vs_best_low``,
    ``vs_best_high``: each row minus the Table III row with the highest validation F1 (``attrs["best"]``), with
    the 95 % interval of a paired bootstrap over the test images (``n_resamples``, the same for every row).
    """
    full = result.table(threshold=threshold)
    roles = {key: spec[0] for key, spec in REFERENCE_ROWS.items()}
    keyed = list(zip(full["set"], full["probe"]))
    table = full[[p == probe and key not in roles for key, p in zip(keyed, full["probe"])]].assign(role="table III")
    if table.empty:
        raise DataError(f"no {probe!r} probe in this result: it has {sorted(result.scores['probe'].unique())}")
    order = [name for name in _SETS if name in set(table["set"])] + sorted(set(table["set"]) - set(_SETS))
    table = table.set_index("set").loc[order].reset_index()
    references = [full[[key == ref for key in keyed]].assign(role=roles[ref]) for ref in REFERENCE_ROWS
                  if ref in set(keyed)]
    table = pd.concat([table, *references], ignore_index=True)
    spec = [_SETS.get(s) for s in table["set"]]
    reference = [REFERENCE_ROWS.get(key) for key in zip(table["set"], table["probe"])]
    paper_labels = [sp.weights_label if sp else (ref[1] if ref else s) for s, sp, ref in
                    zip(table["set"], spec, reference)]
    ours = [(weights or {}).get(sp.pretraining, label) if sp else label for sp, label in zip(spec, paper_labels)]
    table.insert(0, "role", table.pop("role"))
    table.insert(1, "weights", ours)
    table.insert(2, "paper_weights", paper_labels)
    table.insert(3, "approach", [sp.approach_label if sp else (ref[2] if ref else "") for sp, ref in
                                 zip(spec, reference)])
    reported = [paper.TABLE_III.get(s, (np.nan, np.nan, None)) for s in table["set"]]
    table["paper_mean"] = [r[0] for r in reported]
    table["paper_std"] = [r[1] for r in reported]
    if (table["role"] == "ceiling").any():
        table["of_ceiling"] = table["test_f1_mean"] / table.loc[table["role"] == "ceiling", "test_f1_mean"].iloc[0]
    if present is not None and len(present) < len(result.class_names):
        scores = pd.concat([present_class_f1(result, present, probe=p, threshold=threshold).assign(probe=p)
                            for p in dict.fromkeys(table["probe"])], ignore_index=True)
        table = table.merge(scores, on=["set", "probe"], how="left")
        table.attrs["present_classes"] = tuple(present)
    if labels is not None:
        table = _versus_best(table, result, labels, threshold=threshold, n_resamples=n_resamples, seed=seed)
    return table


def _versus_best(table: pd.DataFrame, result: ProbeResult, labels: np.ndarray, *, threshold: str | None,
                 n_resamples: int, seed: int) -> pd.DataFrame:
    """``table`` with each row's paired-bootstrap difference to the Table III row best on validation F1."""
    main = table[table["role"] == "table III"]
    best = main.loc[main["val_f1_mean"].idxmax()]
    best_row = (best["set"], best["probe"])
    rows = list(zip(table["set"], table["probe"]))
    pairs = [(row, best_row) for row in rows if row != best_row]
    differences = paired_bootstrap(result, labels, pairs=pairs, threshold=threshold, n_resamples=n_resamples,
                                   seed=seed).set_index("a")
    names = [f"{s}/{p}" for s, p in rows]
    for column, source in (("vs_best", "difference"), ("vs_best_low", "low"), ("vs_best_high", "high")):
        table[column] = [0.0 if row == best_row else differences.loc[name, source] for row, name in zip(rows, names)]
    table.attrs["best"] = best["set"]
    table.attrs["resamples"] = n_resamples
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
    """Table III as the book prints it: ``mean ± std`` strings (ours to 3 decimals, the paper's to its 4), ours beside
    the paper's (with the paper's weights); the tuned-threshold column, the share of the ceiling and the paired
    difference to the best row where the table has them."""

    def pm(mean, std, digits: int = 3) -> str:
        return "—" if pd.isna(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    roles = table["role"] if "role" in table else pd.Series("table III", index=table.index)
    shown = {
        "weights, this run": [w if r == "table III" else f"{w} ({r})" for w, r in zip(table["weights"], roles)],
        "embedding": table["approach"],
        "macro F1, this run (test)": [pm(m, s) for m, s in zip(table["test_f1_mean"], table["test_f1_std"])],
    }
    if "test_f1_tuned_mean" in table:
        shown["tuned thresholds (test)"] = [pm(m, s) for m, s in
                                            zip(table["test_f1_tuned_mean"], table["test_f1_tuned_std"])]
    if "present_f1_mean" in table:
        n = len(table.attrs.get("present_classes", ()))
        shown[f"macro F1 over the {n} classes present"] = [
            pm(m, s) for m, s in zip(table["present_f1_mean"], table["present_f1_std"])]
    if "of_ceiling" in table:
        shown["share of the ceiling"] = table["of_ceiling"].map("{:.0%}".format)
    if "vs_best" in table:
        best = table.attrs.get("best")
        shown[f"minus {best} [95 % CI]"] = [
            "(chosen on validation)" if s == best and r == "table III" else interval(d, lo, hi)
            for s, r, d, lo, hi in zip(table["set"], roles, table["vs_best"], table["vs_best_low"],
                                       table["vs_best_high"])]
    shown["macro F1, paper"] = [pm(m, s) if pd.isna(m) else f"{pm(m, s, digits=4)} ({w})"  # as published
                                for m, s, w in zip(table["paper_mean"], table["paper_std"], table["paper_weights"])]
    shown["validation"] = table["val_f1_mean"].map("{:.3f}".format)
    shown["train"] = table["train_f1_mean"].map("{:.3f}".format)
    return pd.DataFrame(shown).set_index("weights, this run")


def interval(difference: float, low: float, high: float) -> str:
    """A difference with its 95 % interval, as the chapter prints it: ``+0.123 [+0.080, +0.160]``."""
    return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]"


def per_class_matrix(result: ProbeResult, *, probe: str = "mlp", subset: str = "test") -> pd.DataFrame:
    """Mean per-class F1 over the fold models: embedding sets (rows, Table III order, then floor and ceiling) ×
    classes (columns)."""
    rows = table_iii(result, probe=probe)[["set", "probe"]].itertuples(index=False)
    return pd.DataFrame({s: result.per_class(s, probe=p, subset=subset)["mean"] for s, p in rows}).T


def probe_comparison(result: ProbeResult, *, threshold: str | None = None) -> pd.DataFrame:
    """Test macro F1 of every probe on every set: ``set, probe, mean, std``, probes in the order they ran."""
    table = result.table(threshold=threshold)
    return table.rename(columns={"test_f1_mean": "mean", "test_f1_std": "std"})[["set", "probe", "mean", "std"]]


def threshold_comparison(result: ProbeResult, *, probe: str = "mlp") -> pd.DataFrame:
    """Test macro F1 at the fixed threshold and at per-class thresholds tuned on each validation fold."""
    keys = ["set", "probe"]
    fixed = table_iii(result, probe=probe)[["weights", "approach", *keys, "test_f1_mean", "test_f1_std"]]
    tuned = table_iii(result, probe=probe, threshold="tuned")[[*keys, "test_f1_mean", "test_f1_std"]]
    merged = fixed.merge(tuned, on=keys, suffixes=("_fixed", "_tuned"))
    merged["gain"] = merged["test_f1_mean_tuned"] - merged["test_f1_mean_fixed"]
    return merged


def split_comparison(by_image: ProbeResult, grouped: ProbeResult, *, probe: str = "mlp",
                     labels: np.ndarray | None = None, n_resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Test macro F1 with the paper's split by image and with the leakage-free split grouped by protein, for every
    row both results hold (ceiling and floor included when both have them).

    The two splits test different images, so a difference cannot be paired: with ``labels`` (the whole dataset's)
    each split is bootstrapped on its own test images (independent resamples, ``n_resamples`` each) and
    ``low``/``high`` bound the 95 % interval of grouped − by image
    (:func:`~dinoxfer_lib.stats.bootstrap_difference`).
    """
    from dinoxfer_lib.stats import bootstrap_difference, row_bootstrap

    keys = ["set", "probe"]
    a = table_iii(by_image, probe=probe)[["role", "weights", "approach", *keys, "test_f1_mean", "test_f1_std"]]
    b = table_iii(grouped, probe=probe)[[*keys, "test_f1_mean", "test_f1_std"]]
    merged = a.merge(b, on=keys, suffixes=("_by_image", "_grouped"))
    merged["difference"] = merged["test_f1_mean_grouped"] - merged["test_f1_mean_by_image"]
    if labels is not None:
        rows = list(zip(merged["set"], merged["probe"]))
        boot_a = row_bootstrap(by_image, labels, rows, n_resamples=n_resamples, seed=seed)
        boot_b = row_bootstrap(grouped, labels, rows, n_resamples=n_resamples, seed=seed + 1)  # independent draws
        bounds = [bootstrap_difference(boot_b, f"{s}/{p}", boot_a, f"{s}/{p}") for s, p in rows]
        merged["low"] = [b["low"] for b in bounds]
        merged["high"] = [b["high"] for b in bounds]
        merged.attrs["resamples"] = n_resamples
    return merged


def grade_comparison(grade1: ProbeResult, grade2: ProbeResult, labels1: np.ndarray, labels2: np.ndarray, *,
                     probe: str = "mlp", n_resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Table III counting a label at any grade >= 1 (the paper's 6,120 labelled images) and only at grade >= 2.

    Both score the same test images, each against its own labels (``labels1``, ``labels2``: the whole dataset's),
    so the bootstrap draws the same resamples for both and ``low``/``high`` bound a paired 95 % interval of
    grade >= 2 − grade >= 1. ``classes_scored`` counts the classes with a grade >= 2 test image: the others score 0
    in the grade >= 2 macro F1.
    """
    from dinoxfer_lib.stats import bootstrap_difference, row_bootstrap

    keys = ["set", "probe"]
    a = table_iii(grade1, probe=probe)[["weights", "approach", *keys, "test_f1_mean", "test_f1_std"]]
    b = table_iii(grade2, probe=probe)[[*keys, "test_f1_mean", "test_f1_std"]]
    merged = a.merge(b, on=keys, suffixes=("_grade1", "_grade2"))
    rows = list(zip(merged["set"], merged["probe"]))
    boot_1 = row_bootstrap(grade1, labels1, rows, n_resamples=n_resamples, seed=seed)
    boot_2 = row_bootstrap(grade2, labels2, rows, n_resamples=n_resamples, seed=seed)  # the same resamples
    bounds = [bootstrap_difference(boot_2, f"{s}/{p}", boot_1, f"{s}/{p}") for s, p in rows]
    merged["difference"] = [b["difference"] for b in bounds]
    merged["low"] = [b["low"] for b in bounds]
    merged["high"] = [b["high"] for b in bounds]
    merged.attrs["classes_scored"] = int(np.asarray(labels2)[grade2.test_index].any(axis=0).sum())
    merged.attrs["classes"] = len(grade2.class_names)
    return merged


def grade_note(frame: pd.DataFrame) -> str:
    """What counting only grade >= 2 labels does to Table III, in numbers."""
    lower = int((frame["high"] < 0).sum())
    return (f"Counting only grade 3 and 2 labels changes test macro F1 by {frame['difference'].min():+.3f} to "
            f"{frame['difference'].max():+.3f}; {lower} of {len(frame)} rows drop with a paired 95 % interval "
            f"excluding 0. {frame.attrs['classes_scored']} of the {frame.attrs['classes']} classes have a grade >= 2 "
            "test image (a class without one scores 0). Weak grade-1 labels are the hardest to see: without them "
            "the task loses its faintest positives but also some images' only label.")


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
    """A reading of Table III written from its numbers: best set, which differences the paired bootstrap resolves,
    ceiling and floor, and whether the paper's ranking holds."""
    references = table[table["role"] != "table III"].set_index("role") if "role" in table else pd.DataFrame()
    table = table[table["role"] == "table III"] if "role" in table else table
    ours = table.set_index("set")["test_f1_mean"]
    best_val = table.loc[table["val_f1_mean"].idxmax(), "set"]
    lines = [f"Test macro F1 ranges from {ours.min():.3f} (**{ours.idxmin()}**) to {ours.max():.3f} "
             f"(**{ours.idxmax()}**); the set chosen on validation F1 is **{best_val}**."]
    if "vs_best" in table:
        others = table[table["set"] != best_val]
        worse = others[others["vs_best_high"] < 0]["set"].tolist()
        tied = others[others["vs_best_high"] >= 0]["set"].tolist()
        lines.append(f"Paired over the test images ({table.attrs.get('resamples', RESAMPLES):,} bootstrap resamples, "
                     f"the same for every row), {len(worse)} of {len(others)} other rows score lower than "
                     f"{best_val} with a 95 % interval excluding 0"
                     + (f"; {', '.join(tied)} {'is' if len(tied) == 1 else 'are'} not resolved from it." if tied
                        else "."))
    if "ceiling" in references.index:
        ceiling = references.loc["ceiling"]
        text = (f"The supervised ceiling (a CNN trained with the labels) reaches {ceiling['test_f1_mean']:.3f}: the "
                f"best row is {ours.max() / ceiling['test_f1_mean']:.0%} of it")
        if "floor" in references.index:
            text += (f", random weights (the floor) "
                     f"{references.loc['floor', 'test_f1_mean'] / ceiling['test_f1_mean']:.0%}")
        lines.append(text + ".")
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
    table = table[table["role"] == "table III"] if "role" in table else table
    gap = table["train_f1_mean"] - table["test_f1_mean"]
    paper_test = [mean for mean, _, _ in paper.TABLE_III.values()]
    return (f"Training macro F1 is {table['train_f1_mean'].min():.3f}–{table['train_f1_mean'].max():.3f} against "
            f"{table['test_f1_mean'].min():.3f}–{table['test_f1_mean'].max():.3f} on test: a gap of "
            f"{gap.min():.3f}–{gap.max():.3f} (the paper: training ≥ {paper.TRAIN_F1_MIN}, test "
            f"{min(paper_test):.2f}–{max(paper_test):.2f}).")


def split_note(frame: pd.DataFrame) -> str:
    """What grouping by protein costs, in numbers (with the independent-bootstrap intervals where computed)."""
    diff = frame.set_index("set")["difference"]
    text = (f"Grouping by protein changes test macro F1 by {diff.min():+.3f} to {diff.max():+.3f} "
            f"(mean {diff.mean():+.3f}).")
    if "low" in frame:
        lower = int((frame["high"] < 0).sum())
        text += (f" The two splits test different images, so each is bootstrapped on its own "
                 f"({frame.attrs.get('resamples', RESAMPLES):,} resamples): {lower} of {len(frame)} rows drop with a "
                 "95 % interval excluding 0.")
    return text + (" A drop is what a split by image hides: images of one protein on both sides let a probe "
                   "recognise the protein instead of its localisation.")


_PAPER_KEYS = ("hidden", "dropout", "lr", "weight_decay", "betas", "epochs", "batch_size", "threshold", "resample")




def threshold_note(result: ProbeResult, *, probe: str = "mlp") -> str:
    """What per-class thresholds tuned on validation do to test macro F1, and why: how many classes the fixed
    threshold never predicts correctly, and where the tuned thresholds sit."""
    if not (result.scores["threshold"] == "tuned").any():
        return "Threshold tuning is off in this profile (`probe.tune_thresholds: false`)."
    fixed, tuned = (table_iii(result, probe=probe, threshold=threshold) for threshold in (None, "tuned"))
    fixed = fixed[fixed["role"] == "table III"].set_index("set")["test_f1_mean"]  # not the ceiling and floor rows
    tuned = tuned.set_index("set")["test_f1_mean"].reindex(fixed.index)
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
    """The chapter's conclusion, from this run: which pretraining ranks first and whether the test images resolve it,
    how our scores sit against the paper's, and what the leakage-free split costs (``table`` from :func:`table_iii`,
    with labels for the paired intervals; ``split_frame`` from :func:`split_comparison`)."""
    rows = table[table["role"] == "table III"].set_index("set")
    ranked = rows["test_f1_mean"].sort_values(ascending=False)
    best, second = ranked.index[0], ranked.index[min(1, len(ranked) - 1)]
    margin = ranked.iloc[0] - ranked.iloc[min(1, len(ranked) - 1)]
    head = (f"- **Ranking.** **{best}** scores highest ({ranked.iloc[0]:.3f} ± {rows.loc[best, 'test_f1_std']:.3f}), "
            f"{margin:.3f} ahead of {second}: ")
    if "vs_best_low" in rows and table.attrs.get("best") == best and second != best:
        low, high = rows.loc[second, "vs_best_low"], rows.loc[second, "vs_best_high"]
        head += (f"the paired 95 % interval of {second} minus {best} over the test images is [{low:+.3f}, "
                 f"{high:+.3f}], so the test images " + ("resolve" if high < 0 else "do not resolve") + " the order "
                 "at the top.")
    else:
        spread = float(np.hypot(rows.loc[best, "test_f1_std"], rows.loc[second, "test_f1_std"]))
        head += ("more than twice the fold spread, so the folds resolve the order at the top." if margin > 2 * spread
                 else f"within twice the fold spread ({spread:.3f}), so the folds do not resolve which of the two "
                 "is better.")
    lines = [head]
    paper_rows = rows.dropna(subset=["paper_mean"])
    if len(paper_rows):
        share = float((paper_rows["test_f1_mean"] / paper_rows["paper_mean"]).mean())
        lines.append(f"- **Against the paper.** Our macro F1 is on average {share:.0%} of the paper's for the same "
                     "rows" + (": synthetic images and a CPU recipe, so the level is not comparable — only the "
                               "protocol is." if synthetic else "."))
    split_rows = split_frame[split_frame["role"] == "table III"] if "role" in split_frame else split_frame
    difference = split_rows["difference"]
    if "high" in split_rows:
        lower = int((split_rows["high"] < 0).sum())
        lines.append(f"- **Leakage.** Grouping by protein changes macro F1 by {difference.mean():+.3f} on average; "
                     f"for {lower} of {len(split_rows)} rows the bootstrap interval lies below 0"
                     + (": part of the split-by-image score is recognising proteins seen in training." if lower
                        else ": here the split by image does not inflate the score measurably."))
    elif difference.mean() < -2 * split_rows["test_f1_std_by_image"].mean():
        lines.append(f"- **Leakage.** Grouping by protein lowers macro F1 by {-difference.mean():.3f} on average: "
                     "part of the split-by-image score is recognising proteins seen in training.")
    else:
        lines.append(f"- **Leakage.** Grouping by protein changes macro F1 by {difference.mean():+.3f} on average, "
                     "within the fold spread: here the split by image does not inflate the score measurably.")
    return "\n".join(lines)


# The demo's targets (issue 14): what a CPU-sized build of the synthetic world must show for the study's questions
# to have answers. Each is checked on the split by image and on the split grouped by protein.
TARGET_BEST_F1 = 0.6  # the best Table III row's test macro F1 at least
TARGET_BEST_SHARE = 0.75  # ... and at least this share of the supervised ceiling
TARGET_FLOOR_SHARE = 0.6  # random weights at most this share of the ceiling
TARGET_DINO_GAIN = 0.15  # the DINO-trained OpenCell backbone above random weights by at least this
TARGET_BUILD_MINUTES = 15.0  # make book from a fresh clone, install included, on 2 CPU cores
NO_SPLIT = "—"  # the split column of a target that no split owns (the build's minutes)
# The comparisons behind the targets: (row a, row b) of the joined result (Table III + ceiling + floor).
DINO_VS_RANDOM = (("opencell_native", "mlp"), (FLOOR_SET, "mlp"))
HPA_VS_NATURAL = (("hpa_mapping", "mlp"), ("imagenet_mapping", "mlp"))
# Each comparison's target, as the targets table names it and what it requires.
PAIRED_TARGETS = {
    DINO_VS_RANDOM: ("DINO-trained OpenCell backbone minus random weights [95 % CI]",
                     f">= {TARGET_DINO_GAIN}, interval above 0"),
    HPA_VS_NATURAL: ("HPA-like minus natural-image pretraining (mapping) [95 % CI]", "interval above 0"),
}


def paired_target_met(pair, difference: float, low: float) -> bool:
    """Whether a paired comparison meets its target: the interval above 0, and for DINO against random weights a
    difference of at least :data:`TARGET_DINO_GAIN`."""
    return low > 0 and (pair != DINO_VS_RANDOM or difference >= TARGET_DINO_GAIN)


def targets_table(results: Mapping[str, tuple[ProbeResult, np.ndarray]], *, stage_minutes: float | None = None,
                  n_resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """The targets table: each target per split, the measured value, what it must be, and ✓ / ✗.

    Parameters
    ----------
    results
        Split label (e.g. ``"by image"``) → (Table III joined with its ceiling and floor, the whole dataset's
        labels). The best row is the Table III row chosen on validation F1, so the choice never sees the test
        images.
    stage_minutes
        Minutes this run's stages computed (e.g. :func:`stage_minutes`): the book's own share of the build budget,
        as far as the store holds it (on a first build, the chapters run so far); the install, kernels and HTML
        are not measured from inside the book.
    n_resamples, seed
        The paired bootstrap behind the two comparisons that need an interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``target``, ``split``, ``measured``, ``required``, ``met`` (``"✓"`` / ``"✗"``) and ``value`` (the
        number, for other tables).
    """
    rows = []

    def add(target: str, split: str, value: float, measured: str, required: str, met: bool) -> None:
        rows.append({"target": target, "split": split, "measured": measured, "required": required,
                     "met": "✓" if met else "✗", "value": value})

    for split, (result, labels) in results.items():
        table = table_iii(result)
        main = table[table["role"] == "table III"]
        best = main.loc[main["val_f1_mean"].idxmax()]
        add("best Table III row: test macro F1", split, best["test_f1_mean"],
            f"{best['test_f1_mean']:.3f} ({best['set']})", f">= {TARGET_BEST_F1}",
            best["test_f1_mean"] >= TARGET_BEST_F1)
        roles = table.set_index("role")
        if "ceiling" in roles.index:
            ceiling = roles.loc["ceiling", "test_f1_mean"]
            add("best row: share of the supervised ceiling", split, best["test_f1_mean"] / ceiling,
                f"{best['test_f1_mean'] / ceiling:.0%} (ceiling {ceiling:.3f})", f">= {TARGET_BEST_SHARE:.0%}",
                best["test_f1_mean"] >= TARGET_BEST_SHARE * ceiling)
            if "floor" in roles.index:
                floor = roles.loc["floor", "test_f1_mean"]
                add("random weights (floor): share of the ceiling", split, floor / ceiling,
                    f"{floor / ceiling:.0%} (floor {floor:.3f})", f"<= {TARGET_FLOOR_SHARE:.0%}",
                    floor <= TARGET_FLOOR_SHARE * ceiling)
        held = set(result.test_probs)
        pairs = [pair for pair in PAIRED_TARGETS if set(pair) <= held]
        if pairs:
            paired = paired_bootstrap(result, labels, pairs=pairs, n_resamples=n_resamples, seed=seed)
            for pair, (_, row) in zip(pairs, paired.iterrows()):
                name, required = PAIRED_TARGETS[pair]
                add(name, split, row["difference"], interval(row["difference"], row["low"], row["high"]), required,
                    paired_target_met(pair, row["difference"], row["low"]))
    if stage_minutes is not None:
        add("the book's stages computed so far on this machine", NO_SPLIT, stage_minutes,
            f"{stage_minutes:.1f} min", f"make book <= {TARGET_BUILD_MINUTES:.0f} min with install",
            stage_minutes <= TARGET_BUILD_MINUTES)
    return pd.DataFrame(rows, columns=["target", "split", "measured", "required", "met", "value"])


def stage_seconds(store, stages: Sequence[str] | None = None) -> dict[str, float]:
    """Seconds each of the run's stages took to compute (``wall_time_s`` of its provenance; every stage in the store
    when ``stages`` is None), wherever it was computed: a reused stage counts what it cost when it ran."""
    names = stages if stages is not None else store.stages()
    return {name: float(store.load(name).provenance.get("wall_time_s") or 0.0) for name in names}


def stage_minutes(store, stages: Sequence[str] | None = None) -> float:
    """Minutes the run's stages took to compute, together (:func:`stage_seconds`)."""
    return sum(stage_seconds(store, stages).values()) / 60


def build_minutes(store) -> pd.DataFrame:
    """Where the build's CPU minutes went: each kind of stage (``dino``, ``probes``, ... : a stage name's first
    part) with its stages' minutes and count and its largest stage, then each notebook's wall time as the runner
    recorded it (``notebooks/<name>.run.json``: the whole notebook, stages included; a reused notebook keeps what
    it cost when it ran). Rows ``kind``, ``what``, ``minutes``, ``count``, ``largest``."""
    rows = []
    seconds = stage_seconds(store)
    kinds: dict[str, list[str]] = {}
    for name in seconds:
        kinds.setdefault(name.split("/")[0], []).append(name)
    for kind, names in kinds.items():
        largest = max(names, key=seconds.get)
        rows.append({"kind": "stages", "what": kind, "minutes": sum(map(seconds.get, names)) / 60,
                     "count": len(names), "largest": f"{largest} ({seconds[largest] / 60:.1f} min)"})
    rows.sort(key=lambda row: -row["minutes"])
    for path in sorted((store.root / "notebooks").glob("*.run.json")):
        recorded = json.loads(path.read_text()).get("seconds")
        if recorded is not None:
            rows.append({"kind": "notebooks", "what": path.name.removesuffix(".run.json"),
                         "minutes": recorded / 60, "count": 1, "largest": ""})
    return pd.DataFrame(rows, columns=["kind", "what", "minutes", "count", "largest"])


def build_minutes_note(minutes: pd.DataFrame) -> str:
    """The build's minutes against its budget, in one paragraph: the stages' total and their largest kinds, the
    notebooks' total where the runner recorded it and, over budget, how far off it is and what would reach it."""
    stages = minutes[minutes["kind"] == "stages"]
    total = stages["minutes"].sum()
    top = ", ".join(f"{row.what} {row.minutes:.1f} min ({row.count} stage{'s' * (row.count != 1)}, "
                    f"{row.minutes / max(total, 1e-9):.0%})" for row in stages.head(3).itertuples())
    text = f"The stages took {total:.1f} CPU minutes; the largest kinds: {top}."
    notebooks = minutes[minutes["kind"] == "notebooks"]
    if len(notebooks):
        text += (f" The {len(notebooks)} notebooks the runner timed took {notebooks['minutes'].sum():.1f} minutes "
                 "(the install and the HTML build are not among them).")
    text += (f" The budget is {TARGET_BUILD_MINUTES:.0f} minutes for `make book` from a fresh clone, install "
             "included.")
    if total > TARGET_BUILD_MINUTES:
        alone = stages[stages["minutes"] > TARGET_BUILD_MINUTES]["what"].tolist()
        text += f" To meet it the stages alone would have to run {total / TARGET_BUILD_MINUTES:.1f}× faster"
        if alone:
            text += f", and {' and '.join(alone)} alone take{'s' * (len(alone) == 1)} more than the whole budget"
        text += (". What would reach it: fewer DINO epochs (chapter 04's frontier shows what each budget buys), "
                 "fewer backbones or probe sets, or a GPU (the *Performance* chapter).")
    return text


def targets_note(targets: pd.DataFrame) -> str:
    """How many targets this run meets, and which it misses."""
    missed = targets[targets["met"] == "✗"]
    text = f"This run meets {int((targets['met'] == '✓').sum())} of {len(targets)} targets."
    if len(missed):
        text += " Missed: " + "; ".join(f"{t} ({'' if s == NO_SPLIT else s + ': '}{m})" for t, s, m in
                                        zip(missed["target"], missed["split"], missed["measured"])) + "."
    return text
