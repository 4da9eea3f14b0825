"""ViT backbones by name, and the pretrained weights a user can ask for by name (PAPER_SPEC.md §3).

Architectures are timm ``VisionTransformer`` instances whose parameter names match the official DINO ViT
(``cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*``), so every published DINO checkpoint loads
without renaming; DINOv2 ViTs are registered under timm's names (``vit_small_patch14_dinov2``, ...), with their
LayerScale (``blocks.N.ls1.gamma``) and, for ``*_reg4_*``, four register tokens; OpenCLIP's image tower is
timm's layout of it (``vit_base_patch16_clip``: a pre-norm, eps 1e-5). They are built with
``dynamic_img_size=True``: an input of another size gets its position embeddings interpolated on the fly. Attention
runs through PyTorch's ``scaled_dot_product_attention`` (timm's fused attention).

Pretrained metadata is data, as in timm's pretrained configs: which architecture, what each input slot means, how
intensities are normalised, where the file comes from and under which licence.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from dinoxfer_lib.errors import ConfigError

if TYPE_CHECKING:  # the registry is read by config validation, which must not import torch
    from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Shape of a ViT. The MLP ratio is 4 and the QKV projection has a bias, as in every DINO and DINOv2 ViT.

    Attributes
    ----------
    patch_size, embed_dim, depth, num_heads
        The ViT's geometry.
    reg_tokens
        Register tokens after the CLS token (DINOv2 ``*_reg4``: 4). With registers, as in timm's DINOv2 models, the
        position embeddings cover the patches only (``no_embed_class``).
    layerscale
        Initial LayerScale value (timm's ``init_values``; DINOv2: 1e-5); ``None`` = no LayerScale (DINO).
    interpolate_offset, interpolate_antialias
        How the official code resizes the position embeddings to another patch grid: bicubic with the scale factor
        ``(grid + offset) / old_grid`` (DINO and DINOv2: offset 0.1), or to the exact grid size when the offset is 0,
        with or without antialiasing (DINOv2 with registers: offset 0, antialiased).
    pre_norm, norm_eps
        A LayerNorm after the patch embedding, whose convolution then has no bias (CLIP's ``ln_pre``); the
        LayerNorms' epsilon (DINO and DINOv2: 1e-6, CLIP: 1e-5).
    """

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    reg_tokens: int = 0
    layerscale: float | None = None
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False
    pre_norm: bool = False
    norm_eps: float = 1e-6


