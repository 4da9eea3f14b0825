"""Scores for "are batches mixed, and is biology kept?" before and after batch correction.

- **LISI** (local inverse Simpson's index; Korsunsky et al. 2019, *Nat Methods* 16:1289, the Harmony paper): for each
  image, a Gaussian kernel over its ``3 x perplexity`` nearest neighbours, its width calibrated so the kernel's
  effective number of neighbours equals ``perplexity``; LISI is the inverse Simpson index of the categories under
  those weights, i.e. the effective number of categories nearby. Computed by ``harmonypy.compute_lisi`` (the Harmony
  authors' own port; a dependency already). **iLISI** (categories = batches) ranges from 1 (neighbours from one
  batch) to the number of batches (perfect mixing); **cLISI** (categories = labels) from 1 (pure neighbourhoods:
  good) upwards. Scaled versions map both to [0, 1] with 1 = good, as scib does: ``(iLISI - 1) / (B - 1)`` and ``(C - cLISI) / (C - 1)``.
- **Silhouette** (Rousseeuw 1987) by label (higher = labels form compact, separated groups) and by batch (near 0 or
  below = batches do not form groups).
- **k-NN label accuracy**: leave-one-out majority vote of the k nearest neighbours on the image's strongest label.

Multi-label images count with their *strongest* label (highest grade; ties go to the rarer class, the more specific
statement), because these scores need one category per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from dinoxfer_lib.errors import DataError, MissingField

UNLABELLED = "unlabelled"
# Score columns of :func:`mixing_scores`, and which direction is better (for tables and bar plots).
SCORE_DIRECTIONS: dict[str, str] = {
    "ilisi": "higher",
    "ilisi_scaled": "higher",
    "batch_silhouette": "lower",
    "clisi": "lower",
    "clisi_scaled": "higher",
    "label_silhouette": "higher",
    "knn_label_accuracy": "higher",
}


def primary_labels(grades: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Each image's strongest label: highest grade, ties to the rarer class; :data:`UNLABELLED` where none.

    Parameters
    ----------
    grades
        ``(N, K)`` grades (0 = absent) or a boolean label matrix.
    class_names
        The K class names.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` array of class names (object dtype).
    """
    grades = np.asarray(grades).astype(float)
    if grades.ndim != 2 or grades.shape[1] != len(class_names):
        raise DataError(f"grades of shape {grades.shape}: expected (images, {len(class_names)} classes)")
    frequency = (grades > 0).mean(axis=0)  # (K,)
    # grade first; among equal grades the rarer class wins (a tiny bonus below one grade step)
    score = np.where(grades > 0, grades + 0.5 * (1 - frequency), -np.inf)
    best = score.argmax(axis=1)
    names = np.asarray(class_names, dtype=object)[best]
    names[~(grades > 0).any(axis=1)] = UNLABELLED
    return names


def lisi(X: np.ndarray, categories: Sequence, *, perplexity: float = 30.0) -> np.ndarray:
    """Local inverse Simpson's index of ``categories`` around every point (Korsunsky et al. 2019).

    Uses the Harmony authors' implementation (``harmonypy.compute_lisi``), after checking the inputs and
    shrinking ``perplexity`` to ``(N - 1) / 3`` on small data (it searches ``3 x perplexity`` neighbours and
    would otherwise read past the data).

    Parameters
    ----------
    X
        ``(N, d)`` coordinates (e.g. principal components).
    categories
        Length-N category per point (batch for iLISI, label for cLISI).
    perplexity
        Effective neighbourhood size.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` LISI values between 1 and the number of categories.
    """
    from harmonypy import compute_lisi

    X = _check_matrix(X, "X")
    codes = _codes(categories, len(X), "categories")
    if len(X) < 4:
        raise DataError(f"LISI needs at least 4 points, got {len(X)}")
    perplexity = min(perplexity, (len(X) - 1) / 3)
    return compute_lisi(X, pd.DataFrame({"category": codes}), ["category"], perplexity=perplexity)[:, 0]


def knn_label_accuracy(X: np.ndarray, labels: Sequence, *, k: int = 15) -> float:
    """Share of points whose k nearest neighbours (itself excluded) vote for its own label (ties: nearest wins)."""
    X = _check_matrix(X, "X")
    codes = _codes(labels, len(X), "labels")
    k = min(k, len(X) - 1)
    _, index = NearestNeighbors(n_neighbors=k).fit(X).kneighbors()
    votes = np.zeros((len(X), codes.max() + 1))
    # weights 1 + tiny decreasing bonus: a tie in counts goes to the label of the nearer neighbours
    np.add.at(votes, (np.repeat(np.arange(len(X)), k), codes[index].ravel()),
              np.tile(1 + 1e-6 * np.arange(k, 0, -1), len(X)))
    return float((votes.argmax(axis=1) == codes).mean())


