"""Embedding extraction: an ImageSet through a channel encoder into an AnnData (X = embeddings, obs = metadata).

Images are streamed batch by batch from the (memory-mapped) ImageSet, converted and scaled in torch, resized on
the device when the encoder expects another size, and embedded under ``torch.inference_mode`` — bf16 autocast on
CUDA, fp32 on CPU. Only one batch of images is ever held as floats; the embeddings themselves (N × D float32,
e.g. 6,301 × 1,536 ≈ 39 MB) are kept in memory and written as ``.h5ad`` so they open directly in scanpy.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dinoxfer_lib.data.dataset import ImageSet
from dinoxfer_lib.models.channels import ChannelEncoder, scale_per_image
from dinoxfer_lib.provenance import device_description


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def extract_embeddings(
    dataset: ImageSet,
    encoder: ChannelEncoder,
    *,
    batch_size: int = 64,
    img_size: int | None = None,
    device: str | torch.device | None = None,
    out_path: str | os.PathLike | None = None,
    description: dict | None = None,
):
    """Embed every image of ``dataset`` in order; return (and optionally write) an AnnData.

    Parameters
    ----------
    encoder
        A :class:`~dinoxfer_lib.models.channels.ChannelEncoder` (backbone + channel strategy + feature type).
    img_size
        Side the encoder sees; images of another size are resized (bilinear, antialiased) batch-wise on the device.
    description
        Extra provenance for ``uns["embedding"]`` (backbone name, checkpoint hash, ...).
    """
    import anndata

    device = torch.device(device) if device is not None else default_device()
    encoder = encoder.to(device).eval()
    n = len(dataset)
    X = np.empty((n, encoder.out_dim), dtype=np.float32)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    started = time.perf_counter()
    with torch.inference_mode(), autocast:
        for start in tqdm(range(0, n, batch_size), desc=f"embedding {dataset.domain}", disable=None, leave=False):
            raw = np.asarray(dataset.images[start : start + batch_size], dtype=np.float32)  # (B, C, H, W)
            x = torch.from_numpy(raw).to(device, non_blocking=True)
            if img_size is not None and tuple(x.shape[-2:]) != (img_size, img_size):
                x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", antialias=True, align_corners=False)
            x = scale_per_image(x)  # after resizing: percentiles of fewer pixels, same contrast
            X[start : start + len(raw)] = encoder(x).float().cpu().numpy()
    seconds = time.perf_counter() - started
    adata = anndata.AnnData(X=X, obs=dataset.obs.set_index("image_id", drop=False).rename_axis(None).astype(str))
    adata.obsm["labels"] = dataset.labels.astype(np.uint8)
    adata.obsm["grades"] = dataset.grades
    adata.uns["class_names"] = list(dataset.class_names)
    adata.uns["embedding"] = {
        **encoder.describe(),
        **(description or {}),
        "domain": dataset.domain,
        "synthetic": dataset.synthetic,
        "img_size": int(img_size or dataset.images.shape[-1]),
        "device": device_description() if device.type == "cuda" else "cpu",
        "dtype": "bfloat16" if device.type == "cuda" else "float32",
        "seconds": round(seconds, 3),
        "images_per_second": round(n / max(seconds, 1e-9), 2),
    }
    if out_path is not None:
        write_h5ad(adata, out_path)
    return adata


def write_h5ad(adata, path: str | os.PathLike) -> Path:
    """Write via a temporary file and a rename, so a crash never leaves half an embedding file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.h5ad")
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
