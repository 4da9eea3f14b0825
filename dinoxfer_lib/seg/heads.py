"""Patch tokens of a ViT for dense prediction, and the light segmentation heads of paper 004.

:func:`patch_tokens` prepares a greyscale EM patch exactly as the channel encoder prepares images for
embeddings (its intensity scaling, its slot placement, its slot standardisation), runs the backbone and returns the
last block's patch tokens after the final norm as a feature map ``(B, D, H/p, W/p)``. The heads turn that map into
one logit per pixel:

- :class:`LinearSegHead`: BatchNorm and a 1x1 convolution per token, bilinearly upsampled (DINOv2's linear
  segmentation head): what the frozen features already separate;
- :class:`ConvSegHead`: a 3x3 convolution, then two rounds of 2x upsampling + 3x3 convolution, then a 1x1 to
  logits and bilinear upsampling to the pixels: light, yet able to place boundaries finer than a patch.
"""

from __future__ import annotations

import torch
from torch import nn

from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.channels import ChannelEncoder, scale_intensities


def patch_tokens(encoder: ChannelEncoder, raw: torch.Tensor) -> torch.Tensor:
    """Raw single-channel images ``(B, 1, H, W)`` → patch-token map ``(B, D, H // p, W // p)`` (float32).

    The one channel goes where the encoder's strategy puts a channel: copied into every slot (``replication``),
    into its mapped slot with the others black (``mapping``), or alone (``native`` / ``bag_of_channels``
    single-channel backbones).
    """
    if len(encoder.target_channels) != 1 or raw.shape[1] != 1:
        raise DataError(f"patch tokens need single-channel images and encoder, got {raw.shape[1]} image channels "
                        f"and encoder channels ({', '.join(encoder.target_channels)})")
    backbone = encoder.backbone
    x = scale_intensities(raw.float(), encoder.scaling)  # (B, 1, H, W) in [0, 1]
    if encoder.strategy == "replication":
        x = x.expand(-1, len(encoder.slots), -1, -1)
    elif encoder.strategy == "mapping":
        slotted = x.new_zeros(x.shape[0], len(encoder.slots), *x.shape[2:])
        for _, slot in encoder.placements:
            slotted[:, slot] = x[:, 0]
        x = slotted
    x = encoder.standardize(x).to(backbone.patch_embed.proj.weight.dtype)
    tokens = backbone.forward_features(x)[:, backbone.num_prefix_tokens:]  # (B, h*w, D)
    patch = backbone.patch_embed.patch_size[0]
    h, w = raw.shape[2] // patch, raw.shape[3] // patch
    return tokens.float().transpose(1, 2).reshape(len(raw), -1, h, w)


class LinearSegHead(nn.Module):
    """Token map ``(B, D, h, w)`` → pixel logits ``(B, H, W)``: BatchNorm, 1x1 convolution, bilinear upsampling."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_dim)
        self.classify = nn.Conv2d(in_dim, 1, kernel_size=1)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = self.classify(self.norm(tokens))  # (B, 1, h, w)
        return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0]


class ConvSegHead(nn.Module):
    """Token map ``(B, D, h, w)`` → pixel logits ``(B, H, W)`` through a small convolutional decoder."""

    def __init__(self, in_dim: int, *, width: int = 64):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

        self.norm = nn.BatchNorm2d(in_dim)
        self.stem = block(in_dim, width)
        self.up1 = block(width, width // 2)
        self.up2 = block(width // 2, width // 4)
        self.classify = nn.Conv2d(width // 4, 1, kernel_size=1)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.stem(self.norm(tokens))  # (B, width, h, w)
        x = self.up1(nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        x = self.up2(nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        logits = self.classify(x)  # (B, 1, 4h, 4w)
        return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0]


def make_seg_head(kind: str, in_dim: int, *, width: int = 64) -> nn.Module:
    """``linear`` or ``conv`` head for ``in_dim``-wide tokens (:data:`~dinoxfer_lib.seg.config.HEADS`)."""
    if kind == "linear":
        return LinearSegHead(in_dim)
    if kind == "conv":
        return ConvSegHead(in_dim, width=width)
    raise ConfigError(f"unknown segmentation head {kind!r}: expected linear or conv")
