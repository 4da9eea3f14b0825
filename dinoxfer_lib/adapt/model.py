"""A fine-tuned localisation model: channel encoder → train-fold standardisation → the paper's MLP head.

Saved as two plain files: ``adapted.json`` (regime, encoder description, head shape, LoRA settings) and
``weights.safetensors`` holding only what training changed - the head and the standardisation always, the LoRA
adapters (peft's names) for ``lora``, the whole backbone for ``full``. Reloading starts from the same pretrained
encoder, so a LoRA model is a few hundred kilobytes on disk instead of a copy of the backbone.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dinoxfer_lib.adapt.config import REGIMES, LoraSettings
from dinoxfer_lib.adapt.lora import add_lora, load_lora_state_dict, lora_state_dict
from dinoxfer_lib.errors import StoreError
from dinoxfer_lib.models.channels import ChannelEncoder
from dinoxfer_lib.probes.mlp import make_mlp

MODEL_FILE = "adapted.json"
WEIGHTS_FILE = "weights.safetensors"
# What must agree between the encoder a model was trained with and the one it is reloaded onto.
_ENCODER_KEYS = ("strategy", "feature", "channels", "slots", "normalisation", "dim", "arch")


class AdaptedClassifier(nn.Module):
    """Raw images ``(B, C, H, W)`` → logits ``(B, K)``.

    Features are standardised by a BatchNorm without affine parameters whose running statistics start as the
    training fold's mean and variance of the *pretrained* features, so every regime's head starts on the frozen
    probe's input scale. For ``frozen`` it stays in eval mode: exactly the probes' fixed standardisation. For
    ``lora`` and ``full`` it standardises each batch while training, so features that move as the backbone learns
    are not amplified by a std that no longer fits them (a dimension with a small pretrained spread would be).
    """

    def __init__(self, encoder: ChannelEncoder, head: nn.Sequential, *, mean: torch.Tensor, std: torch.Tensor,
                 regime: str, hidden: Sequence[int], dropout: float):
        super().__init__()
        self.encoder, self.head, self.regime = encoder, head, regime
        self.hidden, self.dropout = tuple(hidden), dropout
        self.norm = nn.BatchNorm1d(encoder.out_dim, affine=False, eps=1e-6)
        with torch.no_grad():
            self.norm.running_mean.copy_(torch.as_tensor(mean))
            self.norm.running_var.copy_(torch.as_tensor(std) ** 2)

    def train(self, mode: bool = True) -> AdaptedClassifier:
        super().train(mode)
        if self.regime == "frozen":  # fixed standardisation; the shared pretrained encoder is never trained
            self.norm.eval()
            self.encoder.eval()
        return self

    @classmethod
    def build(cls, encoder: ChannelEncoder, n_classes: int, *, mean: torch.Tensor, std: torch.Tensor, regime: str,
              hidden: Sequence[int], dropout: float) -> AdaptedClassifier:
        """A fresh head (``make_mlp``, torch's default init from the current random state) on ``encoder``."""
        head = make_mlp(encoder.out_dim, n_classes, hidden=hidden, dropout=dropout)
        return cls(encoder, head, mean=mean, std=std, regime=regime, hidden=hidden, dropout=dropout)

    @property
    def n_classes(self) -> int:
        return self.head[-1].out_features

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of the encoder's features ``(B, D)``."""
        return self.head(self.norm(features))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.encoder(raw))


def save_adapted(model: AdaptedClassifier, folder: str | Path) -> None:
    """Write ``model`` into ``folder`` (which the run store makes atomic)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{part}.{k}": v for part in ("head", "norm") for k, v in getattr(model, part).state_dict().items()}
    backbone = model.encoder.backbone
    if model.regime == "lora":
        tensors.update({f"lora.{k}": v for k, v in lora_state_dict(backbone).items()})
    elif model.regime == "full":
        tensors.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE))
    meta = {
        "regime": model.regime,
        "encoder": model.encoder.describe(),
        "head": {"in_dim": model.encoder.out_dim, "hidden": list(model.hidden), "n_classes": model.n_classes,
                 "dropout": model.dropout},
        "lora": getattr(backbone, "dinoxfer_lora", None) if model.regime == "lora" else None,
    }
    (folder / MODEL_FILE).write_text(json.dumps(meta, indent=1))


def load_adapted(folder: str | Path, encoder: ChannelEncoder) -> AdaptedClassifier:
    """Rebuild a model saved by :func:`save_adapted` on ``encoder``, the pretrained encoder it was trained from.

    ``encoder`` itself is left untouched: ``lora`` and ``full`` models work on a copy.

    Raises
    ------
    StoreError
        Missing files, or an encoder that differs from the saved one (architecture, strategy, channels,
        normalisation, feature, or the recorded sha256 of its weights).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise StoreError(f"{folder}: not a saved adapted model (expected {MODEL_FILE} and {WEIGHTS_FILE})")
    meta = json.loads((folder / MODEL_FILE).read_text())
    if meta["regime"] not in REGIMES:
        raise StoreError(f"{folder / MODEL_FILE}: regime {meta['regime']!r}, expected one of {', '.join(REGIMES)}")
    _check_encoder(meta["encoder"], encoder.describe(), folder)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    regime = meta["regime"]
    if regime != "frozen":
        encoder = copy.deepcopy(encoder)
    if regime == "lora":
        lora = meta["lora"]
        settings = LoraSettings(rank=lora["rank"], alpha=lora["alpha"], dropout=lora["dropout"],
                                targets=tuple(lora["targets"]))
        add_lora(encoder.backbone, settings, seed=0)
        load_lora_state_dict(encoder.backbone, _prefixed(tensors, "lora."))
    elif regime == "full":
        encoder.backbone.load_state_dict(_prefixed(tensors, "backbone."))
    head = meta["head"]
    model = AdaptedClassifier.build(encoder, head["n_classes"], mean=torch.zeros(head["in_dim"]),
                                    std=torch.ones(head["in_dim"]), regime=regime, hidden=head["hidden"],
                                    dropout=head["dropout"])
    model.head.load_state_dict(_prefixed(tensors, "head."))
    model.norm.load_state_dict(_prefixed(tensors, "norm."))
    return model.to(next(encoder.backbone.parameters()).device).eval()


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _check_encoder(saved: dict, given: dict, folder: Path) -> None:
    for key in _ENCODER_KEYS:
        if saved.get(key) != given.get(key):
            raise StoreError(f"{folder}: saved with encoder {key} {saved.get(key)!r}, given {given.get(key)!r}; "
                             f"reload onto the encoder it was trained from")
    trained, loaded = saved.get("weights_sha256"), given.get("weights_sha256")
    if trained and loaded and trained != loaded:
        raise StoreError(f"{folder}: trained from weights sha256 {trained[:12]}..., given {loaded[:12]}...; "
                         f"reload onto the same pretrained weights")
