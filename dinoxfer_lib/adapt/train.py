"""Adaptation regimes for localisation on Table III's folds and test images (issue 18, item 1).

Paper 001 leaves fine-tuning as future work; paper 004 compares a frozen backbone with LoRA. For each of the first
``config.folds`` folds and each regime, one model is trained end to end on the fold's training images, from the
pretrained encoder, with the paper's MLP head:

- ``frozen``: only the head, on the pretrained features (cached once) - the matched baseline;
- ``lora``: low-rank adapters on the attention projections (:mod:`~dinoxfer_lib.adapt.lora`) plus the head;
- ``full``: every backbone weight with layer-wise lr decay (:mod:`~dinoxfer_lib.adapt.optim`) plus the head.

With ``head_epochs`` > 0 each fold's head is first trained alone on the cached features (linear probing, then
fine-tuning: LP-FT, Kumar et al. 2022): that head is the ``frozen`` model, and ``lora`` and ``full`` start from a
copy of it, so their backbone steps refine a trained head rather than a random one.

Inputs are prepared by the same :class:`~dinoxfer_lib.models.channels.ChannelEncoder` that makes the frozen
embeddings (channel strategy, intensity scaling, slot standardisation), so the regimes differ only in what is
trained. Training follows the probe protocol where it applies: images drawn with the probes' resampling weights
(``probe.resample``), binary cross-entropy, features standardised with the training fold's statistics. Scoring is
the probes' own (:func:`~dinoxfer_lib.probes.scoring.score_fold`): the result is a
:class:`~dinoxfer_lib.probes.result.ProbeResult` whose ``probe`` column names the regime, so Table III's
machinery shows it beside the frozen probes; :class:`AdaptResult` adds trainable-parameter counts and times.
On a CPU budget an epoch can draw fewer images than the fold holds (``images_per_epoch``) and the training F1 can
be measured on a seeded sample of the fold (``train_score_images``): validation and test are always scored whole.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinoxfer_lib.adapt.config import AdaptConfig
from dinoxfer_lib.adapt.lora import add_lora, count_parameters
from dinoxfer_lib.adapt.model import AdaptedClassifier, save_adapted
from dinoxfer_lib.adapt.optim import cosine_schedule, layer_decay_groups
from dinoxfer_lib.data.splits import Split
from dinoxfer_lib.devices import resolve_device, synchronize
from dinoxfer_lib.divergence import stop_on_divergence
from dinoxfer_lib.errors import DataError
from dinoxfer_lib.models.channels import ChannelEncoder
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.keyed_random import model_key
from dinoxfer_lib.probes.protocol import check_split, fit_standardizer, resampling_weights
from dinoxfer_lib.probes.result import HISTORY_COLUMNS, SCORE_COLUMNS, ProbeResult
from dinoxfer_lib.probes.scoring import score_fold, threshold_label

COST_COLUMNS = ("set", "probe", "fold", "trainable_params", "head_params", "total_params", "steps", "train_s",
                "head_s", "predict_s", "predicted_images", "device")


@dataclass
class AdaptResult:
    """Scores of the adapted models and what each cost.

    Attributes
    ----------
    probe
        As the probes return it; ``probe`` = regime (``frozen`` / ``lora`` / ``full``), ``set`` = the set name.
    costs
        One row per (regime, fold): trainable, head and total parameters, optimiser steps, training seconds (of
        the regime's own steps), seconds of the shared head-only training (``head_s``, 0 without it), prediction
        seconds, images predicted (the scored ones), device.
    """

    probe: ProbeResult
    costs: pd.DataFrame

    def save(self, folder: str | Path) -> None:
        """Write the scores as :meth:`ProbeResult.save` does, and the costs as ``costs.csv``."""
        self.probe.save(Path(folder))
        self.costs.to_csv(Path(folder) / "costs.csv", index=False)

    @classmethod
    def load(cls, folder: str | Path) -> AdaptResult:
        """Read what :meth:`save` wrote."""
        return cls(probe=ProbeResult.load(Path(folder)), costs=pd.read_csv(Path(folder) / "costs.csv"))

    @classmethod
    def concat(cls, results: Sequence[AdaptResult]) -> AdaptResult:
        """One result from several runs on the same split (e.g. one per embedding set)."""
        return cls(probe=ProbeResult.concat([r.probe for r in results]),
                   costs=pd.concat([r.costs for r in results], ignore_index=True))

    def table(self) -> pd.DataFrame:
        """Table III's columns per (set, regime) plus trainable parameters and mean training seconds per fold."""
        costs = self.costs.groupby(["set", "probe"], sort=False).agg(
            trainable_params=("trainable_params", "first"), total_params=("total_params", "first"),
            train_s_mean=("train_s", "mean")).reset_index()
        return self.probe.table().merge(costs, on=["set", "probe"], how="left")


def run_adaptation(
    encoder: ChannelEncoder,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    split: Split,
    config: AdaptConfig,
    probe: ProbeConfig,
    class_names: Sequence[str],
    set_name: str,
    device: str | torch.device | None = None,
    seed: int = 0,
    save_dir: str | Path | None = None,
    features: np.ndarray | None = None,
    img_size: int | None = None,
) -> AdaptResult:
    """Train every regime of ``config`` on the first ``config.folds`` folds and score it as the probes are.

    Parameters
    ----------
    encoder
        The pretrained backbone in its channel strategy (:func:`~dinoxfer_lib.models.channels.make_encoder`);
        moved to ``device``, its weights left unchanged (adapted models work on copies).
    images
        ``(N, C, H, W)`` raw images of the whole dataset (test images included; they are only predicted), in
        the encoder's channel order; may be a memory map.
    labels
        ``(N, K)`` boolean labels.
    split
        Table III's split; fold models train on a fold's training images and are scored on its validation images
        and on the shared test images.
    config
        Regimes, folds, optimisation and LoRA settings (``config.validate("adapt")`` is applied).
    probe
        The head (``hidden``, ``dropout``), the decision ``threshold``, ``resample`` and ``tune_thresholds``.
    class_names
        The K classes.
    set_name
        The ``set`` column of the scores (the frozen embedding set this encoder makes, so rows line up).
    device
        ``None``: the GPU if there is one (bf16 autocast there).
    seed
        With the set name, regime and fold it fixes each model's head, adapters and draws.
    save_dir
        When given, each model is saved to ``save_dir/<regime>/fold<k>`` (:func:`~dinoxfer_lib.adapt.model.
        save_adapted`).
    features
        ``(N, D)`` the frozen encoder's features of ``images`` when already computed (the Table III embedding set
        this encoder makes); computed here otherwise. They feed the frozen regime and every regime's starting
        standardisation.
    img_size
        Side the backbone sees; images of another size are resized batch-wise as the embeddings are (bilinear,
        antialiased when shrinking). ``None`` = the images' own size.
    """
    config.validate("adapt")
    probe.validate("probe")
    labels = np.asarray(labels).astype(bool)
    _check_inputs(encoder, images, labels, class_names)
    check_split(split, len(labels))
    device = resolve_device(device)
    encoder = encoder.to(device).eval()
    size = None if img_size is None else (img_size, img_size)
    if features is None:
        features = embed_images(encoder, images, batch_size=2 * config.batch_size, device=device, size=size)
    elif features.shape != (len(images), encoder.out_dim):
        raise DataError(f"features of shape {features.shape} for {len(images)} images and a {encoder.out_dim}-d "
                        f"encoder: expected ({len(images)}, {encoder.out_dim})")
    features = np.asarray(features, dtype=np.float32)  # (N, D)
    features_t = torch.from_numpy(features).to(device)
    labels_t = torch.from_numpy(labels).float().to(device)
    rows, history, costs, test_probs, thresholds = [], [], [], {}, {}
    for fold in range(min(config.folds, len(split.folds))):
        train, val = split.folds[fold]
        # every regime is scored on the same images; the training sample depends on the seed and the fold only
        sample = _train_sample(np.asarray(train), config.train_score_images, seed=model_key(seed, "train", fold))
        subsets = {"train": sample, "val": np.asarray(val), "test": np.asarray(split.test)}
        scored = np.concatenate(list(subsets.values()))  # the images each model predicts
        mean, std = (torch.from_numpy(v) for v in fit_standardizer(features[train]))
        n_train = len(train)
        train_rows = np.asarray(train)
        probed = None  # (head-only model, its loss per epoch, seconds) when the head is trained first (LP-FT)
        if config.head_epochs:
            key = model_key(seed, set_name, "head", fold)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(key % 2**63)
                head_model = _fresh_model(encoder, "frozen", labels.shape[1], mean=mean, std=std, config=config,
                                          probe=probe, seed=key).to(device)
                started = time.perf_counter()
                head_loss = _train(head_model, make_optimizer(head_model, config), images, features_t, labels_t,
                                   train_rows=train_rows, epochs=config.head_epochs, draws=n_train,
                                   batch_size=config.batch_size, probe=probe, device=device, seed=key, size=size)
                synchronize(device)
                probed = (head_model, head_loss, time.perf_counter() - started)
        for regime in config.regimes:
            key = model_key(seed, set_name, regime, fold)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(key % 2**63)
                if regime == "frozen" and probed is not None:  # the frozen regime is the trained head itself
                    model, loss, train_s = probed
                    trainable, steps = count_parameters(model.head)[0], config.head_epochs * math.ceil(
                        n_train / config.batch_size)
                else:
                    model = _fresh_model(encoder, regime, labels.shape[1], mean=mean, std=std, config=config,
                                         probe=probe, seed=key).to(device)
                    if probed is not None:
                        model.head.load_state_dict(probed[0].head.state_dict())
                    optimizer = make_optimizer(model, config)
                    trainable = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
                    draws = config.images_per_epoch or n_train
                    started = time.perf_counter()
                    loss = _train(model, optimizer, images, features_t, labels_t, train_rows=train_rows,
                                  epochs=config.epochs, draws=draws, batch_size=config.batch_size, probe=probe,
                                  device=device, seed=key, size=size)
                    synchronize(device)
                    train_s = time.perf_counter() - started
                    steps = config.epochs * math.ceil(draws / config.batch_size)
                started = time.perf_counter()
                predicted = _predict(model, images, features_t, rows=scored, batch_size=2 * config.batch_size,
                                     device=device, size=size)  # (len(scored), K)
                synchronize(device)
                predict_s = time.perf_counter() - started
            ends = np.cumsum([len(v) for v in subsets.values()])
            probs = dict(zip(subsets, np.split(predicted, ends[:-1])))
            fold_rows, tuned = score_fold(probs, {k: labels[v] for k, v in subsets.items()},
                                          class_names=class_names, threshold=probe.threshold,
                                          tune=probe.tune_thresholds)
            rows += [{"set": set_name, "probe": regime, "fold": fold, **row} for row in fold_rows]
            val_f1 = next(r["value"] for r in fold_rows if r["subset"] == "val" and r["class"] is None)
            history.append(_history(loss, val_f1, set_name=set_name, regime=regime, fold=fold))
            test_probs.setdefault((set_name, regime), []).append(probs["test"])
            if tuned is not None:
                thresholds.setdefault((set_name, regime), []).append(tuned)
            costs.append({"set": set_name, "probe": regime, "fold": fold, "trainable_params": trainable,
                          "head_params": count_parameters(model.head)[1], "total_params": count_parameters(model)[1],
                          "steps": steps, "train_s": round(train_s, 2),
                          "head_s": round(probed[2], 2) if probed is not None else 0.0,
                          "predict_s": round(predict_s, 2), "predicted_images": len(scored), "device": device.type})
            if save_dir is not None:
                save_adapted(model, Path(save_dir) / regime / f"fold{fold}")
            del model
    result = ProbeResult(
        scores=pd.DataFrame(rows, columns=list(SCORE_COLUMNS)),
        test_probs={k: np.stack(v) for k, v in test_probs.items()},
        history=pd.concat(history, ignore_index=True),
        test_index=np.asarray(split.test),
        class_names=tuple(class_names),
        fixed_threshold=threshold_label(probe.threshold),
        thresholds={k: np.stack(v) for k, v in thresholds.items()},
    )
    return AdaptResult(probe=result, costs=pd.DataFrame(costs, columns=list(COST_COLUMNS)))


@torch.no_grad()
def embed_images(encoder: ChannelEncoder, images: np.ndarray, *, batch_size: int, device: torch.device,
                 size: tuple[int, int] | None = None) -> np.ndarray:
    """``(N, D)`` float32 features of ``encoder`` (eval mode) for all images, in batches (resized to ``size``)."""
    encoder.eval()
    parts = [encoder(image_batch(images, np.arange(start, min(start + batch_size, len(images))), device, size=size))
             .float().cpu() for start in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy()


def _train_sample(train: np.ndarray, n: int | None, *, seed: int) -> np.ndarray:
    """The training images the training F1 is measured on: all, or a seeded sample of ``n`` in their order."""
    if n is None or n >= len(train):
        return train
    return np.sort(np.random.default_rng(seed % 2**32).choice(train, size=n, replace=False))


def _check_inputs(encoder: ChannelEncoder, images: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str]) -> None:
    if images.ndim != 4:
        raise DataError(f"images must be (N, C, H, W), got shape {images.shape}")
    if images.shape[1] != len(encoder.target_channels):
        raise DataError(f"images have {images.shape[1]} channels, the encoder expects "
                        f"{len(encoder.target_channels)} ({', '.join(encoder.target_channels)})")
    if labels.ndim != 2 or len(labels) != len(images):
        raise DataError(f"labels shape {labels.shape} does not match {len(images)} images: expected (N, K)")
    if len(class_names) != labels.shape[1]:
        raise DataError(f"{len(class_names)} class names for {labels.shape[1]} label columns")


def _fresh_model(encoder: ChannelEncoder, regime: str, n_classes: int, *, mean: torch.Tensor, std: torch.Tensor,
                 config: AdaptConfig, probe: ProbeConfig, seed: int) -> AdaptedClassifier:
    """A model of ``regime`` starting from the pretrained encoder (a copy unless frozen) and a new head."""
    if regime != "frozen":
        encoder = copy.deepcopy(encoder)
    if regime == "lora":
        add_lora(encoder.backbone, config.lora, seed=seed)
    elif regime == "full":
        encoder.backbone.requires_grad_(True)
    return AdaptedClassifier.build(encoder, n_classes, mean=mean, std=std, regime=regime, hidden=probe.hidden,
                                   dropout=probe.dropout)


def make_optimizer(model: AdaptedClassifier, config: AdaptConfig) -> torch.optim.AdamW:
    """What each regime trains: the head (and the adapters) at ``lr``; for ``full`` also the backbone, in
    layer-decayed groups below ``full_lr``. Its parameters are the reported trainable count."""
    groups = [{"params": list(model.head.parameters()), "lr": config.lr, "weight_decay": config.weight_decay}]
    backbone = model.encoder.backbone
    if model.regime == "lora":
        adapters = [p for p in backbone.parameters() if p.requires_grad]
        groups.append({"params": adapters, "lr": config.lr, "weight_decay": config.weight_decay})
    elif model.regime == "full":
        groups += layer_decay_groups(backbone, lr=config.full_lr, weight_decay=config.weight_decay,
                                     layer_decay=config.layer_decay)
    device = model.norm.running_mean.device
    return torch.optim.AdamW(groups, fused=device.type in ("cpu", "cuda") or None)


def _train(model: AdaptedClassifier, optimizer: torch.optim.Optimizer, images: np.ndarray,
           features_t: torch.Tensor, labels_t: torch.Tensor, *, train_rows: np.ndarray, epochs: int, draws: int,
           batch_size: int, probe: ProbeConfig, device: torch.device, seed: int,
           size: tuple[int, int] | None) -> np.ndarray:
    """Train in place for ``epochs`` of ``draws`` resampled images; returns the mean loss per epoch ``(epochs,)``."""
    n_train = len(train_rows)
    weights = resampling_weights(labels_t[train_rows].bool().cpu().numpy()) if probe.resample else np.ones(n_train)
    weights_t = torch.as_tensor(weights, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed % 2**63)
    steps = math.ceil(draws / batch_size)
    scheduler = cosine_schedule(optimizer, epochs * steps)
    frozen = model.regime == "frozen"
    model.train()
    loss_per_epoch = np.empty(epochs)
    for epoch in range(epochs):
        drawn = train_rows[torch.multinomial(weights_t, draws, replacement=True, generator=generator).numpy()]
        total = 0.0
        for step in range(steps):
            rows = drawn[step * batch_size:(step + 1) * batch_size]
            if len(rows) < 2 and not frozen:  # a batch of one has no spread to standardise by
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                if frozen:
                    logits = model.head_logits(features_t[torch.as_tensor(rows, device=device)])
                else:
                    logits = model(image_batch(images, rows, device, size=size))
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels_t[rows])
            value = loss.item()
            stop_on_divergence(value, what=f"{model.regime} training loss", steps_per_epoch=steps,
                               first_step=epoch * steps + step,
                               hint="lower adapt.lr" + (" or adapt.full_lr" if model.regime == "full" else ""))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += value * len(rows)
        loss_per_epoch[epoch] = total / draws
    return loss_per_epoch


