"""Channel strategies: how a backbone trained on one channel set embeds images with another (PAPER_SPEC.md §3).

- ``mapping`` (the paper's early fusion): each target channel goes to the input slot with the same meaning
  (OpenCell protein → ImageNet red, nucleus → green; into DINO4Cells: protein → protein, nucleus → nucleus); slots
  with no counterpart are black. One forward pass; dimension D.
- ``replication`` (the paper's late fusion): each target channel alone is copied into every input slot and embedded
  separately; the per-channel embeddings are concatenated in the dataset's channel order (dimension C × D).
- ``bag_of_channels`` (DINO BoC, Pham et al.): each channel alone through one shared single-channel encoder
  (``in_chans=1``); features concatenated (C × D) or averaged (D). Works for any channel count, including more
  channels than the encoder saw in training.
- ``native``: the backbone was trained on exactly the target channels (the OpenCell model, Table III row 5).

Intensity normalisation happens in two explicit steps, both batched in torch:

1. **Scaling to [0, 1]**, per target channel (:class:`Scaling`). The default is per-image self-normalisation: each
   channel of each image is mapped linearly from its own 1st..99.8th percentile to [0, 1] and clipped. Microscopy
   intensities span a 16-bit range whose useful part differs between channels, plates and exposure settings; a
   per-image percentile window removes gain and offset (the plate effects) while keeping the pattern, and a
   0.2 % upper tail keeps a few saturated pixels from darkening the whole image. The price: absolute brightness
   (expression level) is discarded. ``Scaling`` with ``bounds`` uses fixed per-channel bounds from dataset
   statistics instead (:func:`dataset_scaling`), which keeps relative brightness between images.
2. **Standardisation per input slot**, as the backbone was trained: ImageNet weights get ImageNet's mean/std on
   their RGB slots (DINO's own preprocessing after ``ToTensor``); DINO4Cells weights get a per-image, per-channel
   z-score (its ``self_normalize``); backbones trained here see the [0, 1] intensities. Missing (black) slots are
   zeros *before* standardisation, i.e. true black pixels in the backbone's own input convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dinoxfer_lib.errors import ConfigError, DataError

STRATEGIES = ("mapping", "replication", "bag_of_channels", "native")
FEATURES = ("cls", "cls4_patchmean")
REDUCTIONS = ("concat", "mean")

# Which input slot of a backbone each target channel fills under "mapping": data, not code.
SLOT_TABLES: dict[str, dict[str, str]] = {
    "imagenet": {"protein": "red", "nucleus": "green"},  # paper: protein → R, nucleus → G, B = 0
    "hpa": {"protein": "protein", "nucleus": "nucleus", "microtubules": "microtubules", "er": "er"},
}


@dataclass(frozen=True)
class Scaling:
    """How raw intensities become [0, 1], per target channel.

    Attributes
    ----------
    low, high
        Percentiles (0-100) mapped to 0 and 1 in each image and channel (per-image self-normalisation).
    bounds
        ``(lows, highs)``, one value per target channel, from dataset statistics: every image uses the same window.
        ``None`` (default) = per image. A uint8 photograph's full range is ``((0, 0, 0), (255, 255, 255))``.
    """

    low: float = 1.0
    high: float = 99.8
    bounds: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high <= 100:
            raise ConfigError(f"scaling percentiles {self.low}..{self.high}: expected 0 <= low < high <= 100")

    def describe(self) -> str:
        if self.bounds is None:
            return f"per-image {self.low:g}-{self.high:g} percentile window per channel to [0, 1]"
        lows, highs = (", ".join(f"{v:g}" for v in side) for side in self.bounds)
        return f"fixed per-channel window to [0, 1] (dataset statistics): low ({lows}), high ({highs})"


def percentiles(x: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Percentiles (0-100) over the last dimension, linear interpolation as ``numpy.percentile``.

    ``torch.quantile`` sorts everything and refuses inputs above 16 M elements (a batch of 256 two-channel 224 px
    images has 26 M). A percentile window only needs the few order statistics next to each percentile, so this
    takes them with ``topk`` from the nearer end (far cheaper than a sort for extreme percentiles) and interpolates
    between the two neighbours. (..., N) → (len(qs), ...).
    """
    n = x.shape[-1]
    out = []
    for q in qs:
        pos = q / 100 * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        if lo < n / 2:  # ascending ranks lo, hi among the hi + 1 smallest values
            smallest = x.topk(hi + 1, dim=-1, largest=False).values
            below, above = smallest[..., lo], smallest[..., hi]
        else:  # ascending rank r is position n - 1 - r among the n - lo largest values (descending)
            largest = x.topk(n - lo, dim=-1).values
            below, above = largest[..., n - 1 - lo], largest[..., n - 1 - hi]
        frac = pos - lo
        out.append(below * (1 - frac) + above * frac)
    return torch.stack(out)


