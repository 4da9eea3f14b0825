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
    # Train until the validation macro F1 has plateaued: a model stops after this many checks (one per
    # monitor_every epochs) without a rise above its best, and keeps the weights of its best check; `epochs` is
    # then a maximum. 0 (the paper): train all epochs, keep the last weights. Use it when training F1 is still far
    # below 1 at the end (the probe underfits) but more epochs would cost too much for the models that are done.
    plateau_patience: int = 0
    # Smallest rise of validation macro F1 that counts as an improvement (0.005: about one more correct rare-class
    # image on a few hundred validation images).
    plateau_min_delta: float = 0.0
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
        _require(self.plateau_patience == 0 or self.monitor_every > 0, f"{key}.plateau_patience",
                 self.plateau_patience, "0 when monitor_every is 0 (plateaus are detected on the validation checks)")


@dataclass(frozen=True)
class CeilingConfig:
    """The supervised ceiling beside Table III: a small CNN trained with labels on the raw target images.

    Not in the paper (issue 14 asks for it): it says how much of what the labels allow the frozen features reach.
    Registered under the ``ceiling:`` key of a profile; :meth:`validate` names offending keys as ``ceiling.<field>``.
    """

    # Channels of the CNN's stages; each stage halves the resolution (a stride-2 convolution first). Four stages
    # take a 64 px image to 4 x 4 before pooling. Wider stages fit better and cost quadratically more.
    widths: tuple[int, ...] = (32, 64, 128, 256)
    # 3x3 convolutions per stage (the first one strided). 1 is the CPU choice; 2 fits harder data.
    convs_per_stage: int = 2
    # Side the images are resized to before the CNN (None: as stored). Real OpenCell fields are 600 px: use 224.
    img_size: int | None = None
    # Passes over each fold's training images (resampled draws, as the probes). If training F1 is still far from
    # 1 and the validation curve still rising at the end, raise it; the demo's budget keeps it small.
    epochs: int = 40
    # Images per optimiser step; BatchNorm wants at least ~32.
    batch_size: int = 64
    # Peak learning rate of the one-cycle schedule (AdamW); lower it if the loss jumps in the first epochs.
    lr: float = 3e-3
    # AdamW decoupled weight decay.
    weight_decay: float = 0.05
    # Draw training images inversely to the frequency of their rarest label (the probes' resampling), so rare
    # classes get as many gradient steps as there; False draws each image once per epoch.
    resample: bool = True
    # Random flips and quarter turns of each training image (a field of cells has no up or left).
    augment: bool = True
    # Record each fold model's validation macro F1 every this many epochs (and after the last); 0: never.
    monitor_every: int = 5

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value: out of its bound
        (:data:`~dinoxfer_lib.bounds.BOUNDS`) or too small for the CNN's stages."""
        check_bounds(self, key)
        _require(len(self.widths) >= 1, f"{key}.widths", self.widths, "a non-empty tuple of channel counts >= 1")
        if self.img_size is not None:
            _require(self.img_size >= 2 ** len(self.widths), f"{key}.img_size", self.img_size,
                     f">= {2 ** len(self.widths)} (each of the {len(self.widths)} stages halves it)")
