"""The EM segmentation study of paper 004: a light head on ViT patch tokens, frozen or LoRA, one domain or both.

For every training set of ``config.train_sets`` (``lucchi``, ``vnc``, or both jointly) and every regime
(``frozen``: the backbone's patch tokens are computed once and only the head trains; ``lora``: adapters on the
attention projections train with the head, the backbone runs in every step), one model is trained with Dice + BCE
on the training patches and scored by foreground IoU on every domain's test patches: in-domain and cross-domain.
With ``config.head_epochs`` > 0 the frozen model is trained first and the LoRA model starts from its head (LP-FT).
:meth:`SegResult.table` is 004's table: rows training set x regime, one IoU column per test domain.

Joint training draws its batches from both domains as ``config.joint_sampling`` says (:func:`joint_draws`); an
epoch draws as many patches as the training set(s) hold. No augmentation: the frozen regime's cached tokens could
not follow it, and both regimes must see the same data.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dinoxfer_lib.adapt.lora import add_lora, count_parameters
from dinoxfer_lib.adapt.optim import cosine_schedule
from dinoxfer_lib.adapt.train import image_batch
from dinoxfer_lib.data.em import EMSet
from dinoxfer_lib.devices import resolve_device, synchronize
from dinoxfer_lib.divergence import stop_on_divergence
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.channels import ChannelEncoder
from dinoxfer_lib.probes.keyed_random import model_key
from dinoxfer_lib.seg.config import JOINT_SAMPLING, SEG_REGIMES, SegConfig
from dinoxfer_lib.seg.heads import make_seg_head, patch_tokens
from dinoxfer_lib.seg.losses import dice_bce_loss, foreground_iou

SCORE_COLUMNS = ("train_set", "regime", "test_domain", "in_domain", "iou", "n_test")


class Segmenter(nn.Module):
    """Raw EM patches ``(B, 1, H, W)`` → mitochondrion logits ``(B, H, W)``."""

    def __init__(self, encoder: ChannelEncoder, head: nn.Module, *, regime: str):
        super().__init__()
        self.encoder, self.head, self.regime = encoder, head, regime

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.head(patch_tokens(self.encoder, raw), raw.shape[2:])


@dataclass
class SegResult:
    """IoU of every (training set, regime) model on every test domain, with costs and example predictions.

    Attributes
    ----------
    scores
        Tidy: ``train_set`` (domains joined by ``+``), ``regime``, ``test_domain``, ``in_domain``, ``iou``
        (pooled foreground IoU), ``n_test`` (patches).
    history
        ``train_set, regime, epoch, loss`` (mean training loss per epoch).
    costs
        ``train_set, regime, trainable_params, total_params, train_s, head_s, token_cache_s, device``;
        ``head_s`` is the head-only training a LoRA model started from (``config.head_epochs``; for the frozen
        model it is its own ``train_s``), ``token_cache_s`` the one-time computation of every patch's tokens,
        shared by all head-only models (0 for LoRA).
    examples
        ``(train_set, regime, test_domain)`` → predicted masks ``(k, H, W)`` of k test patches of that domain
        spread evenly over its test split, for overlays.
    example_rows
        Test domain → the ``(k,)`` rows of ``data[domain].split("test")`` the examples are (:func:`example_rows`).
    """

    scores: pd.DataFrame
    history: pd.DataFrame
    costs: pd.DataFrame
    examples: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    example_rows: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, folder: str | Path) -> None:
        """Write plain files: ``scores.csv``, ``history.csv``, ``costs.csv`` and ``examples.npz`` (keys
        ``train_set|regime|test_domain``, and ``rows|<domain>`` for the example rows)."""
        folder = Path(folder)
        self.scores.to_csv(folder / "scores.csv", index=False)
        self.history.to_csv(folder / "history.csv", index=False)
        self.costs.to_csv(folder / "costs.csv", index=False)
        np.savez_compressed(folder / "examples.npz", **{"|".join(key): masks for key, masks in self.examples.items()},
                            **{f"rows|{domain}": rows for domain, rows in self.example_rows.items()})

    @classmethod
    def load(cls, folder: str | Path) -> SegResult:
        """Read what :meth:`save` wrote."""
        folder = Path(folder)
        with np.load(folder / "examples.npz") as stored:
            arrays = {tuple(key.split("|")): stored[key] for key in stored.files}
        return cls(scores=pd.read_csv(folder / "scores.csv"), history=pd.read_csv(folder / "history.csv"),
                   costs=pd.read_csv(folder / "costs.csv"),
                   examples={key: masks for key, masks in arrays.items() if key[0] != "rows"},
                   example_rows={key[1]: rows for key, rows in arrays.items() if key[0] == "rows"})

    def table(self) -> pd.DataFrame:
        """004's table: one row per (training set, regime), the IoU on each test domain as columns."""
        order = list(dict.fromkeys(self.scores["test_domain"]))
        table = self.scores.pivot_table(index=["train_set", "regime"], columns="test_domain", values="iou",
                                        sort=False, dropna=False)  # an undefined IoU (no foreground) stays NaN
        return table[order]