def scale_intensities(x: torch.Tensor, scaling: Scaling) -> torch.Tensor:
    """(B, C, H, W) raw intensities (float) → [0, 1] as ``scaling`` says."""
    if scaling.bounds is None:
        lo, hi = percentiles(x.flatten(2), (scaling.low, scaling.high))[..., None, None]  # 2 x (B, C, 1, 1)
    else:
        lo, hi = (torch.tensor(side, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for side in scaling.bounds)
    return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp_(0, 1)


def dataset_scaling(
    images: np.ndarray, *, low: float = 1.0, high: float = 99.8, max_images: int = 64, seed: int = 0
) -> Scaling:
    """Fixed per-channel bounds from the ``low``/``high`` percentiles of a random sample of ``images``.

    Use this instead of per-image scaling when absolute brightness carries signal (expression level). The sample
    (``max_images``, drawn with ``seed``) keeps the cost bounded on a memory-mapped dataset.
    """
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(images), size=min(max_images, len(images)), replace=False))
    sample = torch.from_numpy(np.asarray(images[pick], dtype=np.float32))  # (n, C, H, W)
    per_channel = sample.transpose(0, 1).flatten(1)  # (C, n*H*W)
    lows, highs = percentiles(per_channel, (low, high)).tolist()
    return Scaling(low=low, high=high, bounds=(tuple(lows), tuple(highs)))


def backbone_features(backbone: nn.Module, x: torch.Tensor, feature: str) -> torch.Tensor:
    """(B, S, H, W) → (B, D) last block's CLS token (the paper), or (B, 5·D) CLS of the last 4 blocks and the
    average-pooled patch tokens of the last block (Cell-DINO / DINO BoC), each after the final LayerNorm."""
    x = x.to(backbone.patch_embed.proj.weight.dtype)  # a bf16 backbone takes bf16 inputs; features are float32
    if feature == "cls":
        return backbone.forward_features(x)[:, 0].float()
    layers = backbone.get_intermediate_layers(x, n=4, return_prefix_tokens=True, norm=True)  # 4 x (patches, prefix)
    cls_tokens = [prefix[:, 0] for _, prefix in layers]  # 4 x (B, D)
    patch_mean = layers[-1][0].mean(dim=1)  # (B, D)
    return torch.cat([*cls_tokens, patch_mean], dim=1).float()


