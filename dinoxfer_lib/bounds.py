"""The bounds of every numeric config value, in one table, and the check each section's ``validate`` runs first.

A profile value outside its bound (``probe.lr: .inf``, ``dino.teacher_temp: 0``, ``split.test_fraction: 1``) would
train into NaN or into a silently wrong result, so :func:`check_bounds` refuses it with the one-line
:class:`~dinoxfer_lib.errors.ConfigError` every config check gives. The table is keyed by the config dataclass's
name (a section can sit under several keys: ``DomainConfig`` under ``data.opencell``, ``data.hpa``, ...) and then by
field. A bound reads as in mathematics: ``"> 0"``, ``">= 1"``, ``"(0, 1]"``; after a ``;`` comes a note for the
message (``">= 0; 0 = off"``). Every bound excludes NaN and infinity. A tuple value is checked item by item; None
(where a field allows it) always passes. Checks that relate two values (``min_lr <= lr``, ``n_groups <=
n_images``, a crop scale's low <= high) stay in the section's ``validate``.

``tests/test_bad_input.py`` checks that every numeric field of every config section has a row here.
"""

from __future__ import annotations

import functools
import math
import re
import types
import typing
from dataclasses import dataclass

from dinoxfer_lib.errors import require_config

# Seeds are 32-bit: numpy, torch and Python's random all accept any of them.
MAX_SEED = 2**32 - 1
# Counts (epochs, images, widths) without an upper bound of their own stay below this: larger ones overflow numpy's
# and torch's integer arguments with a traceback instead of a message.
MAX_COUNT = 2**31 - 1

BOUNDS: dict[str, dict[str, str]] = {
    "Config": {"seed": f"[0, {MAX_SEED}]"},
    "DomainConfig": {
        "n_images": ">= 10", "image_size": ">= 16", "n_groups": ">= 1", "n_batches": ">= 1", "n_cell_lines": ">= 1",
        "batch_effect": ">= 0; 0 = no plate effects", "max_pixels": ">= 1",
    },
    "SplitConfig": {"test_fraction": "(0, 1)", "n_folds": ">= 2"},
    "EmbedConfig": {"img_size": ">= 16", "batch_size": ">= 1"},
    "ProbeConfig": {
        "hidden": ">= 1", "dropout": "[0, 1)", "lr": "(0, 1)", "weight_decay": ">= 0", "betas": "[0, 1)",
        "epochs": ">= 1", "batch_size": ">= 1", "threshold": "(0, 1)", "knn_k": ">= 1",
        "monitor_every": ">= 0; 0 = never", "low_label_fractions": "(0, 1]", "low_label_seeds": ">= 1",
        "low_label_folds": ">= 1", "plateau_patience": ">= 0; 0 = train every epoch", "plateau_min_delta": ">= 0",
    },
    "CeilingConfig": {
        "widths": ">= 1", "convs_per_stage": ">= 1", "img_size": ">= 16", "epochs": ">= 1", "batch_size": ">= 2",
        "lr": "(0, 1)", "weight_decay": ">= 0", "monitor_every": ">= 0; 0 = never",
    },
    "DinoConfig": {
        "epochs": ">= 1", "batch_size": ">= 2", "images_per_epoch": ">= 2; null = every training image",
        "out_dim": ">= 1", "hidden_dim": ">= 1", "bottleneck_dim": ">= 1", "head_layers": ">= 1",
        "student_temp": "> 0", "teacher_temp": "> 0", "warmup_teacher_temp": "> 0",
        "warmup_teacher_temp_epochs": ">= 0", "center_momentum": "[0, 1)", "momentum_teacher": "[0, 1]",
        "lr": "(0, 1)", "min_lr": "[0, 1)", "warmup_epochs": ">= 0", "weight_decay": ">= 0", "weight_decay_end": ">= 0",
        "clip_grad": ">= 0; 0 = off", "freeze_last_layer": ">= 0", "drop_path_rate": "[0, 1)",
        "n_local_crops": ">= 0", "global_crop_scale": "(0, 1]", "local_crop_scale": "(0, 1]",
        "local_crop_size": ">= 1", "global_crop_size": ">= 1; null = embed.img_size",
        "flip_p": "[0, 1]", "warp_p": "[0, 1]", "warp_max": "[0, 0.5)", "protein_rescale_p": "[0, 1]",
        "brightness_sigma": ">= 0", "contrast_sigma": ">= 0", "channel_drop_p": "[0, 1]",
        "ibot_loss_weight": ">= 0; 0 = off", "mask_ratio_range": "[0, 1)", "mask_sample_probability": "[0, 1]",
        "ibot_out_dim": ">= 1", "ibot_hidden_dim": ">= 1", "ibot_bottleneck_dim": ">= 1", "ibot_head_layers": ">= 1",
        "ibot_teacher_temp": "> 0; null = teacher_temp", "koleo_loss_weight": ">= 0; 0 = off",
        "sinkhorn_iterations": ">= 1", "layerscale_init": ">= 0; 0 = no LayerScale", "checkpoint_every": ">= 1",
    },
    "DINOv2BackbonesConfig": {
        "plus_layerscale_init": ">= 0; 0 = no LayerScale, for DINO weights", "max_images": ">= 2; null = all images",
        "boc_images_per_source": ">= 1; null = all images", "cell_line_images": ">= 20; null = all images",
    },
    "AnalysisConfig": {
        "n_pcs": ">= 2", "umap_n_neighbors": ">= 2", "umap_min_dist": "[0, 1]", "umap_n_epochs": ">= 10",
        "harmony_theta": ">= 0", "harmony_max_iter": ">= 1", "lisi_perplexity": ">= 2", "knn_k": ">= 1",
        "max_images_per_domain": ">= 20", "resamples": ">= 2", "domain_probe_folds": ">= 2",
    },
    "LoraSettings": {"rank": ">= 1", "alpha": "> 0", "dropout": "[0, 1)"},
    "AdaptConfig": {
        "folds": ">= 1", "epochs": ">= 1", "batch_size": ">= 1", "lr": "(0, 1)", "full_lr": "(0, 1)",
        "layer_decay": "(0, 1]", "weight_decay": ">= 0", "head_epochs": ">= 0; 0 = no separate head phase",
        "images_per_epoch": ">= 1", "train_score_images": ">= 1",
    },
    "SegConfig": {
        "decoder_width": ">= 4", "epochs": ">= 1", "batch_size": ">= 1", "lr": "(0, 1)", "weight_decay": ">= 0",
        "dice_weight": ">= 0", "bce_weight": ">= 0", "threshold": "(0, 1)", "head_epochs": ">= 0; 0 = no head phase",
    },
    "EMDataConfig": {
        "patch_size": ">= 8", "n_stacks": ">= 2", "n_slices": ">= 1", "pixel_nm": "> 0", "test_stacks": ">= 1",
        "vnc_test_sections": ">= 1",
    },
}