def example_rows(n_test: int, n_examples: int) -> np.ndarray:
    """Rows of the test patches kept as examples: ``n_examples`` spread evenly over the ``n_test`` (consecutive
    slices of a volume are near copies, so the first few would show one place)."""
    return np.unique(np.linspace(0, n_test - 1, min(n_examples, n_test)).round().astype(int))


def joint_draws(sizes: Sequence[int], n: int, *, sampling: str, generator: torch.Generator) -> np.ndarray:
    """``n`` draws (with replacement) over the concatenation of training sets of ``sizes``.

    ``balanced``: each set is drawn with probability 1 / len(sizes), then a patch uniformly within it;
    ``proportional``: every patch equally often. Returns ``(n,)`` indices into the concatenation.
    """
    if sampling not in JOINT_SAMPLING:
        raise ConfigError(f"unknown joint sampling {sampling!r}: expected one of {', '.join(JOINT_SAMPLING)}")
    if not sizes or min(sizes) < 1:
        raise DataError(f"joint training needs non-empty training sets, got sizes {list(sizes)}")
    sizes = np.asarray(sizes)
    per_patch = np.repeat(1.0 / (len(sizes) * sizes) if sampling == "balanced" else np.ones(len(sizes)), sizes)
    return torch.multinomial(torch.as_tensor(per_patch), n, replacement=True, generator=generator).numpy()


@torch.no_grad()
def compute_tokens(encoder: ChannelEncoder, images: np.ndarray, *, batch_size: int,
                   device: torch.device) -> torch.Tensor:
    """Patch-token maps ``(N, D, h, w)`` of ``images`` ``(N, 1, H, W)`` by the encoder in eval mode, on the device."""
    encoder.eval()
    return torch.cat([patch_tokens(encoder, image_batch(images, np.arange(i, min(i + batch_size, len(images))),
                                                        device))
                      for i in range(0, len(images), batch_size)])


