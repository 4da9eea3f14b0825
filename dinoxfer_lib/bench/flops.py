"""FLOPs of a ViT forward pass and model FLOP utilisation (MFU): how close a GPU benchmark comes to the card's peak.

FLOPs are counted analytically, a multiply-add being 2 FLOPs. With D the width, N = (side / patch)² + 1 tokens,
L blocks, C input channels and P the patch size:

- per block and token, the linear layers cost 24·D² (QKV 6·D², output projection 2·D², MLP with ratio 4 16·D²)
  and attention 4·N·D (scores Q·Kᵀ and the weighted sum A·V);
- the patch embedding costs 2·P²·C·D per patch token.

So ``FLOPs = L·N·(24·D² + 4·N·D) + (N - 1)·2·P²·C·D``; LayerNorm, softmax and GELU (< 2 %) are left out, which
is what PyTorch's ``FlopCounterMode`` counts too (tested to agree exactly). MFU divides the achieved rate by the
dense bf16 tensor-core peak of the card's datasheet: 989 TFLOP/s for an H100 SXM, and the H200 has the same
compute. A large bf16 matrix product reaches about 800 of those on the machines this book was measured on, so
about 80 % MFU is the practical ceiling.
"""

from __future__ import annotations

import torch

from dinoxfer_lib.models.backbones import architecture

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def vit_flops_per_image(arch: str, img_size: int, *, in_chans: int) -> float:
    """Forward FLOPs of one image through ``arch`` at ``img_size`` (formula in the module docstring)."""
    spec = architecture(arch)
    patches = (img_size // spec.patch_size) ** 2
    tokens, d = patches + 1, spec.embed_dim
    blocks = spec.depth * tokens * (24 * d**2 + 4 * tokens * d)
    return float(blocks + patches * 2 * spec.patch_size**2 * in_chans * d)


def gpu_utilisation(device: torch.device, images_per_s: float, flops_per_image: float) -> dict:
    """The card's name, GFLOP per image, achieved TFLOP/s and MFU (``None`` for a card whose peak is not listed)."""
    name = torch.cuda.get_device_name(device)
    tflops = images_per_s * flops_per_image / 1e12
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    return {"gpu": name, "gflops_per_image": round(flops_per_image / 1e9, 2), "tflops": round(tflops, 1),
            "mfu": round(tflops / peak, 3) if peak else None}
