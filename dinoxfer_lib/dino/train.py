"""DINO training loop (Caron et al. 2021, Algorithm 1), on a CPU, one GPU, or many under ``torchrun``; the same
loop trains DINOv2 (``dino.objective: dinov2``, :mod:`.dinov2`).

:func:`train_dino` reads top to bottom as the algorithm: data, networks, loss, optimiser, schedules, resume,
training. One step: draw the global batch's augmentation parameters from a generator keyed on (seed, epoch, step),
make this process's views on the device, teacher on the 2 global views and student on all views, DINO loss,
backward, per-parameter gradient clipping, last layer frozen in the first epoch(s), AdamW with scheduled lr and
weight decay, then the teacher as an EMA of the student (``torch._foreach_*``: a few kernels, not one per tensor).
DINOv2 also draws block masks for the student's global crops from (seed, epoch, step), and adds the iBOT
masked-patch loss and KoLeo to DINO's.

Scale-out. Under ``torchrun`` every process holds the student wrapped in ``DistributedDataParallel`` and takes its
contiguous share of each global batch of a per-epoch permutation (what ``DistributedSampler`` does, with the
permutation drawn once for all processes). The global batch, hence the lr (``lr * batch_size / 256``), is the same
for any number of processes, and augmentations are drawn for the whole global batch, so N processes compute what
one process computes (up to floating-point summation order and drop-path masks, which are per process).
Rank 0 writes checkpoints and logs.

The book's ``dino/<domain>`` stage and its ``torchrun`` command line are in :mod:`dinoxfer_lib.pipeline.dino`; a
call with an ``out_dir`` that holds a checkpoint resumes from it.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinoxfer_lib.devices import raw_tensor, raw_to_float, synchronize
from dinoxfer_lib.dino import distributed
from dinoxfer_lib.dino.augment import CropSpec, draw_params, multi_crop, step_generator, to_unit_range
from dinoxfer_lib.dino.checkpoint import BACKBONE_FILE, CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from dinoxfer_lib.dino.config import DinoConfig
from dinoxfer_lib.dino.dinov2 import TERM_COLUMNS, DINOv2Loss
from dinoxfer_lib.dino.head import DINOHead, MaskedMultiCropWrapper, MultiCropWrapper
from dinoxfer_lib.dino.health import STEP_COLUMNS, collapse_state, teacher_statistics, warn_collapse
from dinoxfer_lib.dino.loss import DINOLoss, teacher_temperature_schedule
from dinoxfer_lib.dino.masked_vit import add_mask_token
from dinoxfer_lib.dino.masking import block_masks
from dinoxfer_lib.dino.schedules import cosine_schedule
from dinoxfer_lib.divergence import stop_on_divergence
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.backbones import architecture, create_backbone
from dinoxfer_lib.models.checkpoints import load_backbone_weights, save_backbone, weights_path
from dinoxfer_lib.progress import progress_bar

HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.json"
# Keep the images on the GPU when they take less than this share of its free memory.
RESIDENT_SHARE = 0.25


class TrainingInterrupted(RuntimeError):
    """Raised by ``stop_after_epochs``: simulates a killed run (the last checkpoint stays for a resume)."""


class BatchTooLarge(ConfigError):
    """``dino.batch_size`` does not fit the GPU's memory: a setting to change, not a crash to debug."""


class _MemoryGuard:
    """Around one training step: a GPU out-of-memory inside is noted and swallowed, so that the half-built step
    (activations, autograd graph) is freed with its traceback before :meth:`check` raises a one-line
    :class:`BatchTooLarge` that names the setting and the ways out. (Raised from inside the handler, the new error
    would keep the out-of-memory error, and with it the activations, alive as its context.)"""

    def __init__(self, batch_size: int, world: int, device: torch.device) -> None:
        self.batch_size, self.world, self.device, self.failed = batch_size, world, device, False

    def __enter__(self) -> _MemoryGuard:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        self.failed = kind is not None and issubclass(kind, torch.OutOfMemoryError)
        return self.failed

    def check(self) -> None:
        if not self.failed:
            return
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        raise BatchTooLarge(
            f"dino.batch_size = {self.batch_size} ({self.batch_size // self.world} per process) does not fit in the "
            f"memory of {_describe(self.device)}: lower dino.batch_size (ViT-B/8 with the paper's crops: 128 fit an "
            f"H200, 64 an 80 GB H100) or spread it over more GPUs with torchrun"
        )


