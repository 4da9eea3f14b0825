"""The paper's MLP probe, and a trainer that trains many independent probe models as one batched model.

Architecture (paper): ``Linear(d, 512) → ReLU → Dropout(0.5) → Linear(512, 256) → ReLU → Dropout(0.5) →
Linear(256, K)``; ``hidden=()`` gives the linear probe ``Linear(d, K)``. Training (paper): AdamW (lr 1e-4,
weight decay 0.04 on all parameters, betas 0.9/0.999), cosine annealing of the learning rate from lr to 0 over
the epochs (``CosineAnnealingLR(T_max=epochs)``, stepped once per epoch), ``BCEWithLogitsLoss`` (mean over images
and classes), batches of 512.

What an epoch is. The paper resamples by weight and trains "300 epochs with a batch size of 512"; we read this
as the usual ``WeightedRandomSampler`` set-up: an epoch is N_train draws with replacement, image i drawn with
probability :func:`~dinoxfer_lib.probes.protocol.resampling_weights`, cut into ceil(N_train / 512) batches in
draw order, the last one smaller.

Training until the validation F1 has plateaued (``config.plateau_patience`` > 0; not the paper's recipe, which
trains all epochs and keeps the last weights). At each monitoring check a model whose validation macro F1 rose
by more than ``plateau_min_delta`` over its best so far has its weights copied aside; after ``plateau_patience``
checks without such a rise it counts as stopped, and ends with the weights of its best check. A stopped model
leaves the batch (the others keep their AdamW moments and the schedule's position), so a stage costs the epochs its
models train rather than the slowest model's epochs times all of them, and no model's result depends on its batch
mates. The cosine schedule still spans ``epochs``, which becomes a maximum.

Batching models. The study trains 5 folds x several embedding sets; sets of one dimension give M models with the
same layer shapes. :class:`BatchedMLP` stacks their parameters (``(M, in, out)``) and runs them with
``torch.baddbmm``; each model's standardised training images stay on the device as one ``(M, n, d)`` tensor and
each step gathers each model's own batch from it, so the epoch loop has no DataLoader and no Python loop over
models. It stays exactly M separate models:

- each model standardises with its own training-fold mean/std (``(M, d)`` buffers; its training images once,
  before the first epoch);
- each model draws its own resampled indices (inverse-CDF sampling on its ``(M, n)`` cumulative weights) and
  dropout masks, from :mod:`~dinoxfer_lib.probes.keyed_random` keyed per model (see there why not
  ``torch.multinomial`` with one generator);
- the loss is each model's mean over its own rows, summed over models, so each model's gradient is that of its
  own loss; AdamW is elementwise, so one optimiser over the stacked tensors updates each model as its own would.

On a CPU every pass over the ``(M, batch, 512)`` activations costs a noticeable fraction of a matrix product,
so a step makes few: a dropout mask takes one random bit per unit
(:func:`~dinoxfer_lib.probes.keyed_random.dropout_mask`), dropout (a multiplier >= 0, so it commutes with ReLU)
and ReLU run in place, and the training images are standardised once, not in every step.

:func:`~dinoxfer_lib.probes.reference.train_mlp_sequential` trains one model at a time with ``nn.Linear`` layers
and the same draws; the tests check both agree within float tolerance. Models batched together need the same
number of steps per epoch; :func:`train_mlps` groups them accordingly (with one split they are all alike).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dinoxfer_lib.devices import resolve_device
from dinoxfer_lib.divergence import stop_on_divergence
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.metrics import batched_macro_f1
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.keyed_random import DROPOUT, RESAMPLE, dropout_mask, key_table, uniform
from dinoxfer_lib.probes.protocol import fit_standardizer, resampling_weights

# Rows per forward pass when predicting: bounds the (models, rows, 512) activations.
PREDICT_CHUNK = 2048


def make_mlp(in_dim: int, n_classes: int, *, hidden: Sequence[int] = (512, 256), dropout: float = 0.5) -> nn.Sequential:
    """The paper's head as a plain ``nn.Sequential`` (what a typical script trains; the batched trainer's spec)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, n_classes))
    return nn.Sequential(*layers)


