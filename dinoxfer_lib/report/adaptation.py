"""Chapter 08 (Adaptation and EM): the adaptation table beside Table III with paired intervals, 004's IoU table,
and each finding of paper 004's abstract beside what this run measured.

Per-fold paired differences: every regime is trained on Table III's folds (split by image) and scored on the
same test images as Table III's MLP, so fold k of a regime is compared with fold k of the MLP. The mean difference
over the folds comes with a Student t interval. The folds share most training images, so these intervals are
optimistic (Nadeau & Bengio 2003): they say how much the recipe's randomness moves the difference, not how much
another draw of test images would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dinoxfer_lib.errors import DataError
from dinoxfer_lib.report.common import value_range

# The regimes in the order the chapter shows them; "table_iii" is Table III's MLP on the frozen embeddings.
REGIME_LABELS: dict[str, str] = {
    "table_iii": "frozen + MLP (Table III)",
    "frozen": "frozen + MLP (adaptation recipe)",
    "lora": "LoRA + MLP",
    "full": "full fine-tuning + MLP",
}
BASELINE = "table_iii"
# Verdicts of the findings table; "partly" = the pattern holds for some backbones or domains, not all.
VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")
# Backbone families of paper 004's comparison, by the registered weights that stand for them here.
FAMILIES_004 = {"DINOv2": "dinov2_", "DINOv3": "dinov3_", "OpenCLIP": "openclip_"}


def settings_table(section) -> pd.DataFrame:
    """Every setting of a config section (nested sections as ``lora.rank``), as the chapter lists its recipe."""
    def flat(values: Mapping, prefix: str = "") -> dict:
        out = {}
        for key, value in values.items():
            if isinstance(value, Mapping):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
        return out

    return pd.Series(flat(dataclasses.asdict(section)), name="value").rename_axis("setting").to_frame()


def fold_scores(table_iii, adapted) -> pd.DataFrame:
    """Test macro F1 of every fold model at the fixed threshold: ``set, regime, fold, test_f1``.

    Parameters
    ----------
    table_iii
        Table III's :class:`~dinoxfer_lib.probes.result.ProbeResult` (its ``mlp`` rows of the adapted sets are
        the ``table_iii`` regime).
    adapted
        :class:`~dinoxfer_lib.adapt.train.AdaptResult` of the adaptation stages.
    """
    sets = list(dict.fromkeys(adapted.probe.scores["set"]))
    frames = []
    for result, rename in ((table_iii, {"mlp": BASELINE}), (adapted.probe, None)):
        s = result.scores
        rows = s[(s["subset"] == "test") & s["class"].isna() & (s["threshold"] == result.fixed_threshold)
                 & s["set"].isin(sets)]
        if rename is not None:
            rows = rows[rows["probe"].isin(list(rename))].assign(probe=lambda f: f["probe"].map(rename))
        frames.append(rows.rename(columns={"probe": "regime", "value": "test_f1"})[["set", "regime", "fold",
                                                                                   "test_f1"]])
    scores = pd.concat(frames, ignore_index=True)
    missing = sorted(set(sets) - set(scores.loc[scores["regime"] == BASELINE, "set"]))
    if missing:
        raise DataError(f"Table III has no MLP scores for the adapted set(s) {missing}: was it run on another split?")
    return scores


def adaptation_table(table_iii, adapted) -> pd.DataFrame:
    """One row per (set, regime), Table III's MLP first: test macro F1 (mean ± std over folds), validation and
    training F1, folds, trainable and total parameters, the regime's own steps and seconds of training per fold
    (LoRA and full fine-tuning started from a head-only model include its seconds), device.

    Table III's MLP has the adapted heads' parameter count and no time of its own: the probe stage trains every
    set's fold models together (its wall time is in chapter 04's provenance).
    """
    sets = list(dict.fromkeys(adapted.probe.scores["set"]))
    ours = adapted.table().drop(columns="train_s_mean").rename(columns={"probe": "regime"})
    costs = adapted.costs.assign(  # a model started from the head-only model also cost that model's training
        seconds=lambda c: c["train_s"] + c["head_s"].where(c["probe"] != "frozen", 0.0))
    costs = costs.groupby(["set", "probe"], sort=False).agg(
        steps=("steps", "first"), train_s_mean=("seconds", "mean"), predict_s_mean=("predict_s", "mean"),
        device=("device", "first"), head_params=("head_params", "first")).reset_index().rename(
        columns={"probe": "regime"})
    ours = ours.merge(costs, on=["set", "regime"], how="left")
    frozen = table_iii.table()
    frozen = frozen[(frozen["probe"] == "mlp") & frozen["set"].isin(sets)].drop(columns="probe")
    frozen = frozen.assign(regime=BASELINE).merge(
        ours.groupby("set", sort=False)["head_params"].first().rename("trainable_params").reset_index(), on="set")
    table = pd.concat([frozen, ours], ignore_index=True)
    table["order"] = table["regime"].map(list(REGIME_LABELS).index)
    table = table.sort_values(["set", "order"], key=lambda c: c.map(sets.index) if c.name == "set" else c)
    table.insert(1, "method", table["regime"].map(REGIME_LABELS))
    columns = ["set", "method", "regime", "folds", "test_f1_mean", "test_f1_std", "val_f1_mean", "train_f1_mean",
               "trainable_params", "total_params", "steps", "train_s_mean", "predict_s_mean", "device"]
    return table[columns].reset_index(drop=True)


def format_adaptation_table(table: pd.DataFrame) -> pd.DataFrame:
    """The adaptation table as the book prints it: ``mean ± std`` strings, parameter counts with separators."""

    def count(value) -> str:
        return "—" if pd.isna(value) else f"{int(value):,}"

    def seconds(value) -> str:
        return "—" if pd.isna(value) else f"{value:.1f}"

    return pd.DataFrame({
        "set": table["set"],
        "method": table["method"],
        "folds": table["folds"],
        "macro F1 (test)": [f"{m:.3f} ± {s:.3f}" if pd.notna(s) else f"{m:.3f}"
                            for m, s in zip(table["test_f1_mean"], table["test_f1_std"])],
        "validation": table["val_f1_mean"].map("{:.3f}".format),
        "train": table["train_f1_mean"].map("{:.3f}".format),
        "trainable params": table["trainable_params"].map(count),
        "steps / fold": table["steps"].map(count),
        "training / fold": [seconds(value) if pd.isna(device) else f"{seconds(value)} s ({device})"
                            for value, device in zip(table["train_s_mean"], table["device"])],
    }).set_index(["set", "method"])


def paired_differences(scores: pd.DataFrame, *, baseline: str = BASELINE, confidence: float = 0.95
                       ) -> pd.DataFrame:
    """Per set and regime: test macro F1 minus the baseline's, fold by fold, with a Student t interval.

    Parameters
    ----------
    scores
        :func:`fold_scores`.
    baseline
        The regime every other regime is compared with (default Table III's MLP).
    confidence
        Of the interval.

    Returns
    -------
    pandas.DataFrame
        ``set, regime, method, folds, difference`` (mean over the shared folds), ``low``, ``high`` (NaN with one
        fold), ``resolved`` (the interval excludes 0).
    """
    rows = []
    for set_name, per_set in scores.groupby("set", sort=False):
        base = per_set[per_set["regime"] == baseline].set_index("fold")["test_f1"]
        for regime, per_regime in per_set[per_set["regime"] != baseline].groupby("regime", sort=False):
            diff = (per_regime.set_index("fold")["test_f1"] - base).dropna()  # folds both have
            n = len(diff)
            if n == 0:
                raise DataError(f"set {set_name!r}: regime {regime!r} shares no fold with {baseline!r}")
            low = high = np.nan
            if n >= 2:
                half = stats.t.ppf((1 + confidence) / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n)
                low, high = diff.mean() - half, diff.mean() + half
            rows.append({"set": set_name, "regime": regime, "method": REGIME_LABELS.get(regime, regime), "folds": n,
                         "difference": diff.mean(), "low": low, "high": high,
                         "resolved": bool(n >= 2 and (low > 0 or high < 0))})
    return pd.DataFrame(rows)


def choice_note(table_iii, chosen: Sequence[str], *, configured: Sequence[str]) -> str:
    """Which Table III set(s) were adapted, and why (``best_val``: highest mean validation macro F1 of the MLP)."""
    table = table_iii.table()
    mlp = table[table["probe"] == "mlp"].set_index("set")
    parts = []
    if "best_val" in configured:
        best = mlp["val_f1_mean"].idxmax()
        parts.append(f"`adapt.sets` asks for `best_val`: **{best}**, the set whose MLP has the highest mean "
                     f"validation macro F1 in Table III ({mlp.loc[best, 'val_f1_mean']:.3f}; the test images play "
                     "no part in the choice).")
    named = [s for s in chosen if s in configured]
    if named:
        parts.append(f"Named in `adapt.sets`: {', '.join(f'**{s}**' for s in named)}.")
    parts.append(f"Each adapted set starts from the backbone and channel strategy of its Table III row "
                 f"({', '.join(chosen)}).")
    return " ".join(parts)


def adaptation_note(table: pd.DataFrame, differences: pd.DataFrame) -> str:
    """What the adaptation table and the paired differences say, in numbers."""
    lines = []
    for set_name, rows in table.groupby("set", sort=False):
        rows = rows.set_index("regime")
        base = rows.loc[BASELINE]
        lines.append(f"On **{set_name}**, Table III's MLP reaches {base['test_f1_mean']:.3f} test macro F1.")
        for regime, diff in differences[differences["set"] == set_name].set_index("regime").iterrows():
            row = rows.loc[regime]
            if diff["folds"] < 2:
                span = f"{diff['difference']:+.3f} on the one shared fold (no interval)"
            else:
                span = (f"{diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}] over "
                        f"{diff['folds']} folds ({'resolved' if diff['resolved'] else 'not resolved'})")
            lines.append(f"{REGIME_LABELS[regime]}: {row['test_f1_mean']:.3f}, a paired difference of {span}, "
                         f"training {int(row['trainable_params']):,} parameters for {row['train_s_mean']:.1f} s "
                         f"per fold on {row['device']}.")
    return " ".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Segmentation (paper 004)


def em_summary(data: Mapping) -> pd.DataFrame:
    """One row per EM domain: patches in each split, patch side, voxel size, mitochondria fraction, source."""
    rows = {}
    for domain, em in data.items():
        splits = em.obs["split"].value_counts()
        rows[domain] = {
            "train patches": int(splits.get("train", 0)), "test patches": int(splits.get("test", 0)),
            "patch px": em.images.shape[-1],
            "voxel (z, y, x) nm": " x ".join(f"{v:g}" for v in em.metadata.get("voxel_size_nm", ())),
            "mitochondria (% of pixels)": round(100 * float(em.masks.mean()), 1),
            "source": em.metadata.get("emulates") or em.metadata.get("dataset", ""),
            "synthetic": em.synthetic,
        }
    return pd.DataFrame(rows).T.rename_axis("domain")


def seg_scores(results: Mapping) -> pd.DataFrame:
    """Every backbone's IoU rows (``backbone, train_set, regime, test_domain, in_domain, iou, n_test``)."""
    if not results:
        raise DataError("no segmentation results: seg.backbones names none")
    return pd.concat([r.scores.assign(backbone=name) for name, r in results.items()], ignore_index=True)[
        ["backbone", "train_set", "regime", "test_domain", "in_domain", "iou", "n_test"]]


def foreground_baseline(data: Mapping) -> dict[str, float]:
    """Test domain → the IoU of calling every pixel mitochondrion: the foreground fraction of its test patches.

    A head must beat this to have learnt anything: it is what a model that never says background scores.
    """
    return {domain: float(em.split("test").masks.mean()) for domain, em in data.items()}


def seg_table(results: Mapping, *, baseline: Mapping[str, float] | None = None) -> pd.DataFrame:
    """004's table for every backbone: rows backbone × training set × regime, one IoU column per test domain;
    with ``baseline``, a last row for predicting all foreground."""
    scores = seg_scores(results)
    domains = list(dict.fromkeys(scores["test_domain"]))
    table = scores.pivot_table(index=["backbone", "train_set", "regime"], columns="test_domain", values="iou",
                               sort=False, dropna=False)[domains]
    if baseline is not None:
        table.loc[("—", "predict all foreground", "—"), :] = [baseline[d] for d in domains]
    table.columns.name = "IoU on test patches of"
    return table


def seg_costs(results: Mapping) -> pd.DataFrame:
    """Trainable parameters and seconds of every segmentation model: its own training, the head-only training a
    LoRA model started from (``head_s``), and the token cache the head-only models share."""
    frames = [r.costs.assign(backbone=name) for name, r in results.items()]
    costs = pd.concat(frames, ignore_index=True)
    return costs.set_index(["backbone", "train_set", "regime"])[
        ["trainable_params", "total_params", "train_s", "head_s", "token_cache_s", "device"]]


def backbone_table(records: Mapping[str, Mapping]) -> pd.DataFrame:
    """Where each compared backbone's weights came from: ``seg.backbones`` entry → architecture, source, sha256."""
    return pd.DataFrame({name: {"architecture": r.get("arch", ""), "weights": r.get("source", ""),
                                "sha256": (r.get("sha256") or "—")[:12]} for name, r in records.items()}).T


def comparison_backbones(compared: Sequence[str]) -> pd.DataFrame:
    """The named weights of 004's backbone families (``data_manifests/``): whether the loader takes them (a
    registered architecture) and whether this run compares them (``seg.backbones``)."""
    from dinoxfer_lib.data.manifests import list_manifests, load_manifest
    from dinoxfer_lib.models.backbones import PRETRAINED

    rows = []
    for name in list_manifests():
        family = next((f for f, prefix in FAMILIES_004.items() if name.startswith(prefix)), None)
        if family is None:
            continue
        manifest = load_manifest(name)
        rows.append({"weights": name, "family": family, "download": manifest.download_mode,
                     "architecture": PRETRAINED[name].arch if name in PRETRAINED else "—",
                     "loads here": "yes" if name in PRETRAINED else "no",
                     "in this run": "yes" if name in compared else ""})
    return pd.DataFrame(rows).set_index("weights")


def em_shift_note(frechet: pd.DataFrame, probes: pd.DataFrame) -> str:
    """Per backbone: the distance between the two EM domains against its floor, and the domain probe's accuracy."""
    lines = []
    pairs = frechet[frechet["domain_a"] != frechet["domain_b"]]
    for backbone, row in pairs.set_index("backbone").iterrows():
        probe = probes[probes["backbone"] == backbone].iloc[0]
        above = "above" if row["low"] > row["floor"] else "not above"
        lines.append(f"**{backbone}**: Fréchet distance {row['distance']:.3g} [{row['low']:.3g}, {row['high']:.3g}], "
                     f"{above} the within-domain floor {row['floor']:.3g}; the domain probe is right "
                     f"{probe['accuracy']:.0%} of the time (chance {probe['chance']:.0%}).")
    return " ".join(lines)


def findings_table(results: Mapping, frechet: pd.DataFrame, probes: pd.DataFrame, *,
                   baseline: Mapping[str, float], synthetic: bool, probe_accuracy: float = 0.9) -> pd.DataFrame:
    """Each finding of paper 004's abstract, what this run measured, and whether it holds here.

    Every verdict follows the rule written beside it, applied to every backbone (and domain) of this run:
    ``reproduced`` when it holds for all, ``partly`` for some, ``not reproduced`` for none. On synthetic stand-ins
    a verdict says the stand-ins behave that way, nothing about the real datasets.

    Parameters
    ----------
    results
        Backbone → :class:`~dinoxfer_lib.seg.train.SegResult`.
    frechet, probes
        :func:`~dinoxfer_lib.tl.shift.shift_tables` of the EM domains' embeddings, per backbone.
    baseline
        :func:`foreground_baseline`.
    synthetic
        Whether the EM domains are the stand-ins.
    probe_accuracy
        Domain-probe accuracy that counts as "the probe identifies the dataset".
    """
    scores = seg_scores(results)
    single = scores[scores["train_set"].isin(scores["test_domain"].unique())]  # one domain per training set
    joint = scores[scores["train_set"].str.contains(r"\+")]
    rows = []

    in_domain = single[single["in_domain"] & (single["regime"] == "frozen")]
    ratio = in_domain["iou"] / in_domain["test_domain"].map(baseline)
    rows.append(_finding(
        "Training on a single EM dataset yields good segmentation (foreground IoU).",
        "in-domain IoU of every frozen single-domain model ≥ 2 × the all-foreground IoU",
        ratio >= 2,
        f"in-domain IoU {value_range(in_domain['iou'], '.3f')} (frozen, single domain) against "
        f"{value_range(pd.Series(baseline), '.3f')} for predicting all foreground"))

    wide = single[single["in_domain"]].pivot_table(index=["backbone", "test_domain"], columns="regime",
                                                    values="iou")
    if {"frozen", "lora"} <= set(wide.columns):
        gain = wide["lora"] - wide["frozen"]
        rows.append(_finding(
            "LoRA consistently improves in-domain performance.",
            "LoRA's in-domain IoU above the frozen head's, for every backbone and domain", gain > 0,
            f"LoRA − frozen in-domain IoU: {value_range(gain, '+.3f')} (mean {gain.mean():+.3f})"))
    else:
        rows.append(_untestable("LoRA consistently improves in-domain performance.",
                                "seg.regimes lacks frozen or lora"))

    if len(joint):
        paired = joint.merge(single[single["in_domain"]], on=["backbone", "regime", "test_domain"],
                             suffixes=("_joint", "_single"))
        drop = paired["iou_single"] - paired["iou_joint"]
        relative = drop.mean() / paired["iou_single"].mean() if paired["iou_single"].mean() > 0 else np.nan
        rows.append(_finding(
            "Training on multiple EM datasets degrades performance severely, for all models.",
            "the joint model's IoU on each domain below the model trained on that domain alone (same backbone and "
            "regime)", drop > 0,
            f"joint − single IoU: {value_range(-drop, '+.3f')} (mean {-drop.mean():+.3f}, "
            f"{-relative:+.0%} of the single-domain IoU)"))
        frozen_single = paired[paired["regime"] == "frozen"].set_index(["backbone", "test_domain"])["iou_single"]
        lora_joint = paired[paired["regime"] == "lora"].set_index(["backbone", "test_domain"])["iou_joint"]
        frozen_joint = paired[paired["regime"] == "frozen"].set_index(["backbone", "test_domain"])["iou_joint"]
        if len(lora_joint) and len(frozen_joint):
            rows.append(_finding(
                "PEFT (LoRA) gives only marginal gains when training on both datasets.",
                "the joint LoRA model stays below the single-domain frozen model on each domain (LoRA does not "
                "recover what joint training lost)", (lora_joint < frozen_single.reindex(lora_joint.index)).dropna(),
                f"joint LoRA − joint frozen IoU: {value_range(lora_joint - frozen_joint, '+.3f')}"))
        else:
            rows.append(_untestable("PEFT (LoRA) gives only marginal gains when training on both datasets.",
                                    "seg.regimes lacks frozen or lora"))
    else:
        for text in ("Training on multiple EM datasets degrades performance severely, for all models.",
                     "PEFT (LoRA) gives only marginal gains when training on both datasets."):
            rows.append(_untestable(text, "seg.train_sets has no joint training set"))

    pairs = frechet[frechet["domain_a"] != frechet["domain_b"]].set_index("backbone")
    accuracy = probes.groupby("backbone", sort=False)["accuracy"].max()
    mismatch = (pairs["low"] > pairs["floor"]) & (accuracy.reindex(pairs.index) >= probe_accuracy)
    rows.append(_finding(
        "The representations show a pronounced, persistent domain mismatch between the two EM datasets despite "
        "their visual similarity (PCA, Fréchet distance, linear probes).",
        f"Fréchet distance above the within-domain floor and domain-probe accuracy ≥ {probe_accuracy:.0%}, for "
        "every backbone", mismatch,
        f"distance / floor {value_range(pairs['distance'] / pairs['floor'], '.1f')}, probe accuracy "
        f"{value_range(accuracy, '.2f')}"))

    backbones = list(results)
    present = [family for family, prefix in FAMILIES_004.items() if any(b.startswith(prefix) for b in backbones)]
    measured = f"backbones compared: {', '.join(backbones)}"
    text = "These hold across DINOv2, DINOv3 and OpenCLIP."
    if len(present) < len(FAMILIES_004):
        missing = [family for family in FAMILIES_004 if family not in present]
        rows.append(_untestable(text, f"{measured}; not compared: {', '.join(missing)} (seg.backbones takes "
                                      "dinov2_* and openclip_* weights; DINOv3 does not load yet)"))
    else:
        rows.append({"finding (paper 004)": text, "rule": "the rows above, read per family", "this run": measured,
                     "verdict": "see the rows above"})

    table = pd.DataFrame(rows)
    if synthetic:
        table = table.rename(columns={"this run": "this run (synthetic stand-ins)"})
    return table


def format_findings(table: pd.DataFrame):
    """The findings table as the book prints it: every text in full (a plain frame's display cuts long cells),
    left-aligned, without the row numbers."""
    return table.style.hide(axis="index").set_properties(**{"text-align": "left", "vertical-align": "top"})


def _finding(text: str, rule: str, holds: pd.Series, measured: str) -> dict:
    """A findings-table row whose verdict counts where ``holds`` (one bool per backbone / domain) is true."""
    holds = pd.Series(holds).dropna().astype(bool)
    if holds.empty:
        return _untestable(text, "no scores to compare")
    verdict = "reproduced" if holds.all() else "partly" if holds.any() else "not reproduced"
    return {"finding (paper 004)": text, "rule": rule,
            "this run": f"{measured}; holds in {holds.sum()} of {len(holds)}", "verdict": verdict}


def _untestable(text: str, why: str) -> dict:
    return {"finding (paper 004)": text, "rule": "—", "this run": why, "verdict": "not testable here"}


def reading_note(em: Mapping, adapt) -> str:
    """How to read this chapter honestly, for the data and the budget (``adapt``, the profile's section) this run
    had: a profile that caps ``images_per_epoch`` gives the adapted backbones only a few steps."""
    lines = []
    if adapt.images_per_epoch is not None:
        lines.append("On this run's CPU budget LoRA and full fine-tuning take a few dozen steps through the backbone "
                     "(`adapt.images_per_epoch`) from the trained frozen head, so they can only nudge it: a regime "
                     "that matches the frozen row says the budget was too small to tell, not that adaptation does not "
                     "help. Few folds give a paired interval, but a wide one.")
    if any(patches.synthetic for patches in em.values()):
        lines.append("The EM pair here is the synthetic stand-in: the tables show that each part runs and is scored "
                     "as 004 scores it, not what LoRA or joint training does to real EM data. The stand-ins were "
                     "built to differ the way the real pair differs, so a representation mismatch is expected by "
                     "construction; the segmentation findings are not built in.")
    else:
        lines.append("The EM pair is the real Lucchi++ and VNC data: the findings below are measured on them.")
    return " ".join(lines)


def what_this_means(differences: pd.DataFrame, findings: pd.DataFrame) -> str:
    """The chapter's answer in two sentences: what adapting the backbone changed, and how much of 004 held here."""
    resolved = differences[differences["resolved"]]
    text = (f"Adapting the backbone changed test macro F1 by {differences['difference'].min():+.3f} to "
            f"{differences['difference'].max():+.3f} against Table III's MLP on frozen features; "
            f"{len(resolved)} of {len(differences)} differences are resolved by their paired interval.")
    counts = findings["verdict"].value_counts()
    text += " Of paper 004's findings, " + ", ".join(
        f"{counts.get(verdict, 0)} {verdict}" for verdict in ("reproduced", "partly", "not reproduced",
                                                             "not testable here")) + " in this run."
    return text
