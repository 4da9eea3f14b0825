"""The paper's experiment: a probe on every embedding set x every fold, scored on train, validation and test.

:func:`run_probe_suite` is Table III: the MLP probe (PAPER_SPEC.md §5) on each set, five fold models each, mean ±
std of the test macro F1 over the fold models. :func:`run_probe_comparison` adds the Cell-DINO probes on the same
folds (linear; 1-NN and k-NN). Sets of one dimension are trained together by the batched trainer
(:mod:`~dinoxfer_lib.probes.mlp`). Every model's key is derived from (seed, probe, fold), not from the set's name:

- a set's numbers do not depend on which other sets are run beside it, nor on what the set is called, so the same
  embeddings get the same probe in every stage (chapter 02's trained-vs-random comparison and Table III's row);
- two sets on the same fold draw the same resampled batches and dropout masks (and, of one dimension, the same
  initial weights): common random numbers, so a paired difference between two rows measures their features,
  not two different draws of the probe's randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.keyed_random import model_key
from dinoxfer_lib.probes.knn import run_knn_probes
from dinoxfer_lib.probes.mlp import train_mlps
from dinoxfer_lib.probes.protocol import check_embedding_sets, check_split
from dinoxfer_lib.probes.result import HISTORY_COLUMNS, SCORE_COLUMNS, ProbeResult
from dinoxfer_lib.probes.scoring import score_fold, threshold_label

PROBES = ("mlp", "linear", "knn")


def run_probe_suite(
    embedding_sets: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    split: Split,
    config: ProbeConfig,
    class_names: Sequence[str],
    device: str | torch.device | None = None,
    seed: int = 0,
    monitor_every: int | None = None,
) -> ProbeResult:
    """The paper's MLP probe on every set and fold (Table III).

    Parameters
    ----------
    embedding_sets
        Set name → ``(N, d)`` features of all N images (test images included; they are only predicted).
    labels
        ``(N, K)`` boolean labels.
    split
        The hold-out and folds (:func:`~dinoxfer_lib.data.splits.make_split`); fold models train on each fold's
        training images, are scored on its validation images and all on the same test images.
    config
        The probe recipe (``config.validate("probe")`` is applied).
    class_names
        The K class names.
    device
        ``None``: the GPU if there is one.
    seed
        Run seed; with the probe and the fold it fixes every model's initial weights and draws.
    monitor_every
        Every that many epochs record each model's validation macro F1 in ``history`` (0: never; ``None``:
        ``config.monitor_every``). Stopping on a plateau (``config.plateau_patience``) decides on these checks.

    Returns
    -------
    ProbeResult
        ``table()`` gives the Table III numbers.

    Raises
    ------
    DataError
        A set with NaN/Inf values or another row count than ``labels``; a split of another dataset; class names
        that do not match the label columns.
    """
    return run_probe_comparison(embedding_sets, labels, split=split, config=config, class_names=class_names,
                                probes=("mlp",), device=device, seed=seed, monitor_every=monitor_every)


def run_probe_comparison(
    embedding_sets: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    split: Split,
    config: ProbeConfig,
    class_names: Sequence[str],
    probes: Sequence[str] = PROBES,
    device: str | torch.device | None = None,
    seed: int = 0,
    monitor_every: int | None = None,
) -> ProbeResult:
    """Several probes on the same sets and folds, in one tidy result.

    ``probes`` picks from ``"mlp"`` (the paper's head), ``"linear"`` (the same recipe with ``hidden=()``: no
    hidden layer, so no dropout) and ``"knn"`` (one probe ``knn{k}`` per k in ``config.knn_k``). Other
    parameters as in :func:`run_probe_suite`.
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"unknown probe {unknown[0]!r}: expected one of {', '.join(PROBES)}")
    config.validate("probe")
    monitor_every = config.monitor_every if monitor_every is None else monitor_every
    labels = check_embedding_sets(embedding_sets, labels)
    check_split(split, len(labels))
    if len(class_names) != labels.shape[1]:
        raise DataError(f"{len(class_names)} class names for {labels.shape[1]} label columns")
    results = []
    for probe in probes:
        if probe == "knn":
            results.append(run_knn_probes(embedding_sets, labels, split=split, config=config,
                                          class_names=class_names, device=device))
        else:
            probe_config = config if probe == "mlp" else replace(config, hidden=())
            results.append(_trained_probe(embedding_sets, labels, split=split, config=probe_config, probe=probe,
                                          class_names=class_names, device=device, seed=seed,
                                          monitor_every=monitor_every))
    return ProbeResult.concat(results)


