"""Multi-channel fluorescence images as RGB composites, in each domain's usual display convention.

OpenCell images follow the paper's Figure 2 (Isselmann et al. 2026): protein red, nucleus green. HPA images
follow the Kaggle 2018 convention (protein green, microtubules red, nucleus blue, ER yellow). Photographs keep
their own RGB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import to_rgb

from dinoxfer_lib.data.classes import HPA_KAGGLE_COLOURS, NATURAL_CHANNELS
from dinoxfer_lib.errors import DataError

OPENCELL_COLOURS: dict[str, str] = {"protein": "red", "nucleus": "green"}
_NATURAL_COLOURS: dict[str, str] = {name: name for name in NATURAL_CHANNELS}
_FALLBACK_COLOURS: tuple[str, ...] = ("red", "green", "blue")

# Contrast stretch limits in percent: clip the darkest 1 % and the brightest 0.2 % (hot pixels, aggregates).
STRETCH_PERCENTILES: tuple[float, float] = (1.0, 99.8)


def default_mapping(channel_names: Sequence[str]) -> dict[str, str]:
    """Channel name → display colour for a channel set, following the conventions in the module docstring.

    An unknown channel set shows its first three channels as red, green, blue (a single channel as grey), so
    any user dataset gets a readable picture without configuration.
    """
    names = set(channel_names)
    for convention in (OPENCELL_COLOURS, HPA_KAGGLE_COLOURS, _NATURAL_COLOURS):
        if names == set(convention):
            return dict(convention)
    if len(channel_names) == 1:
        return {channel_names[0]: "white"}
    return dict(zip(channel_names, _FALLBACK_COLOURS))


def composite(
    image: np.ndarray, channel_names: Sequence[str], *, mapping: Mapping[str, object] | None = None
) -> np.ndarray:
    """Blend the channels of one image into an RGB picture.

    Each shown channel is contrast-stretched on its own between its 1st and 99.8th percentile, because
    fluorescence channels differ in brightness by orders of magnitude; photographs (channels red, green, blue)
    share one stretch so their colours stay true. Channels are added in their colour and the sum clipped.

    Parameters
    ----------
    image
        ``(C, H, W)`` in any intensity range.
    channel_names
        Names of the ``C`` channels, in order.
    mapping
        Channel name → any matplotlib colour. Channels left out are not shown. Default:
        :func:`default_mapping`.

    Returns
    -------
    ndarray
        ``(H, W, 3)`` float in ``[0, 1]``.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or len(image) != len(channel_names):
        expected = len(channel_names)
        raise DataError(f"composite needs a (C, H, W) image with C = {expected}, got shape {image.shape}")
    mapping = default_mapping(channel_names) if mapping is None else mapping
    unknown = [name for name in mapping if name not in channel_names]
    if unknown:
        raise DataError(f"composite: unknown channels {unknown}; this image has {', '.join(channel_names)}")
    index = [list(channel_names).index(name) for name in mapping]
    colours = np.array([to_rgb(colour) for colour in mapping.values()], dtype=np.float32)  # (shown, 3)
    natural = set(channel_names) == set(NATURAL_CHANNELS)
    stretched = _stretch(image[index], joint=natural)  # (shown, H, W)
    return np.clip(np.einsum("chw,ck->hwk", stretched, colours), 0.0, 1.0)


def _stretch(channels: np.ndarray, *, joint: bool) -> np.ndarray:
    """Map each channel's (``joint``: all channels') percentile range onto [0, 1]; flat channels give 0."""
    flat = channels.reshape(1 if joint else len(channels), -1)
    low, high = np.percentile(flat, STRETCH_PERCENTILES, axis=1)  # each (1,) or (C,)
    span = high - low
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    return np.clip((channels - low[:, None, None]) * scale[:, None, None], 0.0, 1.0)
