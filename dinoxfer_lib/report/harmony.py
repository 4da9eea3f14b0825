"""Chapter 06 (UMAP and Harmony): what the correction did, in numbers computed from the run."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dinoxfer_lib.report.common import Skipped, value_range


def correction_note(corrected: Mapping, *, n_pcs: int, n_neighbors: int, min_dist: float, seed: int) -> str:
    """How long PCA + Harmony + the two UMAP layouts took, and with which settings (recorded by
    :func:`~dinoxfer_lib.tl.harmony.correct_embeddings`)."""
    first = next(iter(corrected.values()))
    seconds = sum(sum(adata.uns["harmony"]["seconds"].values()) for adata in corrected.values())
    covariates = first.uns["harmony"]["covariates"]
    text = (f"PCA + Harmony + two UMAP layouts for {len(corrected)} sets of {first.n_obs} images took "
            f"**{seconds:.1f} s** in all ({n_pcs} components requested, Harmony covariates "
            f"{', '.join(covariates) or 'none'}; UMAP n_neighbors = {n_neighbors}, min_dist = {min_dist}, seed "
            f"{seed}).")
    if not covariates:
        text += (" These images record no plate (or cell line) with two or more levels, so Harmony had nothing to "
                 "correct: every \"after\" below equals its \"before\", and the batch-mixing scores are empty.")
    return text


def scores_table(scores: pd.DataFrame) -> pd.DataFrame:
    """The mixing and label scores by set and space, as the chapter prints them."""
    return scores.set_index(["set", "space"]).drop(columns=["n_batches", "n_labels"]).round(3)


def showcase_set(scores: pd.DataFrame) -> str:
    """The set whose corrected embeddings keep labels best (k-NN label accuracy after Harmony): the one the
    chapter draws by class and by protein."""
    after = scores[scores["space"] == "after Harmony"].set_index("set")
    return str(after["knn_label_accuracy"].idxmax())


def harmony_note(scores: pd.DataFrame, probe: pd.DataFrame | None = None) -> str:
    """Mixing and label scores before vs after Harmony, and the probe's change, in two or three sentences."""
    wide = scores.pivot(index="set", columns="space")
    change = {k: wide[(k, "after Harmony")] - wide[(k, "before Harmony")]
              for k in ("ilisi_scaled", "clisi_scaled", "knn_label_accuracy", "label_silhouette")}
    if wide[("ilisi_scaled", "before Harmony")].isna().all():
        return "No plate was recorded for these images, so there is no batch mixing to score and nothing to correct."
    lines = [
        f"Harmony moved the scaled iLISI (0 = each plate on its own, 1 = perfectly mixed) from "
        f"{value_range(wide[('ilisi_scaled', 'before Harmony')])} to "
        f"{value_range(wide[('ilisi_scaled', 'after Harmony')])} "
        f"across the {len(wide)} set(s) (mean change {change['ilisi_scaled'].mean():+.2f}).",
        f"The label scores changed by {change['clisi_scaled'].mean():+.3f} (scaled cLISI), "
        f"{change['knn_label_accuracy'].mean():+.3f} (k-NN accuracy on the strongest label) and "
        f"{change['label_silhouette'].mean():+.3f} (label silhouette) on average.",
    ]
    before_mixed = float(wide[("ilisi_scaled", "before Harmony")].min())
    if before_mixed > 0.8:
        lines.append("The plates were already well mixed before correction, so there was little for Harmony to do.")
    if probe is not None and len(probe):
        lines.append(
            f"The probe's test macro F1 changed by {value_range(probe['change'], '+.3f')} "
            f"(mean {probe['change'].mean():+.3f}); compare with the spread over fold models "
            f"({value_range(probe['test_f1_std (before Harmony)'], '.3f')}) before calling a change real."
        )
    return " ".join(lines)


def probe_change_note(probe_change: pd.DataFrame, scores: pd.DataFrame) -> str:
    """:func:`harmony_note` with the probe's change, prefixed by how long the probes took (recorded by
    :func:`~dinoxfer_lib.tl.harmony.probe_before_after`)."""
    seconds = probe_change.attrs.get("seconds")
    timing = f"Probe training for {2 * len(probe_change)} feature sets took {seconds:.1f} s.\n\n" if seconds else ""
    return timing + harmony_note(scores, probe_change)


def mixing_by_covariate(corrected: Mapping, *, perplexity: float, k: int, seed: int) -> dict[str, pd.DataFrame]:
    """:func:`~dinoxfer_lib.tl.mixing.mixing_table` once per covariate Harmony corrected (plate, cell line)."""
    from dinoxfer_lib.tl.harmony import SPACES
    from dinoxfer_lib.tl.mixing import mixing_table

    covariates = next(iter(corrected.values())).uns["harmony"]["covariates"]
    return {key: mixing_table(corrected, spaces=SPACES, batch_key=key, perplexity=perplexity, k=k, seed=seed)
            for key in covariates}


