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
