"""A label-free sanity check of an embedding: do an image's nearest neighbours share its localisation?

For each image, the share of its k nearest neighbours (cosine, itself excluded) that share at least one label
with it, against the same share for random pairs (chance). Images of the same protein share its labels, so the
check is also reported with same-protein neighbours excluded: that version cannot be won by recognising the protein.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors


def neighbour_label_agreement(
    X: np.ndarray, labels: np.ndarray, *, groups: np.ndarray | None = None, k: int = 10, seed: int = 0
) -> dict[str, float]:
    """Share of k-NN pairs sharing a label, chance level, and (with ``groups``) the same without same-group pairs."""
    labels = np.asarray(labels, dtype=bool)
    n = len(X)
    extra = k if groups is None else min(n - 1, 8 * k)  # fetch more so that k remain after removing same-group
    nn = NearestNeighbors(n_neighbors=min(n, extra + 1), metric="cosine").fit(X)
    _, index = nn.kneighbors(X)
    index = index[:, 1:]  # (N, extra) without the image itself
    shares = (labels[:, None, :] & labels[index]).any(-1)  # (N, extra)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, 20 * n), rng.integers(0, n, 20 * n)
    keep = a != b
    result = {"k": k, "agreement": float(shares[:, :k].mean()), "chance": float((labels[a[keep]] & labels[b[keep]]).any(-1).mean())}
    if groups is not None:
        groups = np.asarray(groups)
        other = groups[index] != groups[:, None]
        # first k neighbours from other groups in each row
        rank = np.cumsum(other, axis=1)
        use = other & (rank <= k)
        result["agreement_other_proteins"] = float(shares[use].mean())
        pair_other = groups[a[keep]] != groups[b[keep]]
        result["chance_other_proteins"] = float((labels[a[keep]] & labels[b[keep]]).any(-1)[pair_other].mean())
    return result


def agreement_table(embeddings: dict, *, k: int = 10, seed: int = 0) -> pd.DataFrame:
    """:func:`neighbour_label_agreement` for each AnnData in ``embeddings`` (one row per set)."""
    rows = {}
    for name, adata in embeddings.items():
        groups = adata.obs["group"].to_numpy() if "group" in adata.obs else None
        rows[name] = neighbour_label_agreement(adata.X, adata.obsm["labels"], groups=groups, k=k, seed=seed)
    return pd.DataFrame(rows).T
