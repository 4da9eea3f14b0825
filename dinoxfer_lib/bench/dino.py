"""DINO training throughput: our step against a step built the usual way, same model, same batch, same run.

The reference is what a user would otherwise run: the official ``main_dino.py`` with its defaults and
DINO4Cells-style augmentations. A ``Dataset`` whose ``__getitem__`` scales one image with NumPy percentiles and makes
its 2 global + n local views with torchvision's per-image transforms (``RandomResizedCrop`` with antialiasing,
flips, ``RandomPerspective`` for cell warping, protein rescaling and per-channel brightness/contrast in Python),
batched by a ``DataLoader`` (``main_dino.py``'s 10 worker processes on a GPU machine, as many as it has cores to
spare; none on the CPU, where they would only compete for the same cores); on a GPU fp16 autocast with a
``GradScaler`` (``main_dino.py``'s default ``use_fp16``), on a CPU fp32; the official loss (a double loop over view
pairs), per-parameter clipping (after unscaling) and teacher EMA as Python loops over parameters;
``torch.optim.AdamW`` with its default implementation. Ours is :func:`~dinoxfer_lib.dino.train.
train_dino` itself: data resident on the device, all views of a batch made by a few tensor ops, bf16 autocast and
fused AdamW on CUDA (multi-tensor AdamW on the CPU), foreach clipping and EMA.

Images/s count training images (each with all its views) per second of training loop. FLOPs per image (for MFU on
GPUs) = 3 x the student's forward FLOPs over all views (forward + backward ~ 3 forwards) + the teacher's forward over
the 2 global views, each from :func:`~dinoxfer_lib.bench.flops.vit_flops_per_image`; the head is left out.

On a GPU, ``batch_sweep`` also times our step alone at larger batches until one no longer fits, and the largest
that fits projects the paper's 300-epoch OpenCell run (90 % of 6,301 images) on one such GPU.

Beside the DINO step, the same call times our DINOv2 step (``objective: dinov2`` with DINOv2's loss settings: masked
global crops for the student, the iBOT patch loss through the shared head, KoLeo, LayerScale) on the same model,
images, crops and batch, and reports its images/s as a ratio to the DINO step's (below 1: the cost of DINOv2's
additions). Its FLOPs per image are the DINO step's: masked patches are replaced by a token, not dropped, and the
heads are left out of both counts.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dinoxfer_lib import paper
from dinoxfer_lib.bench.flops import gpu_utilisation, vit_flops_per_image
from dinoxfer_lib.devices import resolve_device, synchronize
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.train import BatchTooLarge, build_networks, train_dino

CHANNELS = ("protein", "nucleus")
PAPER_DINO_IMAGES = round(0.9 * paper.OPENCELL_IMAGES)  # the paper's 90 % DINO training split
PAPER_DINO_EPOCHS = paper.TABLE_III["opencell_native"][2]
# main_dino.py's default --num_workers.
OFFICIAL_WORKERS = 10


class _ReferenceDataset(torch.utils.data.Dataset):
    """Per-image CPU augmentations, torchvision style: one Python call chain per image and view."""

    def __init__(self, images: np.ndarray, config: DinoConfig, img_size: int) -> None:
        from torchvision.transforms import v2

        self.images = images
        self.config = config

        def geometry(size: int, scale: tuple[float, float]):
            return v2.Compose([
                v2.RandomResizedCrop(size, scale=scale, antialias=True),
                v2.RandomHorizontalFlip(config.flip_p),
                v2.RandomVerticalFlip(config.flip_p),
                v2.RandomPerspective(distortion_scale=2 * config.warp_max, p=config.warp_p),
            ])

        self.global_crop = geometry(img_size, tuple(config.global_crop_scale))
        self.local_crop = geometry(config.local_crop_size, tuple(config.local_crop_scale))

    def __len__(self) -> int:
        return len(self.images)

    def _intensity(self, view: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if np.random.rand() < cfg.protein_rescale_p:
            view[0] = view[0] * np.random.uniform(0, 2) / max(float(view[0].max()), 1e-6)
        for c in range(view.shape[0]):
            view[c] = view[c] * max(0.5, np.random.normal(1, cfg.brightness_sigma))
            mean = view[c].mean()
            view[c] = ((view[c] - mean) * max(0.5, np.random.normal(1, cfg.contrast_sigma)) + mean).clamp(min=0)
        return view

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        image = self.images[i].astype(np.float32)
        lo = np.percentile(image, 1, axis=(1, 2), keepdims=True)
        hi = np.percentile(image, 99.8, axis=(1, 2), keepdims=True)
        image = torch.from_numpy(np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0, 1))
        views = [self.global_crop(image) for _ in range(2)]
        views += [self.local_crop(image) for _ in range(self.config.n_local_crops)]
        return [self._intensity(v) for v in views]


def _reference_loss(student_out, teacher_out, center, *, n_crops, student_temp=0.1, teacher_temp=0.04):
    """The official DINOLoss.forward: a double loop over (teacher view, student view) pairs."""
    s = (student_out / student_temp).chunk(n_crops)
    t = F.softmax((teacher_out - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, pairs = 0, 0
    for iq, q in enumerate(t):
        for v in range(n_crops):
            if v != iq:
                total = total + torch.sum(-q * F.log_softmax(s[v], dim=-1), dim=-1).mean()
                pairs += 1
    return total / pairs


def reference_recipe(device: torch.device) -> str:
    """How the reference trains on ``device`` (recorded with every result, since it sets what a ratio means)."""
    if device.type == "cpu":
        return "fp32, DataLoader without workers"
    return f"fp16 autocast + GradScaler, {_reference_workers(device)} DataLoader workers (main_dino.py defaults)"


def _reference_workers(device: torch.device) -> int:
    return 0 if device.type == "cpu" else min(OFFICIAL_WORKERS, (os.cpu_count() or 2) - 1)


def _reference_steps(images: np.ndarray, config: DinoConfig, *, arch: str, img_size: int, device: torch.device,
                     steps: int) -> float:
    """Images/s of ``steps`` reference steps (after one warm-up step)."""
    torch.manual_seed(0)
    student, teacher = build_networks(config, arch=arch, img_size=img_size, in_chans=len(CHANNELS))
    student, teacher = student.to(device), teacher.to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.04)
    fp16 = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    center = torch.zeros(1, config.out_dim, device=device)
    loader = torch.utils.data.DataLoader(_ReferenceDataset(images, config, img_size), batch_size=config.batch_size,
                                         shuffle=True, drop_last=True, num_workers=_reference_workers(device),
                                         pin_memory=device.type == "cuda")
    n_crops = 2 + config.n_local_crops
    done, started = -1, None
    while done < steps:
        for views in loader:
            if done == 0:
                synchronize(device)
                started = time.perf_counter()
            views = [v.to(device, non_blocking=True) for v in views]
            with torch.autocast(device.type, dtype=torch.float16, enabled=fp16):
                with torch.no_grad():
                    teacher_out = teacher(views[:2])
                student_out = student(views)
                loss = _reference_loss(student_out, teacher_out, center, n_crops=n_crops)
            optimizer.zero_grad()
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # clip the true gradients, as main_dino.py does
            else:
                loss.backward()
            for p in student.parameters():  # official clip_gradients
                if p.grad is not None:
                    coef = config.clip_grad / (p.grad.norm(2) + 1e-6)
                    if coef < 1:
                        p.grad.mul_(coef)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            with torch.no_grad():
                for ps, pt in zip(student.parameters(), teacher.parameters()):
                    pt.data.mul_(0.996).add_((1 - 0.996) * ps.detach().data)
                center = center * 0.9 + teacher_out.float().mean(0, keepdim=True) * 0.1
            done += 1
            if done == steps:
                break
    synchronize(device)
    return steps * config.batch_size / (time.perf_counter() - started)


def _ours(images: np.ndarray, config: DinoConfig, *, arch: str, img_size: int, device: torch.device) -> float:
    """Images/s of train_dino's loop (setup excluded), one epoch over ``images``."""
    with tempfile.TemporaryDirectory() as folder:
        result = train_dino(images, config=config, arch=arch, img_size=img_size, channel_names=CHANNELS,
                            out_dir=folder, device=device, progress=False)
    return result.summary["images_per_s"]


