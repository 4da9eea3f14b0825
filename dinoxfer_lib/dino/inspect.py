"""What a DINO backbone looks at: last-block CLS attention per head, and patch features as RGB (PCA).

The attention maps are DINO's signature figure (Caron et al. 2021, Fig. 1): without labels, the CLS token's heads
attend to objects (cells, nuclei, compartments). The patch PCA is Cell-DINO's (Moutakanni et al. 2025): the first
three principal components of all patch features, fitted over all images together, coloured as R, G, B, so the
same colour means the same kind of patch in every image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dinoxfer_lib.dino.augment import to_unit_range
from dinoxfer_lib.models.backbones import IMAGENET_MEAN, IMAGENET_STD


def prepare_images(raw: np.ndarray, *, img_size: int, natural: bool = False) -> torch.Tensor:
    """Raw images (B, C, H, W) → the backbone's input as in training: [0, 1] per image/channel, resized, and
    ImageNet-standardised for photographs."""
    x = to_unit_range(torch.from_numpy(np.asarray(raw, dtype=np.float32)))
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        shrink = max(x.shape[-2:]) > img_size
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", antialias=shrink, align_corners=False)
    if natural:
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x


@torch.no_grad()
def cls_attention(backbone: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Attention of the last block's CLS token to every patch, per head: ``(B, heads, grid_h, grid_w)``.

    timm's fused attention never forms the attention matrix, so the last block's input is captured with a hook
    and its query/key projections are applied again here (softmax(q·kᵀ/√d) of the CLS row).
    """
    block = backbone.blocks[-1]
    captured = {}
    handle = block.norm1.register_forward_hook(lambda module, args, out: captured.setdefault("x", out))
    try:
        backbone.eval()(x)
    finally:
        handle.remove()
    tokens = captured["x"]  # (B, 1 + N, D) after the block's first LayerNorm
    attn = block.attn
    b, n, d = tokens.shape
    qkv = attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # (B, heads, N, head_dim)
    weights = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, 1, N)
    gh, gw = backbone.patch_embed.dynamic_feat_size(x.shape[-2:])
    prefix = n - gh * gw  # the CLS token (and any register tokens)
    return weights[:, :, 0, prefix:].reshape(b, attn.num_heads, gh, gw).cpu().numpy()


@torch.no_grad()
def patch_pca_rgb(backbone: nn.Module, x: torch.Tensor, *, n_components: int = 3) -> np.ndarray:
    """First ``n_components`` principal components of all patch features, each min-max scaled to [0, 1] over all
    images: ``(B, grid_h, grid_w, n_components)``."""
    tokens = backbone.eval().forward_features(x)  # (B, 1 + N, D) after the final LayerNorm
    b = len(tokens)
    gh, gw = backbone.patch_embed.dynamic_feat_size(x.shape[-2:])
    patches = tokens[:, -gh * gw:].reshape(-1, tokens.shape[-1]).float()  # (B·N, D)
    centred = patches - patches.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    scores = centred @ v[:n_components].T  # (B·N, n_components)
    low, high = scores.min(0).values, scores.max(0).values
    scores = (scores - low) / (high - low).clamp_min(1e-8)
    return scores.reshape(b, gh, gw, n_components).cpu().numpy()


def mean_attention(models: Mapping[str, nn.Module], raw: np.ndarray, *, img_size: int,
                   channel_names: Sequence[str], single_channel: str = "protein") -> dict[str, np.ndarray]:
    """Each backbone's last-block CLS attention, averaged over heads, on the same raw microscopy images:
    name → ``(B, grid_h, grid_w)``.

    A backbone reads the images' channels in their order; a single-channel encoder (DINO BoC) sees the
    ``single_channel`` channel alone, as bag of channels feeds it.
    """
    x = prepare_images(raw, img_size=img_size)
    alone = x[:, [list(channel_names).index(single_channel)]]
    return {name: cls_attention(model, alone if model.patch_embed.proj.in_channels == 1 else x).mean(axis=1)
            for name, model in models.items()}
