"""ViT backbones by name, and the published DINO weights a user can ask for by name.

Architectures are timm ``VisionTransformer`` instances whose keys match the official DINO ViT
(``cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*``), built with ``dynamic_img_size`` so any input
size works (position embeddings are interpolated). Pretrained metadata is data, as in timm's pretrained configs:
which architecture, how many input channels, what each input slot means and how intensities are normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dinoxfer_lib.errors import ConfigError


@dataclass(frozen=True)
class Architecture:
    """Shape of a ViT: patch size, width, depth, heads."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int


ARCHITECTURES: dict[str, Architecture] = {
    "vit_base_patch8": Architecture(8, 768, 12, 12),  # the paper's ViT-B/8
    "vit_small_patch8": Architecture(8, 384, 12, 6),
    "vit_small_patch16": Architecture(16, 384, 12, 6),
    "vit_tiny_patch16": Architecture(16, 192, 12, 3),
    "vit_micro": Architecture(8, 192, 4, 3),  # CPU profiles: trains in minutes on 64 px images
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedWeights:
    """A published checkpoint: what it expects at its input and where it comes from."""

    arch: str
    slots: tuple[str, ...]  # meaning of each input channel, in order
    mean: tuple[float, ...] | None  # per-slot normalisation after scaling to [0, 1]; None = none
    std: tuple[float, ...] | None
    manifest: str  # data_manifests/<manifest>.yaml
    filename: str  # the file of the manifest that holds the weights
    licence: str
    description: str


PRETRAINED: dict[str, PretrainedWeights] = {
    "dino_vitb8_imagenet": PretrainedWeights(
        arch="vit_base_patch8",
        slots=("red", "green", "blue"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        manifest="dino_vitb8_imagenet",
        filename="dino_vitbase8_pretrain.pth",
        licence="Apache-2.0",
        description="Official DINO ViT-B/8 trained on ImageNet-1k for 300 epochs (Caron et al. 2021)",
    ),
    # DINO4Cells reads HPA fields of view as the Kaggle RGBY stack, so its slots follow the file colours
    # red = microtubules, green = protein, blue = nucleus, yellow = ER (Doron et al. 2023). Assumed from the HPA
    # Kaggle convention; if your checkpoint differs, pass another slot table to the mapping strategy.
    "dino4cells_hpa_fov": PretrainedWeights(
        arch="vit_base_patch8",
        slots=("microtubules", "protein", "nucleus", "er"),
        mean=None,
        std=None,
        manifest="dino4cells_hpa_fov",
        filename="DINO_FOV_checkpoint.pth",
        licence="see the Zenodo record 8061392",
        description="DINO4Cells ViT-B/8 trained on HPA fields of view, 4-channel input, 100 epochs",
    ),
}


def architecture(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def pretrained_weights(name: str) -> PretrainedWeights:
    if name not in PRETRAINED:
        raise ConfigError(f"unknown weights {name!r}: expected one of {', '.join(PRETRAINED)} or a checkpoint path")
    return PRETRAINED[name]


def create_backbone(arch: str, *, in_chans: int, img_size: int, drop_path_rate: float = 0.0) -> nn.Module:
    """A randomly initialised ViT without classifier head (``num_classes=0``), DINO key layout."""
    from timm.models.vision_transformer import VisionTransformer

    spec = architecture(arch)
    if in_chans < 1:
        raise ConfigError(f"in_chans = {in_chans}: expected >= 1")
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
    model.dinoxfer_arch = arch
    return model
