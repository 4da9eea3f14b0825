"""Settings of the adaptation regimes (issue 18): LoRA on the attention projections, full fine-tuning.

The config owner registers :class:`AdaptConfig` under the ``adapt:`` key of a profile (and
:class:`~dinoxfer_lib.seg.config.SegConfig` under ``seg:``); :meth:`AdaptConfig.validate` names offending keys as
``adapt.<field>``. Both hold a :class:`LoraSettings` (``adapt.lora.rank``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import require_config as _require

# What each regime trains: "frozen" only the head (on cached features), "lora" low-rank adapters on the attention
# projections plus the head, "full" every backbone weight (layer-wise lr decay) plus the head.
REGIMES: tuple[str, ...] = ("frozen", "lora", "full")
LORA_TARGETS: tuple[str, ...] = ("qkv", "proj")


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

    # Regimes trained on every fold (see REGIMES). "frozen" trains the head with this section's recipe on cached
    # features: the matched baseline for the other two (Table III's MLP keeps the paper's recipe).
    regimes: tuple[str, ...] = ("lora", "full")
    # How many folds (the first ones) get fold models. Each regime x fold is a full training run through the
    # backbone; the CPU demo trains one, the paper profile all five.
    folds: int = 5
    # Epochs; an epoch draws as many images as the training fold holds (resampled as the probes are). Cosine
    # schedule to 0 over all steps. If validation F1 still rises at the end, raise it.
    epochs: int = 10
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
    # The adapters (rank, alpha, dropout, targets).
    lora: LoraSettings = field(default_factory=LoraSettings)

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value (bounds:
        :data:`~dinoxfer_lib.bounds.BOUNDS`)."""
        check_bounds(self, key)
        _require(len(self.regimes) >= 1 and set(self.regimes) <= set(REGIMES)
                 and len(set(self.regimes)) == len(self.regimes), f"{key}.regimes", self.regimes,
                 f"distinct values from {', '.join(REGIMES)}")
        self.lora.validate(f"{key}.lora")