@dataclass
class TrainResult:
    """What :func:`train_dino` returns: the networks (student possibly DDP-unwrapped), the log and a summary."""

    student: MultiCropWrapper | MaskedMultiCropWrapper
    teacher: MultiCropWrapper | MaskedMultiCropWrapper
    history: pd.DataFrame
    summary: dict


def build_networks(config: DinoConfig, *, arch: str, img_size: int, in_chans: int) -> tuple[nn.Module, nn.Module]:
    """Student (with drop-path) and teacher (without), same weights; the teacher never receives gradients.

    DINO: backbone + head (:class:`MultiCropWrapper`). DINOv2: backbone with LayerScale and a mask token, DINO head,
    and an iBOT head unless it shares the DINO head (:class:`MaskedMultiCropWrapper`).
    """
    dinov2 = config.objective == "dinov2"

    def wrapper(drop_path: float) -> MultiCropWrapper | MaskedMultiCropWrapper:
        backbone = create_backbone(arch, in_chans=in_chans, img_size=img_size, drop_path_rate=drop_path,
                                   layerscale=config.layerscale_init if dinov2 else None)
        head = DINOHead(backbone.embed_dim, config.out_dim, hidden_dim=config.hidden_dim,
                        bottleneck_dim=config.bottleneck_dim, layers=config.head_layers,
                        norm_last_layer=config.norm_last_layer)
        if not dinov2:
            return MultiCropWrapper(backbone, head)
        patches = config.ibot_loss_weight > 0
        ibot_head = DINOHead(backbone.embed_dim, config.ibot_out_dim, hidden_dim=config.ibot_hidden_dim,
                             bottleneck_dim=config.ibot_bottleneck_dim, layers=config.ibot_head_layers,
                             norm_last_layer=config.norm_last_layer) if patches and config.ibot_separate_head else None
        if patches:
            add_mask_token(backbone)
        return MaskedMultiCropWrapper(backbone, head, ibot_head)

    student, teacher = wrapper(config.drop_path_rate), wrapper(0.0)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def parameter_groups(model: nn.Module) -> list[dict]:
    """Weights get weight decay; biases and norm parameters (every 1-D tensor) get none, as in official DINO."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`: fused kernels on CUDA, multi-tensor (foreach) on CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(parameter_groups(model), lr=0.0, **fast)


@torch.no_grad()
def clip_gradients(params: list[torch.Tensor], clip: float, mode: str) -> None:
    """Scale gradients so no tensor's (``per_parameter``, official) or the whole set's (``global``) norm > clip."""
    grads = [p.grad for p in params if p.grad is not None]
    if clip <= 0 or not grads:
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        return
    norms = torch.stack(torch._foreach_norm(grads))
    torch._foreach_mul_(grads, (clip / (norms + 1e-6)).clamp(max=1.0).unbind())


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """teacher ← m · teacher + (1 - m) · student, for all parameters at once."""
    t = list(teacher.parameters())
    s = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t, momentum)
    torch._foreach_add_(t, s, alpha=1 - momentum)


class DeviceImages:
    """Raw images, resident on the device when they fit, gathered by index into float batches on the device.

    They travel in their raw dtype (see :func:`~dinoxfer_lib.devices.raw_tensor`), as in the embedding stage.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, device: torch.device) -> None:
        self.uint16 = not isinstance(images, torch.Tensor) and images.dtype == np.uint16
        tensor = images if isinstance(images, torch.Tensor) else raw_tensor(np.asarray(images))
        fits = device.type != "cuda" or tensor.nbytes < RESIDENT_SHARE * torch.cuda.mem_get_info(device)[0]
        self.data = tensor.to(device) if fits else tensor.pin_memory()
        self.device = device
        self.resident = fits

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        raw = self.data[index.to(self.data.device)].to(self.device, non_blocking=True)
        return raw_to_float(raw, uint16=self.uint16)


