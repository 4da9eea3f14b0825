"""Classifier probes on frozen embeddings: the paper's MLP (PAPER_SPEC.md §5) and the Cell-DINO extensions (§7).

- :mod:`.config`: :class:`ProbeConfig`, the recipe with the paper's values as defaults.
- :mod:`.protocol`: resampling weights, train-fold standardisation, input checks.
- :mod:`.mlp`: the MLP and the batched trainer (all folds and same-dimension sets as one model).
- :mod:`.keyed_random`: per-model random draws that do not depend on the batching.
- :mod:`.reference`: the exact one-model reference and the typical DataLoader script.
- :mod:`.knn`: 1-NN / k-NN probes. :mod:`.low_label`: low-annotation curves.
- :mod:`.suite`: every set x fold x probe → :class:`ProbeResult` (:mod:`.result`), scored by :mod:`.scoring`.
- :mod:`.ceiling`: the supervised ceiling, a small CNN trained on the raw images with the same folds and scoring.
"""

from __future__ import annotations

from dinoxfer_lib.lazy import lazy_exports

# name -> submodule; loaded on first use, so ``dinoxfer_lib.config`` can import :mod:`.config` without torch.
_EXPORTS = {
    "BatchedMLP": "mlp", "TrainedMLPs": "mlp", "make_mlp": "mlp", "train_mlps": "mlp",
    "ProbeConfig": "config", "CeilingConfig": "config", "ProbeResult": "result", "train_ceiling": "ceiling",
    "knn_fractions": "knn", "run_knn_probes": "knn", "low_label_curve": "low_label",
    "resampling_weights": "protocol", "standardize": "protocol",
    "train_mlp_dataloader": "reference", "train_mlp_sequential": "reference",
    "run_probe_comparison": "suite", "run_probe_suite": "suite",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
