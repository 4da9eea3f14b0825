"""The backbone pretrained on each domain, as ``embed.<domain>_weights`` asks for it, and the DINOv2 backbones.

``store`` = this run's own DINO stage ``dino/<domain>``, trained here first when the store has none for this config
(a chapter run on its own gets the backbone the DINO chapter would make, never random weights in its place); a
registered name (``dino_vitb8_imagenet``, ``dino4cells_hpa_fov``) = published weights from the download cache;
anything else = a checkpoint path. The DINOv2 backbones (``cell_dino``, ``cell_dino_plus``, ``dino_boc``;
``dinov2.backbones``) always come from this run's stage ``dino/<name>``, trained first in the same way. A
:class:`ResolvedBackbone` carries the model with what its input slots mean, how its inputs are normalised, and where
its weights came from, so every stage that embeds with it records that in its provenance.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from torch import nn

from dinoxfer_lib.config import Config
from dinoxfer_lib.data.dataset import load_imageset
from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE
from dinoxfer_lib.dino.config import DINOV2_BACKBONES
from dinoxfer_lib.dino.train import SUMMARY_FILE
from dinoxfer_lib.errors import ConfigError
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED, create_backbone
from dinoxfer_lib.models.checkpoints import build_backbone
from dinoxfer_lib.models.slot_order import slot_order
from dinoxfer_lib.pipeline.data import data_phrase, make_dataset
from dinoxfer_lib.pipeline.dino import train_backbone, train_dinov2_backbone
from dinoxfer_lib.pipeline.run import DOMAINS, Run


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
    label: str = ""  # what the weights are, in words, for tables ("DINO on <data>, this run")

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
    """The profile's architecture with seeded random weights: the baseline a DINO-trained backbone must beat."""
    seed = config.seed + ("natural", "hpa", "opencell", *DINOV2_BACKBONES).index(domain)
    torch.manual_seed(seed)
    model = create_backbone(config.embed.arch, in_chans=len(channels), img_size=config.embed.img_size).eval()
    return ResolvedBackbone(domain, model, channels, *_photo_norm(domain), f"random init (seed {seed})", None,
                            label=f"random init (seed {seed})")


def resolve_backbone(run: Run, domain: str, *, grouped: bool | None = None) -> ResolvedBackbone:
    """The backbone pretrained on ``domain`` as the profile asks for it (see ``embed.<domain>_weights``), or the
    DINOv2 backbone of that name (``cell_dino``, ``cell_dino_plus``, ``dino_boc``) as this run trains it.

    With ``store`` weights the ``dino/<domain>`` stage is reused when it is up to date, and trained first when the
    store has none for this config (its chapter did not run yet, or the DINO settings changed since): a chapter run
    alone never falls back to random weights. ``grouped`` picks the OpenCell backbone of the split by image (False)
    or grouped by protein (True), each trained on its split's non-test images (default: ``split.group_by_protein``);
    published weights and checkpoint paths are the same for both.
    """
    config = run.config
    weights = "store" if domain in DINOV2_BACKBONES else getattr(config.embed, f"{domain}_weights")
    label = backbone_label(run, domain)
    if weights == "store":
        if domain in DINOV2_BACKBONES:
            artifact = train_dinov2_backbone(run, domain, progress=False)  # reused when up to date
        else:
            artifact = train_backbone(run, domain, grouped=grouped, progress=False)  # reused when up to date
        if not artifact.reused:
            print(f"{artifact.name}: trained now, as the DINO chapter does (the store had no backbone for this config)")
        model, report = build_backbone(artifact.path / BACKBONE_FILE, img_size=config.embed.img_size)
        channels = tuple(json.loads((artifact.path / SUMMARY_FILE).read_text())["channels"])
        return ResolvedBackbone(domain, model, channels, *_photo_norm(domain), f"{artifact.name} (this run)",
                                report.sha256, stage=artifact.name, label=label)
    model, report = build_backbone(weights, img_size=config.embed.img_size)
    if weights in PRETRAINED:
        meta = PRETRAINED[weights]
        slots = slot_order(weights).slots  # the order `dinoxfer channels record` wrote down, else the registry's
        return ResolvedBackbone(domain, model, slots, meta.mean, meta.std, weights, report.sha256,
                                per_image_zscore=meta.per_image_zscore, label=label)
    return ResolvedBackbone(domain, model, domain_channels(run, domain), *_photo_norm(domain), os.fspath(weights),
                            report.sha256, label=label)


def domain_channels(run: Run, domain: str) -> tuple[str, ...]:
    """The channels of ``domain``'s images in this run: what a backbone trained on them takes as input."""
    return load_imageset(make_dataset(run, domain).path).channel_names


def backbone_label(run: Run, domain: str) -> str:
    """What the backbone of ``domain`` (or DINOv2 backbone) is, in words, without loading it: the table label of its
    weights."""
    if domain in DINOV2_BACKBONES:
        return _dinov2_label(run, domain)
    weights = getattr(run.config.embed, f"{domain}_weights")
    if weights == "store":
        return f"DINO on {data_phrase(run, domain)}, this run"
    if weights in PRETRAINED:
        return PRETRAINED[weights].description.split(";")[0].split(" (")[0]
    return f"weights from {weights}"


def _dinov2_label(run: Run, name: str) -> str:
    settings = run.config.dinov2
    if name == "dino_boc":
        sources = ", ".join(data_phrase(run, domain) for domain in settings.boc_sources)
        return f"DINOv2, single channels of {sources}, this run"
    label = f"DINOv2 on {data_phrase(run, 'hpa')}"
    if name == "cell_dino_plus":
        start = backbone_label(run, "natural") if settings.plus_init == "natural" else settings.plus_init
        label += f" from {start.removesuffix(', this run')}"
    return label + ", this run"


def backbone_labels(run: Run, domains: tuple[str, ...] | None = None) -> dict[str, str]:
    """:func:`backbone_label` of each pretraining domain and DINOv2 backbone this profile trains (or of ``domains``):
    the weights column of Table III."""
    domains = (*DOMAINS, *run.config.dinov2.backbones) if domains is None else domains
    return {domain: backbone_label(run, domain) for domain in domains}


def transfer_backbones(run: Run) -> tuple[str, ...]:
    """Rows of the transfer matrix: the backbone pretrained on each domain, then DINO BoC if the run trains it."""
    return (*DOMAINS, *(b for b in ("dino_boc",) if b in run.config.dinov2.backbones))


def load_backbones(run: Run, domains: tuple[str, ...] = DOMAINS) -> dict[str, ResolvedBackbone]:
    """The backbone pretrained on each of ``domains``, as ``embed.<domain>_weights`` asks (store, published, path);
    a DINOv2 backbone's name (``cell_dino``, ...) gives this run's."""
    known = (*DOMAINS, *DINOV2_BACKBONES)
    unknown = [d for d in domains if d not in known]
    if unknown:
        raise ConfigError(f"unknown backbone {unknown[0]!r}: expected one of {', '.join(known)}")
    return {d: resolve_backbone(run, d) for d in domains}