# Official DINO ViTs (facebookresearch/dino hubconf: dino_vits16, dino_vits8, dino_vitb16, dino_vitb8). DINO4Cells'
# HPA FOV model is a 4-channel vit_base_patch8: its released run's parameters (broadinstitute/Dino4Cells_analysis,
# FAIR_whole_image_all_channels/experiment_params.json) say arch vit_base, patch_size 8, num_channels 4, 100 epochs,
# as paper 001 (Table III: vit_base/8, 100 epochs).
_DINOV2 = {"layerscale": 1e-5}  # facebookresearch/dinov2 ssl_default_config: student.layerscale 1e-5
_REG4 = {"reg_tokens": 4, "interpolate_offset": 0.0, "interpolate_antialias": True}  # dinov2 configs/eval/*_reg4_*
ARCHITECTURES: dict[str, Architecture] = {
    "vit_base_patch8": Architecture(patch_size=8, embed_dim=768, depth=12, num_heads=12),  # the paper's ViT-B/8
    "vit_base_patch16": Architecture(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "vit_small_patch8": Architecture(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    "vit_small_patch16": Architecture(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_tiny_patch16": Architecture(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    # DINOv2 (Oquab et al. 2024) in timm's naming; published at 518 px (a 37 x 37 patch grid).
    "vit_small_patch14_dinov2": Architecture(patch_size=14, embed_dim=384, depth=12, num_heads=6, **_DINOV2),
    "vit_base_patch14_dinov2": Architecture(patch_size=14, embed_dim=768, depth=12, num_heads=12, **_DINOV2),
    "vit_large_patch14_dinov2": Architecture(patch_size=14, embed_dim=1024, depth=24, num_heads=16, **_DINOV2),
    "vit_small_patch14_reg4_dinov2": Architecture(patch_size=14, embed_dim=384, depth=12, num_heads=6, **_DINOV2,
                                                  **_REG4),
    "vit_base_patch14_reg4_dinov2": Architecture(patch_size=14, embed_dim=768, depth=12, num_heads=12, **_DINOV2,
                                                 **_REG4),
    "vit_large_patch14_reg4_dinov2": Architecture(patch_size=14, embed_dim=1024, depth=24, num_heads=16, **_DINOV2,
                                                  **_REG4),
    # OpenCLIP's ViT-B/16 image tower as timm lays it out (vit_base_patch16_clip_224): CLIP's pre-norm, eps 1e-5.
    "vit_base_patch16_clip": Architecture(patch_size=16, embed_dim=768, depth=12, num_heads=12, pre_norm=True,
                                          norm_eps=1e-5),
    # CPU profiles: 64 px inputs give an 8 x 8 patch grid; DINO trains it in minutes on two cores.
    "vit_micro": Architecture(patch_size=8, embed_dim=192, depth=4, num_heads=3),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# OpenAI CLIP's input statistics, which OpenCLIP models trained on LAION keep (timm's OPENAI_CLIP_MEAN / _STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
    # Neither is stored in the checkpoint. `dinoxfer channels check` ranks slot orders on labelled HPA images; an order
    # it recorded in the manifest replaces these slots (dinoxfer_lib.models.slot_order.slot_order).
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
    # The backbones of the EM segmentation comparison (paper 004); `dinoxfer fetch <name>` downloads each. DINOv3
    # (data_manifests/dinov3_*.yaml) is not here: timm builds it as an Eva model with rotary position embeddings,
    # not the VisionTransformer this loader fills. The official DINOv2 backbones are added below.
    "openclip_vitb16_laion2b": PretrainedWeights(
        arch="vit_base_patch16_clip",
        slots=("red", "green", "blue"),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        per_image_zscore=False,
        filename="vit_base_patch16_clip_224.laion2b.safetensors",
        manifest="openclip_vitb16_laion2b",
        store_stage=None,
        url="https://huggingface.co/timm/vit_base_patch16_clip_224.laion2b",
        licence="MIT (laion/CLIP-ViT-B-16-laion2B-s34B-b88K)",
        description="OpenCLIP ViT-B/16 image tower, LAION-2B (Cherti et al. 2023), in timm's layout",
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


# Official DINOv2 backbones (facebookresearch/dinov2 hubconf; LVD-142M, the S, B and L sizes distilled from g/14),
# each registered under its manifest's name (dinov2_vits14, as `dinoxfer fetch` knows it) and the timm architecture
# it loads into (vit_small_patch14_dinov2); data_manifests/dinov2_vit<size>14.yaml download them.
for _arch, _size in (("vit_small_patch14_dinov2", "s"), ("vit_base_patch14_dinov2", "b"),
                     ("vit_large_patch14_dinov2", "l")):
    PRETRAINED[_arch] = PRETRAINED[f"dinov2_vit{_size}14"] = PretrainedWeights(
        arch=_arch,
        slots=("red", "green", "blue"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        per_image_zscore=False,
        filename=f"dinov2_vit{_size}14_pretrain.pth",
        manifest=f"dinov2_vit{_size}14",
        store_stage=None,
        url=f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{_size}14/dinov2_vit{_size}14_pretrain.pth",
        licence="Apache-2.0",
        description=f"Official DINOv2 ViT-{_size.upper()}/14, LVD-142M (Oquab et al. 2024); backbone only, "
                    "LayerScale, no registers",
    )


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


def create_backbone(
    arch: str, *, in_chans: int, img_size: int, drop_path_rate: float = 0.0, layerscale: float | None = None
) -> nn.Module:
    """A randomly initialised ViT without classifier (``num_classes=0``), DINO parameter names.

    Parameters
    ----------
    arch
        Key of :data:`ARCHITECTURES`.
    in_chans
        Input channels of the patch embedding (3 for ImageNet weights, 4 for DINO4Cells, 2 for OpenCell, 1 for a
        bag-of-channels encoder).
    img_size
        Side the position embeddings are laid out for; other sizes still work (interpolated at each forward).
    drop_path_rate
        Stochastic depth for training (DINO: 0.1); embedding runs in eval mode, where it does nothing.
    layerscale
        LayerScale's initial value, overriding the architecture's (``None`` = the architecture's; 0 = none). The
        DINOv2 objective adds LayerScale to any architecture this way.
    """
    from timm.layers import LayerNorm
    from timm.models.vision_transformer import VisionTransformer

    spec = architecture(arch)
    if in_chans < 1:
        raise ConfigError(f"in_chans = {in_chans}: expected >= 1")
    if img_size < spec.patch_size:
        raise ConfigError(f"img_size = {img_size} is smaller than the {arch} patch ({spec.patch_size} px)")
    init_values = spec.layerscale if layerscale is None else layerscale
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
        init_values=init_values or None,
        reg_tokens=spec.reg_tokens,
        no_embed_class=spec.reg_tokens > 0,
        pre_norm=spec.pre_norm,
        norm_layer=partial(LayerNorm, eps=spec.norm_eps),
    )
    model.dinoxfer_arch = arch  # read by reports, by the embedding provenance and by the checkpoint loader
    return model