class ChannelEncoder(nn.Module):
    """Raw images (B, C, H, W) as float → embeddings (B, ``out_dim``) with one channel strategy.

    Build it with :func:`make_encoder`, which validates the combination.
    """

    def __init__(
        self,
        strategy: str,
        backbone: nn.Module,
        *,
        target_channels: tuple[str, ...],
        slots: tuple[str, ...],
        slot_map: dict[str, str],
        scaling: Scaling,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        per_image_zscore: bool,
        feature: str,
        reduce: str,
    ) -> None:
        super().__init__()
        self.strategy, self.backbone, self.feature, self.reduce = strategy, backbone, feature, reduce
        self.target_channels, self.slots, self.slot_map = target_channels, slots, slot_map
        self.scaling, self.per_image_zscore = scaling, per_image_zscore
        self.slot_stats = mean is not None
        if self.slot_stats:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        # (target channel index, slot index) pairs that mapping copies; all other slots stay black
        self.placements = [(i, slots.index(slot_map[c])) for i, c in enumerate(target_channels) if c in slot_map]
        width = backbone.embed_dim * (5 if feature == "cls4_patchmean" else 1)
        per_channel = strategy == "replication" or (strategy == "bag_of_channels" and reduce == "concat")
        self.out_dim = width * (len(target_channels) if per_channel else 1)

    @property
    def img_size(self) -> int:
        """Side of the square input the backbone's position embeddings were laid out for."""
        return int(self.backbone.patch_embed.img_size[0])

    def normalisation(self) -> str:
        """Both normalisation steps in words, for ``uns["embedding"]`` and the book."""
        if self.slot_stats:
            pairs = zip(self.mean.flatten().tolist(), self.std.flatten().tolist())
            second = "then per-slot mean/std (" + ", ".join(f"{m:.3f}/{s:.3f}" for m, s in pairs) + ")"
        elif self.per_image_zscore:
            second = "then per-image per-slot z-score"
        else:
            second = "no further standardisation"
        return f"{self.scaling.describe()}; {second}"

    def describe(self) -> dict:
        """Everything that decides the numbers, JSON/h5ad-safe (no ``None``)."""
        weights = getattr(self.backbone, "dinoxfer_weights", {})
        info = {
            "strategy": self.strategy,
            "feature": self.feature,
            "channels": list(self.target_channels),
            "slots": list(self.slots),
            "normalisation": self.normalisation(),
            "dim": self.out_dim,
            "arch": getattr(self.backbone, "dinoxfer_arch", type(self.backbone).__name__),
            "weights": weights.get("source", "random initialisation"),
            "weights_sha256": weights.get("sha256", ""),
        }
        if self.strategy == "mapping":
            info["slot_map"] = {c: self.slot_map[c] for c in self.target_channels if c in self.slot_map}
        if self.strategy == "bag_of_channels":
            info["reduce"] = self.reduce
        return info

    def feature_names(self) -> list[str]:
        """One name per output column, e.g. ``protein:cls:17`` (channel prefix only where features are per channel)."""
        d = self.backbone.embed_dim
        parts = ("cls",) if self.feature == "cls" else ("cls-4", "cls-3", "cls-2", "cls-1", "patchmean")
        base = [f"{part}:{i}" for part in parts for i in range(d)]
        if self.out_dim == len(base):
            return base
        return [f"{channel}:{name}" for channel in self.target_channels for name in base]

    def compile_features(self, mode: str = "default") -> None:
        """Compile, in place, what every strategy runs per image (standardisation and backbone) as one graph of
        fixed shape (a new batch shape compiles again)."""
        self._embed = torch.compile(self._embed, dynamic=False, mode=mode)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, H, W) in [0, 1] → the backbone's input convention (step 2 of the module docstring)."""
        if self.slot_stats:
            return (x - self.mean) / self.std
        if self.per_image_zscore:
            mean = x.mean(dim=(2, 3), keepdim=True)  # (N, S, 1, 1)
            return (x - mean) / (x.std(dim=(2, 3), unbiased=False, keepdim=True) + 1e-7)
        return x

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, H, W) in [0, 1] → (N, F): standardise as in the backbone's training, then features."""
        return backbone_features(self.backbone, self.standardize(x), self.feature)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        b, c, h, w = raw.shape
        x = scale_intensities(raw, self.scaling)  # (B, C, H, W) in [0, 1]
        if self.strategy == "native":
            return self._embed(x)
        if self.strategy == "mapping":
            slotted = x.new_zeros(b, len(self.slots), h, w)  # missing slots stay black
            for channel, slot in self.placements:
                slotted[:, slot] = x[:, channel]
            return self._embed(slotted)
        single = x.reshape(b * c, 1, h, w)  # every channel of every image on its own, image-major
        if self.strategy == "replication":
            feats = self._embed(single.expand(b * c, len(self.slots), h, w))  # (B*C, F), one pass for all channels
            return feats.reshape(b, c * feats.shape[-1])  # (B, C*F) in target channel order
        feats = self._embed(single).reshape(b, c, -1)  # bag of channels: (B, C, F) through the 1-channel encoder
        return feats.flatten(1) if self.reduce == "concat" else feats.mean(dim=1)