def mixing_scores(
    X: np.ndarray,
    *,
    batches: Sequence,
    labels: Sequence,
    perplexity: float = 30.0,
    k: int = 15,
    seed: int = 0,
) -> dict[str, float]:
    """Batch-mixing and label-preservation scores of one embedding (the columns of :data:`SCORE_DIRECTIONS`).

    Parameters
    ----------
    X
        ``(N, d)`` coordinates, e.g. principal components before or after Harmony.
    batches
        Length-N batch (plate) per image.
    labels
        Length-N single label per image (see :func:`primary_labels`); :data:`UNLABELLED` images are left out of
        the label scores.
    perplexity, k
        LISI neighbourhood size and k-NN vote size.
    seed
        Seeds the subsample of the silhouette scores (at most 5,000 points).

    Returns
    -------
    dict
        ``ilisi``, ``ilisi_scaled``, ``batch_silhouette``, ``clisi``, ``clisi_scaled``, ``label_silhouette``,
        ``knn_label_accuracy`` and the counts ``n_batches``, ``n_labels``. With a single batch (no plate recorded)
        the batch scores are NaN: there is no mixing to measure.
    """
    X = _check_matrix(X, "X")
    batches, labels = np.asarray(batches).astype(str), np.asarray(labels).astype(str)
    for name, values in (("batches", batches), ("labels", labels)):
        if len(values) != len(X):
            raise DataError(f"{name} has {len(values)} entries for {len(X)} points")
    n_batches = len(np.unique(batches))
    labelled = labels != UNLABELLED
    n_labels = len(np.unique(labels[labelled]))
    if n_labels < 2:
        raise DataError(f"label scores need at least 2 distinct labels, got {n_labels}")
    sample = min(len(X), 5000)
    mixed = n_batches >= 2
    ilisi = float(lisi(X, batches, perplexity=perplexity).mean()) if mixed else np.nan
    clisi = float(lisi(X[labelled], labels[labelled], perplexity=perplexity).mean())
    return {
        "ilisi": ilisi,
        "ilisi_scaled": (ilisi - 1) / (n_batches - 1) if mixed else np.nan,
        "batch_silhouette": float(silhouette_score(X, batches, sample_size=sample, random_state=seed)) if mixed
        else np.nan,
        "clisi": clisi,
        "clisi_scaled": (n_labels - clisi) / (n_labels - 1),
        "label_silhouette": float(silhouette_score(X[labelled], labels[labelled],
                                                   sample_size=min(sample, int(labelled.sum())), random_state=seed)),
        "knn_label_accuracy": knn_label_accuracy(X[labelled], labels[labelled], k=k),
        "n_batches": n_batches,
        "n_labels": n_labels,
    }


def _check_matrix(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"{name} must be a 2-D (points, dimensions) matrix, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return X


def _codes(values: Sequence, n: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if len(values) != n:
        raise DataError(f"{name} has {len(values)} entries for {n} points")
    return pd.factorize(values)[0]


def mixing_table(
    embeddings: Mapping,
    *,
    spaces: Mapping[str, str],
    batch_key: str = "batch",
    perplexity: float = 30.0,
    k: int = 15,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`mixing_scores` for every embedding set and space (e.g. before and after Harmony).

    Parameters
    ----------
    embeddings
        Set name → AnnData with ``obs[batch_key]``, ``obsm["grades"]``, ``uns["class_names"]`` and the spaces.
    spaces
        Display name → ``obsm`` key, e.g. ``{"before Harmony": "X_pca", "after Harmony": "X_pca_harmony"}``.
    batch_key
        The ``obs`` column whose mixing is scored.
    perplexity, k, seed
        As in :func:`mixing_scores`.

    Returns
    -------
    pandas.DataFrame
        One row per (set, space), the score columns of :data:`SCORE_DIRECTIONS` plus ``n_batches``, ``n_labels``.
    """
    rows = []
    for name, adata in embeddings.items():
        if batch_key not in adata.obs:
            raise MissingField(f"set {name!r}: obs has no column {batch_key!r} to score batch mixing by")
        labels = primary_labels(adata.obsm["grades"], adata.uns["class_names"])
        for space, key in spaces.items():
            if key not in adata.obsm:
                raise DataError(f"set {name!r}: no obsm[{key!r}] for space {space!r}; run correct_embeddings first")
            scores = mixing_scores(adata.obsm[key], batches=adata.obs[batch_key].to_numpy(), labels=labels,
                                   perplexity=perplexity, k=k, seed=seed)
            rows.append({"set": name, "space": space, **scores})
    return pd.DataFrame(rows)
