"""Probe throughput: the batched suite against the fold-by-fold DataLoader script a typical analysis would run.

Both train the same models (``n_sets`` embedding sets x ``n_folds`` folds, the paper's MLP recipe, ``epochs``
epochs) on the same synthetic features and split, in the same process, and both end with test and validation
macro F1 per model:

- ours: :func:`~dinoxfer_lib.probes.suite.run_probe_suite`: all models of one dimension as one batched model,
  data resident on the device, scoring included;
- reference: for every (set, fold), :func:`~dinoxfer_lib.probes.reference.train_mlp_dataloader`
  (``StandardScaler``, ``DataLoader`` + ``WeightedRandomSampler``, ``nn.Sequential``, torch's ``AdamW`` and
  ``CosineAnnealingLR``), then scikit-learn's ``f1_score`` on validation and test.

The reference's cost is the same for every model of a dimension, so with ``reference_models`` set it trains only
that many models, taken fold by fold across the sets (so every dimension is sampled), and its time is scaled
linearly to all of them; the result says so (``reference_scaled``).

``training_gflop`` counts the matrix FLOPs of training (forward 2·in·out per layer and image; backward 2·in·out
for the weight gradient of every layer and again for the input gradient of every layer but the first), and
``ours_gflop_per_s`` divides it by our whole time.

Why not 10x on a CPU. Both sides do the same matrix work, and a batch of 512 images is already large enough for
MKL to run the reference's single-model products as fast as our batched ones, so the ratio is capped by the
reference's time over the time of our matrix products alone. Measured on a 2-core AMD EPYC (Zen 3, AVX2; peak
about 78 GFLOP/s fp32 per core), one thread, CPU time (the machine was shared, so wall times were not
trustworthy), 25 models x 3 epochs of 1,728 draws at d = 192:

- our suite 3.6-4.0 s (40-43 GFLOP/s), of which its products alone take 2.6-2.9 s (54-61 GFLOP/s); the rest
  is ReLU/dropout, their gradients, bias sums and AdamW, each a pass over the activations or parameters;
- the reference 6.3-8.4 s for the 25 models (19-25 GFLOP/s), of which its products take 2.4-2.5 s (62-65
  GFLOP/s) and the DataLoader (per-image indexing and collation) 0.7-1.2 s;
- so ratio 1.6-2.2, and a ceiling of 2.2-3.3 even if everything but our products cost nothing (d = 384: ratio
  1.6, ceiling 2.2-2.5).

With two threads the reference's small per-step operations parallelise worse than our large ones, and the ratio
rises to ~4 on an idle machine; on a loaded one the reference's two-thread small operations stall and ratios of
7-13 were measured, which say more about the load than about the code. On a GPU the reference is bound by
per-step launches and data loading, and the batched trainer does the work of all models in the launches of one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score

from dinoxfer_lib.data.splits import make_split
from dinoxfer_lib.devices import resolve_device, synchronize
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.reference import train_mlp_dataloader
from dinoxfer_lib.probes.suite import run_probe_suite


def synthetic_probe_data(*, n: int, dims: Sequence[int], n_classes: int, seed: int
                         ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Imbalanced multi-label data (prevalence 40 % down to 2 %) and one noisy linear feature set per entry of
    ``dims`` (its dimension)."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, n_classes)) < np.geomspace(0.4, 0.02, n_classes)
    sets = {}
    for s, dim in enumerate(dims):
        directions = rng.normal(size=(n_classes, dim))
        sets[f"set{s}"] = (labels @ directions + 2.0 * rng.normal(size=(n, dim))).astype(np.float32)
    return sets, labels


def bench_probe_suite(
    *,
    n: int = 2400,
    dim: int | Sequence[int] = 384,
    n_sets: int = 5,
    n_folds: int = 5,
    n_classes: int = 17,
    epochs: int = 20,
    device: str | None = None,
    seed: int = 0,
    reference_models: int | None = None,
) -> dict:
    """Seconds for the whole probe suite, ours and the reference, and their ratio.

    Parameters
    ----------
    n, dim, n_sets, n_folds, n_classes
        Images, feature dimension (or dimensions, given to the sets in turn), embedding sets, folds and classes
        (demo: 2,400 images, 192 and 384, 5 sets, 5 folds, 17).
    epochs
        Epochs per model (the paper trains 300; time grows linearly in them for both sides).
    device
        ``None``: the GPU if there is one.
    seed
        Data, split and model seed.
    reference_models
        Train only this many of the reference's ``n_sets * n_folds`` models and scale its time linearly.

    Returns
    -------
    dict
        ``ours_s``, ``reference_s`` (scaled to all models when ``reference_scaled``), ``ratio``, the sizes, the
        device and thread count, and both sides' mean test macro F1 (they should be close, not equal: the
        reference uses torch's own random streams).
    """
    device = resolve_device(device)
    dims = [dim] * n_sets if isinstance(dim, int) else [dim[s % len(dim)] for s in range(n_sets)]
    embedding_sets, labels = synthetic_probe_data(n=n, dims=dims, n_classes=n_classes, seed=seed)
    split = make_split(labels, n_folds=n_folds, seed=seed)
    config = ProbeConfig(epochs=epochs)
    class_names = [f"c{k}" for k in range(n_classes)]
    jobs = [(name, fold) for fold in range(n_folds) for name in embedding_sets]  # fold-major: sets in turn
    training_flop = sum(config.epochs * len(split.folds[fold][0]) * _flop_per_draw(embedding_sets[name].shape[1],
                                                                                   config.hidden, n_classes)
                        for name, fold in jobs)
    measured = jobs if reference_models is None else jobs[: max(1, reference_models)]

    def reference(job_list) -> list[float]:
        test_f1 = []
        for name, fold in job_list:
            x, (train, val) = embedding_sets[name], split.folds[fold]
            evaluate = np.concatenate([val, split.test])
            probs, _ = train_mlp_dataloader(x[train], labels[train], x[evaluate], config=config, seed=seed,
                                            device=device)
            predicted = probs >= config.threshold
            f1_score(labels[val], predicted[: len(val)], average="macro", zero_division=0)
            test_f1.append(f1_score(labels[split.test], predicted[len(val):], average="macro", zero_division=0))
        return test_f1

    # warm-up: kernels, allocator, thread pools
    small = ProbeConfig(epochs=1)
    run_probe_suite({"w": embedding_sets["set0"]}, labels, split=split, config=small, class_names=class_names,
                    device=device)
    train_mlp_dataloader(embedding_sets["set0"][:600], labels[:600], embedding_sets["set0"][:10], config=small,
                         device=device)

    started = time.perf_counter()
    result = run_probe_suite(embedding_sets, labels, split=split, config=config, class_names=class_names,
                             device=device, seed=seed)
    synchronize(device)
    ours = time.perf_counter() - started

    started = time.perf_counter()
    reference_f1 = reference(measured)
    synchronize(device)
    reference_s = (time.perf_counter() - started) * len(jobs) / len(measured)

    return {
        "benchmark": "probe_suite",
        "n": n,
        "dims": sorted(set(dims)),
        "n_sets": n_sets,
        "n_folds": n_folds,
        "n_models": len(jobs),
        "n_classes": n_classes,
        "epochs": epochs,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "ours_s": round(ours, 2),
        "reference_s": round(reference_s, 2),
        "ratio": round(reference_s / ours, 2),
        "training_gflop": round(training_flop / 1e9, 1),
        "ours_gflop_per_s": round(training_flop / 1e9 / ours, 1),
        "reference_models_timed": len(measured),
        "reference_scaled": len(measured) < len(jobs),
        "ours_test_f1_mean": round(float(result.table()["test_f1_mean"].mean()), 4),
        "reference_test_f1_mean": round(float(np.mean(reference_f1)), 4),
    }


def _flop_per_draw(dim: int, hidden: Sequence[int], n_classes: int) -> int:
    """Matrix FLOPs of one training image through the MLP, forward and backward (module docstring)."""
    widths = [dim, *hidden, n_classes]
    products = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 4 * sum(products) + 2 * sum(products[1:])

