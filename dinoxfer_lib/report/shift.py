"""Chapter 07 (Domain shift): what the distances, the domain probe and the transfer matrix say, in numbers."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dinoxfer_lib import paper
from dinoxfer_lib.dino.config import DINOV2_BACKBONES
from dinoxfer_lib.embedding_sets import EMBEDDING_SETS
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.report.common import value_range


def embedding_sizes(embeddings: Mapping[str, Mapping]) -> pd.DataFrame:
    """Images x width of each domain's embeddings by each backbone."""
    return pd.DataFrame({backbone: {domain: f"{adata.n_obs} x {adata.n_vars}" for domain, adata in per.items()}
                         for backbone, per in embeddings.items()}).rename_axis("images \\ backbone")


def distance_vs_f1(frechet: pd.DataFrame, f1_table: pd.DataFrame, *, target: str = "opencell") -> pd.DataFrame:
    """Per Table III set: the Fréchet distance from its backbone's pretraining domain to ``target``, and its F1.

    Parameters
    ----------
    frechet
        :func:`~dinoxfer_lib.tl.shift.shift_tables`' Fréchet table (with a ``backbone`` column).
    f1_table
        ``ProbeResult.table()`` of Table III (``set``, ``probe``, ``test_f1_mean``, ``test_f1_std``); its MLP rows
        are used.
    target
        The domain the probes were trained and tested on.

    Returns
    -------
    pandas.DataFrame
        One row per set of a pretraining domain's backbone (not the DINOv2 ones): ``backbone``, ``distance``,
        ``low``, ``high``, ``floor``, our ``f1``/``f1_std`` and the paper's ``paper_f1`` (NaN for sets the paper
        does not have).
    """
    backbone_of = {s.name: s.pretraining for s in EMBEDDING_SETS}
    rows = []
    for _, row in f1_table[f1_table["probe"] == "mlp"].iterrows():
        backbone = backbone_of.get(row["set"])
        if backbone is None or backbone in DINOV2_BACKBONES:  # distances are between pretraining domains
            continue
        same_pair = [{a, b} == {backbone, target} for a, b in zip(frechet["domain_a"], frechet["domain_b"])]
        pair = frechet[(frechet["backbone"] == backbone).to_numpy() & np.array(same_pair, dtype=bool)]
        if pair.empty:
            raise DataError(f"no Fréchet distance between {backbone} and {target} under the {backbone} backbone")
        pair = pair.iloc[0]
        rows.append({
            "set": row["set"], "backbone": backbone,
            **{k: pair[k] for k in ("distance", "low", "high", "floor")},
            "f1": row["test_f1_mean"], "f1_std": row["test_f1_std"],
            "paper_f1": paper.TABLE_III.get(row["set"], (float("nan"),))[0],
        })
    return pd.DataFrame(rows)


def analysis_time_note(frechet: pd.DataFrame) -> str:
    """How long this run's Fréchet resampling and domain probe took (recorded by
    :func:`~dinoxfer_lib.tl.shift.shift_tables`); the stages' own times are in the provenance table."""
    return f"Fréchet distances and the domain probe took {frechet.attrs['seconds']:.1f} s in this run."


def shift_note(frechet: pd.DataFrame, probes: pd.DataFrame) -> str:
    """Which domain pairs are further apart than their floor, and how separable the domains are, per backbone."""
    pairs = frechet[frechet["domain_a"] != frechet["domain_b"]]
    above = pairs[pairs["low"] > pairs["floor"]]
    full = probes[probes["domains"].str.count(" vs ") == probes["domains"].str.count(" vs ").max()]
    lines = [
        f"{len(above)} of {len(pairs)} domain pairs (over all backbones) lie further apart than the larger "
        f"within-domain floor of the two, even at the low end of their interval."
    ]
    for backbone, rows in pairs.groupby("backbone", sort=False):
        far = rows.loc[rows["distance"].idxmax()]
        near = rows.loc[rows["distance"].idxmin()]
        lines.append(
            f"Through the **{backbone}** backbone the closest pair is {near['domain_a']}–{near['domain_b']} "
            f"({near['distance']:.3g}, floor {near['floor']:.3g}) and the furthest {far['domain_a']}–"
            f"{far['domain_b']} ({far['distance']:.3g})."
        )
    lines.append(
        f"A linear probe tells all domains apart with {value_range(full['accuracy'], '.2f')} accuracy "
        f"(chance {full['chance'].iloc[0]:.2f})."
    )
    return " ".join(lines)


def transfer_note(transfer: pd.DataFrame) -> str:
    """Which backbone gives the best probe on each labelled domain, and by how much."""
    lines = []
    for domain, rows in transfer.groupby("domain", sort=False):
        rows = rows.sort_values("test_f1_mean", ascending=False)
        best, last = rows.iloc[0], rows.iloc[-1]
        if best["test_f1_mean"] - last["test_f1_mean"] <= rows["test_f1_std"].max():
            lines.append(f"On the {domain} images the backbones do not differ by more than the spread over fold "
                         f"models (macro F1 {value_range(rows['test_f1_mean'], '.3f')}).")
            continue
        lines.append(
            f"On the {domain} images the **{best['backbone']}** backbone gives the highest macro F1 "
            f"({best['test_f1_mean']:.3f} ± {best['test_f1_std']:.3f}), the {last['backbone']} backbone the lowest "
            f"({last['test_f1_mean']:.3f} ± {last['test_f1_std']:.3f})."
        )
    return " ".join(lines)


