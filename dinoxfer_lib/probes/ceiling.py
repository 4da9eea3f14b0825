"""The supervised ceiling: a small CNN trained with labels on the raw target images, on the probes' own folds.

Frozen features and a probe can reach at most what the labels allow to be learnt from the images; a network
trained end to end on those labels estimates that, so Table III can say how much of it each backbone's features
reach (issue 14; the paper has no such row). Its companion, the floor, is the probe on randomly initialised
backbones (``random init`` embeddings).

Everything but the model is the probes': the same folds (each fold model trains on its fold's training images),
the same resampling of rare labels, the same scoring (:func:`~dinoxfer_lib.probes.scoring.score_fold`: train,
validation and the same test images, the fixed threshold and optionally thresholds tuned on validation), and a
:class:`~dinoxfer_lib.probes.result.ProbeResult`, so its row joins Table III with ``ProbeResult.concat``.

The network (:func:`make_cnn`) is a plain stack of strided 3x3 convolution stages with BatchNorm and ReLU, then
average- and max-pooling (a few bright dots matter as much as a diffuse stain) and one linear layer. It trains
with AdamW on a one-cycle schedule, each image scaled to its own 1-99.8 percentile window per channel (what the
plate changes, gain and offset, is divided out) and, by default, randomly flipped and turned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.devices import resolve_device
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.metrics import macro_f1
from dinoxfer_lib.models.channels import Scaling, scale_intensities
from dinoxfer_lib.probes.config import CeilingConfig
from dinoxfer_lib.probes.keyed_random import model_key
from dinoxfer_lib.probes.protocol import check_split, resampling_weights
from dinoxfer_lib.probes.result import HISTORY_COLUMNS, SCORE_COLUMNS, ProbeResult
from dinoxfer_lib.probes.scoring import score_fold, threshold_label

CEILING_SET = "supervised CNN"  # the row's ``set`` in the result
CEILING_PROBE = "cnn"  # and its ``probe``
FLOOR_SET = "random init"  # the floor's ``set`` (its probe is the paper's MLP)
PREDICT_CHUNK = 256  # images per forward pass when predicting
_SCALING = Scaling()  # per image and channel, 1-99.8 percentile window to [0, 1]


def make_cnn(in_chans: int, n_classes: int, *, widths: Sequence[int] = (32, 64, 128, 256),
             convs_per_stage: int = 2) -> nn.Sequential:
    """Strided conv stages (Conv-BN-ReLU, the first of each stage with stride 2), avg+max pooling, a linear head."""
    layers: list[nn.Module] = []
    for width in widths:
        for i in range(convs_per_stage):
            layers += [nn.Conv2d(in_chans, width, 3, stride=2 if i == 0 else 1, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_chans = width
    return nn.Sequential(*layers, _AvgMaxPool(), nn.Linear(2 * in_chans, n_classes))


class _AvgMaxPool(nn.Module):
    """(B, C, H, W) → (B, 2C): the mean and the maximum of each channel over the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


def prepare_images(images: np.ndarray, *, img_size: int | None = None, device: torch.device | str = "cpu",
                   chunk: int = 512) -> torch.Tensor:
    """Raw ``(N, C, H, W)`` images → float32 ``(N, C, S, S)`` in [0, 1] on ``device`` (channels-last).

    Each image and channel is scaled to its own 1-99.8 percentile window and, with ``img_size``, resized
    (bilinear, antialiased). Done in chunks, so a memory-mapped dataset is never converted whole.
    """
    if np.ndim(images) != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"the ceiling CNN needs square (N, C, H, W) images, got shape {images.shape}")
    side = img_size or images.shape[2]
    out = torch.empty((len(images), images.shape[1], side, side), dtype=torch.float32, device=device)
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(np.asarray(images[start : start + chunk], dtype=np.float32)).to(device)
        x = scale_intensities(x, _SCALING)
        if side != x.shape[-1]:
            x = nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = x
    return out.contiguous(memory_format=torch.channels_last)


