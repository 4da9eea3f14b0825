"""ViT backbones by name, and the pretrained weights a user can ask for by name (PAPER_SPEC.md §3).

Architectures are timm ``VisionTransformer`` instances whose parameter names match the official DINO ViT
(``cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*``), so every published DINO checkpoint loads
without renaming. They are built with ``dynamic_img_size=True``: an input of another size gets its position
embeddings interpolated on the fly, as DINO's own ``interpolate_pos_encoding`` does. Attention runs through
PyTorch's ``scaled_dot_product_attention`` (timm's fused attention).

Pretrained metadata is data, as in timm's pretrained configs: which architecture, what each input slot means, how
intensities are normalised, where the file comes from and under which licence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dinoxfer_lib.errors import ConfigError

if TYPE_CHECKING:  # the registry is read by config validation, which must not import torch
    from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Shape of a ViT. The MLP ratio is 4 and the QKV projection has a bias, as in every DINO ViT."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int


ARCHITECTURES: dict[str, Architecture] = {
    "vit_base_patch8": Architecture(patch_size=8, embed_dim=768, depth=12, num_heads=12),  # the paper's ViT-B/8
    "vit_small_patch8": Architecture(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    "vit_small_patch16": Architecture(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_tiny_patch16": Architecture(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    # CPU profiles: 64 px inputs give an 8 x 8 patch grid; DINO trains it in minutes on two cores.
    "vit_micro": Architecture(patch_size=8, embed_dim=192, depth=4, num_heads=3),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedWeights:
    """A named checkpoint: what its input slots mean, how it was normalised, and where the file comes from.

    Attributes
    ----------
    arch
        Key of :data:`ARCHITECTURES`.
    slots
        Meaning of each input channel, in order; ``in_chans`` is their number.
    mean, std
        Per-slot standardisation after intensities were scaled to [0, 1] (ImageNet statistics); ``None`` = none.
    per_image_zscore
        Standardise each image and slot to mean 0 / std 1 instead (DINO4Cells' ``self_normalize``).
    filename
        The weights file: inside the download cache for published weights, inside ``store_stage`` for ours.
    manifest
        ``data_manifests/<manifest>.yaml`` that ``dinoxfer fetch`` downloads; ``None`` for weights this book trains.
    store_stage
        Run-store stage that holds the weights when this book trains them (``dino/opencell``); ``None`` otherwise.
    """

    arch: str
    slots: tuple[str, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    per_image_zscore: bool
    filename: str
    manifest: str | None
    store_stage: str | None
    url: str | None
    licence: str
    description: str

    @property
    def in_chans(self) -> int:
        return len(self.slots)


PRETRAINED: dict[str, PretrainedWeights] = {
    "dino_vitb8_imagenet": PretrainedWeights(
        arch="vit_base_patch8",
        slots=("red", "green", "blue"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        per_image_zscore=False,
        filename="dino_vitbase8_pretrain.pth",
        manifest="dino_vitb8_imagenet",
        store_stage=None,
        url="https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
        licence="Apache-2.0",
        description="Official DINO ViT-B/8, ImageNet-1k, 300 epochs (Caron et al. 2021); backbone only",
    ),
    "dino_vitb8_imagenet_full": PretrainedWeights(
        arch="vit_base_patch8",
        slots=("red", "green", "blue"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        per_image_zscore=False,
        filename="dino_vitbase8_pretrain_full_checkpoint.pth",
        manifest="dino_vitb8_imagenet_full",
        store_stage=None,
        url="https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain_full_checkpoint.pth",
        licence="Apache-2.0",
        description="The same run's full checkpoint (teacher, student, optimizer, args); the teacher is loaded",
    ),
    # Slot order: DINO4Cells' HPA configs label the channels c=0 nucleus, 1 protein, 2 "cyto" (microtubules), 3 ER
    # (the `Get_specific_channel` comments in config_HPA_FOV.yaml), i.e. the HPA colours stacked blue, green, red,
    # yellow; its `remove_channel` augmentation only blackens channels 0, 2, 3, never the protein (1). The config
    # also turns `Normalize` (dataset mean/std) off and `self_normalize` (per-image, per-channel z-score) on.
    # Neither is stored in the checkpoint: if yours was trained otherwise, pass other slots to make_encoder.
    "dino4cells_hpa_fov": PretrainedWeights(
        arch="vit_base_patch8",
        slots=("nucleus", "protein", "microtubules", "er"),
        mean=None,
        std=None,
        per_image_zscore=True,
        filename="DINO_FOV_checkpoint.pth",
        manifest="dino4cells_hpa_fov",
        store_stage=None,
        url="https://zenodo.org/records/8061392",
        licence="see Zenodo record 8061392",
        description="DINO4Cells ViT-B/8, HPA fields of view, 4-channel input, 100 epochs (Doron et al. 2023)",
    ),
    "opencell_dino": PretrainedWeights(
        arch="vit_base_patch8",
        slots=("protein", "nucleus"),
        mean=None,
        std=None,
        per_image_zscore=False,
        filename="teacher_backbone.safetensors",
        manifest=None,
        store_stage="dino/opencell",
        url=None,
        licence="as the OpenCell images it was trained on",
        description="ViT trained here with DINO on the OpenCell 90 % split (Table III row 5); the teacher backbone",
    ),
}


def architecture(arch: str) -> Architecture:
    """The registered architecture ``arch``; an unknown name is a ConfigError listing the valid ones."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def pretrained_weights(name: str) -> PretrainedWeights:
    """Metadata of the named weights; an unknown name is a ConfigError listing the valid ones."""
    if name not in PRETRAINED:
        raise ConfigError(f"unknown weights {name!r}: expected one of {', '.join(PRETRAINED)} or a checkpoint path")
    return PRETRAINED[name]


def create_backbone(arch: str, *, in_chans: int, img_size: int, drop_path_rate: float = 0.0) -> nn.Module:
    """A randomly initialised ViT without classifier (``num_classes=0``), DINO parameter names.

    Parameters
    ----------
    arch
        Key of :data:`ARCHITECTURES`.
    in_chans
        Input channels of the patch embedding (3 for ImageNet weights, 4 for DINO4Cells, 2 for OpenCell).
    img_size
        Side the position embeddings are laid out for; other sizes still work (interpolated at each forward).
    drop_path_rate
        Stochastic depth for training (DINO: 0.1); embedding runs in eval mode, where it does nothing.
    """
    from timm.models.vision_transformer import VisionTransformer

    spec = architecture(arch)
    if in_chans < 1:
        raise ConfigError(f"in_chans = {in_chans}: expected >= 1")
    if img_size < spec.patch_size:
        raise ConfigError(f"img_size = {img_size} is smaller than the {arch} patch ({spec.patch_size} px)")
    model = VisionTransformer(
        img_size=img_size,
        patch_size=spec.patch_size,
        in_chans=in_chans,
        num_classes=0,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        drop_path_rate=drop_path_rate,
        dynamic_img_size=True,
    )
    model.dinoxfer_arch = arch  # read by reports and by the embedding provenance
    return model
