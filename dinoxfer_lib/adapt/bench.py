"""Benchmarks of issue 18: a LoRA training step and a segmentation-head epoch, each against a plain PyTorch loop.

- :func:`bench_lora_step`: ours is the step :func:`~dinoxfer_lib.adapt.train.run_adaptation` runs (images resident
  in memory, gathered by index and scaled on the device by the channel encoder, peft adapters injected in place,
  fused AdamW over the head and adapters). The reference is the script a user would write from peft's and
  PyTorch's documentation: ``peft.get_peft_model`` around the timm ViT, a ``DataLoader`` whose dataset scales each
  image with numpy percentiles, ``nn.Sequential`` head, torch's default AdamW. Both train the same rank on the same
  ``qkv`` projections with the same head; full fine-tuning's step is timed beside them for scale.
- :func:`bench_seg_head_epoch`: ours trains the head for one epoch on patch tokens cached once
  (:func:`~dinoxfer_lib.seg.train.compute_tokens`, timed on its own as ``token_cache_s``); the reference runs the
  frozen backbone under ``no_grad`` in every step of a ``DataLoader`` loop, which is what a script without a token
  cache does every epoch.

Both return dicts shaped like :mod:`dinoxfer_lib.bench`'s results (``benchmark``, sizes, ``device``, ``threads``,
``ours_s``, ``reference_s``, ``ratio``), so :func:`~dinoxfer_lib.bench.summary_table` can show them. :data:`SIZES`
holds the problem sizes ``dinoxfer bench`` uses (the demo's fit the book's CPU budget: the adaptation chapter
trains with batches of 32 images and 16 patches).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dinoxfer_lib.adapt.config import AdaptConfig, LoraSettings
from dinoxfer_lib.adapt.lora import add_lora, attention_projections, count_parameters
from dinoxfer_lib.adapt.model import AdaptedClassifier
from dinoxfer_lib.adapt.train import image_batch, make_optimizer
from dinoxfer_lib.devices import resolve_device, synchronize
from dinoxfer_lib.models.backbones import create_backbone
from dinoxfer_lib.models.channels import Scaling, make_encoder
from dinoxfer_lib.probes.mlp import make_mlp

SIZES: dict[str, dict[str, dict]] = {
    "lora_step": {
        "small": dict(arch="vit_micro", img_size=32, batch_size=16, steps=2),
        "demo": dict(arch="vit_micro", img_size=64, batch_size=32, steps=3),
        "paper": dict(arch="vit_base_patch8", img_size=224, batch_size=64, steps=5),
    },
    "seg_head_epoch": {
        "small": dict(arch="vit_micro", patch_px=32, n_patches=32, batch_size=8),
        "demo": dict(arch="vit_micro", patch_px=64, n_patches=128, batch_size=16),
        "paper": dict(arch="vit_base_patch8", patch_px=224, n_patches=2048, batch_size=32),
    },
}
N_CLASSES = 17  # OpenCell's


def bench_lora_step(*, arch: str = "vit_micro", img_size: int = 64, batch_size: int = 64, steps: int = 5,
                    rank: int = 8, device: str | None = None, seed: int = 0) -> dict:
    """Seconds per LoRA training step, ours and the reference, their ratio, and full fine-tuning's step.

    Parameters
    ----------
    arch, img_size, batch_size
        Backbone (randomly initialised: the weights do not change the cost), square input side, images per step.
    steps
        Timed steps per side, after one warm-up step each.
    rank
        LoRA rank on the ``qkv`` projections.
    device, seed
        ``None``: the GPU if there is one; data and initialisation seed.
    """
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    n = batch_size * (steps + 1)
    images = rng.integers(100, 4000, (n, 2, img_size, img_size)).astype(np.uint16)  # OpenCell-like raw counts
    labels = torch.from_numpy(rng.random((n, N_CLASSES)) < 0.1).float()
    torch.manual_seed(seed)
    backbone = create_backbone(arch, in_chans=2, img_size=img_size)
    encoder = make_encoder("native", backbone, target_channels=("protein", "nucleus"))
    settings = LoraSettings(rank=rank)

    def ours(regime: str) -> tuple[float, int]:
        model_encoder = copy.deepcopy(encoder)
        if regime == "lora":
            add_lora(model_encoder.backbone, settings, seed=seed)
        model = AdaptedClassifier.build(model_encoder, N_CLASSES, mean=torch.zeros(encoder.out_dim),
                                        std=torch.ones(encoder.out_dim), regime=regime, hidden=(512, 256),
                                        dropout=0.5).to(device).train()
        optimizer = make_optimizer(model, AdaptConfig(lora=settings))
        labels_t = labels.to(device)

        def step(i: int) -> None:
            rows = np.arange(i * batch_size, (i + 1) * batch_size)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(image_batch(images, rows, device))
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels_t[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        trainable = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        return _timed(step, steps, device), trainable

    def reference() -> float:
        from peft import LoraConfig, get_peft_model

        vit = get_peft_model(copy.deepcopy(backbone), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["qkv"]))
        head = make_mlp(backbone.embed_dim, N_CLASSES)
        model = nn.Sequential(vit, head).to(device).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        loader = DataLoader(_PercentileScaled(images, labels.numpy()), batch_size=batch_size)
        batches = iter(loader)

        def step(_: int) -> None:
            x, y = next(batches)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x.to(device))
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return _timed(step, steps, device)

    lora_s, lora_trainable = ours("lora")
    full_s, full_trainable = ours("full")
    reference_s = reference()
    return {
        "benchmark": "lora_step",
        "arch": arch,
        "img_size": img_size,
        "batch_size": batch_size,
        "steps": steps,
        "rank": rank,
        "lora_modules": len(attention_projections(backbone, settings.targets)),
        "device": device.type,
        "threads": torch.get_num_threads(),
        "ours_s": round(lora_s, 4),
        "reference_s": round(reference_s, 4),
        "ratio": round(reference_s / lora_s, 2),
        "full_finetune_s": round(full_s, 4),
        "lora_trainable_params": lora_trainable,
        "full_trainable_params": full_trainable,
        "backbone_params": count_parameters(backbone)[1],
    }


def bench_seg_head_epoch(*, arch: str = "vit_micro", patch_px: int = 64, n_patches: int = 320, batch_size: int = 16,
                         head: str = "conv", device: str | None = None, seed: int = 0) -> dict:
    """Seconds for one epoch of a segmentation head on a frozen backbone: ours (cached tokens) and the reference.

    Parameters
    ----------
    arch, patch_px, n_patches, batch_size
        Backbone (randomly initialised), EM patch side, training patches, patches per step.
    head
        ``linear`` or ``conv`` (:data:`~dinoxfer_lib.seg.config.HEADS`).
    device, seed
        ``None``: the GPU if there is one; data and initialisation seed.
    """
    from dinoxfer_lib.seg.config import SegConfig
    from dinoxfer_lib.seg.heads import make_seg_head, patch_tokens
    from dinoxfer_lib.seg.losses import dice_bce_loss
    from dinoxfer_lib.seg.train import compute_tokens, train_segmenter
    from dinoxfer_lib.data.em import make_lucchi_like

    device = resolve_device(device)
    n_slices = 16
    em = make_lucchi_like(n_stacks=math.ceil(n_patches / n_slices) + 1, n_slices=n_slices, size=patch_px,
                          test_stacks=1, seed=seed).split("train")
    em = em.subset(np.arange(min(n_patches, len(em))))
    torch.manual_seed(seed)
    backbone = create_backbone(arch, in_chans=3, img_size=patch_px)
    encoder = make_encoder("replication", backbone, target_channels=("em",), scaling=Scaling(bounds=((0.0,), (255.0,))))
    encoder = encoder.to(device).eval()
    config = SegConfig(head=head, epochs=1, batch_size=batch_size, regimes=("frozen",))

    compute_tokens(encoder, em.images[:batch_size], batch_size=batch_size, device=device)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    tokens = compute_tokens(encoder, em.images, batch_size=batch_size, device=device)
    synchronize(device)
    token_cache_s = time.perf_counter() - started
    train_segmenter(encoder, [em], config=config, regime="frozen", device=device, seed=seed, tokens=[tokens])
    synchronize(device)
    started = time.perf_counter()
    train_segmenter(encoder, [em], config=config, regime="frozen", device=device, seed=seed, tokens=[tokens])
    synchronize(device)
    ours_s = time.perf_counter() - started

    def reference_epoch() -> float:
        seg_head = make_seg_head(head, backbone.embed_dim, width=config.decoder_width).to(device).train()
        optimizer = torch.optim.AdamW(seg_head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loader = DataLoader(TensorDataset(torch.from_numpy(em.images), torch.from_numpy(em.masks)),
                            batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
        synchronize(device)
        started = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device).float(), y.to(device)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                tokens_batch = patch_tokens(encoder, x)
            logits = seg_head(tokens_batch, (patch_px, patch_px))
            loss = dice_bce_loss(logits.float(), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        synchronize(device)
        return time.perf_counter() - started

    reference_epoch()  # warm-up
    reference_s = reference_epoch()
    return {
        "benchmark": "seg_head_epoch",
        "arch": arch,
        "patch_px": patch_px,
        "n_patches": len(em),
        "batch_size": batch_size,
        "head": head,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "ours_s": round(ours_s, 3),
        "reference_s": round(reference_s, 3),
        "ratio": round(reference_s / ours_s, 2),
        "token_cache_s": round(token_cache_s, 3),
    }


class _PercentileScaled(Dataset):
    """The reference's dataset: one image at a time, each channel scaled from its 1st..99.8th percentile to [0, 1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels.astype(np.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i].astype(np.float32)
        lo, hi = np.percentile(image, [1.0, 99.8], axis=(1, 2), keepdims=True).astype(np.float32)
        scaled = np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
        return torch.from_numpy(scaled), torch.from_numpy(self.labels[i])


def _timed(step, steps: int, device: torch.device) -> float:
    """Mean seconds of ``step(1..steps)`` after ``step(0)`` as warm-up."""
    step(0)
    synchronize(device)
    started = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    synchronize(device)
    return (time.perf_counter() - started) / steps
