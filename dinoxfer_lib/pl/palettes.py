"""Colours that mean the same thing on every page of the book.

A class keeps its colour across chapters and figures: colours of OpenCell and HPA classes come from the
class's position in its vocabulary (:mod:`dinoxfer_lib.data.classes`), not from the order in which a figure
happens to list them, so a plot of a subset of classes still matches the full legend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import seaborn as sns
from matplotlib.colors import to_hex

from dinoxfer_lib.data.classes import HPA_CLASSES, OPENCELL_CLASSES


def _qualitative_palette() -> list[str]:
    """40 distinguishable colours: the strong half of tab20 first, then its light half, then tab20b."""
    tab20 = sns.color_palette("tab20", 20)
    ordered = tab20[0::2] + tab20[1::2] + sns.color_palette("tab20b", 20)
    return [to_hex(colour) for colour in ordered]


_PALETTE: list[str] = _qualitative_palette()
_VOCABULARY_POSITION: dict[str, int] = {
    **{name: k for k, name in enumerate(HPA_CLASSES)},
    **{name: k for k, name in enumerate(OPENCELL_CLASSES)},
}


def class_colors(class_names: Sequence[str]) -> dict[str, str]:
    """Class name → hex colour, stable across calls and figures.

    OpenCell and HPA class names take the colour of their vocabulary position. Other names (a user's own
    classes) take palette colours in sorted name order, so the same set of names always gets the same colours.
    """
    colours = {
        name: _PALETTE[_VOCABULARY_POSITION[name] % len(_PALETTE)]
        for name in class_names
        if name in _VOCABULARY_POSITION
    }
    others = sorted(set(class_names) - set(colours))
    colours.update({name: _PALETTE[k % len(_PALETTE)] for k, name in enumerate(others)})
    return {name: colours[name] for name in class_names}


def batch_colors(batches: Iterable[object]) -> dict[str, str]:
    """Batch (plate) name → hex colour, assigned in sorted order of the distinct names.

    Returns
    -------
    dict
        Keys are the batch names as strings (the form ``obs["batch"]`` has after a round trip through CSV).
    """
    names = sorted({str(batch) for batch in batches})
    palette = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return {name: to_hex(colour) for name, colour in zip(names, palette)}