def train_dino(
    images: np.ndarray | torch.Tensor,
    *,
    config: DinoConfig,
    arch: str,
    img_size: int,
    channel_names: tuple[str, ...],
    natural: bool = False,
    out_dir: str | os.PathLike,
    seed: int = 0,
    device: str | torch.device | None = None,
    init_from: str | os.PathLike | None = None,
    stop_after_epochs: int | None = None,
    progress: bool = True,
    config_key: str = "dino",
) -> TrainResult:
    """Train a ViT with DINO or DINOv2 on raw ``images`` (N, C, H, W); resume from ``out_dir`` when a checkpoint
    is there.

    Parameters
    ----------
    images
        Raw intensities (uint16, uint8 or float), e.g. an ImageSet's (memory-mapped) ``images``. Each batch is
        scaled to [0, 1] per image and channel as the embedding stage does (1-99.8 percentile window).
    config
        The recipe (``run.config.dino``); ``config.objective`` picks DINO or DINOv2.
    arch, img_size
        Backbone (``embed.arch``) and the side its position embeddings are laid out for (``embed.img_size``; also
        the global crop side unless ``config.global_crop_size`` sets another).
    channel_names
        Channel meaning; a ``protein`` channel gets protein rescaling and is never dropped.
    natural
        Photographs: official DINO colour augmentations and ImageNet standardisation instead of the microscopy ones.
    out_dir
        Where ``checkpoint.pth`` (every ``config.checkpoint_every`` epochs and at the end), ``history.csv``,
        ``summary.json`` and ``teacher_backbone.safetensors`` go (rank 0 only).
    seed
        Weights, epoch permutations, augmentations and drop-path masks all derive from it.
    device
        Default: this process's GPU if any, else the CPU.
    init_from
        Start student and teacher backbones from these weights instead of random ones (a registered weights name or
        a checkpoint path of any layout :mod:`~dinoxfer_lib.models.checkpoints` reads): Cell-DINO+ continues a
        natural-image backbone on microscopy. RGB patch filters are adapted to the images' channel count (timm's
        ``adapt_input_conv``); position embeddings are resized to ``img_size``. Heads start random. The weights'
        sha256 is kept in the checkpoint, and a resume with other weights is refused.
    stop_after_epochs
        Raise :class:`TrainingInterrupted` after this many epochs of this call (tests: simulate a killed run).
    progress
        Show a progress bar over the steps (:mod:`dinoxfer_lib.progress`: in a book build, one summary line).
    config_key
        Where ``config`` sits in the profile (``dino``, ``dinov2.recipe``), for the messages that name its keys.

    Returns
    -------
    TrainResult
        Student and teacher (unwrapped), the per-step history, and the summary also written to ``summary.json``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    rank, world = distributed.rank_and_world()
    device = torch.device(device) if device is not None else distributed.process_device()
    n_images, in_chans = len(images), int(images.shape[1])
    if in_chans != len(channel_names):
        raise DataError(f"images have {in_chans} channels, channel_names name {len(channel_names)}")
    global_size = config.global_crop_size or img_size
    _check_sizes(config, arch=arch, global_size=global_size, n_images=n_images, world=world, key=config_key)

    # ============ data: resident on the device, augmented there ============
    data = DeviceImages(images, device)
    steps_per_epoch = (config.images_per_epoch or n_images) // config.batch_size  # drop_last, as DINO's loader
    local_batch = config.batch_size // world
    protein = channel_names.index("protein") if "protein" in channel_names else None
    spec = CropSpec.from_config(config, global_size=global_size, n_channels=in_chans, protein_channel=protein,
                                natural=natural)

    # ============ networks: student and teacher start identical ============
    dinov2 = config.objective == "dinov2"
    torch.manual_seed(seed)
    student, teacher = build_networks(config, arch=arch, img_size=img_size, in_chans=in_chans)
    init = None
    if init_from is not None:
        report = load_backbone_weights(student.backbone, weights_path(init_from), adapt_in_chans=True)
        teacher.load_state_dict(student.state_dict())
        init = {"source": os.fspath(init_from), "sha256": report.sha256}
    student, teacher = student.to(device), teacher.to(device)
    student_module = student
    if world > 1:
        student = nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda"
                                                      else None)

    # ============ loss, optimiser, schedules (one value per step) ============
    if dinov2:
        dinov2_loss = DINOv2Loss(config, n_crops=2 + config.n_local_crops).to(device)
        dino_loss = dinov2_loss.dino
    else:
        dino_loss = DINOLoss(
            config.out_dim, n_crops=2 + config.n_local_crops,
            teacher_temps=teacher_temperature_schedule(config.warmup_teacher_temp, config.teacher_temp,
                                                       config.warmup_teacher_temp_epochs, config.epochs),
            student_temp=config.student_temp, center_momentum=config.center_momentum,
            sinkhorn_iterations=config.sinkhorn_iterations if config.centering == "sinkhorn_knopp" else None,
        ).to(device)
    optimizer = make_optimizer(student_module, device)
    schedules = _schedules(config, steps_per_epoch)

    # ============ resume ============
    start_epoch, rows = 0, []
    checkpoint = load_checkpoint(out_dir / CHECKPOINT_FILE)
    if checkpoint is not None:
        # a setting the checkpoint predates was trained with its default
        trained = {f.name: checkpoint["args"].get(f.name, f.default) for f in dataclasses.fields(DinoConfig)}
        differs = [k for k, v in dataclasses.asdict(config).items() if trained[k] != v]
        if differs:
            raise DataError(f"{out_dir / CHECKPOINT_FILE}: trained with another dino.{differs[0]} "
                            f"({trained[differs[0]]!r}); remove it or train into another folder")
        started_from = checkpoint.get("init_from") or {}
        if started_from.get("sha256") != (init or {}).get("sha256"):  # the file's content, wherever it lies now
            raise DataError(f"{out_dir / CHECKPOINT_FILE}: trained from other initial weights "
                            f"({started_from.get('source', 'random')}); remove it or train into another folder")
        student_module.load_state_dict(checkpoint["student"])
        teacher.load_state_dict(checkpoint["teacher"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        dino_loss.load_state_dict(checkpoint["dino_loss"])
        if dinov2:
            dinov2_loss.ibot.load_state_dict(checkpoint["ibot_loss"])
        start_epoch, rows = int(checkpoint["epoch"]), list(checkpoint.get("history", []))

    # ============ training ============
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and config.mixed_precision \
        else nullcontext()
    params = [p for p in student_module.parameters() if p.requires_grad]
    last_layer = [p for n, p in student_module.named_parameters() if "last_layer" in n]
    rows_here = slice(rank * local_batch, (rank + 1) * local_batch)
    max_side = 2 * global_size
    total_steps = (config.epochs - start_epoch) * steps_per_epoch
    what = f"{'DINOv2' if dinov2 else 'DINO'} {arch} on {n_images:,} images ({', '.join(channel_names)})"
    bar = progress_bar(total=total_steps, desc=what, unit="step", enabled=progress and rank == 0, summary=True)
    patch_grid = (global_size // architecture(arch).patch_size,) * 2
    draw_masks = dinov2 and config.ibot_loss_weight > 0
    images_seen, warned, warm_from = 0, set(), None
    student.train()
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(_key(seed, "drop_path", epoch, rank))  # drop-path masks: reproducible on resume
        order = epoch_order(n_images, config.images_per_epoch, step_generator(seed, "order", epoch))
        stats = []
        for step in range(steps_per_epoch):
            it = epoch * steps_per_epoch + step
            for i, group in enumerate(optimizer.param_groups):
                group["lr"] = float(schedules["lr"][it])
                if i == 0:  # only the weights are regularised
                    group["weight_decay"] = float(schedules["wd"][it])
            params_global = draw_params(spec, config.batch_size, step_generator(seed, "augment", epoch, step))
            index = order[step * config.batch_size:(step + 1) * config.batch_size][rows_here]
            x = to_unit_range(data.batch(index), max_side=max_side)
            views = multi_crop(x, spec, {k: v[rows_here] for k, v in params_global.items()})
            masks = None
            if draw_masks:  # the global batch's masks, crops view-major; this process's rows of each view
                rng = random.Random(step_generator(seed, "mask", epoch, step).initial_seed())
                masks = block_masks(2 * config.batch_size, patch_grid, ratio_range=tuple(config.mask_ratio_range),
                                    sample_probability=config.mask_sample_probability, rng=rng)
                masks = masks.view(2, config.batch_size, -1)[:, rows_here].reshape(2 * local_batch, -1).to(device)

            with _MemoryGuard(config.batch_size, world, device) as step_memory:
                with autocast:
                    if dinov2:
                        with torch.no_grad():  # the teacher sees the whole global crops
                            teacher_cls, teacher_patches, _ = teacher(views[:1], masks, mask_inputs=False)
                            cls_targets, patch_targets = dinov2_loss.teacher_targets(teacher_cls, teacher_patches,
                                                                                     epoch)
                            health = teacher_statistics(cls_targets, dino_loss.center)
                        cls_logits, patch_logits, global_cls = student(views, masks, mask_inputs=True)
                        loss, terms = dinov2_loss(cls_logits, patch_logits, global_cls, cls_targets, patch_targets,
                                                  masks)
                    else:
                        with torch.no_grad():
                            teacher_out = teacher(views[:1])  # only the 2 global views pass through the teacher
                            probs = dino_loss.teacher_probabilities(teacher_out, epoch)  # what the loss sees (log)
                            health = teacher_statistics(probs, dino_loss.center)
                        student_out = student(views)
                        loss = dino_loss(student_out, teacher_out, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(params, config.clip_grad, config.clip_mode)
                if epoch < config.freeze_last_layer:
                    for p in last_layer:
                        p.grad = None  # the prototypes stay fixed while the rest of the network settles
                optimizer.step()
                update_teacher(student_module, teacher, float(schedules["momentum"][it]))
            step_memory.check()

            if dinov2:  # total, health, then the three terms
                stats.append(torch.cat((terms[:1], health, terms[1:])))
            else:
                stats.append(torch.cat((loss.detach().float()[None], health)))
            bar.update(1)
            if warm_from is None:  # throughput excludes the first step (allocator, kernels, thread pools)
                synchronize(device)
                warm_from = (time.perf_counter(), images_seen + config.batch_size)
        synchronize(device)
        images_seen, loop_end = images_seen + steps_per_epoch * config.batch_size, time.perf_counter()
        columns = STEP_COLUMNS + TERM_COLUMNS if dinov2 else STEP_COLUMNS
        rows.extend(_epoch_rows(stats, epoch, steps_per_epoch, schedules, dino_loss, columns))
        state = collapse_state(rows[-1]["teacher_entropy"], rows[-1]["argmax_share"], config.out_dim)
        for row in rows[-steps_per_epoch:]:
            row["collapse"] = state
        if state and (epoch > 0 or epoch == config.epochs - 1) and state not in warned:
            warn_collapse(state, epoch)
            warned.add(state)
        bar.set_postfix(loss=f"{rows[-1]['loss']:.3f}", entropy=f"{rows[-1]['teacher_entropy']:.2f}")
        done = epoch + 1
        if distributed.is_main_process() and (done % config.checkpoint_every == 0 or done == config.epochs):
            extra = {"ibot_loss": dinov2_loss.ibot.state_dict()} if dinov2 else {}
            if init is not None:
                extra["init_from"] = init
            save_checkpoint(
                out_dir / CHECKPOINT_FILE, student=student_module.state_dict(), teacher=teacher.state_dict(),
                optimizer=optimizer.state_dict(), epoch=done, args=dataclasses.asdict(config),
                dino_loss=dino_loss.state_dict(), history=rows, **extra,
            )
        if stop_after_epochs is not None and done - start_epoch >= stop_after_epochs and done < config.epochs:
            bar.close()
            raise TrainingInterrupted(f"stopped after epoch {done} as asked (stop_after_epochs={stop_after_epochs})")
    bar.close()

    history = pd.DataFrame(rows)
    throughput = None
    if warm_from is not None and images_seen > warm_from[1]:
        throughput = round((images_seen - warm_from[1]) / (loop_end - warm_from[0]), 2)
    summary = {
        "objective": config.objective,
        "init_from": init,
        "epochs": config.epochs,
        "resumed_from_epoch": start_epoch,
        "steps": len(history),
        "n_images": n_images,
        "batch_size": config.batch_size,
        "world_size": world,
        "arch": arch,
        "img_size": img_size,
        "channels": list(channel_names),
        "device": _describe(device),
        "images_per_s": throughput,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "final_loss": float(history["loss"].iloc[-1]) if len(history) else None,
        "final_teacher_entropy": float(history["teacher_entropy"].iloc[-1]) if len(history) else None,
        "max_entropy": math.log(config.out_dim),
        "collapse": str(history["collapse"].iloc[-1]) if len(history) else "",
    }
    if distributed.is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        save_backbone(teacher.backbone, out_dir / BACKBONE_FILE)
        history.to_csv(out_dir / HISTORY_FILE, index=False)
        (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    distributed.barrier()
    return TrainResult(student_module, teacher, history, summary)


def epoch_order(n_images: int, images_per_epoch: int | None, generator: torch.Generator) -> torch.Tensor:
    """The image indices of one epoch: a random order of all ``n_images``, or with ``images_per_epoch`` that many
    taken from consecutive random orders (each image at most once per order)."""
    if images_per_epoch is None:
        return torch.randperm(n_images, generator=generator)
    orders = [torch.randperm(n_images, generator=generator) for _ in range(-(-images_per_epoch // n_images))]
    return torch.cat(orders)[:images_per_epoch]


def _check_sizes(config: DinoConfig, *, arch: str, global_size: int, n_images: int, world: int, key: str) -> None:
    patch = architecture(arch).patch_size
    if global_size % patch or config.local_crop_size % patch:
        raise ConfigError(
            f"config key '{key}.local_crop_size' = {config.local_crop_size} / global crop side {global_size}: "
            f"expected multiples of the {arch} patch ({patch} px)"
        )
    if config.batch_size % world:
        raise ConfigError(f"config key '{key}.batch_size' = {config.batch_size}: expected a multiple of the "
                          f"{world} processes")
    if n_images < config.batch_size:
        raise ConfigError(f"config key '{key}.batch_size' = {config.batch_size}: expected <= the {n_images} "
                          "training images")
    if config.images_per_epoch is not None and config.images_per_epoch < config.batch_size:
        raise ConfigError(f"config key '{key}.images_per_epoch' = {config.images_per_epoch}: expected >= "
                          f"{key}.batch_size ({config.batch_size})")


def _schedules(config: DinoConfig, steps_per_epoch: int) -> dict[str, np.ndarray]:
    """lr (linear scaling rule: lr × global batch / 256), weight decay and teacher momentum, one value per step."""
    common = {"epochs": config.epochs, "steps_per_epoch": steps_per_epoch}
    return {
        "lr": cosine_schedule(config.lr * config.batch_size / 256, config.min_lr,
                              warmup_epochs=config.warmup_epochs, **common),
        "wd": cosine_schedule(config.weight_decay, config.weight_decay_end, **common),
        "momentum": cosine_schedule(config.momentum_teacher, 1.0, **common),
    }


def _epoch_rows(stats: list[torch.Tensor], epoch: int, steps_per_epoch: int, schedules: dict, dino_loss: DINOLoss,
                columns: tuple[str, ...]) -> list[dict]:
    """One history row per step; the device statistics are copied to the host once per epoch (and a non-finite
    loss stops training there, before the epoch's checkpoint is written)."""
    values = torch.stack(stats).cpu().numpy()  # (steps, len(columns)): loss, 4 health values[, 3 DINOv2 terms]
    stop_on_divergence(values[:, 0], what="DINO loss", steps_per_epoch=steps_per_epoch,
                       first_step=epoch * steps_per_epoch,
                       hint="lower dino.lr, or clip gradients (dino.clip_grad, e.g. 3.0)")
    rows = []
    for step, row in enumerate(values):
        it = epoch * steps_per_epoch + step
        rows.append({
            "epoch": epoch, "step": it, **dict(zip(columns, map(float, row))),
            "lr": float(schedules["lr"][it]), "weight_decay": float(schedules["wd"][it]),
            "teacher_momentum": float(schedules["momentum"][it]),
            "teacher_temp": dino_loss.teacher_temps[min(epoch, len(dino_loss.teacher_temps) - 1)],
        })
    return rows


def _key(seed: int, *parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _describe(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
