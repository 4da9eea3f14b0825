"""Figures of the embeddings chapter: what each channel strategy feeds the backbone, and neighbour checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dinoxfer_lib.pl.images import composite
from dinoxfer_lib.pl.style import FULL_WIDTH


def plot_channel_strategies(image: np.ndarray, channel_names: tuple[str, ...]) -> Figure:
    """One OpenCell image as each strategy presents it to a backbone: one row per strategy, one panel per pass.

    mapping → one RGB pass (protein red, nucleus green, blue black); replication → one grey RGB pass per channel;
    mapping into HPA → one 4-slot pass in DINO4Cells' slot order (microtubules and ER black); bag of channels → one 1-channel pass per channel.
    """
    stretched = [composite(image[i : i + 1], (name,), mapping={name: "white"})[..., 0] for i, name in enumerate(channel_names)]
    black = np.zeros_like(stretched[0])
    by_name = dict(zip(channel_names, stretched))
    rows = [
        ("mapping → ImageNet RGB", [np.stack([by_name["protein"], by_name["nucleus"], black], -1)], ["1 pass: R=protein, G=nucleus, B=0"]),
        ("replication → ImageNet RGB", [np.stack([c] * 3, -1) for c in stretched], [f"pass: {n} in R, G, B" for n in channel_names]),
        (
            "mapping → HPA 4 slots",
            [by_name["nucleus"], by_name["protein"], black, black],
            ["nucleus", "protein", "microtubules = 0", "ER = 0"],
        ),
        ("bag of channels (1-ch encoder)", stretched, [f"pass: {n}" for n in channel_names]),
    ]
    n_cols = max(len(panels) for _, panels, _ in rows)
    side = min(1.9, (FULL_WIDTH - 0.4) / n_cols)
    fig = Figure(figsize=(side * n_cols + 0.4, (side + 0.35) * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (title, panels, captions) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(panels):
                ax.set_axis_off()
                continue
            panel = panels[c]
            ax.imshow(panel if panel.ndim == 3 else panel, cmap=None if panel.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_title(captions[c], fontsize=7)
        axes[r, 0].set_ylabel(title.replace(" → ", "\n→ "), fontsize=8)
    return fig


def plot_neighbour_agreement(table: pd.DataFrame) -> Figure:
    """Share of k-NN pairs sharing a label, per embedding set, beside chance (and without same-protein pairs)."""
    columns = [c for c in ("agreement", "agreement_other_proteins", "chance") if c in table.columns]
    fig = Figure(figsize=(7, 0.5 * len(table) + 1.5), layout="constrained")
    ax = fig.subplots()
    table[columns].astype(float).plot.barh(ax=ax)
    ax.set_xlabel(f"share of {int(table['k'].iloc[0])} nearest neighbours sharing a label")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    return fig