def make_encoder(
    strategy: str,
    backbone: nn.Module,
    *,
    target_channels: Sequence[str],
    slots: Sequence[str] | None = None,
    slot_table: str | Mapping[str, str] | None = None,
    scaling: Scaling | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    per_image_zscore: bool = False,
    feature: str = "cls",
    reduce: str = "concat",
) -> ChannelEncoder:
    """Wrap ``backbone`` so it embeds images whose channels are ``target_channels`` with one strategy.

    Parameters
    ----------
    strategy
        One of :data:`STRATEGIES`.
    backbone
        A timm ViT (see :func:`~dinoxfer_lib.models.backbones.create_backbone`); single-channel for bag_of_channels.
    target_channels
        The dataset's channel names, in its order (``ImageSet.channel_names``).
    slots
        What each backbone input channel means (``PretrainedWeights.slots``); default ``slot0, slot1, ...``.
        ``native`` requires them to equal ``target_channels`` when given.
    slot_table
        ``mapping`` only: a key of :data:`SLOT_TABLES` or a dict target channel → slot name.
    scaling
        Step 1, raw → [0, 1] (default: per-image 1-99.8 percentile window, see the module docstring).
    mean, std
        Step 2, per-slot standardisation (ImageNet weights: ``IMAGENET_MEAN``/``IMAGENET_STD``).
    per_image_zscore
        Step 2 instead: per-image, per-slot z-score (DINO4Cells' ``self_normalize``).
    feature
        ``cls`` (the paper) or ``cls4_patchmean`` (5 x wider; Cell-DINO).
    reduce
        ``bag_of_channels`` only: ``concat`` keeps which channel said what, ``mean`` is channel-count invariant.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown channel strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if feature not in FEATURES:
        raise ConfigError(f"unknown feature {feature!r}: expected one of {', '.join(FEATURES)}")
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown bag-of-channels reduction {reduce!r}: expected one of {', '.join(REDUCTIONS)}")
    if (mean is None) != (std is None):
        raise ConfigError("slot standardisation needs both mean and std")
    if mean is not None and per_image_zscore:
        raise ConfigError("choose one standardisation: per-slot mean/std or per-image z-score, not both")
    if feature == "cls4_patchmean" and len(backbone.blocks) < 4:
        raise ConfigError(f"feature cls4_patchmean needs >= 4 blocks, the backbone has {len(backbone.blocks)}")
    target_channels = tuple(target_channels)
    in_chans = backbone.patch_embed.proj.in_channels
    if strategy == "native" and in_chans != len(target_channels):
        raise ConfigError(
            f"native strategy needs a backbone with {len(target_channels)} input channels, this one has {in_chans}: "
            "use mapping or replication"
        )
    if strategy == "native" and slots is not None and tuple(slots) != target_channels:
        raise ConfigError(
            f"native strategy: backbone slots ({', '.join(slots)}) differ from the channels "
            f"({', '.join(target_channels)}); reorder the images or use mapping"
        )
    slots = tuple(slots) if slots is not None else tuple(f"slot{i}" for i in range(in_chans))
    if len(slots) != in_chans:
        raise ConfigError(f"{len(slots)} slot names ({', '.join(slots)}) for a backbone with {in_chans} input channels")
    if mean is not None and not len(mean) == len(std) == in_chans:
        raise ConfigError(f"mean/std have {len(mean)}/{len(std)} values for a backbone with {in_chans} input channels")
    scaling = scaling or Scaling()
    if scaling.bounds is not None and not len(scaling.bounds[0]) == len(scaling.bounds[1]) == len(target_channels):
        raise ConfigError(f"scaling bounds must give one low and one high per channel ({len(target_channels)})")
    slot_map = _slot_map(strategy, slot_table, slots, target_channels)
    if strategy == "bag_of_channels" and in_chans != 1:
        raise ConfigError(f"bag_of_channels needs a single-channel backbone, this one has {in_chans} input channels")
    return ChannelEncoder(
        strategy, backbone, target_channels=target_channels, slots=slots, slot_map=slot_map,
        scaling=scaling, mean=mean, std=std, per_image_zscore=per_image_zscore, feature=feature,
        reduce=reduce,
    )


def _slot_map(
    strategy: str, slot_table: str | Mapping[str, str] | None, slots: tuple[str, ...], target_channels: tuple[str, ...]
) -> dict[str, str]:
    """The validated target channel → slot table of ``mapping`` (empty for the other strategies)."""
    if strategy != "mapping":
        return {}
    if slot_table is None:
        raise ConfigError(f"mapping needs a slot_table: one of {', '.join(SLOT_TABLES)} or a dict channel → slot")
    if isinstance(slot_table, str):
        if slot_table not in SLOT_TABLES:
            raise ConfigError(f"unknown slot table {slot_table!r}: expected one of {', '.join(SLOT_TABLES)}")
        slot_table = SLOT_TABLES[slot_table]
    slot_map = dict(slot_table)
    unknown = sorted(set(slot_map.values()) - set(slots))
    if unknown:
        raise ConfigError(f"mapping slots {unknown} are not inputs of the backbone ({', '.join(slots)})")
    used = [slot_map[c] for c in target_channels if c in slot_map]
    if not used:
        raise ConfigError(f"mapping places none of the channels {', '.join(target_channels)} into the backbone")
    if len(set(used)) < len(used):
        raise ConfigError(f"mapping puts two channels into one slot: {slot_map}")
    return slot_map


def single_channel_copy(backbone: nn.Module) -> nn.Module:
    """A 1-channel copy of ``backbone`` for bag of channels, from a backbone trained with any channel count.

    The patch-embedding filters are summed over their input channels: a single channel then produces exactly the
    patch tokens the original backbone gives that channel copied into every slot (the replication input), so no
    weights are invented. (timm's ``adapt_input_conv`` assumes 3-channel weights and refuses DINO4Cells' 4.)
    """
    import copy

    single = copy.deepcopy(backbone)
    proj = single.patch_embed.proj
    summed = nn.Conv2d(1, proj.out_channels, proj.kernel_size, proj.stride, bias=proj.bias is not None)
    with torch.no_grad():
        summed.weight.copy_(proj.weight.sum(dim=1, keepdim=True))  # (D, 1, P, P)
        if proj.bias is not None:
            summed.bias.copy_(proj.bias)
    single.patch_embed.proj = summed.to(proj.weight.device, proj.weight.dtype)
    return single.eval()


def check_channels(encoder: ChannelEncoder, channel_names: Sequence[str]) -> None:
    """A DataError unless the images' channels are the encoder's target channels, in the same order."""
    if tuple(channel_names) != encoder.target_channels:
        raise DataError(
            f"images have channels ({', '.join(channel_names)}), the encoder expects "
            f"({', '.join(encoder.target_channels)}) in that order"
        )
