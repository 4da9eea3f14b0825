"""The book's figure style: one theme, one set of font sizes and one width, so figures read alike on every page.

A rendered page's text column (Jupyter Book 1.x at a laptop's 1400 px window) is about 780 px wide. A figure wider
than the column is scaled down to fit, and its fonts with it, so every figure here is at most :data:`FULL_WIDTH`
inches wide at :data:`DPI`: at that size a 9 pt label prints at about 12 px. Figure functions size themselves from
these constants; :func:`use_book_style` sets the theme they are drawn in (the notebooks call it in their setup cell,
through :func:`dinoxfer_lib.report.common.use_book_style`).
"""

from __future__ import annotations

import matplotlib as mpl
import seaborn as sns

# Pixels per inch of the inline figures: a FULL_WIDTH figure then fills the book's text column at 1:1.
DPI = 100
# Width of a figure that spans the text column, in inches; half-width figures use HALF_WIDTH.
FULL_WIDTH = 7.6
HALF_WIDTH = 4.8
# A figure taller than this (inches) is more than one laptop screen: split it, or put the rest in a toggle.
SCREEN_HEIGHT = 8.0
# Font sizes in points: body text of axes, and the small print (tick labels, legends, annotations).
FONT_SIZE = 9
SMALL_FONT_SIZE = 8

_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE,
    "axes.labelsize": FONT_SIZE,
    "figure.titlesize": FONT_SIZE + 1,
    "xtick.labelsize": SMALL_FONT_SIZE,
    "ytick.labelsize": SMALL_FONT_SIZE,
    "legend.fontsize": SMALL_FONT_SIZE,
    "legend.title_fontsize": SMALL_FONT_SIZE,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.interpolation": "nearest",  # images and heatmaps show their pixels, not a blur of them
}


def use_book_style() -> None:
    """Seaborn's white-grid theme with the book's font sizes and resolution, for every figure drawn after it."""
    sns.set_theme(context="paper", style="whitegrid", rc=_RC)
    mpl.rcParams.update(_RC)  # set_theme's context scales fonts; the book's sizes win


def fit_width(width: float, height: float, *, max_width: float = FULL_WIDTH) -> tuple[float, float]:
    """``(width, height)`` scaled down, aspect kept, so the figure is at most ``max_width`` inches wide."""
    if width <= max_width:
        return width, height
    scale = max_width / width
    return max_width, height * scale