def reading_note(datasets: Mapping, backbones: Mapping) -> str:
    """How to read the distances and the transfer matrix honestly, for the data and backbones this run used."""
    lines = []
    if all(d.synthetic for d in datasets.values()):
        lines.append("The synthetic domains differ by construction: the natural stand-ins are RGB photographs, the "
                     "two microscopy domains come from one generator with different cells, stains, optics, channels "
                     "and pixel sizes.")
    lines.append("Large distances to the natural images and a near-perfect domain probe are expected (photographs "
                 "against fluorescence) and say little; the informative numbers are the distance between the two "
                 "microscopy domains relative to its floor, and whether its order across backbones matches the "
                 "transfer matrix.")
    if any(backbone.random for backbone in backbones.values()):
        lines.append("Some backbones are random initialisations: their distances measure what a random ViT "
                     "preserves.")
    smallest = min(len(d) for d in datasets.values())
    lines.append(f"With {smallest:,} images in the smallest domain, compare transfer-matrix cells only where they "
                 "differ by more than their standard deviations.")
    return " ".join(lines)


def pca_note(pcas: Mapping[str, tuple[pd.DataFrame, np.ndarray]]) -> str:
    """What the PCA panels show, in numbers: the share of variance on PC1, how much of PC1 lies between the domains'
    means, and which domain PC1 sets apart (``pcas``: backbone → :func:`~dinoxfer_lib.tl.shift.pooled_pca`)."""
    first = pd.Series({backbone: float(variance[0]) for backbone, (_, variance) in pcas.items()})
    between, apart = {}, {}
    for backbone, (frame, _) in pcas.items():
        centre = frame["pc1"].mean()
        means = frame.groupby("domain")["pc1"].mean()
        total = float(((frame["pc1"] - centre) ** 2).sum())
        between[backbone] = float(((frame["domain"].map(means) - centre) ** 2).sum()) / total if total > 0 else 0.0
        others = {domain: means.drop(domain).mean() for domain in means.index}
        apart[backbone] = max(means.index, key=lambda domain: abs(means[domain] - others[domain]))
    between = pd.Series(between)
    text = f"PC1 explains {value_range(first, '.0%')} of the pooled variance"
    text += (": the two-dimensional picture is essentially one axis. " if first.min() > 0.9 else ". ")
    text += f"{value_range(between, '.0%')} of PC1's own variance lies between the domains' means, so "
    if between.min() >= 0.8:
        text += ("PC1 is the offset between domains, and the structure within each domain (cells, classes) is "
                 f"squeezed into the remaining {1 - first.max():.0%} or so. ")
    elif between.min() >= 0.3:
        far = pd.Series(apart).mode().iloc[0]
        text += (f"PC1 mostly sets the **{far}** images apart from the others and also varies within each domain. ")
    else:
        text += ("PC1 is a direction of variation the domains share (overall brightness or cell density, for "
                 "instance), not the difference between them. ")
    return text + ("The Fréchet distances and the domain probe below measure the separation in all dimensions, "
                   "without the compression of a two-axis picture.")


def frechet_table(frechet: pd.DataFrame) -> pd.DataFrame:
    """The Fréchet distances as a reader compares them: one row per domain pair, one column per backbone, each cell
    ``mean [2.5 %, 97.5 %]``; the within-domain floors are the rows of a domain with itself."""
    def cell(row) -> str:
        return f"{row['distance']:.3g} [{row['low']:.3g}, {row['high']:.3g}]"

    shown = frechet.assign(pair=frechet["domain_a"] + " – " + frechet["domain_b"], cell=frechet.apply(cell, axis=1))
    table = shown.pivot(index="pair", columns="backbone", values="cell")
    order = list(dict.fromkeys(shown["pair"]))
    backbones = list(dict.fromkeys(frechet["backbone"]))
    return table.loc[order, backbones].rename(columns=lambda b: f"{b} backbone").rename_axis("domains")


def what_this_means(frechet: pd.DataFrame, relation: pd.DataFrame, transfer: pd.DataFrame) -> str:
    """The chapter's conclusion, from this run: how much closer the microscopy domains are to each other than to
    natural images, and whether distance to OpenCell orders Table III's scores (``relation`` from
    :func:`distance_vs_f1`, ``transfer`` the transfer matrix)."""
    pairs = frechet[frechet["domain_a"] != frechet["domain_b"]]
    microscopy = pairs[pairs.apply(lambda r: {r["domain_a"], r["domain_b"]} == {"opencell", "hpa"}, axis=1)]
    natural = pairs[pairs.apply(lambda r: "natural" in (r["domain_a"], r["domain_b"]), axis=1)]
    lines = []
    if len(microscopy) and len(natural):
        lines.append(f"- **Microscopy is one neighbourhood.** OpenCell and HPA are {microscopy['distance'].mean():.3g} "
                     f"apart on average, natural images {natural['distance'].mean():.3g} from either "
                     f"({natural['distance'].mean() / microscopy['distance'].mean():.0f}× further).")
    if len(relation) >= 3:
        rho = float(relation["distance"].rank().corr(relation["f1"].rank()))
        lines.append(f"- **Distance and transfer.** Across the Table III sets, the rank correlation of distance to "
                     f"OpenCell with our macro F1 is {rho:+.2f}: "
                     + ("closer pretraining data transfers better here, as the paper's reading suggests." if rho < -0.5
                        else "distance does not order the scores here; on these data the embedding approach matters "
                        "as much as where the backbone was pretrained."))
    if len(transfer):
        spread = transfer["test_f1_std"].max()
        span = transfer["test_f1_mean"].max() - transfer["test_f1_mean"].min()
        lines.append(f"- **Transfer matrix.** Its cells span {span:.3f} macro F1 against a fold spread of up to "
                     f"{spread:.3f}: " + ("the backbones differ measurably." if span > 2 * spread else
                                         "differences between its cells are mostly noise at this sample size."))
    return "\n".join(lines)
