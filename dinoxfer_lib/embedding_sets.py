"""The Table III embedding sets, as data, and the backbone each one needs.

Each set pairs the backbone pretrained on one domain with one channel strategy (PAPER_SPEC.md §3, Table III rows
1-5) plus the DINO BoC extension. Backbones come from the run store (this profile's own DINO run), a registered
published checkpoint, or a path — chosen per domain by ``embed.<domain>_weights``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from dinoxfer_lib.config import Config
from dinoxfer_lib.errors import StoreError
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED, create_backbone
from dinoxfer_lib.models.checkpoints import build_backbone
from dinoxfer_lib.store import ArtifactStore


@dataclass(frozen=True)
class EmbeddingSet:
    """One row of Table III: which backbone, which channel strategy, and the labels the book prints."""

    name: str
    pretraining: str  # domain whose backbone is used: natural | hpa | opencell
    strategy: str  # mapping | replication | native | bag_of_channels
    weights_label: str  # as in the paper's Table III
    approach_label: str
    slot_table: str | None = None


EMBEDDING_SETS: tuple[EmbeddingSet, ...] = (
    EmbeddingSet("imagenet_mapping", "natural", "mapping", "ImageNet-1k", "channel mapping", "imagenet"),
    EmbeddingSet("imagenet_replication", "natural", "replication", "ImageNet-1k", "channel replication"),
    EmbeddingSet("hpa_mapping", "hpa", "mapping", "HPA FOV", "channel mapping", "hpa"),
    EmbeddingSet("hpa_replication", "hpa", "replication", "HPA FOV", "channel replication"),
    EmbeddingSet("opencell_native", "opencell", "native", "OpenCell", "-"),
    EmbeddingSet("hpa_bag_of_channels", "hpa", "bag_of_channels", "HPA FOV", "bag of channels (extension)"),
)
# The paper's Table III, for side-by-side display: (mean macro F1, std, DINO epochs).
PAPER_TABLE_III: dict[str, tuple[float, float, int]] = {
    "imagenet_mapping": (0.8057, 0.0090, 300),
    "imagenet_replication": (0.7986, 0.0089, 300),
    "hpa_mapping": (0.8221, 0.0062, 100),
    "hpa_replication": (0.7681, 0.0140, 100),
    "opencell_native": (0.7918, 0.0096, 300),
}
DINO_BACKBONE_FILE = "teacher_backbone.safetensors"


@dataclass(frozen=True)
class ResolvedBackbone:
    """A backbone ready to embed, with what its input slots mean and where its weights came from."""

    domain: str
    model: nn.Module
    slots: tuple[str, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    source: str  # "store: <stage>", "random init (seed N)", a registered name or a path
    sha256: str | None
    per_image_zscore: bool = False  # DINO4Cells' self-normalisation, where the weights were trained with it

    def describe(self) -> dict:
        return {"domain": self.domain, "source": self.source, "sha256": self.sha256, "slots": list(self.slots)}


def random_backbone(config: Config, domain: str, *, channels: tuple[str, ...]) -> ResolvedBackbone:
    """The profile's architecture with seeded random weights: the stand-in before DINO has run, and the baseline a
    DINO-trained backbone must beat."""
    seed = config.seed + ("natural", "hpa", "opencell").index(domain)
    torch.manual_seed(seed)
    model = create_backbone(config.embed.arch, in_chans=len(channels), img_size=config.embed.img_size).eval()
    photo_norm = (IMAGENET_MEAN, IMAGENET_STD) if domain == "natural" else (None, None)
    return ResolvedBackbone(domain, model, channels, *photo_norm, f"random init (seed {seed})", None)


def resolve_backbone(config: Config, store: ArtifactStore, domain: str, *, channels: tuple[str, ...]) -> ResolvedBackbone:
    """The backbone pretrained on ``domain`` as the profile asks for it (see ``embed.<domain>_weights``)."""
    weights = getattr(config.embed, f"{domain}_weights")
    photo_norm = (IMAGENET_MEAN, IMAGENET_STD) if domain == "natural" else (None, None)
    if weights == "store":
        stage = f"dino/{domain}"
        try:
            artifact = store.load(stage)
        except StoreError:
            # No DINO run for this domain yet: a seeded random initialisation, labelled as such everywhere.
            return random_backbone(config, domain, channels=channels)
        model, report = build_backbone(artifact.path / DINO_BACKBONE_FILE, img_size=config.embed.img_size)
        return ResolvedBackbone(domain, model, channels, *photo_norm, f"store: {stage}", report.sha256)
    model, report = build_backbone(weights, img_size=config.embed.img_size)
    if weights in PRETRAINED:
        meta = PRETRAINED[weights]
        return ResolvedBackbone(
            domain, model, meta.slots, meta.mean, meta.std, weights, report.sha256, meta.per_image_zscore
        )
    return ResolvedBackbone(domain, model, channels, *photo_norm, os.fspath(weights), report.sha256)