def make_optimizer(params, config: ProbeConfig) -> torch.optim.AdamW:
    """AdamW with the paper's settings, fused (one kernel for all tensors instead of a loop over them).

    AdamW is elementwise, so on stacked ``(M, ...)`` parameters it updates each model as its own optimiser would.
    """
    params = list(params)
    fused = params[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay,
                             fused=fused or None)


def make_scheduler(optimizer: torch.optim.Optimizer, config: ProbeConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing from lr (epoch 0) to 0 (after the last epoch); call ``step()`` once per epoch."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


def layer_dims(in_dim: int, n_classes: int, hidden: Sequence[int]) -> list[int]:
    return [in_dim, *hidden, n_classes]


def init_params(key: int, dims: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One model's initial (weight ``(out, in)``, bias ``(out,)``) per layer, drawn from its key on the CPU.

    Same distribution as ``nn.Linear``'s default (weight and bias uniform in ±1/sqrt(fan_in)); drawn from a
    generator seeded by the model key so the batched and the sequential trainers start from the same weights on
    any device.
    """
    generator = torch.Generator().manual_seed(key % 2**63)
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        weight = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
        params.append((weight, bias))
    return params


class BatchedMLP(nn.Module):
    """M independent MLPs with stacked parameters: weights ``(M, in, out)``, biases ``(M, 1, out)``.

    The forward pass takes raw features and standardises them with each model's own training statistics.
    Dropout runs only when keys are given (training); without keys the models are in evaluation mode.
    """

    def __init__(self, keys: Sequence[int], dims: Sequence[int], *, mean: torch.Tensor, std: torch.Tensor,
                 dropout: float):
        super().__init__()
        per_model = [init_params(key, dims) for key in keys]
        self.weights = nn.ParameterList(  # each (M, in, out); stacked, then transposed in one copy
            nn.Parameter(torch.stack([p[i][0] for p in per_model]).transpose(1, 2).contiguous())
            for i in range(len(dims) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([p[i][1][None] for p in per_model])) for i in range(len(dims) - 1)
        )  # each (M, 1, out)
        self.register_buffer("mean", mean)  # (M, d)
        self.register_buffer("std", std)  # (M, d)
        self.dropout = dropout

    @property
    def n_hidden(self) -> int:
        return len(self.weights) - 1

    def select(self, keep: torch.Tensor) -> BatchedMLP:
        """The models at positions ``keep`` as a batched model of their own (copies of their weights and
        statistics): plateau stopping drops the stopped models, so the steps no longer compute them."""
        other = copy.deepcopy(self)
        with torch.no_grad():
            for param in other.parameters():
                param.data = param.data[keep]
        other.mean, other.std = self.mean[keep], self.std[keep]
        return other

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Each model's standardised features ``(M, batch, d)`` of raw features ``x`` ``(M, batch, d)``."""
        return (x - self.mean[:, None]) / self.std[:, None]

    def forward(self, x: torch.Tensor, dropout_keys: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(M, batch, K)`` of raw features ``x`` ``(M, batch, d)``; ``dropout_keys`` ``(hidden, M)``."""
        return self.logits(self.standardize(x), dropout_keys)

    def logits(self, h: torch.Tensor, dropout_keys: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(M, batch, K)`` of standardised features ``h`` ``(M, batch, d)``."""
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias, h, weight)  # (M, batch, out)
            if i < self.n_hidden:
                if dropout_keys is not None and self.dropout > 0:  # before ReLU, so both run in place
                    h = h.mul_(dropout_mask(dropout_keys[i], tuple(h.shape[1:]), self.dropout))
                h = torch.relu_(h)
        return h


@dataclass
class TrainedMLPs:
    """The trained models of one :func:`train_mlps` call, their data and their training curves."""

    groups: list[tuple[np.ndarray, BatchedMLP]]  # (model indices, the batched model that trained them)
    features: torch.Tensor  # (S, N, d) on the device
    sets: torch.Tensor  # (M,) which set each model reads
    loss: np.ndarray  # (epochs, M) mean training loss per epoch; NaN after a model stopped on a plateau
    monitor_epochs: np.ndarray  # (C,) 1-based epochs at which the validation macro F1 was taken
    monitor_f1: np.ndarray  # (C, M) validation macro F1 (threshold from the config) at those epochs; NaN after
    kept_epoch: np.ndarray  # (M,) the epoch whose weights each model ends with (the last, or its best check)

    @property
    def n_models(self) -> int:
        return len(self.sets)

    @torch.no_grad()
    def predict_proba(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Sigmoid outputs ``(M, rows, K)`` (float32) of every model on ``rows`` (default: all images)."""
        n_images = self.features.shape[1]
        rows = np.arange(n_images) if rows is None else np.asarray(rows)
        out = None
        for members, model in self.groups:
            sets = self.sets[torch.as_tensor(members, device=self.sets.device)]
            parts = [
                torch.sigmoid(model(_gather(self.features, sets, torch.as_tensor(chunk, device=sets.device))))
                for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / PREDICT_CHUNK)))
            ]
            probs = torch.cat(parts, dim=1).cpu().numpy()  # (group models, rows, K)
            if out is None:
                out = np.empty((self.n_models, len(rows), probs.shape[-1]), dtype=np.float32)
            out[members] = probs
        return out


def train_mlps(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    sets: Sequence[int],
    train_rows: Sequence[np.ndarray],
    keys: Sequence[int],
    config: ProbeConfig,
    device: str | torch.device | None = None,
    monitor_rows: Sequence[np.ndarray] | None = None,
    monitor_every: int = 0,
) -> TrainedMLPs:
    """Train M independent probe models (one per entry of ``sets``/``train_rows``/``keys``) as batched models.

    Parameters
    ----------
    features
        ``(S, N, d)`` embedding sets of one dimension, stacked (float32 on the device during training).
    labels
        ``(N, K)`` boolean labels of the N images.
    sets, train_rows, keys
        Per model: the set it reads, the images it trains on, and its random key
        (:func:`~dinoxfer_lib.probes.keyed_random.model_key`), which fixes its initial weights and all its draws.
    config
        The recipe (``hidden``, ``dropout``, optimiser, ``epochs``, ``batch_size``, ``resample``).
    device
        Where to train; ``None`` picks the GPU if there is one.
    monitor_rows, monitor_every
        With ``monitor_every > 0``, every that many epochs (and after the last) each model's macro F1 on its
        ``monitor_rows`` (its validation fold) is recorded with the batched F1, without leaving the device. Plateau
        stopping (``config.plateau_patience`` > 0) decides on these checks, so it needs them.

    Returns
    -------
    TrainedMLPs
        The trained models, their per-epoch training loss, the validation curve and the kept epochs.
    """
    if not len(sets) == len(train_rows) == len(keys) or min(len(r) for r in train_rows) == 0:
        raise DataError(f"train_mlps needs one set, one non-empty training set and one key per model, got "
                        f"{len(sets)}, {len(train_rows)} and {len(keys)}")
    if monitor_every > 0 and monitor_rows is None:
        raise ConfigError("monitor_every > 0 needs monitor_rows: each model's validation images")
    if config.plateau_patience > 0 and monitor_every <= 0:
        raise ConfigError(f"config key 'probe.plateau_patience' = {config.plateau_patience}: stopping on a plateau "
                          f"needs validation checks (monitor_every > 0 and each model's monitor_rows)")
    device = resolve_device(device)
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels).astype(bool)
    sets = np.asarray(sets, dtype=int)
    features_t = torch.from_numpy(features).to(device)  # (S, N, d)
    labels_t = torch.from_numpy(labels).float().to(device)  # (N, K)
    steps = np.array([math.ceil(len(r) / config.batch_size) for r in train_rows])
    epochs = np.arange(1, config.epochs + 1)
    monitored = _is_check(epochs, config.epochs, monitor_every)  # (E,)
    loss = np.empty((config.epochs, len(keys)))
    monitor_f1 = np.empty((int(monitored.sum()), len(keys)))
    kept_epoch = np.empty(len(keys), dtype=int)
    groups = []
    for n_steps in np.unique(steps):
        members = np.flatnonzero(steps == n_steps)
        model, group_loss, group_f1, kept_epoch[members] = _train_group(
            features, labels, features_t, labels_t,
            sets=sets[members],
            train_rows=[np.asarray(train_rows[m]) for m in members],
            keys=[keys[m] for m in members],
            config=config,
            monitor_rows=None if monitor_rows is None else [np.asarray(monitor_rows[m]) for m in members],
            monitor_every=monitor_every,
        )
        loss[:, members], monitor_f1[:, members] = group_loss, group_f1
        groups.append((members, model))
    return TrainedMLPs(
        groups=groups,
        features=features_t,
        sets=torch.as_tensor(sets, device=device),
        loss=loss,
        monitor_epochs=epochs[monitored],
        monitor_f1=monitor_f1,
        kept_epoch=kept_epoch,
    )


def _train_group(
    features: np.ndarray,
    labels: np.ndarray,
    features_t: torch.Tensor,
    labels_t: torch.Tensor,
    *,
    sets: np.ndarray,
    train_rows: list[np.ndarray],
    keys: list[int],
    config: ProbeConfig,
    monitor_rows: list[np.ndarray] | None,
    monitor_every: int,
) -> tuple[BatchedMLP, np.ndarray, np.ndarray, np.ndarray]:
    """One batched training run of models with equal steps per epoch.

    Returns (model, loss (E, M), validation F1 (C, M), kept epoch (M,)); see the module docstring for stopping.
    """
    device = features_t.device
    n_models, n_classes = len(keys), labels_t.shape[1]
    counts = np.array([len(r) for r in train_rows])
    n_max = int(counts.max())
    n_steps = math.ceil(n_max / config.batch_size)

    # ---- per-model set-up, outside the epoch loop: training rows, draw CDFs, standardisation statistics
    rows = np.zeros((n_models, n_max), dtype=np.int64)  # (M, n_max) training images, padded
    cdf = np.zeros((n_models, n_max))  # (M, n_max) cumulative draw weights, flat over the padding
    mean = np.empty((n_models, features.shape[2]), dtype=np.float32)
    std = np.empty_like(mean)
    for m, (s, train) in enumerate(zip(sets, train_rows)):
        rows[m, : len(train)] = train
        rows[m, len(train):] = train[0]  # padding: zero draw weight, never drawn
        cdf[m, : len(train)] = np.cumsum(_draw_weights(labels[train], resample=config.resample))
        cdf[m, len(train):] = cdf[m, len(train) - 1]
        mean[m], std[m] = fit_standardizer(features[s][train])
    rows_t = torch.from_numpy(rows).to(device)
    cdf_t = torch.from_numpy(cdf).to(device)
    counts_t = torch.from_numpy(counts).to(device)
    sets_t = torch.from_numpy(sets).to(device)
    valid = torch.arange(n_max, device=device)[None] < counts_t[:, None]  # (M, n_max) real draws vs padding

    # ---- models, optimiser, schedule, and the keys of every draw of the run
    dims = layer_dims(features.shape[2], n_classes, config.hidden)
    model = BatchedMLP(keys, dims, mean=torch.from_numpy(mean), std=torch.from_numpy(std),
                       dropout=config.dropout).to(device)
    # every model's training images standardised once, flat: draw j of model m is row m * n_max + position
    train_x = model.standardize(_gather(features_t, sets_t, rows_t)).flatten(0, 1)  # (M * n_max, d)
    train_y = labels_t[rows_t].flatten(0, 1)  # (M * n_max, K)
    offsets = torch.arange(n_models, device=device)[:, None] * n_max  # (M, 1)
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = make_scheduler(optimizer, config)
    keys_t = torch.tensor(keys, dtype=torch.int32, device=device)
    draw_keys = key_table(keys_t, RESAMPLE, (config.epochs,))  # (E, M)
    dropout_keys = key_table(keys_t, DROPOUT, (config.epochs, n_steps, model.n_hidden))  # (E, steps, hidden, M)
    use_dropout = model.n_hidden > 0 and config.dropout > 0
    monitor = _padded(monitor_rows, device) if monitor_every > 0 else None  # ((M, V) rows, (M, V) mask)

    # ---- training: per epoch, every model's draws at once, then its batches in draw order. ``working`` holds the
    # models still training (``active``: their positions among the M); a check that stops some drops them from it.
    loss_sum = torch.zeros(config.epochs, n_models, dtype=torch.float64, device=device)
    step_loss = torch.zeros(config.epochs, n_steps, n_models, device=device)  # read only if a loss is not finite
    checks = []
    plateau = _Plateau(model, patience=config.plateau_patience, min_delta=config.plateau_min_delta)
    working, active = model, torch.arange(n_models, device=device)
    for epoch in range(config.epochs):
        u = uniform(draw_keys[epoch, active], n_max)  # (A, n_max)
        position = torch.searchsorted(cdf_t[active], u * cdf_t[active, -1:], right=True).clamp_(max=n_max - 1)
        drawn = position + offsets[active]  # (A, n_max) row in train_x of every draw of this epoch
        for step in range(n_steps):
            part = slice(step * config.batch_size, (step + 1) * config.batch_size)
            batch, real = drawn[:, part].flatten(), valid[active, part]  # (A * b,), (A, b)
            x = train_x.index_select(0, batch).view(len(active), -1, train_x.shape[1])  # (A, b, d)
            keys_now = dropout_keys[epoch, step][:, active] if use_dropout else None
            logits = working.logits(x, keys_now)  # (A, b, K)
            y = train_y.index_select(0, batch).view_as(logits)  # (A, b, K)
            per_row = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)  # (A, b)
            n_real = real.sum(1)  # (A,)
            per_model = (per_row * real).sum(1) / (n_real * n_classes)  # (A,) each model's mean BCE
            optimizer.zero_grad(set_to_none=True)
            per_model.sum().backward()  # disjoint parameters: each model gets its own loss's gradient
            optimizer.step()
            loss_sum[epoch, active] += per_model.detach() * n_real
            step_loss[epoch, step, active] = per_model.detach()
        scheduler.step()
        if monitor is not None and _is_check(epoch + 1, config.epochs, monitor_every):
            f1 = torch.full((n_models,), float("nan"), device=device)
            f1[active] = _monitor_f1(working, features_t, labels_t, sets_t[active], monitor[0][active],
                                     monitor[1][active], config.threshold)
            checks.append(f1)
            if plateau.update(f1, epoch + 1, working, active):
                break
            running = torch.as_tensor(plateau.stop_epoch[active.cpu().numpy()] > epoch + 1, device=device)
            if not running.all():
                working, optimizer, scheduler = _drop_stopped(working, optimizer, scheduler, running, config)
                active = active[running]
    n_epochs = epoch + 1
    loss = (loss_sum / counts_t).cpu().numpy()
    if not np.isfinite(loss).all():
        stop_on_divergence(step_loss.flatten(0, 1).cpu().numpy(), what="probe loss", steps_per_epoch=n_steps,
                           hint="lower probe.lr, or look for NaN/Inf in the embeddings")
    f1 = torch.stack(checks).cpu().numpy() if checks else np.empty((0, n_models))
    kept = plateau.restore(n_epochs)
    if plateau.enabled:  # nothing after a model's own stop belongs to its curve
        loss[np.arange(config.epochs)[:, None] >= plateau.stop_epoch[None]] = np.nan
        check_epochs = np.flatnonzero(_is_check(np.arange(1, config.epochs + 1), config.epochs, monitor_every)) + 1
        f1 = np.vstack([f1, np.full((len(check_epochs) - len(f1), n_models), np.nan)])
        f1[check_epochs[:, None] > plateau.stop_epoch[None]] = np.nan
    return model, loss, f1, kept


class _Plateau:
    """Each model's best validation check, its weights then, and when it stopped improving (plateau stopping)."""

    def __init__(self, model: BatchedMLP, *, patience: int, min_delta: float):
        self.model, self.patience, self.min_delta = model, patience, min_delta
        n_models = model.weights[0].shape[0]
        self.best = np.full(n_models, -np.inf)
        self.best_epoch = np.zeros(n_models, dtype=int)
        self.since_best = np.zeros(n_models, dtype=int)
        self.stop_epoch = np.full(n_models, np.iinfo(np.int64).max)
        self.saved = [p.detach().clone() for p in model.parameters()] if self.enabled else []

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def update(self, f1: torch.Tensor, epoch: int, working: BatchedMLP, active: torch.Tensor) -> bool:
        """Record one check's ``(M,)`` validation F1 (NaN for stopped models) of the models at positions ``active``,
        trained as ``working``; True once every model has stopped."""
        if not self.enabled:
            return False
        f1 = f1.cpu().numpy()
        running = self.stop_epoch > epoch
        improved = running & (f1 > self.best + self.min_delta)
        if improved.any():
            which = torch.as_tensor(improved[active.cpu().numpy()], device=self.saved[0].device)
            rows = active[which]
            with torch.no_grad():
                for saved, param in zip(self.saved, working.parameters()):
                    saved[rows] = param[which]  # (M, ...) stacked: row m is model m
        self.best[improved], self.best_epoch[improved], self.since_best[improved] = f1[improved], epoch, 0
        self.since_best[running & ~improved] += 1
        self.stop_epoch[running & (self.since_best >= self.patience)] = epoch
        return bool((self.stop_epoch <= epoch).all())

    def restore(self, n_epochs: int) -> np.ndarray:
        """Put each model's kept weights back; return the ``(M,)`` kept epochs (all the last one when disabled)."""
        if not self.enabled:
            return np.full(len(self.best), n_epochs)
        with torch.no_grad():
            for saved, param in zip(self.saved, self.model.parameters()):
                param.copy_(saved)
        self.stop_epoch = np.minimum(self.stop_epoch, n_epochs)
        return self.best_epoch.copy()


def _drop_stopped(working: BatchedMLP, optimizer: torch.optim.Optimizer, scheduler, running: torch.Tensor,
                  config: ProbeConfig) -> tuple[BatchedMLP, torch.optim.Optimizer, object]:
    """The models still ``running`` (a mask over ``working``'s models) with their AdamW moments and the schedule's
    position: each continues exactly as it would have among all of them (AdamW and the schedule are per element)."""
    kept = working.select(running)
    new_optimizer = make_optimizer(kept.parameters(), config)
    for old, new in zip(working.parameters(), kept.parameters()):
        state = optimizer.state[old]
        new_optimizer.state[new] = {key: value.clone() if key == "step" else value[running].clone()
                                    for key, value in state.items()}
    new_scheduler = make_scheduler(new_optimizer, config)
    for new_group, old_group in zip(new_optimizer.param_groups, optimizer.param_groups):
        new_group["lr"] = old_group["lr"]  # the constructor set the initial rate; the schedule continues from here
    new_scheduler.last_epoch, new_scheduler._last_lr = scheduler.last_epoch, list(scheduler.get_last_lr())
    return kept, new_optimizer, new_scheduler


def _draw_weights(train_labels: np.ndarray, *, resample: bool) -> np.ndarray:
    """Draw probabilities over one model's training images: the protocol's, or uniform."""
    if not resample:
        return np.full(len(train_labels), 1.0 / len(train_labels))
    return resampling_weights(train_labels)


def _gather(features: torch.Tensor, sets: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Features ``(M, b, d)`` of each model's rows from the stacked sets ``(S, N, d)``; rows ``(M, b)`` or ``(b,)``."""
    if rows.dim() == 1:
        rows = rows.expand(len(sets), -1)
    return features[sets[:, None], rows]


def _padded(rows: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    padded = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for m, r in enumerate(rows):
        padded[m, : len(r)] = torch.as_tensor(r)
        mask[m, : len(r)] = True
    return padded.to(device), mask.to(device)


@torch.no_grad()
def _monitor_f1(model: BatchedMLP, features_t: torch.Tensor, labels_t: torch.Tensor, sets_t: torch.Tensor,
                rows: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(M,)`` macro F1 of each model on its own (padded) validation rows, computed on the device."""
    logits = model(_gather(features_t, sets_t, rows))  # (M, V, K)
    predicted = torch.sigmoid(logits) >= threshold
    return batched_macro_f1(labels_t[rows].bool(), predicted, mask=mask)


def _is_check(epoch, epochs: int, every: int):
    """Whether a (1-based) epoch is a monitoring epoch: every ``every`` epochs, and the last."""
    if every <= 0:
        return np.zeros_like(epoch, dtype=bool)
    return (np.asarray(epoch) % every == 0) | (np.asarray(epoch) == epochs)
