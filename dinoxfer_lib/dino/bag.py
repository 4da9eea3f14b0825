"""The bag-of-channels training corpus of DINO BoC (paper 003): single channels from every pretraining domain.

A bag-of-channels encoder sees one channel at a time, whatever the channel means and whichever dataset it comes from,
so it can embed images of any channel count and order (``models/channels.py``, strategy ``bag_of_channels``). Its
training set is therefore a bag of single-channel images:

- **balanced across sources**: every source contributes the same number of channel images (each of its (image,
  channel) pairs once before any is repeated), so a large dataset does not drown a small one (003 §4.2: "balanced
  sampling across data sources");
- **each channel normalised on its own**: its own 1-99.8 percentile window to [0, 1], as the embedding stage and the
  trainer scale every channel (:class:`~dinoxfer_lib.models.channels.Scaling`);
- **one side**: the shorter side resized to ``size`` (antialiased when shrinking), then the centre square.

Train it with :func:`~dinoxfer_lib.dino.train.train_dino` on ``bag.images`` with ``channel_names=("channel",)`` and
``in_chans`` 1 follows; keep ``dino.channel_drop_p`` at 0 (dropping the only channel blanks the sample). A sample of
the bag is one channel where a joint-channel model's sample is a whole image, so 003 trains BoC for more iterations
in proportion to the mean channel count: :meth:`ChannelBag.epochs_matching` and :meth:`ChannelBag.steps_matching`
give the schedule that shows the encoder as much data as a joint model gets. KoLeo on the channel CLS tokens (003
Appendix C) is ``dino.objective: dinov2`` with ``koleo_loss_weight`` > 0: in a bag every CLS token is a channel's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.models.channels import Scaling, scale_intensities


@dataclass(frozen=True)
class ChannelBag:
    """Single-channel training images and where each came from.

    Attributes
    ----------
    images
        (M, 1, size, size) float32 in [0, 1], grouped by source in the order the sources were given.
    source, image_index, channel_index
        (M,) each: the source name, the image within that source and the channel within that image.
    mean_channels
        Mean channel count per image over all the sources' images (003's factor for more iterations).
    n_source_images
        Images over all sources (what a joint-channel model's epoch would go through).
    """

    images: np.ndarray
    source: np.ndarray
    image_index: np.ndarray
    channel_index: np.ndarray
    mean_channels: float
    n_source_images: int

    def epochs_matching(self, joint_epochs: int) -> int:
        """Epochs over this bag that show as many channel images as ``joint_epochs`` over the sources' images
        (``joint_epochs * images * mean channels / len(bag)``, to the nearest whole epoch and at least 1: a bag one
        channel image short of the sources' pairs, from balancing, gets no extra epoch)."""
        return max(1, round(joint_epochs * self.n_source_images * self.mean_channels / len(self.images)))

    def steps_matching(self, joint_steps: int) -> int:
        """Optimiser steps at the same batch size that match ``joint_steps`` of a joint-channel model: one channel
        per sample instead of an image of ``mean_channels`` channels (003: 45,000 iterations x mean channels)."""
        return max(1, math.ceil(joint_steps * self.mean_channels))


# The single input slot of a bag-of-channels encoder: a channel, whatever it means.
BAG_CHANNEL = ("channel",)


def bag_of_channels(
    sources: Mapping[str, np.ndarray], *, size: int, per_source: int | None = None, seed: int = 0,
    chunk: int = 256,
) -> ChannelBag:
    """Single channels drawn balanced from every source, normalised one by one and resized to one side.

    Parameters
    ----------
    sources
        Source name → raw images (N, C, H, W) of any dtype, channel count and size (memory-mapped arrays are read
        ``chunk`` channels at a time).
    size
        Side of the square channel images.
    per_source
        Channel images drawn from each source; default: all the sources' channels divided evenly between them.
        Within a source, (image, channel) pairs are drawn without replacement, and a source with fewer pairs than
        this contributes each of them equally often (± 1).
    seed
        Which pairs are drawn; the same seed gives the same bag.
    chunk
        Channel images normalised and resized per batch (memory).
    """
    if not sources:
        raise DataError("bag of channels: no sources given, expected source name -> (N, C, H, W) images")
    shapes = {}
    for name, images in sources.items():
        shape = tuple(getattr(images, "shape", ()))
        if len(shape) != 4 or min(shape) < 1:
            raise DataError(f"bag of channels: source {name!r} has shape {shape}, expected (N, C, H, W) images")
        shapes[name] = shape
    if size < 1:
        raise ConfigError(f"bag of channels: size = {size}, expected >= 1 pixels")
    total_pairs = sum(n * c for n, c, _, _ in shapes.values())
    per_source = per_source if per_source is not None else max(1, round(total_pairs / len(sources)))
    if per_source < 1:
        raise ConfigError(f"bag of channels: per_source = {per_source}, expected >= 1")

    rng = np.random.default_rng(seed)
    parts, names, image_index, channel_index = [], [], [], []
    for name, images in sources.items():
        n, c = shapes[name][:2]
        pairs = _draw(n * c, per_source, rng)  # flat (image, channel) indices
        pairs.sort()  # read in storage order
        image_index.append(pairs // c)
        channel_index.append(pairs % c)
        names.append(np.full(len(pairs), name, dtype=object))
        for start in range(0, len(pairs), chunk):
            rows, chans = image_index[-1][start:start + chunk], channel_index[-1][start:start + chunk]
            raw = torch.from_numpy(np.asarray(images[rows, chans], dtype=np.float32))[:, None]  # (k, 1, H, W)
            parts.append(_square(scale_intensities(raw, Scaling()), size).numpy())
    n_images = sum(n for n, _, _, _ in shapes.values())
    return ChannelBag(
        images=np.concatenate(parts), source=np.concatenate(names), image_index=np.concatenate(image_index),
        channel_index=np.concatenate(channel_index), mean_channels=total_pairs / n_images, n_source_images=n_images,
    )


def _draw(n_pairs: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices of ``n_pairs``: whole permutations while they fit, then a partial one (no pair twice more
    often than another)."""
    full, rest = divmod(count, n_pairs)
    draws = [rng.permutation(n_pairs) for _ in range(full)] + [rng.permutation(n_pairs)[:rest]]
    return np.concatenate(draws)


def _square(x: torch.Tensor, size: int) -> torch.Tensor:
    """(k, 1, H, W) → (k, 1, size, size): shorter side to ``size`` (antialiased when shrinking), centre square."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new != (h, w):
        x = F.interpolate(x, size=new, mode="bilinear", antialias=scale < 1, align_corners=False)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return x[..., top:top + size, left:left + size].contiguous()
