"""The student's masked forward on a timm ViT, as DINOv2's ``prepare_tokens_with_masks``.

Masked patches are replaced by one learnable mask token right after the patch embedding, before the position
embeddings are added, so the student knows where a patch is missing but not what it showed. The token is a
parameter of the backbone named ``mask_token`` (1, D), as in DINOv2's checkpoints; it starts at zero.
"""

from __future__ import annotations

import torch
from torch import nn


def add_mask_token(backbone: nn.Module) -> nn.Parameter:
    """Give ``backbone`` a zero-initialised ``mask_token`` (1, D) parameter (DINOv2's initialisation)."""
    backbone.mask_token = nn.Parameter(torch.zeros(1, backbone.embed_dim, device=backbone.cls_token.device))
    return backbone.mask_token


def vit_tokens(backbone: nn.Module, images: torch.Tensor, masks: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """CLS token (B, D) and patch tokens (B, N, D) after the final LayerNorm; register tokens are left out.

    Parameters
    ----------
    backbone
        A timm ``VisionTransformer`` (with :func:`add_mask_token` when ``masks`` are given).
    images
        (B, C, H, W).
    masks
        (B, N) bool over the patch grid, row-major; True patches enter the network as the mask token.
    """
    if masks is None:
        tokens = backbone.forward_features(images)
    else:
        def replace_masked(module: nn.Module, inputs: tuple, embedded: torch.Tensor) -> torch.Tensor:
            # embedded: (B, rows, columns, D) for dynamic-size ViTs, else (B, N, D)
            where = masks.reshape(*embedded.shape[:-1], 1)
            return torch.where(where, backbone.mask_token.to(embedded.dtype), embedded)

        handle = backbone.patch_embed.register_forward_hook(replace_masked)
        try:
            tokens = backbone.forward_features(images)  # (B, prefix + N, D)
        finally:
            handle.remove()
    return tokens[:, 0], tokens[:, backbone.num_prefix_tokens:]