def train_segmenter(
    encoder: ChannelEncoder,
    train_sets: Sequence[EMSet],
    *,
    config: SegConfig,
    regime: str,
    device: str | torch.device | None = None,
    seed: int = 0,
    tokens: Sequence[torch.Tensor] | None = None,
    epochs: int | None = None,
    head: nn.Module | None = None,
) -> tuple[Segmenter, np.ndarray]:
    """Train one head (and, for ``lora``, adapters on a copy of the backbone) on the patches of ``train_sets``.

    Parameters
    ----------
    encoder
        The pretrained backbone in a single-channel strategy; left unchanged.
    train_sets
        One :class:`~dinoxfer_lib.data.em.EMSet` per domain trained on (their training patches); several are
        drawn from as ``config.joint_sampling`` says.
    config, regime
        The recipe, and ``frozen`` or ``lora``.
    device, seed
        Where to train; the seed fixes the head, adapters and draws (torch's global random state is untouched).
    tokens
        ``frozen`` only: each set's precomputed :func:`compute_tokens` (computed here when not given).
    epochs
        Default ``config.epochs``.
    head
        A trained head to start from (its weights are copied; LP-FT), else a fresh one.

    Returns
    -------
    Segmenter, numpy.ndarray
        The trained model (eval mode) and the mean training loss of each epoch.
    """
    config.validate("seg")
    if regime not in SEG_REGIMES:
        raise ConfigError(f"unknown segmentation regime {regime!r}: expected one of {', '.join(SEG_REGIMES)}")
    device = resolve_device(device)
    encoder = encoder.to(device).eval()
    _check_patches(encoder, train_sets)
    images = np.concatenate([em.images for em in train_sets])
    masks_t = torch.from_numpy(np.concatenate([em.masks for em in train_sets])).to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed % 2**63)
        if regime == "frozen":
            tokens_t = torch.cat(list(tokens) if tokens is not None else
                                 [compute_tokens(encoder, em.images, batch_size=config.batch_size, device=device)
                                  for em in train_sets])
        else:
            encoder = copy.deepcopy(encoder)
            add_lora(encoder.backbone, config.lora, seed=seed)
        start = head
        head = make_seg_head(config.head, encoder.backbone.embed_dim, width=config.decoder_width)
        if start is not None:
            head.load_state_dict(start.state_dict())
        model = Segmenter(encoder, head, regime=regime).to(device)
        adapters = [p for p in encoder.backbone.parameters() if p.requires_grad] if regime == "lora" else []
        optimizer = torch.optim.AdamW([*head.parameters(), *adapters], lr=config.lr,
                                      weight_decay=config.weight_decay)
        n = len(images)
        steps = math.ceil(n / config.batch_size)
        epochs = config.epochs if epochs is None else epochs
        scheduler = cosine_schedule(optimizer, epochs * steps)
        generator = torch.Generator().manual_seed(seed % 2**63)
        size = tuple(images.shape[2:])
        (head if regime == "frozen" else model).train()  # a frozen encoder stays in eval mode
        losses = np.empty(epochs)
        for epoch in range(epochs):
            drawn = joint_draws([len(em) for em in train_sets], n, sampling=config.joint_sampling,
                                generator=generator)
            total = 0.0
            for step in range(steps):
                rows = drawn[step * config.batch_size:(step + 1) * config.batch_size]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    if regime == "frozen":
                        logits = head(tokens_t[torch.as_tensor(rows, device=device)], size)
                    else:
                        logits = model(image_batch(images, rows, device))
                loss = dice_bce_loss(logits.float(), masks_t[torch.as_tensor(rows, device=device)],
                                     dice_weight=config.dice_weight, bce_weight=config.bce_weight)
                value = loss.item()
                stop_on_divergence(value, what=f"segmentation loss ({regime})", steps_per_epoch=steps,
                                   first_step=epoch * steps + step, hint="lower seg.lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += value * len(rows)
            losses[epoch] = total / n
    return model.eval(), losses


@torch.no_grad()
def predict_masks(model: Segmenter, images: np.ndarray, *, threshold: float, batch_size: int,
                  tokens: torch.Tensor | None = None) -> np.ndarray:
    """Boolean masks ``(N, H, W)`` (sigmoid >= threshold) of ``images`` ``(N, 1, H, W)``, computed on the model's
    device; with ``tokens`` (their precomputed token maps) only the head runs."""
    device = next(model.head.parameters()).device
    model.eval()
    size = tuple(images.shape[2:])
    out = []
    for start in range(0, len(images), batch_size):
        rows = np.arange(start, min(start + batch_size, len(images)))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = (model.head(tokens[start:start + len(rows)], size) if tokens is not None
                      else model(image_batch(images, rows, device)))
        out.append((torch.sigmoid(logits.float()) >= threshold).cpu().numpy())
    return np.concatenate(out)


def run_seg_study(
    encoder: ChannelEncoder,
    data: Mapping[str, EMSet],
    *,
    config: SegConfig,
    device: str | torch.device | None = None,
    seed: int = 0,
    n_examples: int = 4,
) -> SegResult:
    """Every training set x regime of ``config``, each scored on every domain's test patches (004's table).

    Parameters
    ----------
    encoder
        The pretrained backbone in a single-channel strategy (e.g. ``make_encoder("replication", backbone,
        target_channels=("em",), ...)``, ImageNet mean/std for ImageNet-style weights); left unchanged.
    data
        Domain name → its patches (:class:`~dinoxfer_lib.data.em.EMSet` with ``train`` and ``test`` rows; tile
        whole slices first with :func:`~dinoxfer_lib.data.em.tile_em`).
    config
        The study (``config.validate("seg")`` is applied); every domain a training set names must be in ``data``.
    device, seed
        Where to train; the run seed, with the training set and regime, fixes each model.
    n_examples
        Predicted masks kept per (model, test domain) for overlays (:func:`example_rows`).
    """
    config.validate("seg")
    missing = sorted({d for s in config.train_sets for d in s} - set(data))
    if missing:
        raise DataError(f"seg.train_sets names domains {missing} that are not in the data ({', '.join(data)})")
    device = resolve_device(device)
    encoder = encoder.to(device).eval()
    train = {d: em.split("train") for d, em in data.items()}
    test = {d: em.split("test") for d, em in data.items()}
    for domain, em in [*train.items(), *test.items()]:
        if len(em) == 0:
            raise DataError(f"domain {domain!r} has no train or no test patches: expected both splits")
    _check_patches(encoder, list(data.values()))
    cached: dict[tuple[str, str], torch.Tensor] = {}
    started = time.perf_counter()
    if "frozen" in config.regimes or config.head_epochs:  # tokens of every patch, once for all head-only models
        for split, sets in (("train", train), ("test", test)):
            for d, em in sets.items():
                cached[(split, d)] = compute_tokens(encoder, em.images, batch_size=config.batch_size, device=device)
    synchronize(device)
    token_cache_s = time.perf_counter() - started
    rows, history, costs, examples = [], [], [], {}
    for domains in config.train_sets:
        name = "+".join(domains)
        probed = None  # (head-only model, its loss per epoch, seconds) when heads are trained first (LP-FT)
        if config.head_epochs:
            started = time.perf_counter()
            model, loss = train_segmenter(encoder, [train[d] for d in domains], config=config, regime="frozen",
                                          device=device, seed=model_key(seed, name, "head"),
                                          tokens=[cached[("train", d)] for d in domains], epochs=config.head_epochs)
            synchronize(device)
            probed = (model, loss, time.perf_counter() - started)
        for regime in config.regimes:
            started = time.perf_counter()
            if regime == "frozen" and probed is not None:  # the frozen model is the trained head itself
                model, loss, train_s = probed
            else:
                tokens = [cached[("train", d)] for d in domains] if regime == "frozen" else None
                model, loss = train_segmenter(encoder, [train[d] for d in domains], config=config, regime=regime,
                                              device=device, seed=model_key(seed, name, regime), tokens=tokens,
                                              head=probed[0].head if probed is not None else None)
                synchronize(device)
                train_s = time.perf_counter() - started
            trainable = sum(p.numel() for p in model.head.parameters()) + (
                count_parameters(model.encoder.backbone)[0] if regime == "lora" else 0)
            costs.append({"train_set": name, "regime": regime, "trainable_params": trainable,
                          "total_params": count_parameters(model)[1], "train_s": round(train_s, 2),
                          "head_s": round(probed[2], 2) if probed is not None else 0.0,
                          "token_cache_s": round(token_cache_s, 2) if regime == "frozen" else 0.0,
                          "device": device.type})
            history.append(pd.DataFrame({"train_set": name, "regime": regime, "epoch": np.arange(1, len(loss) + 1),
                                         "loss": loss}))
            for d, em in test.items():
                predicted = predict_masks(model, em.images, threshold=config.threshold, batch_size=config.batch_size,
                                          tokens=cached.get(("test", d)) if regime == "frozen" else None)
                rows.append({"train_set": name, "regime": regime, "test_domain": d, "in_domain": d in domains,
                             "iou": foreground_iou(predicted, em.masks), "n_test": len(em)})
                examples[(name, regime, d)] = predicted[example_rows(len(em), n_examples)]  # (k, H, W)
            del model
        del probed
    return SegResult(scores=pd.DataFrame(rows, columns=list(SCORE_COLUMNS)),
                     history=pd.concat(history, ignore_index=True), costs=pd.DataFrame(costs), examples=examples,
                     example_rows={d: example_rows(len(em), n_examples) for d, em in test.items()})


def _check_patches(encoder: ChannelEncoder, sets: Sequence[EMSet]) -> None:
    """One patch size for all sets (they are batched together), a multiple of the backbone's patch."""
    if not sets:
        raise DataError("no EM set given: expected one EMSet per domain")
    patch = encoder.backbone.patch_embed.patch_size[0]
    sizes = {em.images.shape[2:] for em in sets}
    if len(sizes) > 1:
        raise DataError(f"EM sets have patches of different sizes {sorted(sizes)}: tile them to one size")
    height, width = sizes.pop()
    if height % patch or width % patch:
        raise DataError(f"patches of {height} x {width} px are not a multiple of the backbone's {patch} px patch: "
                        f"tile them to a multiple")