def mixing_by_covariate_note(tables: Mapping[str, pd.DataFrame]) -> str:
    """Scaled iLISI before and after Harmony for each covariate it corrected (e.g. plate and cell line)."""
    return " ".join(
        f"Mixing by **{key}**: scaled iLISI {table['ilisi_scaled'].iloc[0]:.2f} before, "
        f"{table['ilisi_scaled'].iloc[1]:.2f} after Harmony." for key, table in tables.items())


def cell_line_section(embeddings: Mapping, config, *, seed: int) -> list:
    """The HPA images harmonised with plate and cell line as covariates: their UMAPs and mixing per covariate, or a
    :class:`~dinoxfer_lib.report.common.Skipped` note when the data record neither (the HPA Kaggle layout has no
    plate and no cell line)."""
    from IPython.display import Markdown

    from dinoxfer_lib.pl.analysis import plot_harmony_umaps
    from dinoxfer_lib.tl.harmony import correct_embeddings

    corrected = correct_embeddings(embeddings, config, seed=seed)
    covariates = next(iter(corrected.values())).uns["harmony"]["covariates"]
    if not covariates:
        obs = next(iter(embeddings.values())).obs
        return [Skipped("Harmony on the HPA images", "They record no plate or cell line with two or more levels "
                        f"(their metadata: {', '.join(map(str, obs.columns))}), so there is nothing to correct.")]
    tables = mixing_by_covariate(corrected, perplexity=config.lisi_perplexity, k=config.knn_k, seed=seed)
    key = "cell_line" if "cell_line" in covariates else covariates[0]
    return [plot_harmony_umaps(corrected, batch_key=key), Markdown(mixing_by_covariate_note(tables))]


def reading_note(datasets: Mapping, backbones: Mapping) -> str:
    """How to read this chapter's numbers honestly, for the data and backbones this run used."""
    lines = []
    if next(iter(datasets.values())).synthetic:
        lines.append("On the synthetic stand-ins the plate effect is planted by the generator as illumination "
                     "gradient, gain, offset and noise, and the embedding's per-image percentile scaling already "
                     "removes most gain and offset before any backbone sees an image. So a small iLISI gain here can "
                     "mean \"little plate effect survived the preprocessing\" rather than \"Harmony does little\".")
    else:
        lines.append("The embedding's per-image percentile scaling removes most gain and offset between plates "
                     "before any backbone sees an image, so what Harmony corrects is the plate effect that survived "
                     "it.")
    if any(backbone.random for backbone in backbones.values()):
        lines.append("Some backbones are random initialisations (no DINO run yet): their label scores measure what "
                     "a random ViT preserves.")
    lines.append("The scores, not the pictures, say which case this run is in.")
    return " ".join(lines)


def what_this_means(scores: pd.DataFrame, probe_change: pd.DataFrame) -> str:
    """The chapter's conclusion, from this run's scores: whether Harmony mixed the plates, whether the labels kept
    their neighbourhoods, and whether the probe noticed (``scores`` from
    :func:`~dinoxfer_lib.tl.mixing.mixing_table`, ``probe_change`` from
    :func:`~dinoxfer_lib.tl.harmony.probe_before_after`)."""
    wide = scores.pivot(index="set", columns="space")
    before, after = wide[("ilisi_scaled", "before Harmony")], wide[("ilisi_scaled", "after Harmony")]
    if before.isna().all():
        return ("- **Nothing to correct.** These images record no plate, so Harmony left the embeddings as they were "
                "and the probe's scores are those of the previous chapter.")
    mixing = float((after - before).mean())
    labels = float((wide[("knn_label_accuracy", "after Harmony")] - wide[("knn_label_accuracy", "before Harmony")])
                   .mean())
    change, spread = probe_change["change"], probe_change["test_f1_std (before Harmony)"]
    lines = [f"- **Plates.** Scaled iLISI {before.mean():.2f} → {after.mean():.2f} on average ({mixing:+.2f}): "
             + ("Harmony mixed the plates." if mixing > 0.05 else
                "the plates were mixed about as well before, so there was little plate effect left to remove."),
             f"- **Labels.** k-NN label accuracy changed by {labels:+.3f} on average: "
             + ("the localisation neighbourhoods survived the correction." if labels > -0.02 else
                "the correction blurred localisation neighbourhoods, a sign it removed biology with the plates.")]
    real = (change.abs() > 2 * spread).any()
    lines.append(f"- **The probe.** Its macro F1 changed by {change.min():+.3f} to {change.max():+.3f}; "
                 + ("for some sets more than twice the fold spread: see the table above for which."
                    if real else "within twice the fold spread for every set, so Harmony neither helps nor hurts "
                    "the paper's probe here."))
    return "\n".join(lines)
