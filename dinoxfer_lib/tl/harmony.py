"""Harmony batch correction of embeddings (Korsunsky et al. 2019), as Cell-DINO applies it (PAPER_SPEC.md §7).

Harmony works on principal components: it soft-clusters the images and, within each cluster, regresses out the
covariates (plate; cell line for HPA-like data), pushing clusters to contain every batch. It is given only those
covariates, never a localisation label.

Harmony is fitted once on all images of a set, test images included (harmonypy cannot map images it was not
fitted on), and the same label-free PCA precedes both arms of the probe comparison: why this leaks no label is
in *Deviations and choices* (Representation analysis).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dinoxfer_lib.errors import DataError, MissingField
from dinoxfer_lib.progress import progress_bar
from dinoxfer_lib.tl.config import AnalysisConfig
from dinoxfer_lib.tl.reduce import pca, umap_layout

# obsm slots written by :func:`correct_embeddings` (scanpy's names, so the AnnData opens there as expected).
PCA_KEY, HARMONY_KEY = "X_pca", "X_pca_harmony"
UMAP_KEY, UMAP_HARMONY_KEY = "X_umap", "X_umap_harmony"
SPACES: dict[str, str] = {"before Harmony": PCA_KEY, "after Harmony": HARMONY_KEY}


def usable_covariates(obs: pd.DataFrame, covariates: Sequence[str]) -> tuple[str, ...]:
    """The ``covariates`` that ``obs`` has with at least two levels (Harmony can only correct those).

    Raises
    ------
    MissingField
        None of them is usable.
    """
    usable = tuple(c for c in covariates if c in obs.columns and obs[c].astype(str).nunique() >= 2)
    if not usable:
        raise MissingField(f"no Harmony covariate among {', '.join(covariates)} is an obs column with >= 2 levels "
                           f"(obs has {', '.join(map(str, obs.columns))})")
    return usable


def harmonize(
    pcs: np.ndarray,
    obs: pd.DataFrame,
    *,
    covariates: Sequence[str],
    theta: float = 2.0,
    max_iter: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Harmony-corrected principal components.

    Parameters
    ----------
    pcs
        ``(N, p)`` principal components.
    obs
        N rows of metadata holding the covariates.
    covariates
        Covariate columns to remove; those missing from ``obs`` or with a single level are skipped (see
        :func:`usable_covariates`), and the ones used are returned. With none usable there is nothing to
        correct: the components come back unchanged and no covariate is returned.
    theta, max_iter, seed
        Harmony's diversity penalty (per covariate), outer iterations and random state.

    Returns
    -------
    tuple
        ``(N, p)`` float32 corrected components, and the covariates used.
    """
    import harmonypy

    pcs = np.asarray(pcs, dtype=np.float64)
    if pcs.ndim != 2 or len(pcs) != len(obs):
        raise DataError(f"principal components of shape {pcs.shape} for {len(obs)} obs rows")
    try:
        used = usable_covariates(obs, covariates)
    except MissingField:
        return pcs.astype(np.float32), ()
    meta = pd.DataFrame({c: obs[c].astype(str).to_numpy() for c in used})
    model = harmonypy.run_harmony(pcs, meta, list(used), theta=[theta] * len(used), max_iter_harmony=max_iter,
                                  random_state=seed, verbose=False)
    corrected = np.asarray(model.Z_corr, dtype=np.float32)
    if corrected.shape != pcs.shape:  # harmonypy < 0.1 returned (p, N)
        corrected = corrected.T
    return corrected, used