def _flops_per_image(arch: str, img_size: int, n_local_crops: int, local_crop_size: int) -> float:
    """Training FLOPs of one image with all its views (module docstring)."""
    global_view = vit_flops_per_image(arch, img_size, in_chans=len(CHANNELS))
    local_view = vit_flops_per_image(arch, local_crop_size, in_chans=len(CHANNELS))
    return 3 * (2 * global_view + n_local_crops * local_view) + 2 * global_view


def _ours_with_memory(images: np.ndarray, config: DinoConfig, *, arch: str, img_size: int,
                      device: torch.device) -> tuple[float, float | None]:
    """(images/s, peak GiB allocated on the GPU during the run; None on a CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rate = _ours(images, config, arch=arch, img_size=img_size, device=device)
    return rate, torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _batch_sweep(images: np.ndarray, config: DinoConfig, batch_sizes: Sequence[int], *, arch: str, img_size: int,
                 steps: int, device: torch.device) -> list[dict]:
    """Our step at each batch size in turn, until one runs out of GPU memory (recorded as ``fits: False``)."""
    flops = _flops_per_image(arch, img_size, config.n_local_crops, config.local_crop_size)
    rows = []
    for batch_size in batch_sizes:
        sized = dataclasses.replace(config, batch_size=batch_size)
        batch_images = np.resize(images, (steps * batch_size, *images.shape[1:]))
        try:
            rate, peak = _ours_with_memory(batch_images, sized, arch=arch, img_size=img_size, device=device)
        except BatchTooLarge:
            rows.append({"batch_size": batch_size, "fits": False})
            break
        row = {"batch_size": batch_size, "fits": True, "images_per_s": round(rate, 2),
               "peak_memory_gib": None if peak is None else round(peak, 2)}
        if device.type == "cuda":
            row.update(gpu_utilisation(device, rate, flops))
        rows.append(row)
    return rows


def bench_dino(
    *,
    arch: str = "vit_micro",
    img_size: int = 64,
    batch_size: int = 64,
    steps: int = 4,
    n_local_crops: int = 2,
    local_crop_size: int = 32,
    out_dim: int = 4096,
    device: str | None = None,
    rounds: int = 2,
    batch_sweep: Sequence[int] = (),
    seed: int = 0,
) -> dict:
    """Training images/s of ours and of the reference on the same synthetic 2-channel uint16 images, and the ratio.

    Parameters
    ----------
    arch, img_size
        Backbone and global crop side (``vit_micro`` at 64 px on CPU; ``vit_base_patch8`` at 224 on a GPU).
    batch_size, steps
        Images per optimiser step and timed steps per round (ours runs ``steps`` steps as one epoch).
    n_local_crops, local_crop_size, out_dim
        Multi-crop and head size (paper: 8, 96, 65,536).
    rounds
        Ours and the reference alternate this many times; each keeps its best round.
    batch_sweep
        Larger batch sizes to time ours alone at (one round each), stopping at the first that does not fit.

    Returns
    -------
    dict
        ``ours_images_per_s``, ``reference_images_per_s``, ``ratio``; ``dinov2_images_per_s`` and
        ``dinov2_ratio`` (our DINOv2 step over our DINO step); on CUDA also ``peak_memory_gib`` (ours),
        ``tflops``, ``mfu`` and ``gflops_per_image``, and ``dinov2_peak_memory_gib``, ``dinov2_tflops``,
        ``dinov2_mfu``. With ``batch_sweep``: ``sweep`` (one row per batch size:
        images/s, peak memory, MFU), ``largest_batch`` that fit and ``paper_run_hours``, the 300-epoch projection
        at that batch.
    """
    device = resolve_device(device or None)
    config = DinoConfig(epochs=1, batch_size=batch_size, out_dim=out_dim, n_local_crops=n_local_crops,
                        local_crop_size=local_crop_size, warmup_epochs=0, freeze_last_layer=0,
                        checkpoint_every=1)
    images = np.random.default_rng(seed).integers(200, 40000, (steps * batch_size, 2, img_size, img_size),
                                                  dtype=np.uint16)
    dinov2 = dataclasses.replace(config, objective="dinov2")
    for recipe in (config, dinov2):  # warm-up
        _ours(images[:batch_size], recipe, arch=arch, img_size=img_size, device=device)
    ours, ours_v2, reference, peak, peak_v2 = 0.0, 0.0, 0.0, None, None
    for _ in range(rounds):
        rate, memory = _ours_with_memory(images, config, arch=arch, img_size=img_size, device=device)
        ours, peak = max(ours, rate), memory
        rate, memory = _ours_with_memory(images, dinov2, arch=arch, img_size=img_size, device=device)
        ours_v2, peak_v2 = max(ours_v2, rate), memory
        reference = max(reference, _reference_steps(images, config, arch=arch, img_size=img_size, device=device,
                                                     steps=steps))
    result = {
        "benchmark": "dino",
        "arch": arch,
        "img_size": img_size,
        "local_crop_size": local_crop_size,
        "n_local_crops": n_local_crops,
        "out_dim": out_dim,
        "batch_size": batch_size,
        "steps": steps,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "ours_images_per_s": round(ours, 2),
        "reference_images_per_s": round(reference, 2),
        "ratio": round(ours / reference, 2),
        "reference": reference_recipe(device),
        "rounds": rounds,
        "dinov2_images_per_s": round(ours_v2, 2),
        "dinov2_ratio": round(ours_v2 / ours, 2),
    }
    if device.type == "cuda":
        flops = _flops_per_image(arch, img_size, n_local_crops, local_crop_size)
        result["peak_memory_gib"] = round(peak, 2)
        result.update(gpu_utilisation(device, ours, flops))
        result["dinov2_peak_memory_gib"] = round(peak_v2, 2)
        result.update({f"dinov2_{key}": value for key, value in gpu_utilisation(device, ours_v2, flops).items()
                       if key in ("tflops", "mfu")})
    if batch_sweep:
        sweep = _batch_sweep(images, config, batch_sweep, arch=arch, img_size=img_size, steps=steps, device=device)
        fitting = [row for row in [{"batch_size": batch_size, "images_per_s": ours}, *sweep] if row.get("fits", True)]
        best = max(fitting, key=lambda row: row["batch_size"])
        result.update({
            "sweep": sweep,
            "largest_batch": best["batch_size"],
            "paper_run_hours": round(PAPER_DINO_EPOCHS * PAPER_DINO_IMAGES / best["images_per_s"] / 3600, 1),
        })
    return result
