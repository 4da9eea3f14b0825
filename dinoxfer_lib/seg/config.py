"""Settings of the EM mitochondria segmentation study (paper 004; issue 18, item 3).

Registered as the ``seg:`` section of a profile; :meth:`SegConfig.validate` names offending keys as
``seg.<field>``. The EM pair itself is ``data.em`` (:class:`~dinoxfer_lib.data.em_config.EMDataConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dinoxfer_lib.adapt.config import LoraSettings
from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.data.em_config import EM_DOMAINS
from dinoxfer_lib.errors import require_config as _require

HEADS: tuple[str, ...] = ("linear", "conv")
SEG_REGIMES: tuple[str, ...] = ("frozen", "lora")
JOINT_SAMPLING: tuple[str, ...] = ("balanced", "proportional")
# ``seg.backbones`` entry prefix naming a run-store stage that holds a backbone this book trained.
STORE_PREFIX = "store:"


@dataclass(frozen=True)
class SegConfig:
    """A light head on a ViT's patch tokens, trained with Dice + BCE, on one EM domain or on both."""

    # The backbones compared, one study each (004 compares DINOv2, DINOv3 and OpenCLIP). Each entry is one line:
    # a pretraining domain (natural, hpa, opencell: the backbone the book resolves for it, embed.<domain>_weights),
    # registered weights (dinov2_vitb14, openclip_vitb16_laion2b, ...; `dinoxfer fetch` them), "store:<stage>"
    # (a backbone this book trained, e.g. store:dino/hpa) or a checkpoint path. The EM patch (data.em.patch_size)
    # must be a multiple of every backbone's patch size.
    backbones: tuple[str, ...] = ("natural", "hpa", "opencell")

    # "linear": BatchNorm + a 1x1 convolution per patch token, upsampled to pixels (DINOv2's linear head);
    # "conv": a small decoder (3x3 convolutions, two 2x upsamplings) that can sharpen boundaries finer than a patch.
    head: Literal["linear", "conv"] = "conv"
    # Channels of the conv decoder's first layer (halved after each upsampling). Raise it if the conv head's
    # training IoU stays below the linear head's.
    decoder_width: int = 64
    # Regimes per training set: "frozen" (patch tokens computed once, only the head trains) and "lora" (adapters
    # on the attention projections train with the head, the backbone runs in every step).
    regimes: tuple[str, ...] = ("frozen", "lora")
    # Training sets, each the domains one model trains on together: 004's single-domain and joint rows.
    train_sets: tuple[tuple[str, ...], ...] = (("lucchi",), ("vnc",), ("lucchi", "vnc"))
    # Joint training: "balanced" draws each domain equally often whatever its size; "proportional" draws every
    # training patch equally often, so the larger domain dominates.
    joint_sampling: Literal["balanced", "proportional"] = "balanced"
    # Epochs; an epoch draws as many patches as the training set(s) hold. Cosine schedule to 0 over all steps.
    # If the training loss still falls steeply at the end, raise it.
    epochs: int = 20
    # Head-only epochs on the cached tokens before the regimes train (linear probing, then fine-tuning: LP-FT).
    # 0 = every model starts from a fresh head. With N > 0 the frozen model of a training set is that head (N
    # epochs, no backbone pass: cheap) and its LoRA model starts from a copy of it, training `epochs` more; raise N
    # when the frozen models' training loss still falls at the end.
    head_epochs: int = 0
    # Patches per optimiser step.
    batch_size: int = 16
    # AdamW lr of the head and the adapters, and its weight decay.
    lr: float = 1e-3
    weight_decay: float = 1e-4
    # Loss = bce_weight * BCE + dice_weight * (1 - soft Dice). Dice keeps the rare foreground (a few % of the
    # pixels) from being ignored; BCE gives useful gradients while the Dice overlap is still near zero.
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    # Pixels with sigmoid >= threshold count as mitochondrion in the IoU.
    threshold: float = 0.5
    # The adapters of the "lora" regime.
    lora: LoraSettings = field(default_factory=LoraSettings)

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` naming ``f"{key}.{field}"`` for the first impossible value (bounds:
        :data:`~dinoxfer_lib.bounds.BOUNDS`)."""
        check_bounds(self, key)
        _require(len(self.backbones) >= 1 and len(set(self.backbones)) == len(self.backbones)
                 and all(isinstance(b, str) and b for b in self.backbones), f"{key}.backbones", self.backbones,
                 "distinct domain names, registered weights, store:<stage> entries or checkpoint paths")
        _require(self.head in HEADS, f"{key}.head", self.head, f"one of {', '.join(HEADS)}")
        _require(len(self.regimes) >= 1 and set(self.regimes) <= set(SEG_REGIMES)
                 and len(set(self.regimes)) == len(self.regimes), f"{key}.regimes", self.regimes,
                 f"distinct values from {', '.join(SEG_REGIMES)}")
        _require(len(self.train_sets) >= 1 and all(
            len(s) >= 1 and set(s) <= set(EM_DOMAINS) and len(set(s)) == len(s) for s in self.train_sets),
            f"{key}.train_sets", self.train_sets, f"non-empty lists of distinct domains from {', '.join(EM_DOMAINS)}")
        _require(self.joint_sampling in JOINT_SAMPLING, f"{key}.joint_sampling", self.joint_sampling,
                 f"one of {', '.join(JOINT_SAMPLING)}")
        _require(self.dice_weight + self.bce_weight > 0, f"{key}.dice_weight", self.dice_weight,
                 "> 0 while bce_weight is 0 (the loss would be 0)")
        self.lora.validate(f"{key}.lora")