_NUMBER = r"-?(?:\d+(?:\.\d*)?(?:e-?\d+)?|inf)"
_HALF_LINE = re.compile(rf"^(>=|>)\s*({_NUMBER})$")
_INTERVAL = re.compile(rf"^([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])$")


@dataclass(frozen=True)
class Bound:
    """An interval of allowed values; ``text`` is how the table (and the error message) writes it."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool
    text: str
    note: str = ""

    @classmethod
    def parse(cls, spec: str) -> Bound:
        """``"> 0"``, ``">= 1"``, ``"(0, 1]"``, optionally followed by ``"; note"``."""
        text, _, note = (part.strip() for part in spec.partition(";"))
        if match := _HALF_LINE.match(text):
            return cls(float(match[2]), math.inf, match[1] == ">=", False, text, note)
        if match := _INTERVAL.match(text):
            return cls(float(match[2]), float(match[3]), match[1] == "[", match[4] == "]", f"in {text}", note)
        raise ValueError(f"bound {spec!r}: expected '> a', '>= a' or an interval such as '(a, b]'")

    def __contains__(self, value: float) -> bool:
        # NaN fails every comparison; infinity fails the open end at infinity
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return bool(above and below) and (isinstance(value, int) or math.isfinite(value))


def check_bounds(section: object, key: str) -> None:
    """Raise :class:`~dinoxfer_lib.errors.ConfigError` naming ``f"{key}.{field}"`` (``field`` when ``key`` is empty:
    the top level) for the first value of config dataclass ``section`` that is no number of its kind in its bound."""
    for name, (bound, integer) in _section_bounds(type(section)).items():
        value = getattr(section, name)
        if value is None:
            continue
        if isinstance(value, tuple):
            items, kind = value, "integers" if integer else "numbers"
        else:
            items, kind = (value,), "an integer" if integer else "a finite number"
        where, expected = f"{key}.{name}" if key else name, f"{kind} {bound.text}"
        require_config(all(_is_number(item, integer) and item in bound for item in items), where, value,
                       expected + (f" ({bound.note})" if bound.note else ""))
        if integer and bound.high == math.inf:
            require_config(all(item <= MAX_COUNT for item in items), where, value, f"{expected} and <= {MAX_COUNT}")


def numeric_fields(cls: type) -> dict[str, bool]:
    """The fields of config dataclass ``cls`` that hold numbers (or tuples of them): name -> whether integers."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        kinds = {leaf for leaf in _leaves(hint) if leaf in (int, float)}
        if kinds:
            out[name] = kinds == {int}
    return out


def table_rows(cls: type) -> dict[str, str]:
    """The rows of config dataclass ``cls``: its own, else those of the nearest base class that has rows (a subclass
    that only changes defaults, such as ``DINOv2Config``, checks as ``DinoConfig``)."""
    return next((BOUNDS[base.__name__] for base in cls.__mro__ if base.__name__ in BOUNDS), {})


@functools.cache
def _section_bounds(cls: type) -> dict[str, tuple[Bound, bool]]:
    """``cls``'s rows of the table, parsed, with whether each field holds integers (a table error fails here)."""
    table, numeric = table_rows(cls), numeric_fields(cls)
    if set(table) - set(numeric):
        raise ValueError(f"bounds table: {cls.__name__} has no numeric field {sorted(set(table) - set(numeric))[0]!r}")
    return {name: (Bound.parse(spec), numeric[name]) for name, spec in table.items()}


def _leaves(hint: object) -> list:
    """The member types of a hint: ``int | None`` -> [int, NoneType], ``tuple[float, ...]`` -> [float]."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType, tuple):
        return [leaf for arg in typing.get_args(hint) if arg is not Ellipsis for leaf in _leaves(arg)]
    return [hint]


def _is_number(value: object, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))
