"""Settings of the classifier probes (PAPER_SPEC.md §5; the paper's "Classifier Training" section).

The defaults are the paper's. The config owner registers :class:`ProbeConfig` under the ``probe:`` key of a
profile; :meth:`ProbeConfig.validate` then names offending keys as ``probe.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import require_config as _require


@dataclass(frozen=True)
class ProbeConfig:
    """One probe recipe: architecture, optimiser, schedule, sampling and decision rule."""

    # Widths of the MLP's hidden layers (paper: (512, 256)). () gives the linear probe. Wider or deeper heads
    # overfit the ~5,000 OpenCell images faster; the paper already saw train F1 >= 0.94 against ~0.8 on test.
    hidden: tuple[int, ...] = (512, 256)
    # Dropout after each hidden ReLU (paper: 0.5). Lower it if training F1 stays far below 0.9 after all epochs.
    dropout: float = 0.5
    # AdamW learning rate at the start of the cosine schedule (paper: 1e-4). If the loss is still falling
    # steeply in the last epochs, raise it (or the epochs).
    lr: float = 1e-4
    # AdamW decoupled weight decay, applied to weights and biases alike (paper: 0.04).
    weight_decay: float = 0.04
    # AdamW (beta1, beta2) (paper: 0.9, 0.999).
    betas: tuple[float, ...] = (0.9, 0.999)
    # Epochs; one epoch = as many resampled draws as there are training images (paper: 300). The learning
    # rate follows a cosine from lr to 0 over exactly these epochs. Smoke/CPU profiles use far fewer.
    epochs: int = 300
    # Draws per optimiser step (paper: 512).
    batch_size: int = 512
    # Decision threshold on the sigmoid output (paper: 0.5, implied). Used by every probe, k-NN included.
    threshold: float = 0.5
    # Draw training images with probability inversely proportional to the frequency of their rarest label
    # (paper: yes). False draws uniformly; rare classes then get few gradient steps.
    resample: bool = True
    # Also report per-class thresholds tuned on each fold's validation set (Cell-DINO), beside the fixed one.
    tune_thresholds: bool = False
    # Neighbour counts of the k-NN probes (Cell-DINO reports 1-NN and 10-NN on cosine similarity).
    knn_k: tuple[int, ...] = (1, 10)
    # Probes the book runs beside the paper's MLP on the same folds: "linear" (the same recipe without hidden
    # layers) and "knn" (one probe per knn_k). Empty for the MLP alone.
    compare: tuple[str, ...] = ("linear", "knn")
    # Record each model's validation macro F1 every this many epochs for the training curves (0: never). Cheap:
    # it runs on the device without leaving the batched trainer.
    monitor_every: int = 10
    # Low-annotation curves (Cell-DINO Fig. 6): fractions of each fold's training images kept, and how many
    # stratified draws (seeds) per fraction. Each draw trains one MLP per fold, so the cost grows with both.
    low_label_fractions: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
    low_label_seeds: int = 3
    # ... and on how many of the folds (the first ones); fewer folds make the curves cheaper, not biased.
    low_label_folds: int = 5

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value: out of its bound
        (:data:`~dinoxfer_lib.bounds.BOUNDS`) or of the wrong length."""
        check_bounds(self, key)
        _require(len(self.betas) == 2, f"{key}.betas", self.betas, "two values in [0, 1)")
        _require(len(self.knn_k) >= 1 and len(set(self.knn_k)) == len(self.knn_k), f"{key}.knn_k", self.knn_k,
                 "a non-empty tuple of distinct integers >= 1")
        _require(all(p in ("linear", "knn") for p in self.compare), f"{key}.compare", self.compare,
                 "a tuple of 'linear' and/or 'knn'")
        _require(len(self.low_label_fractions) >= 1, f"{key}.low_label_fractions", self.low_label_fractions,
                 "a non-empty tuple of values in (0, 1]")
