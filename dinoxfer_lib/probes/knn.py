"""k-nearest-neighbour probes (Cell-DINO, paper 002): no training, so they show what the embedding alone holds.

On each fold, features are standardised with the training fold's statistics (as for the MLP) and compared by
cosine similarity. The prediction for a class is the fraction of the k nearest training images that carry it,
thresholded like a probability (≥ 0.5 by default: a majority of the neighbours); with k = 1 an image copies its
nearest neighbour's labels. Training-set scores are leave-one-out: an image is not its own neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.devices import resolve_device
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.protocol import standardize
from dinoxfer_lib.probes.result import HISTORY_COLUMNS, SCORE_COLUMNS, ProbeResult
from dinoxfer_lib.probes.scoring import score_fold, threshold_label

# Query images per similarity block: bounds the (block, n_train) similarity matrix.
QUERY_CHUNK = 1024


@torch.no_grad()
def knn_fractions(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    *,
    ks: Sequence[int],
    leave_one_out: bool = False,
    device: str | torch.device | None = None,
) -> dict[int, np.ndarray]:
    """Per k: ``(n_query, K)`` fraction of the k most cosine-similar training images carrying each label.

    Parameters
    ----------
    train_x, train_y
        ``(n, d)`` (standardised) training features and ``(n, K)`` boolean labels.
    query_x
        ``(m, d)`` features to predict.
    ks
        Neighbour counts; all are served from one top-max(ks) search.
    leave_one_out
        The queries are the training images themselves, in order; each is excluded from its own neighbours.
    device
        Where to compute the similarities.
    """
    device = resolve_device(device)
    k_max = max(ks)
    available = len(train_x) - int(leave_one_out)
    if k_max > available:
        raise DataError(f"k-NN with k={k_max} needs more than the fold's {available} training images")
    train = F.normalize(torch.as_tensor(train_x, dtype=torch.float32, device=device), dim=1)  # (n, d)
    queries = F.normalize(torch.as_tensor(query_x, dtype=torch.float32, device=device), dim=1)  # (m, d)
    train_labels = torch.as_tensor(np.asarray(train_y), dtype=torch.float32, device=device)  # (n, K)
    fractions: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(queries), QUERY_CHUNK):
        similarity = queries[start : start + QUERY_CHUNK] @ train.T  # (block, n)
        if leave_one_out:
            block = torch.arange(len(similarity), device=device)
            similarity[block, start + block] = -torch.inf
        neighbours = similarity.topk(k_max, dim=1).indices  # (block, k_max), most similar first
        votes = train_labels[neighbours]  # (block, k_max, K)
        for k in ks:
            fractions[k].append(votes[:, :k].mean(dim=1))
    return {k: torch.cat(parts).cpu().numpy() for k, parts in fractions.items()}


def run_knn_probes(
    embedding_sets: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    split: Split,
    config: ProbeConfig,
    class_names: Sequence[str],
    device: str | torch.device | None = None,
) -> ProbeResult:
    """k-NN probes ``knn{k}`` for each k in ``config.knn_k`` on every set and fold (inputs already checked)."""
    labels = np.asarray(labels).astype(bool)
    rows, test_probs, thresholds = [], {}, {}
    for name, features in embedding_sets.items():
        features = np.asarray(features, dtype=np.float32)
        per_fold: dict[int, list[np.ndarray]] = {k: [] for k in config.knn_k}
        tuned: dict[int, list[np.ndarray]] = {k: [] for k in config.knn_k}
        for fold, (train, val) in enumerate(split.folds):
            subsets = {"train": train, "val": val, "test": split.test}
            z_train, z_val, z_test = standardize(features[train], features[val], features[split.test])
            queries = {"train": z_train, "val": z_val, "test": z_test}
            fractions = {
                subset: knn_fractions(z_train, labels[train], queries[subset], ks=config.knn_k,
                                      leave_one_out=subset == "train", device=device)
                for subset in subsets
            }
            truth = {subset: labels[index] for subset, index in subsets.items()}
            for k in config.knn_k:
                fold_rows, fold_tuned = score_fold({s: fractions[s][k] for s in subsets}, truth,
                                                   class_names=class_names, threshold=config.threshold,
                                                   tune=config.tune_thresholds)
                rows += [{"set": name, "probe": f"knn{k}", "fold": fold, **row} for row in fold_rows]
                per_fold[k].append(fractions["test"][k])
                tuned[k].append(fold_tuned)
        for k in config.knn_k:
            test_probs[(name, f"knn{k}")] = np.stack(per_fold[k]).astype(np.float32)  # (folds, n_test, K)
            if config.tune_thresholds:
                thresholds[(name, f"knn{k}")] = np.stack(tuned[k])  # (folds, K)
    return ProbeResult(
        scores=pd.DataFrame(rows, columns=list(SCORE_COLUMNS)),
        test_probs=test_probs,
        history=pd.DataFrame(columns=list(HISTORY_COLUMNS)),
        test_index=np.asarray(split.test),
        class_names=tuple(class_names),
        fixed_threshold=threshold_label(config.threshold),
        thresholds=thresholds,
    )