def _trained_probe(embedding_sets: Mapping[str, np.ndarray], labels: np.ndarray, *, split: Split,
                   config: ProbeConfig, probe: str, class_names: Sequence[str], device, seed: int,
                   monitor_every: int) -> ProbeResult:
    """All sets x folds of one trained probe; sets of one dimension share a batched training run."""
    by_dim: dict[int, list[str]] = {}
    for name, features in embedding_sets.items():
        by_dim.setdefault(np.shape(features)[1], []).append(name)
    n_folds = len(split.folds)
    rows, history, test_probs, thresholds = [], [], {}, {}
    for names in by_dim.values():
        stacked = np.stack([np.asarray(embedding_sets[n], dtype=np.float32) for n in names])  # (S, N, d)
        models = [(s, fold) for s in range(len(names)) for fold in range(n_folds)]  # model m = (set, fold)
        trained = train_mlps(
            stacked, labels,
            sets=[s for s, _ in models],
            train_rows=[split.folds[fold][0] for _, fold in models],
            keys=[model_key(seed, probe, fold) for _, fold in models],
            config=config,
            device=device,
            monitor_rows=[split.folds[fold][1] for _, fold in models],
            monitor_every=monitor_every,
        )
        probs = trained.predict_proba()  # (M, N, K)
        tuned = []
        for m, (s, fold) in enumerate(models):
            subsets = {"train": split.folds[fold][0], "val": split.folds[fold][1], "test": split.test}
            fold_rows, fold_tuned = score_fold({k: probs[m][v] for k, v in subsets.items()},
                                               {k: labels[v] for k, v in subsets.items()},
                                               class_names=class_names, threshold=config.threshold,
                                               tune=config.tune_thresholds)
            rows += [{"set": names[s], "probe": probe, "fold": fold, **row} for row in fold_rows]
            tuned.append(fold_tuned)
            history.append(_history(trained.loss[:, m], trained.monitor_epochs, trained.monitor_f1[:, m],
                                    kept_epoch=int(trained.kept_epoch[m]), set_name=names[s], probe=probe,
                                    fold=fold))
        for s, name in enumerate(names):
            members = [m for m, (set_index, _) in enumerate(models) if set_index == s]  # in fold order
            test_probs[(name, probe)] = probs[members][:, split.test]  # (folds, n_test, K)
            if config.tune_thresholds:
                thresholds[(name, probe)] = np.stack([tuned[m] for m in members])  # (folds, K)
    return ProbeResult(
        scores=pd.DataFrame(rows, columns=list(SCORE_COLUMNS)),
        test_probs=test_probs,
        history=pd.concat(history, ignore_index=True),
        test_index=np.asarray(split.test),
        class_names=tuple(class_names),
        fixed_threshold=threshold_label(config.threshold),
        thresholds=thresholds,
    )


def _history(loss: np.ndarray, monitor_epochs: np.ndarray, monitor_f1: np.ndarray, *, kept_epoch: int, set_name: str,
             probe: str, fold: int) -> pd.DataFrame:
    """One model's training curve: loss per epoch it trained, validation macro F1 where monitored, the kept epoch."""
    epochs = np.arange(1, len(loss) + 1)
    val_f1 = np.full(len(loss), np.nan)
    val_f1[monitor_epochs - 1] = monitor_f1
    frame = pd.DataFrame({"set": set_name, "probe": probe, "fold": fold, "epoch": epochs, "loss": loss,
                          "val_macro_f1": val_f1, "kept": epochs == kept_epoch})
    return frame.loc[~np.isnan(loss), list(HISTORY_COLUMNS)].reset_index(drop=True)  # NaN: after a plateau stop