@torch.no_grad()
def _predict(model: AdaptedClassifier, images: np.ndarray, features_t: torch.Tensor, *, rows: np.ndarray,
             batch_size: int, device: torch.device, size: tuple[int, int] | None) -> np.ndarray:
    """Sigmoid outputs ``(len(rows), K)`` of ``model`` (eval mode) on the images ``rows``."""
    model.eval()
    if model.regime == "frozen":
        return torch.sigmoid(model.head_logits(features_t[torch.as_tensor(rows, device=device)])).cpu().numpy()
    parts = []
    for start in range(0, len(rows), batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(image_batch(images, rows[start:start + batch_size], device, size=size))
        parts.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(parts).numpy()


def image_batch(images: np.ndarray, rows: np.ndarray, device: torch.device, *,
                size: tuple[int, int] | None = None) -> torch.Tensor:
    """Raw images ``rows`` as float32 on the device (a memory map reads only these), resized to ``size`` as the
    embeddings resize them (bilinear, antialiased when shrinking)."""
    x = torch.from_numpy(np.asarray(images[rows], dtype=np.float32)).to(device, non_blocking=True)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
        x = nn.functional.interpolate(x, size=size, mode="bilinear", antialias=shrink, align_corners=False)
    return x


def _history(loss: np.ndarray, val_f1: float, *, set_name: str, regime: str, fold: int) -> pd.DataFrame:
    """Loss per epoch; the validation macro F1 is known after the last epoch only, whose weights are kept."""
    val = np.full(len(loss), np.nan)
    val[-1] = val_f1
    epochs = np.arange(1, len(loss) + 1)
    frame = pd.DataFrame({"set": set_name, "probe": regime, "fold": fold, "epoch": epochs, "loss": loss,
                          "val_macro_f1": val, "kept": epochs == len(loss)})
    return frame[list(HISTORY_COLUMNS)]
