"""Embedding throughput: our batched extractor vs the loop a typical analysis script would write.

The reference does per-image preprocessing in NumPy (percentile scaling, ``skimage.transform.resize`` when the
size differs), stacks a small batch, and calls the model in fp32 under ``no_grad`` on the CPU — the common shape of
"embed my images" scripts. Both see the same images and the same model.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.embed import default_device, extract_embeddings
from dinoxfer_lib.models.backbones import architecture, create_backbone
from dinoxfer_lib.models.channels import make_encoder

# Dense bf16 tensor-core peak (TFLOP/s) for MFU; H100 SXM and H200 share the same compute.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def vit_flops_per_image(arch: str, img_size: int) -> float:
    """Forward FLOPs of a ViT: per block, 24·T·D² for the linear layers (qkv, proj, 2 MLP with ratio 4) and
    4·T²·D for attention scores and weighted sum, T = tokens incl. CLS (multiply-add = 2 FLOPs)."""
    spec = architecture(arch)
    tokens = (img_size // spec.patch_size) ** 2 + 1
    return spec.depth * (24 * tokens * spec.embed_dim**2 + 4 * tokens**2 * spec.embed_dim)


def _reference_embed(images: np.ndarray, model: torch.nn.Module, *, img_size: int, batch_size: int) -> np.ndarray:
    from skimage.transform import resize

    out = []
    for start in range(0, len(images), batch_size):
        batch = []
        for image in images[start : start + batch_size]:
            image = image.astype(np.float32)
            lo = np.percentile(image, 1, axis=(1, 2), keepdims=True)
            hi = np.percentile(image, 99.8, axis=(1, 2), keepdims=True)
            image = np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
            if image.shape[-1] != img_size:
                image = resize(image, (image.shape[0], img_size, img_size), anti_aliasing=True)
            batch.append(image)
        with torch.no_grad():
            out.append(model.forward_features(torch.from_numpy(np.stack(batch)).float())[:, 0].numpy())
    return np.concatenate(out)


def bench_embedding(
    *, arch: str = "vit_micro", img_size: int = 64, n_images: int = 512, batch_size: int = 128,
    reference_batch_size: int = 8, source_scale: float = 2.0, device: str | None = None, seed: int = 0,
) -> dict:
    """Images/s of ours and of the reference on the same synthetic 2-channel uint16 images; their ratio."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    # Stored images are larger than the model input, as OpenCell's 600 px fields of view are for a 224 px ViT.
    side = int(img_size * source_scale)
    images = rng.integers(200, 40000, (n_images, 2, side, side)).astype(np.uint16)
    dataset = ImageSet(
        images=images,
        labels=np.zeros((n_images, 1), bool),
        grades=np.zeros((n_images, 1), np.int8),
        obs=pd.DataFrame({"image_id": [f"b{i}" for i in range(n_images)], "group": "", "batch": "", "domain": "bench"}),
        class_names=("none",),
        channel_names=("protein", "nucleus"),
        domain="bench",
    )
    torch.manual_seed(seed)
    backbone = create_backbone(arch, in_chans=2, img_size=img_size).eval()
    encoder = make_encoder("native", backbone, target_channels=dataset.channel_names)
    device = torch.device(device) if device else default_device()

    warmup = dataset.subset(np.arange(min(batch_size, n_images)))
    extract_embeddings(warmup, encoder, batch_size=batch_size, img_size=img_size, device=device)
    started = time.perf_counter()
    extract_embeddings(dataset, encoder, batch_size=batch_size, img_size=img_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours = n_images / (time.perf_counter() - started)

    reference_model = create_backbone(arch, in_chans=2, img_size=img_size).eval()
    reference_model.load_state_dict(backbone.state_dict())
    n_ref = min(n_images, 256)
    started = time.perf_counter()
    _reference_embed(images[:n_ref], reference_model.cpu(), img_size=img_size, batch_size=reference_batch_size)
    reference = n_ref / (time.perf_counter() - started)

    result = {
        "benchmark": "embedding",
        "arch": arch,
        "img_size": img_size,
        "stored_size": side,
        "reference_batch_size": reference_batch_size,
        "n_images": n_images,
        "device": device.type,
        "ours_images_per_s": round(ours, 1),
        "reference_images_per_s": round(reference, 1),
        "ratio": round(ours / reference, 2),
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tflops = ours * vit_flops_per_image(arch, img_size) / 1e12
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        result.update({"gpu": name, "tflops": round(tflops, 1), "mfu": round(tflops / peak, 3) if peak else None})
    return result
