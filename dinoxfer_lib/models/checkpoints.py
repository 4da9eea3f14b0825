"""Load any published DINO checkpoint layout into a timm ViT, without executing pickled code.

Layouts understood (PAPER_SPEC.md §3): the official backbone-only ``.pth`` (a bare state dict); the official full
checkpoint (``teacher``/``student`` dicts with ``module.`` and/or ``backbone.`` prefixes and a ``head.*`` projection
head, plus ``optimizer``, ``epoch``, ``args``); DINO4Cells' HPA checkpoints (same layout, 4-channel patch
embedding); timm state dicts; ``.safetensors``; our own trainer's checkpoints. Pickles are opened with
``torch.load(weights_only=True)``; the only non-tensor object allowed is ``argparse.Namespace`` (DINO stores its
arguments so), so a checkpoint carrying a callable is refused before anything runs.
"""

from __future__ import annotations

import argparse
import os
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from dinoxfer_lib.errors import DataError, FetchError
from dinoxfer_lib.models.backbones import ARCHITECTURES, create_backbone, pretrained_weights
from dinoxfer_lib.provenance import file_sha256

_PREFIXES = ("module.", "backbone.", "_orig_mod.")
_SAFE_GLOBALS = [argparse.Namespace]


@dataclass(frozen=True)
class LoadReport:
    """What loading did: which sub-model was taken, what was dropped, what did not match."""

    source: str
    which: str | None
    sha256: str | None
    dropped_head_keys: int
    unexpected_keys: tuple[str, ...] = ()
    interpolated_pos_embed: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint object; tensors and ``argparse.Namespace`` only."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise DataError(f"{path}: cannot read safetensors file ({str(exc).splitlines()[0]})") from None
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "disallowed object"
        raise DataError(
            f"{path}: refused to load: the checkpoint contains pickled objects other than tensors ({reason[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read checkpoint (truncated or corrupt: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a state dict or a DINO checkpoint dict, got {type(obj).__name__}")
    return dict(obj)


def backbone_state_dict(checkpoint: Mapping[str, Any], *, which: str = "teacher") -> tuple[dict, str | None, int]:
    """Bare backbone weights from any layout: (state dict, sub-model used, number of head keys dropped)."""
    chosen = None
    if "teacher" in checkpoint or "student" in checkpoint:
        if which not in checkpoint:
            raise DataError(f"checkpoint has no {which!r} weights: expected one of teacher, student")
        state, chosen = checkpoint[which], which
    elif "state_dict" in checkpoint or "model" in checkpoint:
        state = checkpoint.get("state_dict", checkpoint.get("model"))
    else:
        state = checkpoint
    clean, dropped = {}, 0
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        while key.startswith(_PREFIXES):
            key = next(key[len(p):] for p in _PREFIXES if key.startswith(p))
        if key.startswith("head.") or key == "head":
            dropped += 1  # the DINO projection head is discarded after training
            continue
        clean[key] = value
    if "cls_token" not in clean or "patch_embed.proj.weight" not in clean:
        raise DataError("checkpoint holds no ViT backbone (no cls_token / patch_embed.proj.weight keys)")
    return clean, chosen, dropped


def infer_architecture(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """(registered architecture, input channels) matching a backbone state dict."""
    width, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for name, spec in ARCHITECTURES.items():
        if (spec.embed_dim, spec.patch_size, spec.depth) == (width, patch, depth):
            return name, in_chans
    raise DataError(
        f"checkpoint ViT (width {width}, patch {patch}, depth {depth}) matches no architecture in "
        f"{', '.join(ARCHITECTURES)}"
    )


def load_backbone_weights(model: nn.Module, source: str | os.PathLike | Mapping, *, which: str = "teacher") -> LoadReport:
    """Load ``source`` (a path or an already-read checkpoint) into ``model``; strict on backbone keys."""
    from timm.layers import resample_abs_pos_embed

    sha = None
    if isinstance(source, Mapping):
        checkpoint, name = source, "<in-memory checkpoint>"
    else:
        checkpoint, name, sha = read_checkpoint(source), str(source), file_sha256(Path(source))
    state, chosen, dropped = backbone_state_dict(checkpoint, which=which)
    target = model.state_dict()
    got_chans, want_chans = state["patch_embed.proj.weight"].shape[1], target["patch_embed.proj.weight"].shape[1]
    if got_chans != want_chans:
        raise DataError(
            f"{name}: weights expect {got_chans} input channels but the model has {want_chans}: build the backbone "
            f"with in_chans={got_chans} and use the 'mapping' or 'replication' channel strategy"
        )
    interpolated = False
    if state["pos_embed"].shape != target["pos_embed"].shape:
        grid = model.patch_embed.grid_size
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(grid), num_prefix_tokens=1)
        interpolated = True
    for key, value in state.items():
        if key in target and target[key].shape != value.shape:
            raise DataError(f"{name}: weight {key} has shape {tuple(value.shape)}, the model expects {tuple(target[key].shape)}")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise DataError(f"{name}: checkpoint lacks {len(result.missing_keys)} backbone weights, e.g. {result.missing_keys[0]}")
    return LoadReport(
        source=name,
        which=chosen,
        sha256=sha,
        dropped_head_keys=dropped,
        unexpected_keys=tuple(result.unexpected_keys),
        interpolated_pos_embed=interpolated,
    )


def build_backbone(
    name_or_path: str | os.PathLike,
    *,
    img_size: int,
    cache_dir: str | os.PathLike | None = None,
    which: str = "teacher",
) -> tuple[nn.Module, LoadReport]:
    """An eval-mode backbone with weights: a registered name (``dino_vitb8_imagenet``) or a checkpoint path."""
    key = str(name_or_path)
    if not Path(key).exists() and "/" not in key and not key.endswith((".pth", ".safetensors", ".pt")):
        weights = pretrained_weights(key)
        if cache_dir is None:
            import pooch

            cache_dir = pooch.os_cache("dinoxfer")
        path = Path(cache_dir) / weights.filename
        if not path.is_file():
            raise FetchError(f"weights {key!r} are not in {cache_dir}: run `dinoxfer fetch {weights.manifest}` first")
    else:
        path = Path(key)
    checkpoint = read_checkpoint(path)
    state, _, _ = backbone_state_dict(checkpoint, which=which)
    arch, in_chans = infer_architecture(state)
    model = create_backbone(arch, in_chans=in_chans, img_size=img_size)
    report = load_backbone_weights(model, checkpoint, which=which)
    report = LoadReport(**{**report.__dict__, "source": str(path), "sha256": file_sha256(path)})
    return model.eval(), report


def save_backbone(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the backbone's weights as safetensors (atomically); :func:`build_backbone` reads them back."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp), metadata={"format": "dinoxfer-backbone"})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
