"""Dimension reduction: PCA (what Harmony corrects and the scores measure) and seeded UMAP (what the figures show).

UMAP (McInnes et al. 2018, umap-learn) is only a picture: distances in it are not meaningful, so every claim the
book makes about mixing or separation comes from scores computed in PCA space (:mod:`dinoxfer_lib.tl.mixing`).
A fixed ``random_state`` makes umap-learn deterministic (and single-threaded); the same seed gives the same layout.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from dinoxfer_lib.errors import DataError


def pca(X: np.ndarray, *, n_components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of ``X`` (centred, not scaled), capped by its width and row count.

    Returns
    -------
    tuple
        ``(N, p)`` scores and the ``(p,)`` explained-variance ratios, ``p = min(n_components, d, N - 1)``.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise DataError(f"PCA needs a (points, dimensions) matrix with at least 3 rows, got shape {X.shape}")
    p = min(n_components, X.shape[1], len(X) - 1)
    model = PCA(n_components=p, svd_solver="randomized" if p < min(X.shape) // 2 else "full", random_state=seed)
    scores = model.fit_transform(X)
    return scores.astype(np.float32), model.explained_variance_ratio_


def umap_layout(
    X: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.3, n_epochs: int = 200, seed: int = 0
) -> np.ndarray:
    """2-D UMAP layout of ``X`` (Euclidean), deterministic for a given ``seed``.

    Parameters
    ----------
    X
        ``(N, d)`` coordinates, usually principal components.
    n_neighbors, min_dist, n_epochs
        umap-learn's parameters (see :class:`~dinoxfer_lib.tl.config.AnalysisConfig`); ``n_neighbors`` is capped
        at ``N - 1``.
    seed
        umap-learn's ``random_state``.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float32 layout.
    """
    import umap

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 4:
        raise DataError(f"UMAP needs a (points, dimensions) matrix with at least 4 rows, got shape {X.shape}")
    n_neighbors = min(n_neighbors, len(X) - 1)
    # exact neighbours (the point itself first, as umap-learn expects) from scikit-learn: umap-learn's own path for
    # < 4096 points calls its numba metric once per pair from Python, ~10x slower than the whole optimisation
    distances, index = NearestNeighbors(n_neighbors=n_neighbors).fit(X).kneighbors(X)
    model = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs, random_state=seed, n_jobs=1,
                      precomputed_knn=(index, distances.astype(np.float32), None))
    with warnings.catch_warnings():
        # without a search index umap-learn warns that .transform() of new points is unavailable: not used here
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        # a fixed random_state turns off umap-learn's parallelism, and it says so on every call
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        return model.fit_transform(X).astype(np.float32)
