"""Settings of the adaptation regimes (issue 18): LoRA on the attention projections, full fine-tuning.

Registered as the ``adapt:`` section of a profile (and :class:`~dinoxfer_lib.seg.config.SegConfig` as ``seg:``);
:meth:`AdaptConfig.validate` names offending keys as ``adapt.<field>``. Both hold a :class:`LoraSettings`
(``adapt.lora.rank``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import require_config as _require

# What each regime trains: "frozen" only the head (on cached features), "lora" low-rank adapters on the attention
# projections plus the head, "full" every backbone weight (layer-wise lr decay) plus the head.
REGIMES: tuple[str, ...] = ("frozen", "lora", "full")
LORA_TARGETS: tuple[str, ...] = ("qkv", "proj")
# ``adapt.sets`` entry that stands for the Table III set with the highest mean validation macro F1 of the paper's
# MLP: chosen on the folds' validation images, never on the test images the adapted models are scored on.
BEST_VALIDATION = "best_val"


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters (Hu et al. 2022) on a ViT's attention, through Hugging Face ``peft``."""

    # Rank r of each update B·A (peft's ``r``). 4-16 is usual for ViTs; raise it when LoRA stays well below full
    # fine-tuning on the training folds (too little capacity), lower it when it overfits small data.
    rank: int = 8
    # Scale: the update is multiplied by alpha / rank (peft's ``lora_alpha``). 2 x rank is the common choice; a
    # loss that jumps in the first steps says lower it (or the lr).
    alpha: float = 16.0
    # Dropout on the adapters' input (peft's ``lora_dropout``): 0 to 0.1. Raise it if training F1 runs far above
    # validation.
    dropout: float = 0.0
    # Which attention projections get adapters: "qkv" (the fused query/key/value projection) and/or "proj" (the
    # attention output). Only the Linear layers of each block's attention are wrapped, never the patch
    # embedding's "proj" convolution. ("qkv",) is the LoRA paper's choice (query and value).
    targets: tuple[str, ...] = ("qkv",)

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value (bounds:
        :data:`~dinoxfer_lib.bounds.BOUNDS`)."""
        check_bounds(self, key)
        _require(len(self.targets) >= 1 and set(self.targets) <= set(LORA_TARGETS)
                 and len(set(self.targets)) == len(self.targets), f"{key}.targets", self.targets,
                 f"distinct values from {', '.join(LORA_TARGETS)}")


@dataclass(frozen=True)
class AdaptConfig:
    """Fine-tuning a backbone end to end for localisation, beside the frozen probes of Table III.

    The head is the paper's MLP and the scoring the probes' (both from the ``probe:`` section); this section says
    how the backbone is adapted and for how long.
    """

    # Which Table III embedding sets to adapt: their backbone and channel strategy are the starting point, their
    # folds and test images the scoring. "best_val" = the set whose MLP has the highest mean validation macro F1 in
    # Table III (a choice that never sees the test images); or set names (hpa_mapping, opencell_native, ...).
    # Each set is a full run of every regime: list more only with time to spare.
    sets: tuple[str, ...] = (BEST_VALIDATION,)
    # Regimes trained on every fold (see REGIMES). "frozen" trains the head with this section's recipe on cached
    # features: the matched baseline for the other two (Table III's MLP keeps the paper's recipe), and cheap.
    regimes: tuple[str, ...] = ("frozen", "lora", "full")
    # How many folds (the first ones) get fold models. Each regime x fold is a full training run through the
    # backbone; paired intervals against Table III need at least 2 (the CPU demo trains 2, the paper all five).
    folds: int = 5
    # Epochs; an epoch draws as many images as the training fold holds (resampled as the probes are). Cosine
    # schedule to 0 over all steps. If validation F1 still rises at the end, raise it.
    epochs: int = 10
    # Images drawn per epoch; None = as many as the training fold holds. CPU profiles draw fewer, so that the
    # backbone's forward and backward passes fit their budget (the chapter prints the steps taken).
    images_per_epoch: int | None = None
    # Head-only epochs on the cached frozen features before the regimes train (linear probing, then fine-tuning:
    # LP-FT, Kumar et al. 2022). 0 = every regime starts from a fresh head. With N > 0 the frozen regime is that
    # head (N full epochs over the fold, no backbone pass: cheap) and LoRA and full fine-tuning start from a copy
    # of it; raise it when the frozen regime's validation F1 still trails Table III's MLP.
    head_epochs: int = 0
    # Images per optimiser step. Memory grows with it (activations of the whole backbone are kept for backward).
    batch_size: int = 64
    # AdamW lr of the head and of the LoRA adapters. A loss that does not fall in the first epoch says raise it,
    # one that jumps says lower it.
    lr: float = 1e-3
    # Full fine-tuning: lr of the last block; block i of a depth-d backbone gets full_lr * layer_decay ** (d-1-i),
    # the patch embedding full_lr * layer_decay ** d (timm's grouping; BEiT/DINOv2 fine-tuning use 0.65-0.75).
    # Lower either if the pretrained features collapse (training loss falls, validation F1 drops below the frozen
    # head's).
    full_lr: float = 1e-4
    layer_decay: float = 0.75
    # AdamW weight decay of matrices (not of biases, norms, position embeddings or the class token).
    weight_decay: float = 0.05
    # Training images the training macro F1 is measured on: None = the whole training fold, as Table III. Every
    # image costs an inference pass through the backbone, so CPU profiles measure it on a seeded sample.
    train_score_images: int | None = None
    # Write each fold model into the stage (adapted.json + weights.safetensors: the head and, for LoRA, the
    # adapters; for full fine-tuning a whole backbone per fold, ~350 MB for ViT-B/8). Off saves disk when only
    # the scores matter.
    save_models: bool = True
    # The adapters (rank, alpha, dropout, targets).
    lora: LoraSettings = field(default_factory=LoraSettings)

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value (bounds:
        :data:`~dinoxfer_lib.bounds.BOUNDS`)."""
        from dinoxfer_lib.embedding_sets import EMBEDDING_SETS

        check_bounds(self, key)
        names = (BEST_VALIDATION, *(s.name for s in EMBEDDING_SETS))
        _require(len(self.sets) >= 1 and set(self.sets) <= set(names) and len(set(self.sets)) == len(self.sets),
                 f"{key}.sets", self.sets, f"distinct values from {', '.join(names)}")
        _require(len(self.regimes) >= 1 and set(self.regimes) <= set(REGIMES)
                 and len(set(self.regimes)) == len(self.regimes), f"{key}.regimes", self.regimes,
                 f"distinct values from {', '.join(REGIMES)}")
        self.lora.validate(f"{key}.lora")
