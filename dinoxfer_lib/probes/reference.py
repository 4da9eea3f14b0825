"""Two one-model-at-a-time trainers to hold the batched trainer to account.

- :func:`train_mlp_sequential` is the *exact* reference: ``nn.Linear`` layers, its own AdamW, the plain step loop
  of a single model, and the same keyed draws (initial weights, resampled indices, dropout masks) as
  :func:`~dinoxfer_lib.probes.mlp.train_mlps`. The tests require both to agree within float tolerance, which
  shows the stacking, the per-model masking of the loss and the shared optimiser change nothing.
- :func:`train_mlp_dataloader` is the *typical script*: ``StandardScaler``, ``TensorDataset`` + ``DataLoader`` +
  ``WeightedRandomSampler``, ``nn.Sequential`` with ``nn.Dropout``, one fold after another. Same recipe, torch's
  own random streams, so it agrees only statistically. The benchmark times it as the speed reference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from dinoxfer_lib.devices import resolve_device
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.probes.keyed_random import DROPOUT, RESAMPLE, key_table, keyed_dropout, uniform
from dinoxfer_lib.probes.mlp import init_params, layer_dims, make_mlp, make_optimizer, make_scheduler
from dinoxfer_lib.probes.protocol import fit_standardizer, resampling_weights


def train_mlp_sequential(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    train_rows: np.ndarray,
    key: int,
    config: ProbeConfig,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train one probe model the plain way, with the batched trainer's draws.

    Parameters
    ----------
    features
        ``(N, d)`` features of one embedding set.
    labels
        ``(N, K)`` boolean labels.
    train_rows, key, config, device
        The model's training images, its key, the recipe and the device, as for
        :func:`~dinoxfer_lib.probes.mlp.train_mlps`.

    Returns
    -------
    probs : numpy.ndarray
        ``(N, K)`` float32 sigmoid outputs on all images.
    loss : numpy.ndarray
        ``(epochs,)`` mean training loss per epoch.
    """
    device = resolve_device(device)
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels).astype(bool)
    train_rows = np.asarray(train_rows)
    n_train, n_classes = len(train_rows), labels.shape[1]
    n_steps = math.ceil(n_train / config.batch_size)
    x_all = torch.from_numpy(features).to(device)  # (N, d)
    y_all = torch.from_numpy(labels).float().to(device)  # (N, K)
    mean, std = (torch.from_numpy(a).to(device) for a in fit_standardizer(features[train_rows]))

    layers = nn.ModuleList()
    for weight, bias in init_params(key, layer_dims(features.shape[1], n_classes, config.hidden)):
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        layers.append(layer)
    layers.to(device)
    n_hidden = len(layers) - 1

    def forward(x: torch.Tensor, step_keys: torch.Tensor | None) -> torch.Tensor:
        h = (x - mean) / std  # (b, d)
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < n_hidden:
                h = torch.relu(h)
                if step_keys is not None and config.dropout > 0:
                    h = keyed_dropout(h[None], step_keys[i], config.dropout)[0]
        return h

    optimizer = make_optimizer(layers.parameters(), config)
    scheduler = make_scheduler(optimizer, config)
    criterion = nn.BCEWithLogitsLoss()
    weights = resampling_weights(labels[train_rows]) if config.resample else np.full(n_train, 1.0 / n_train)
    cdf = torch.from_numpy(np.cumsum(weights)).to(device)  # (n_train,)
    rows_t = torch.from_numpy(train_rows).to(device)
    key_t = torch.tensor([key], dtype=torch.int32, device=device)
    draw_keys = key_table(key_t, RESAMPLE, (config.epochs,))  # (E, 1)
    dropout_keys = key_table(key_t, DROPOUT, (config.epochs, n_steps, n_hidden))  # (E, steps, hidden, 1)

    losses = []
    for epoch in range(config.epochs):
        u = uniform(draw_keys[epoch], n_train)[0]  # (n_train,)
        drawn = rows_t[torch.searchsorted(cdf, u * cdf[-1], right=True).clamp_(max=n_train - 1)]
        total = 0.0
        for step in range(n_steps):
            batch = drawn[step * config.batch_size : (step + 1) * config.batch_size]
            loss = criterion(forward(x_all[batch], dropout_keys[epoch, step]), y_all[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        scheduler.step()
        losses.append(total / n_train)
    with torch.no_grad():
        probs = torch.sigmoid(forward(x_all, None)).cpu().numpy()
    return probs, np.array(losses)


def train_mlp_dataloader(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    *,
    config: ProbeConfig,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train one fold's probe the way a typical script does; return eval probabilities and the loss curve.

    Parameters
    ----------
    x_train, y_train
        ``(n, d)`` raw features and ``(n, K)`` labels of the fold's training images.
    x_eval
        ``(m, d)`` raw features to predict (validation and test images).
    config, seed, device
        The recipe, the seed of torch's generators, the device.

    Returns
    -------
    probs : numpy.ndarray
        ``(m, K)`` sigmoid outputs on ``x_eval``.
    loss : numpy.ndarray
        ``(epochs,)`` mean training loss per epoch.
    """
    device = resolve_device(device)
    torch.manual_seed(seed)
    scaler = StandardScaler().fit(x_train)
    dataset = TensorDataset(torch.tensor(scaler.transform(x_train), dtype=torch.float32),
                            torch.tensor(np.asarray(y_train), dtype=torch.float32))
    weights = resampling_weights(y_train) if config.resample else np.ones(len(x_train))
    sampler = WeightedRandomSampler(weights, num_samples=len(x_train), replacement=True,
                                    generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler)
    model = make_mlp(x_train.shape[1], y_train.shape[1], hidden=config.hidden, dropout=config.dropout).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    criterion = nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(config.epochs):
        model.train()
        total = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        scheduler.step()
        losses.append(total / len(x_train))
    model.eval()
    with torch.no_grad():
        x_eval_t = torch.tensor(scaler.transform(x_eval), dtype=torch.float32, device=device)
        probs = torch.sigmoid(model(x_eval_t)).cpu().numpy()
    return probs, np.array(losses)
