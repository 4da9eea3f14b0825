"""Domain-shift diagnostics between embedding distributions (after the EM foundation-model study, PAPER_SPEC.md §7).

- **Fréchet distance** between two sets of embeddings, each summarised by a Gaussian (mean, covariance): the
  squared distance of the means plus ``Tr(S1 + S2 - 2 (S1 S2)^1/2)`` (Dowson & Landau 1982; FID of Heusel et al.
  2017 with the backbone under study as the feature extractor). It is biased upwards by sampling noise, more for
  wide embeddings and few images, so a distance means something only beside the **within-domain floor**: the
  distance between two disjoint random halves of one domain, at the same sample size. Every distance here is
  computed on random half-samples of equal size ``m`` (the smallest domain's half), repeated ``resamples`` times:
  the mean is reported with the 2.5-97.5 % range of the repetitions (why half-samples rather than a bootstrap:
  *Deviations and choices*, Representation analysis).
- **Domain probe**: a logistic regression on standardised embeddings that predicts the domain, cross-validated on
  class-balanced data, so chance is ``1 / number of domains``. Near chance = the domains overlap in feature space;
  near 1 = a linear boundary separates them.

Both run with one BLAS thread: their matrices (a few hundred wide) are too small to gain from threads, and on a
busy machine OpenBLAS threads fighting over the cores made a 192 x 192 eigendecomposition 70 times slower.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.linalg import eigh, eigvalsh
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from dinoxfer_lib.errors import DataError
from dinoxfer_lib.progress import progress_bar


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to ``a`` and ``b`` (rows = samples, same width).

    ``Tr((S_a S_b)^1/2)`` is computed as the sum of square roots of the eigenvalues of the symmetric matrix
    ``S_a^1/2 S_b S_a^1/2``, which is stable where ``scipy.linalg.sqrtm`` of the non-symmetric product is not.
    """
    a, b = _check_pair(a, b)
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = eigvalsh(root_a @ cov_b @ root_a).clip(min=0)
    trace_term = float(np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(cross).sum())
    return max(mean_term + trace_term, 0.0)


def resampled_frechet(
    a: np.ndarray, b: np.ndarray | None = None, *, size: int, resamples: int = 50, seed: int = 0
) -> dict[str, float]:
    """Fréchet distance between random ``size``-samples of ``a`` and ``b``, repeated ``resamples`` times.

    With ``b=None`` the two samples are disjoint halves of ``a``: the within-domain floor.

    Returns
    -------
    dict
        ``distance`` (mean over repetitions), ``low`` and ``high`` (2.5 and 97.5 percentiles), ``size``.
    """
    if resamples < 2:
        raise DataError(f"resamples = {resamples}: expected >= 2")
    need = 2 * size if b is None else size
    if len(a) < need or (b is not None and len(b) < size):
        raise DataError(f"cannot draw {'two disjoint ' if b is None else ''}samples of {size} from "
                        f"{len(a)}{'' if b is None else f' and {len(b)}'} points")
    rng = np.random.default_rng(seed)
    draws = []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(resamples):
            pick = rng.permutation(len(a))
            first = a[pick[:size]]
            second = a[pick[size:2 * size]] if b is None else b[rng.permutation(len(b))[:size]]
            draws.append(frechet_distance(first, second))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"distance": float(np.mean(draws)), "low": float(low), "high": float(high), "size": size}


def frechet_table(embeddings: Mapping[str, np.ndarray], *, resamples: int = 50, seed: int = 0) -> pd.DataFrame:
    """Fréchet distance for every pair of domains and each domain's floor, all at one sample size.

    Parameters
    ----------
    embeddings
        Domain → ``(N_domain, d)`` embeddings by one backbone (the same width for every domain).
    resamples, seed
        See :func:`resampled_frechet`.

    Returns
    -------
    pandas.DataFrame
        One row per unordered pair (``domain_a``, ``domain_b``), floors as ``domain_a == domain_b``: ``distance``,
        ``low``, ``high``, ``size`` (images per side) and ``floor`` (the larger floor of the two domains, the
        reference a pair's distance must exceed).
    """
    names = list(embeddings)
    if len(names) < 2:
        raise DataError(f"a Fréchet table needs at least 2 domains, got {names}")
    size = min(len(x) for x in embeddings.values()) // 2
    rows = []
    for k, (first, second) in enumerate(itertools.combinations_with_replacement(names, 2)):
        other = None if first == second else embeddings[second]
        rows.append({"domain_a": first, "domain_b": second,
                     **resampled_frechet(embeddings[first], other, size=size, resamples=resamples, seed=seed + k)})
    table = pd.DataFrame(rows)
    floors = table[table["domain_a"] == table["domain_b"]].set_index("domain_a")["distance"]
    table["floor"] = np.maximum(floors[table["domain_a"]].to_numpy(), floors[table["domain_b"]].to_numpy())
    return table


