"""Channel strategies: how a backbone trained on one channel set embeds images with another (PAPER_SPEC.md §3).

- ``mapping`` (the paper's early fusion): each target channel goes to the input slot with the same meaning, other
  slots are black (zero intensity). One forward pass.
- ``replication`` (the paper's late fusion): each target channel alone is copied into every input slot and embedded
  separately; the per-channel embeddings are concatenated (dimension C × D).
- ``bag_of_channels`` (DINO BoC): each channel alone through one shared single-channel encoder; features
  concatenated or averaged, for any channel count, including more channels than seen in training.
- ``native``: the backbone was trained on exactly the target channels (the OpenCell model).

Intensities: every channel of every image is first scaled to [0, 1] between its own 1st and 99.8th percentile
(per-image self-normalisation: robust to the 16-bit range and to plate gain/offset, and what DINO4Cells-style
pipelines feed their models). Backbones trained on ImageNet then get ImageNet's mean/std on their RGB slots, as in
DINO's own preprocessing; black (missing) slots are normalised the same way, i.e. they are true black pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dinoxfer_lib.errors import ConfigError

STRATEGIES = ("mapping", "replication", "bag_of_channels", "native")
FEATURES = ("cls", "cls4_patchmean")

# Which input slot of a backbone each target channel fills under "mapping": data, not code.
SLOT_TABLES: dict[str, dict[str, str]] = {
    "imagenet": {"protein": "red", "nucleus": "green"},  # paper: protein → red, nucleus → green, blue empty
    "hpa": {"protein": "protein", "nucleus": "nucleus", "microtubules": "microtubules", "er": "er"},
}


def scale_per_image(x: torch.Tensor, *, low: float = 1.0, high: float = 99.8) -> torch.Tensor:
    """(B, C, H, W) raw intensities → [0, 1] per image and channel between the two percentiles."""
    flat = x.flatten(2)  # (B, C, H*W)
    q = torch.quantile(flat, torch.tensor([low / 100, high / 100], device=x.device, dtype=x.dtype), dim=2)
    lo, hi = q[0][..., None, None], q[1][..., None, None]  # (B, C, 1, 1)
    return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)


def backbone_features(backbone: nn.Module, x: torch.Tensor, feature: str) -> torch.Tensor:
    """(B, S, H, W) → (B, D) CLS token, or (B, 5·D) CLS of the last 4 blocks + mean patch token (Cell-DINO)."""
    if feature == "cls":
        return backbone.forward_features(x)[:, 0]
    if feature == "cls4_patchmean":
        layers = backbone.get_intermediate_layers(x, n=4, return_prefix_tokens=True, norm=True)
        cls_tokens = [prefix[:, 0] for _, prefix in layers]  # 4 × (B, D)
        patch_mean = layers[-1][0].mean(dim=1)  # (B, D) average-pooled patch tokens of the last block
        return torch.cat([*cls_tokens, patch_mean], dim=1)
    raise ConfigError(f"unknown feature {feature!r}: expected one of {', '.join(FEATURES)}")


class ChannelEncoder(nn.Module):
    """Scaled images (B, C, H, W) in [0, 1] → embeddings (B, out_dim) with one channel strategy."""

    def __init__(
        self,
        strategy: str,
        backbone: nn.Module,
        *,
        target_channels: Sequence[str],
        slots: Sequence[str],
        slot_map: Mapping[str, str] | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        feature: str,
        reduce: str,
    ) -> None:
        super().__init__()
        self.strategy, self.backbone, self.feature, self.reduce = strategy, backbone, feature, reduce
        self.target_channels, self.slots = tuple(target_channels), tuple(slots)
        self.slot_map = dict(slot_map or {})
        n_slots = len(self.slots)
        self.register_buffer("mean", torch.tensor(mean if mean else [0.0] * n_slots).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std if std else [1.0] * n_slots).view(1, -1, 1, 1))
        width = backbone.embed_dim * (5 if feature == "cls4_patchmean" else 1)
        per_channel = strategy == "replication" or (strategy == "bag_of_channels" and reduce == "concat")
        self.out_dim = width * (len(self.target_channels) if per_channel else 1)

    def describe(self) -> dict:
        return {
            "strategy": self.strategy,
            "feature": self.feature,
            "target_channels": list(self.target_channels),
            "slots": list(self.slots),
            "slot_map": self.slot_map,
            "reduce": self.reduce if self.strategy == "bag_of_channels" else None,
            "normalisation": "per-image 1-99.8 percentile to [0, 1]"
            + (", then slot mean/std" if bool((self.std != 1).any() or (self.mean != 0).any()) else ""),
            "dim": self.out_dim,
        }

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return backbone_features(self.backbone, (x - self.mean) / self.std, self.feature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.strategy == "native":
            return self._embed(x)
        if self.strategy == "mapping":
            slotted = x.new_zeros(b, len(self.slots), h, w)  # missing slots stay black
            for i, channel in enumerate(self.target_channels):
                if channel in self.slot_map:
                    slotted[:, self.slots.index(self.slot_map[channel])] = x[:, i]
            return self._embed(slotted)
        if self.strategy == "replication":
            per_channel = [self._embed(x[:, i : i + 1].expand(b, len(self.slots), h, w)) for i in range(c)]
            return torch.cat(per_channel, dim=1)  # (B, C·D), target channel order
        # bag_of_channels: all channels of all images through the shared 1-channel encoder in one pass
        feats = self._embed(x.reshape(b * c, 1, h, w)).view(b, c, -1)  # (B, C, D)
        return feats.flatten(1) if self.reduce == "concat" else feats.mean(dim=1)


def make_encoder(
    strategy: str,
    backbone: nn.Module,
    *,
    target_channels: Sequence[str],
    slots: Sequence[str] | None = None,
    slot_table: str | Mapping[str, str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    feature: str = "cls",
    reduce: str = "concat",
) -> ChannelEncoder:
    """Wrap ``backbone`` (whose input slots are ``slots``) so it embeds images with ``target_channels``."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown channel strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if feature not in FEATURES:
        raise ConfigError(f"unknown feature {feature!r}: expected one of {', '.join(FEATURES)}")
    if reduce not in ("concat", "mean"):
        raise ConfigError(f"unknown bag-of-channels reduction {reduce!r}: expected concat or mean")
    in_chans = backbone.patch_embed.proj.in_channels
    slots = tuple(slots) if slots is not None else tuple(f"slot{i}" for i in range(in_chans))
    if len(slots) != in_chans:
        raise ConfigError(f"{len(slots)} slot names for a backbone with {in_chans} input channels")
    slot_map = None
    if strategy == "mapping":
        slot_map = SLOT_TABLES[slot_table] if isinstance(slot_table, str) else dict(slot_table or {})
        unknown = sorted(set(slot_map.values()) - set(slots))
        if unknown:
            raise ConfigError(f"mapping slots {unknown} are not inputs of the backbone ({', '.join(slots)})")
        if not set(slot_map) & set(target_channels):
            raise ConfigError(f"mapping places none of the channels {', '.join(target_channels)} into the backbone")
    if strategy == "native" and in_chans != len(target_channels):
        raise ConfigError(
            f"native strategy needs a backbone with {len(target_channels)} input channels, this one has {in_chans}: "
            "use mapping or replication"
        )
    if strategy == "bag_of_channels" and in_chans != 1:
        raise ConfigError(f"bag_of_channels needs a single-channel backbone, this one has {in_chans} input channels")
    return ChannelEncoder(
        strategy, backbone, target_channels=target_channels, slots=slots, slot_map=slot_map,
        mean=mean, std=std, feature=feature, reduce=reduce,
    )