def dihedral(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (B, C, S, S) mirrored (code >= 4) and turned by ``code % 4`` quarter turns."""
    out = torch.empty_like(x)
    for code in range(8):
        index = (codes == code).nonzero().squeeze(1)
        if len(index):
            part = x[index].flip(-1) if code >= 4 else x[index]
            out[index] = torch.rot90(part, code % 4, (-2, -1))
    return out


def train_ceiling(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    split: Split,
    config: CeilingConfig,
    class_names: Sequence[str],
    threshold: float = 0.5,
    tune_thresholds: bool = False,
    device: str | torch.device | None = None,
    seed: int = 0,
    set_name: str = CEILING_SET,
) -> ProbeResult:
    """Train one CNN per fold on the labelled images and score it as the probes are scored.

    Parameters
    ----------
    images
        ``(N, C, H, W)`` raw images of the whole dataset (test images included; they are only predicted).
    labels
        ``(N, K)`` boolean labels.
    split
        The probes' split: fold model k trains on ``split.folds[k][0]``, is monitored and scored on
        ``split.folds[k][1]`` and scored on ``split.test``.
    config
        The network and its training (``config.validate("ceiling")`` is applied).
    class_names
        The K class names.
    threshold, tune_thresholds
        The probes' decision rule (``probe.threshold``, ``probe.tune_thresholds``), so the row compares.
    device
        ``None``: the GPU if there is one.
    seed
        Run seed; with the set name and fold it fixes each fold model's initial weights, draws and augmentation.
    set_name
        The row's name in the result.

    Returns
    -------
    ProbeResult
        One set (``set_name``) and probe (``"cnn"``): scores, test probabilities, training curves, thresholds.

    Raises
    ------
    DataError
        Images and labels of different lengths, non-square images, a split of another dataset or class names
        that do not match the label columns.
    """
    config.validate("ceiling")
    labels = np.asarray(labels).astype(bool)
    if labels.ndim != 2 or len(labels) != len(images):
        raise DataError(f"{len(images)} images but labels of shape {labels.shape}: expected ({len(images)}, classes)")
    if len(class_names) != labels.shape[1]:
        raise DataError(f"{len(class_names)} class names for {labels.shape[1]} label columns")
    check_split(split, len(labels))
    device = resolve_device(device)
    x = prepare_images(images, img_size=config.img_size, device=device)
    y = torch.from_numpy(labels).float().to(device)
    score_rows, history, probs_test, tuned = [], [], [], []
    for fold, (train, val) in enumerate(split.folds):
        key = model_key(seed, set_name, CEILING_PROBE, fold)
        model, curve = _train_fold(x, y, train=train, val=val, config=config, key=key, threshold=threshold)
        subsets = {"train": train, "val": val, "test": split.test}
        probs = {name: _predict(model, x[torch.as_tensor(index, device=device)]) for name, index in subsets.items()}
        fold_rows, fold_tuned = score_fold(probs, {name: labels[index] for name, index in subsets.items()},
                                           class_names=class_names, threshold=threshold, tune=tune_thresholds)
        score_rows += [{"set": set_name, "probe": CEILING_PROBE, "fold": fold, **row} for row in fold_rows]
        history.append(curve.assign(fold=fold))
        probs_test.append(probs["test"])
        tuned.append(fold_tuned)
    history = pd.concat(history, ignore_index=True).assign(set=set_name, probe=CEILING_PROBE)
    return ProbeResult(
        scores=pd.DataFrame(score_rows, columns=list(SCORE_COLUMNS)),
        test_probs={(set_name, CEILING_PROBE): np.stack(probs_test)},  # (folds, n_test, K)
        history=history[list(HISTORY_COLUMNS)],
        test_index=np.asarray(split.test),
        class_names=tuple(class_names),
        fixed_threshold=threshold_label(threshold),
        thresholds={(set_name, CEILING_PROBE): np.stack(tuned)} if tune_thresholds else {},
    )


def _train_fold(x: torch.Tensor, y: torch.Tensor, *, train: np.ndarray, val: np.ndarray, config: CeilingConfig,
                key: int, threshold: float) -> tuple[nn.Module, pd.DataFrame]:
    """One fold model and its curve (epoch, mean training loss, validation macro F1 where monitored)."""
    device = x.device
    generator = torch.Generator().manual_seed(key % 2**63)  # draws and augmentation, on the CPU
    with torch.random.fork_rng(devices=[]):  # initial weights from the key, the caller's global stream untouched
        torch.manual_seed(key % 2**63)
        model = make_cnn(x.shape[1], y.shape[1], widths=config.widths, convs_per_stage=config.convs_per_stage)
    model = model.to(device, memory_format=torch.channels_last)
    weights = torch.from_numpy(resampling_weights(y[train].bool().cpu().numpy()) if config.resample
                               else np.full(len(train), 1.0 / len(train)))
    train_t = torch.as_tensor(train)
    n_steps = max(1, len(train) // config.batch_size)  # full batches only: BatchNorm needs more than one image
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * n_steps,
                                                   pct_start=0.25)
    loss_fn = nn.BCEWithLogitsLoss()
    losses, val_f1 = [], []
    for epoch in range(1, config.epochs + 1):
        model.train()
        if config.resample:
            order = torch.multinomial(weights, n_steps * config.batch_size, replacement=True, generator=generator)
        else:
            order = torch.randperm(len(train), generator=generator)[: n_steps * config.batch_size]
        codes = torch.randint(0, 8, (len(order),), generator=generator)
        total = 0.0
        for step in range(n_steps):
            part = slice(step * config.batch_size, (step + 1) * config.batch_size)
            rows = train_t[order[part]].to(device)
            batch = x[rows]
            if config.augment:
                batch = dihedral(batch, codes[part].to(device))
            loss = loss_fn(model(batch), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        losses.append(total / n_steps)
        monitored = config.monitor_every > 0 and (epoch % config.monitor_every == 0 or epoch == config.epochs)
        val_f1.append(macro_f1(y[val].bool().cpu().numpy(), _predict(model, x[torch.as_tensor(val, device=device)])
                               >= threshold) if monitored else np.nan)
    epochs = np.arange(1, config.epochs + 1)
    curve = pd.DataFrame({"epoch": epochs, "loss": losses, "val_macro_f1": val_f1, "kept": epochs == config.epochs})
    return model, curve


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Sigmoid outputs ``(N, K)`` of ``model`` in evaluation mode (BatchNorm's running statistics)."""
    model.eval()
    out = [torch.sigmoid(model(x[start : start + PREDICT_CHUNK])) for start in range(0, len(x), PREDICT_CHUNK)]
    return torch.cat(out).float().cpu().numpy()
