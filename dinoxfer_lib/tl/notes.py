"""The "what we see" paragraphs of the UMAP/Harmony and domain-shift chapters, written from the run's own numbers.

Each function reads the tables a chapter computed and returns Markdown, so no notebook states a result that its
run did not produce.
"""

from __future__ import annotations

import pandas as pd


def _range(values: pd.Series, fmt: str = ".2f") -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:{fmt}}" if abs(high - low) < 10 ** -3 else f"{low:{fmt}}–{high:{fmt}}"


def harmony_note(scores: pd.DataFrame, probe: pd.DataFrame | None = None) -> str:
    """Mixing and label scores before vs after Harmony, and the probe's change, in two or three sentences."""
    wide = scores.pivot(index="set", columns="space")
    change = {k: wide[(k, "after Harmony")] - wide[(k, "before Harmony")]
              for k in ("ilisi_scaled", "clisi_scaled", "knn_label_accuracy", "label_silhouette")}
    lines = [
        f"Harmony moved the scaled iLISI (0 = each plate on its own, 1 = perfectly mixed) from "
        f"{_range(wide[('ilisi_scaled', 'before Harmony')])} to {_range(wide[('ilisi_scaled', 'after Harmony')])} "
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
            f"The probe's test macro F1 changed by {_range(probe['change'], '+.3f')} "
            f"(mean {probe['change'].mean():+.3f}); compare with the spread over fold models "
            f"({_range(probe['test_f1_std (before Harmony)'], '.3f')}) before calling a change real."
        )
    return " ".join(lines)


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
        f"A linear probe tells all domains apart with {_range(full['accuracy'], '.2f')} accuracy "
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
                         f"models (macro F1 {_range(rows['test_f1_mean'], '.3f')}).")
            continue
        lines.append(
            f"On the {domain} images the **{best['backbone']}** backbone gives the highest macro F1 "
            f"({best['test_f1_mean']:.3f} ± {best['test_f1_std']:.3f}), the {last['backbone']} backbone the lowest "
            f"({last['test_f1_mean']:.3f} ± {last['test_f1_std']:.3f})."
        )
    return " ".join(lines)
