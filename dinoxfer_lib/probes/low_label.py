"""Low-annotation curves (Cell-DINO, paper 002): test macro F1 when only a fraction of the training labels exist.

For each fold, fraction and seed, a multilabel-stratified subset of the fold's training images is drawn
(``MultilabelStratifiedShuffleSplit``, so rare classes keep their share as far as the subset's size allows) and
an MLP probe is trained on it with the unchanged recipe, its standardisation statistics included; every model is
scored on the full test split. All (fraction x seed x fold) models train together in the batched trainer.

Two consequences of keeping the recipe, to read the curve by: an epoch is still "as many draws as training
images", so a 1 % subset gets ~1 % of the optimiser steps, exactly as the paper's script would give it; and a
subset is never smaller than ``min_images`` (default 10): iterative stratification and the standardisation need
a few images, and below that the number would say nothing about the embedding. The ``n_train`` column gives the
size actually used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.metrics import batched_macro_f1
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.keyed_random import model_key
from dinoxfer_lib.probes.mlp import train_mlps
from dinoxfer_lib.probes.protocol import check_embedding_sets, check_split

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def low_label_curve(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    split: Split,
    config: ProbeConfig,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    min_images: int = 10,
    folds: int | None = None,
    device: str | torch.device | None = None,
    name: str = "features",
) -> pd.DataFrame:
    """Test macro F1 of MLP probes trained on stratified fractions of each fold's training images.

    Parameters
    ----------
    X
        ``(N, d)`` features of all images.
    labels
        ``(N, K)`` boolean labels.
    split
        Hold-out and folds; subsets are drawn from each fold's training images, scoring uses ``split.test``.
    config
        The probe recipe.
    fractions
        Fractions of the training images to keep, each in (0, 1] (Cell-DINO: 1 % to 100 %, log x-axis).
    seeds
        One subset draw (and one model key) per seed: the spread over seeds is the subset's luck.
    min_images
        Smallest subset trained on (see the module docstring).
    folds
        Use only the first this many folds (``None``: all); fewer folds make the curve cheaper, not biased.
    device
        ``None``: the GPU if there is one.
    name
        The set's name in error messages (model keys depend on the seed, fraction and fold only).

    Returns
    -------
    pandas.DataFrame
        One row per (fraction, seed, fold): ``fraction, seed, fold, n_train, test_macro_f1``.
    """
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ConfigError(f"low-label fractions must be in (0, 1], got {list(fractions)!r}")
    if min_images < 1:
        raise ConfigError(f"min_images = {min_images!r}: expected >= 1")
    config.validate("probe")
    labels = check_embedding_sets({name: X}, labels)
    check_split(split, len(labels))

    runs, train_rows, val_rows = [], [], []
    for fold, (train, val) in enumerate(split.folds[:folds]):
        for fraction in fractions:
            for seed in seeds:
                subset = _stratified_subset(train, labels[train], fraction=fraction, seed=seed,
                                            min_images=min_images)
                runs.append({"fraction": fraction, "seed": seed, "fold": fold, "n_train": len(subset)})
                train_rows.append(subset)
                val_rows.append(val)
    plateau = config.plateau_patience > 0  # stopping on a plateau watches each fold's whole validation set
    trained = train_mlps(
        np.asarray(X, dtype=np.float32)[None], labels,
        sets=[0] * len(runs),
        train_rows=train_rows,
        keys=[model_key(r["seed"], "low_label", r["fraction"], r["fold"]) for r in runs],
        config=config,
        device=device,
        monitor_rows=val_rows if plateau else None,
        monitor_every=config.monitor_every if plateau else 0,
    )
    probs = torch.from_numpy(trained.predict_proba(split.test))  # (M, n_test, K)
    f1 = batched_macro_f1(torch.from_numpy(labels[split.test]), probs >= config.threshold)  # (M,)
    table = pd.DataFrame(runs)
    table["test_macro_f1"] = f1.numpy().astype(float)
    return table


def _stratified_subset(train: np.ndarray, train_labels: np.ndarray, *, fraction: float, seed: int,
                       min_images: int) -> np.ndarray:
    """Sorted image indices of a multilabel-stratified ``fraction`` of ``train`` (at least ``min_images``)."""
    n_keep = max(min_images, int(round(fraction * len(train))))
    if n_keep >= len(train):
        return np.asarray(train)
    strata = train_labels.astype(int)
    if strata.shape[1] == 1:  # iterstrat needs a multi-label matrix: one class plus its complement
        strata = np.column_stack([strata, 1 - strata])
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, train_size=n_keep, test_size=len(train) - n_keep,
                                                random_state=seed)
    keep, _ = next(splitter.split(np.zeros(len(train)), strata))
    return np.sort(np.asarray(train)[keep])
