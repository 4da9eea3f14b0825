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

from dinoxfer_lib.probes.ceiling import train_ceiling
from dinoxfer_lib.probes.config import CeilingConfig, ProbeConfig
from dinoxfer_lib.probes.knn import knn_fractions, run_knn_probes
from dinoxfer_lib.probes.low_label import low_label_curve
from dinoxfer_lib.probes.mlp import BatchedMLP, TrainedMLPs, make_mlp, train_mlps
from dinoxfer_lib.probes.protocol import resampling_weights, standardize
from dinoxfer_lib.probes.reference import train_mlp_dataloader, train_mlp_sequential
from dinoxfer_lib.probes.result import ProbeResult
from dinoxfer_lib.probes.suite import run_probe_comparison, run_probe_suite

__all__ = [
    "BatchedMLP",
    "CeilingConfig",
    "ProbeConfig",
    "ProbeResult",
    "TrainedMLPs",
    "knn_fractions",
    "low_label_curve",
    "make_mlp",
    "resampling_weights",
    "run_knn_probes",
    "run_probe_comparison",
    "run_probe_suite",
    "standardize",
    "train_ceiling",
    "train_mlp_dataloader",
    "train_mlp_sequential",
    "train_mlps",
]
