"""The backbone pretrained on each domain, as ``embed.<domain>_weights`` asks for it, and the DINOv2 backbones.

``store`` = this run's own DINO stage ``dino/<domain>``; a registered name (``dino_vitb8_imagenet``,
``dino4cells_hpa_fov``) = published weights from the download cache; anything else = a checkpoint path. The DINOv2
backbones (``cell_dino``, ``cell_dino_plus``, ``dino_boc``; ``dinov2.backbones``) always come from this run's stage
``dino/<name>``. A :class:`ResolvedBackbone` carries the model with what its input slots mean, how its inputs are
normalised, and where its weights came from, so every stage that embeds with it records that in its provenance.
Until a backbone's stage exists it is a seeded random initialisation, labelled as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from dinoxfer_lib.config import Config
from dinoxfer_lib.data.classes import HPA_CHANNELS, NATURAL_CHANNELS, OPENCELL_CHANNELS
from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE
from dinoxfer_lib.dino.config import DINOV2_BACKBONES
from dinoxfer_lib.errors import ConfigError, StoreError
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED, create_backbone
from dinoxfer_lib.models.checkpoints import build_backbone
from dinoxfer_lib.pipeline.run import DOMAINS, Run
from dinoxfer_lib.store import ArtifactStore

# What each input channel of a backbone trained here on the domain's images means.
DOMAIN_CHANNELS = {"opencell": OPENCELL_CHANNELS, "hpa": HPA_CHANNELS, "natural": NATURAL_CHANNELS}
# The single input of a bag-of-channels encoder: a channel, whatever it means.
BAG_CHANNEL = ("channel",)
# What each input channel means of every backbone this run can train: Cell-DINO(+) read the HPA-like channels.
BACKBONE_CHANNELS = {**DOMAIN_CHANNELS, "cell_dino": HPA_CHANNELS, "cell_dino_plus": HPA_CHANNELS,
                     "dino_boc": BAG_CHANNEL}


@dataclass(frozen=True)
class ResolvedBackbone:
    """A backbone ready to embed, with what its input slots mean and where its weights came from.

    ``stage`` names the run-store stage holding the weights when this run trained them: its artifact is then an
    input of every stage that embeds with them, so retraining recomputes those stages.
    """

    domain: str  # the pretraining domain, or the DINOv2 backbone's name
    model: nn.Module
    slots: tuple[str, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    source: str  # for readers: "dino/opencell (this run)", "random init (seed N)", a registered name or a path
    sha256: str | None
    stage: str | None = None
    per_image_zscore: bool = False  # DINO4Cells' self-normalisation, where the weights were trained with it

    @property
    def random(self) -> bool:
        """Seeded random weights: no DINO run and no published weights behind them."""
        return self.sha256 is None

    def describe(self) -> dict:
        return {"domain": self.domain, "source": self.source, "sha256": self.sha256, "slots": list(self.slots),
                "stage": self.stage}


def _photo_norm(domain: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Backbones trained on photographs expect ImageNet's standardisation; microscopy backbones none."""
    return (IMAGENET_MEAN, IMAGENET_STD) if domain == "natural" else (None, None)


def random_backbone(config: Config, domain: str, *, channels: tuple[str, ...]) -> ResolvedBackbone:
    """The profile's architecture with seeded random weights: the stand-in before DINO has run, and the baseline a
    DINO-trained backbone must beat."""
    seed = config.seed + ("natural", "hpa", "opencell", *DINOV2_BACKBONES).index(domain)
    torch.manual_seed(seed)
    model = create_backbone(config.embed.arch, in_chans=len(channels), img_size=config.embed.img_size).eval()
    return ResolvedBackbone(domain, model, channels, *_photo_norm(domain), f"random init (seed {seed})", None)


def resolve_backbone(config: Config, store: ArtifactStore, domain: str, *, channels: tuple[str, ...]) -> ResolvedBackbone:
    """The backbone pretrained on ``domain`` as the profile asks for it (see ``embed.<domain>_weights``), or the
    DINOv2 backbone of that name as this run trained it."""
    weights = "store" if domain in DINOV2_BACKBONES else getattr(config.embed, f"{domain}_weights")
    if weights == "store":
        stage = f"dino/{domain}"
        try:
            artifact = store.load(stage)
        except StoreError:
            # No DINO run for this domain yet: a seeded random initialisation, labelled as such everywhere.
            return random_backbone(config, domain, channels=channels)
        model, report = build_backbone(artifact.path / BACKBONE_FILE, img_size=config.embed.img_size)
        return ResolvedBackbone(domain, model, channels, *_photo_norm(domain), f"{stage} (this run)", report.sha256,
                                stage=stage)
    model, report = build_backbone(weights, img_size=config.embed.img_size)
    if weights in PRETRAINED:
        meta = PRETRAINED[weights]
        return ResolvedBackbone(domain, model, meta.slots, meta.mean, meta.std, weights, report.sha256,
                                per_image_zscore=meta.per_image_zscore)
    return ResolvedBackbone(domain, model, channels, *_photo_norm(domain), os.fspath(weights), report.sha256)


def load_backbones(run: Run, domains: tuple[str, ...] = DOMAINS) -> dict[str, ResolvedBackbone]:
    """The backbone pretrained on each of ``domains``, as ``embed.<domain>_weights`` asks (store, published, path);
    a DINOv2 backbone's name (``cell_dino``, ...) gives this run's."""
    unknown = [d for d in domains if d not in BACKBONE_CHANNELS]
    if unknown:
        raise ConfigError(f"unknown backbone {unknown[0]!r}: expected one of {', '.join(BACKBONE_CHANNELS)}")
    return {d: resolve_backbone(run.config, run.store, d, channels=BACKBONE_CHANNELS[d]) for d in domains}