def domain_probe(embeddings: Mapping[str, np.ndarray], *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Cross-validated accuracy of a logistic regression that predicts the domain from the embedding.

    Each domain is subsampled (seeded) to the smallest domain's size, so chance is ``1 / len(embeddings)``.

    Returns
    -------
    dict
        ``accuracy`` (mean over folds), ``accuracy_std``, ``chance``, ``per_domain`` (images per domain).
    """
    names = list(embeddings)
    if len(names) < 2:
        raise DataError(f"a domain probe needs at least 2 domains, got {names}")
    per_domain = min(len(x) for x in embeddings.values())
    if per_domain < folds:
        raise DataError(f"{per_domain} images in the smallest domain: expected at least {folds} (one per fold)")
    rng = np.random.default_rng(seed)
    X = np.concatenate([np.asarray(embeddings[n])[rng.permutation(len(embeddings[n]))[:per_domain]] for n in names])
    y = np.repeat(np.arange(len(names)), per_domain)
    _check_pair(X, X)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with threadpool_limits(limits=1, user_api="blas"):
        scores = cross_val_score(model, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"accuracy": float(scores.mean()), "accuracy_std": float(scores.std(ddof=1)),
            "chance": 1 / len(names), "per_domain": per_domain}


def domain_probe_table(embeddings: Mapping[str, np.ndarray], *, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """:func:`domain_probe` for every pair of domains and for all domains together (one row each)."""
    names = list(embeddings)
    groups = [tuple(pair) for pair in itertools.combinations(names, 2)]
    if len(names) > 2:
        groups.append(tuple(names))
    rows = [{"domains": " vs ".join(group), **domain_probe({n: embeddings[n] for n in group}, folds=folds, seed=seed)}
            for group in groups]
    return pd.DataFrame(rows)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"embeddings of shapes {a.shape} and {b.shape}: expected two (points, d) matrices, one d")
    if len(a) < 2 or len(b) < 2:
        raise DataError(f"need at least 2 points per side, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("embeddings contain NaN or infinite values")
    return a, b


def shift_tables(
    embeddings: Mapping[str, Mapping[str, np.ndarray]], *, resamples: int = 50, folds: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`frechet_table` and :func:`domain_probe_table` for every backbone.

    Parameters
    ----------
    embeddings
        Backbone → domain → ``(N_domain, d)`` embeddings by that backbone.
    resamples, folds, seed
        As in :func:`resampled_frechet` and :func:`domain_probe`.

    Returns
    -------
    tuple
        The Fréchet table and the domain-probe table, each with a leading ``backbone`` column;
        ``attrs["seconds"]`` of the Fréchet table = how long both took.
    """
    started = time.perf_counter()
    frechet, probes = [], []
    for backbone, per_domain in progress_bar(embeddings.items(), desc="domain shift", unit="backbone"):
        frechet.append(frechet_table(per_domain, resamples=resamples, seed=seed).assign(backbone=backbone))
        probes.append(domain_probe_table(per_domain, folds=folds, seed=seed).assign(backbone=backbone))
    frechet_all, probe_all = pd.concat(frechet, ignore_index=True), pd.concat(probes, ignore_index=True)
    frechet_all = frechet_all[["backbone", *frechet_all.columns[:-1]]]
    frechet_all.attrs["seconds"] = time.perf_counter() - started
    return frechet_all, probe_all[["backbone", *probe_all.columns[:-1]]]


def embedding_matrices(embeddings: Mapping[str, Mapping]) -> dict[str, dict[str, np.ndarray]]:
    """Backbone → domain → the ``X`` of each AnnData: what :func:`shift_tables` and :func:`pooled_pca` take."""
    return {backbone: {domain: np.asarray(adata.X) for domain, adata in per.items()}
            for backbone, per in embeddings.items()}


def pooled_pca(embeddings: Mapping[str, np.ndarray], *, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The first two principal components of all domains' embeddings together (each domain subsampled to the
    smallest one's size, so no domain dominates the axes).

    Returns
    -------
    tuple
        A frame with ``domain``, ``pc1``, ``pc2`` (one row per image used) and the two explained-variance ratios.
    """
    from dinoxfer_lib.tl.reduce import pca

    per_domain = min(len(x) for x in embeddings.values())
    rng = np.random.default_rng(seed)
    picks = {n: np.asarray(x)[rng.permutation(len(x))[:per_domain]] for n, x in embeddings.items()}
    scores, variance = pca(np.concatenate(list(picks.values())), n_components=2, seed=seed)
    frame = pd.DataFrame({"domain": np.repeat(list(picks), per_domain), "pc1": scores[:, 0], "pc2": scores[:, 1]})
    return frame, variance