def correct_embeddings(embeddings: Mapping, config: AnalysisConfig, *, seed: int = 0) -> dict:
    """PCA, Harmony and a UMAP before and after, for every embedding set.

    Parameters
    ----------
    embeddings
        Set name → AnnData (``X`` = embeddings, ``obs`` with the covariates).
    config
        ``n_pcs``, ``harmony_*`` and ``umap_*`` settings.
    seed
        Seeds PCA, Harmony's clustering and UMAP.

    Returns
    -------
    dict
        Set name → a copy of its AnnData with ``obsm["X_pca"]``, ``obsm["X_pca_harmony"]``, ``obsm["X_umap"]``,
        ``obsm["X_umap_harmony"]`` and ``uns["harmony"]`` (covariates used, parameters, explained variance,
        seconds per step).
    """
    config.validate("analysis")
    out = {}
    for name, adata in progress_bar(embeddings.items(), desc="PCA, Harmony, UMAP", unit="set"):
        adata = adata.copy()
        seconds = {}
        started = time.perf_counter()
        adata.obsm[PCA_KEY], variance = pca(adata.X, n_components=config.n_pcs, seed=seed)
        seconds["pca"] = time.perf_counter() - started
        started = time.perf_counter()
        adata.obsm[HARMONY_KEY], used = harmonize(
            adata.obsm[PCA_KEY], adata.obs, covariates=config.harmony_covariates, theta=config.harmony_theta,
            max_iter=config.harmony_max_iter, seed=seed)
        seconds["harmony"] = time.perf_counter() - started
        started = time.perf_counter()
        for source, target in ((PCA_KEY, UMAP_KEY), (HARMONY_KEY, UMAP_HARMONY_KEY)):
            adata.obsm[target] = umap_layout(adata.obsm[source], n_neighbors=config.umap_n_neighbors,
                                             min_dist=config.umap_min_dist, n_epochs=config.umap_n_epochs, seed=seed)
        seconds["umap (2 layouts)"] = time.perf_counter() - started
        adata.uns["harmony"] = {
            "covariates": list(used),
            "theta": config.harmony_theta,
            "max_iter": config.harmony_max_iter,
            "n_pcs": int(adata.obsm[PCA_KEY].shape[1]),
            "explained_variance": float(variance.sum()),
            "seconds": seconds,
        }
        out[name] = adata
    return out


def timing_table(corrected: Mapping) -> pd.DataFrame:
    """Seconds per step (PCA, Harmony, UMAP) and set, as recorded by :func:`correct_embeddings`."""
    rows = {name: adata.uns["harmony"]["seconds"] for name, adata in corrected.items()}
    table = pd.DataFrame(rows).T
    table["total"] = table.sum(axis=1)
    return table


def probe_before_after(
    corrected: Mapping,
    *,
    split,
    config,
    seed: int = 0,
    device=None,
) -> pd.DataFrame:
    """The paper's probe on each set's principal components before and after Harmony (same folds, same test set).

    Parameters
    ----------
    corrected
        Output of :func:`correct_embeddings` (all sets of the same images, in the same order).
    split
        The images' :class:`~dinoxfer_lib.data.splits.Split`.
    config
        The :class:`~dinoxfer_lib.probes.ProbeConfig` (the profile's ``probe`` section).
    seed, device
        As in :func:`~dinoxfer_lib.probes.run_probe_suite`.

    Returns
    -------
    pandas.DataFrame
        One row per set: test macro F1 mean and std over fold models before and after Harmony, and the change;
        ``attrs["seconds"]`` = how long the probes took.
    """
    from dinoxfer_lib.probes import run_probe_suite

    started = time.perf_counter()
    first = next(iter(corrected.values()))
    features = {f"{name}|{space}": adata.obsm[key] for name, adata in corrected.items()
                for space, key in SPACES.items()}
    result = run_probe_suite(features, first.obsm["labels"].astype(bool), split=split, config=config,
                             class_names=list(first.uns["class_names"]), device=device, seed=seed)
    table = result.table()
    table[["set", "space"]] = table["set"].str.split("|", expand=True)
    wide = table.pivot(index="set", columns="space", values=["test_f1_mean", "test_f1_std"])
    wide = wide[[(metric, space) for space in SPACES for metric in ("test_f1_mean", "test_f1_std")]]
    wide.columns = [f"{metric} ({space})" for metric, space in wide.columns]
    wide["change"] = wide["test_f1_mean (after Harmony)"] - wide["test_f1_mean (before Harmony)"]
    wide = wide.reindex(list(corrected))
    wide.attrs["seconds"] = time.perf_counter() - started
    return wide
