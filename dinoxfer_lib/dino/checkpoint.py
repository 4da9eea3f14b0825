"""Resumable checkpoints in the official DINO layout, written atomically by rank 0.

``{"student", "teacher", "optimizer", "epoch", "args", "dino_loss", "fp16_scaler"}`` as ``main_dino.py`` saves
them (``epoch`` = the next epoch to run; ``args`` = the config as a dict instead of an ``argparse.Namespace``;
``fp16_scaler`` = None because bf16 needs no loss scaling), plus ``history`` (the per-step log so far) so a resumed
run's log is complete. Student and teacher weights are named ``backbone.*`` / ``head.*``, so
:func:`~dinoxfer_lib.models.checkpoints.build_backbone` reads the teacher backbone straight from this file.
DINOv2 runs name them as DINOv2 does (``backbone.*`` with ``backbone.mask_token``, ``dino_head.*``, ``ibot_head.*``)
and add ``ibot_loss`` (the patch centre); a run started from given weights adds ``init_from`` (their source and
sha256).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dinoxfer_lib.models.checkpoints import read_checkpoint
from dinoxfer_lib.files import atomic_path

CHECKPOINT_FILE = "checkpoint.pth"
# The teacher backbone alone, as safetensors: what later stages embed with (no pickle to read).
BACKBONE_FILE = "teacher_backbone.safetensors"
REQUIRED_KEYS = ("student", "teacher", "optimizer", "epoch", "args", "dino_loss")


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Write ``state`` (the official keys, see the module docstring) to ``path`` atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")  # a programming error, not a user's
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"fp16_scaler": None, **state}, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (read safely: tensors and plain containers only), or None when there is none."""
    return read_checkpoint(path) if Path(path).is_file() else None
