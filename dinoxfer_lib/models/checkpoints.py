"""Load every published DINO checkpoint layout into a timm ViT, without executing pickled code.

Layouts understood (PAPER_SPEC.md §3), all through :func:`load_backbone_weights`:

- the official backbone-only ``.pth``: a bare state dict (``cls_token, pos_embed, patch_embed.proj.weight,
  blocks.N.*, norm.*``);
- the official full checkpoint: ``{"teacher": ..., "student": ..., "optimizer": ..., "epoch": ..., "args":
  argparse.Namespace, "dino_loss": ...}`` whose weights carry ``module.`` and/or ``backbone.`` prefixes and a
  ``head.*`` projection head (dropped: only the backbone transfers). The teacher is taken by default, as DINO
  evaluates it;
- DINO4Cells' HPA checkpoints (the same layout with a 4-channel patch embedding) and this book's own trainer's
  checkpoints (the same layout again);
- timm state dicts (bare, or under ``state_dict`` / ``model``) and ``.safetensors`` files.

Pickles are opened with ``torch.load(weights_only=True)``: only tensors, containers and primitive values are
rebuilt, plus the one class real DINO checkpoints need (``argparse.Namespace``). A checkpoint that references any
other callable is refused before anything in it runs.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinoxfer_lib.errors import ConfigError, DataError, FetchError
from dinoxfer_lib.models.backbones import ARCHITECTURES, PRETRAINED, create_backbone, pretrained_weights
from dinoxfer_lib.files import atomic_path, file_sha256

# Wrappers around the backbone's names: DistributedDataParallel, DINO's MultiCropWrapper, torch.compile.
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
# The only non-tensor class a DINO checkpoint holds: its command-line arguments.
SAFE_GLOBALS = (argparse.Namespace,)
SUB_MODELS = ("teacher", "student")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_backbone_weights` did.

    Attributes
    ----------
    source
        The file (or ``<in-memory checkpoint>``).
    sha256
        Of the file, for provenance; empty for in-memory checkpoints.
    layout
        ``bare``, ``dino_full`` (teacher/student), ``wrapped`` (timm ``state_dict``/``model``) or ``safetensors``.
    which
        ``teacher`` or ``student`` for full checkpoints, empty otherwise.
    dropped_keys
        Projection-head weights (``head.*``) left behind on purpose.
    unexpected_keys
        Other checkpoint weights the model has no place for (e.g. an iBOT ``mask_token``).
    pos_embed_grid
        ``(from, to)`` patch grids when the position embeddings were interpolated, else ``None``.
    """

    source: str
    sha256: str
    layout: str
    which: str
    dropped_keys: tuple[str, ...]
    unexpected_keys: tuple[str, ...]
    pos_embed_grid: tuple[tuple[int, int], tuple[int, int]] | None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint as a dict, tensors and ``argparse.Namespace`` only; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as exc:
            raise DataError(f"{path}: cannot read safetensors file ({_first_line(exc)})") from None
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        culprit = f"it references {found.group(1)}" if found else _first_line(exc)
        raise DataError(
            f"{path}: refused to load: {culprit}, and only tensors and argparse.Namespace are allowed "
            "(re-save the state dict from an environment you trust)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read checkpoint, truncated or corrupt ({_first_line(exc)})") from None
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a state dict or a DINO checkpoint dict, got {type(obj).__name__}")
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def backbone_state_dict(checkpoint: Mapping[str, Any], *, which: str = "teacher") -> tuple[dict, str, str, list]:
    """Bare backbone weights from any layout.

    Returns
    -------
    state, layout, which, dropped
        Backbone weights without wrapper prefixes; the layout name; the sub-model used (``""`` if none); the
        projection-head keys that were dropped.
    """
    if which not in SUB_MODELS:
        raise ConfigError(f"which = {which!r}: expected one of {', '.join(SUB_MODELS)}")
    chosen = ""
    if any(k in checkpoint for k in SUB_MODELS):
        if which not in checkpoint:
            present = ", ".join(k for k in SUB_MODELS if k in checkpoint)
            raise DataError(f"checkpoint has no {which!r} weights, only {present}")
        weights, layout, chosen = checkpoint[which], "dino_full", which
    elif "state_dict" in checkpoint or "model" in checkpoint:
        weights, layout = checkpoint.get("state_dict", checkpoint.get("model")), "wrapped"
    else:
        weights, layout = checkpoint, "bare"
    state, dropped = {}, []
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = key
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        if name.startswith("head."):
            dropped.append(key)  # DINO's projection head (or a classifier): not part of the backbone
            continue
        state[name] = value
    if "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise DataError("checkpoint holds no ViT backbone (no cls_token / patch_embed.proj.weight weights)")
    return state, layout, chosen, dropped


def infer_architecture(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """(registered architecture, input channels) of a backbone state dict, from its width, patch size and depth."""
    width, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for name, spec in ARCHITECTURES.items():
        if (spec.embed_dim, spec.patch_size, spec.depth) == (width, patch, depth):
            return name, in_chans
    raise DataError(
        f"checkpoint ViT (width {width}, patch {patch}, depth {depth}) matches no architecture in "
        f"{', '.join(ARCHITECTURES)}"
    )


def load_backbone_weights(
    model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, Any], *, which: str = "teacher"
) -> LoadReport:
    """Load a checkpoint of any supported layout into ``model``, strictly for backbone weights.

    Parameters
    ----------
    model
        A ViT from :func:`~dinoxfer_lib.models.backbones.create_backbone` (any ``img_size``: position embeddings of
        another grid are interpolated bicubically, as DINO does at other resolutions).
    path_or_state
        A checkpoint file (``.pth``/``.pt``/``.safetensors``) or an already-read checkpoint / state dict.
    which
        Sub-model of a full DINO checkpoint: ``teacher`` (default; the one DINO evaluates) or ``student``.

    Raises
    ------
    DataError
        The file is unsafe, corrupt or not a ViT; its patch embedding has another channel count (the message names
        the channel strategy to use instead) or patch size; backbone weights are missing.
    """
    from timm.layers import resample_abs_pos_embed

    if isinstance(path_or_state, Mapping):
        checkpoint, source, sha = path_or_state, "<in-memory checkpoint>", ""
    else:
        source = str(path_or_state)
        checkpoint, sha = read_checkpoint(path_or_state), file_sha256(Path(path_or_state))
    state, layout, chosen, dropped = backbone_state_dict(checkpoint, which=which)
    layout = "safetensors" if source.endswith(".safetensors") else layout
    target = model.state_dict()
    got, want = state["patch_embed.proj.weight"].shape, target["patch_embed.proj.weight"].shape
    if got[1] != want[1]:
        raise DataError(
            f"{source}: weights expect {got[1]} input channels, the model has {want[1]}: build the backbone with "
            f"in_chans={got[1]} and feed it with the 'mapping' or 'replication' channel strategy"
        )
    if got[2:] != want[2:]:
        raise DataError(f"{source}: weights use {got[-1]} px patches, the model {want[-1]} px: pick another arch")
    grid = None
    if state["pos_embed"].shape != target["pos_embed"].shape:
        side = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))  # (1, 1 + side², D): square grid + CLS
        new = tuple(model.patch_embed.grid_size)
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(new), num_prefix_tokens=1)
        grid = ((side, side), new)
    wrong = [k for k, v in state.items() if k in target and target[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise DataError(
            f"{source}: {len(wrong)} weights have the wrong shape, e.g. {k} {tuple(state[k].shape)} vs the model's "
            f"{tuple(target[k].shape)}: pick the architecture the checkpoint was trained with"
        )
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise DataError(
            f"{source}: checkpoint lacks {len(result.missing_keys)} backbone weights, e.g. {result.missing_keys[0]}"
        )
    model.dinoxfer_weights = {"source": source, "sha256": sha, "which": chosen}  # for the embedding provenance
    return LoadReport(
        source=source,
        sha256=sha,
        layout=layout,
        which=chosen,
        dropped_keys=tuple(dropped),
        unexpected_keys=tuple(result.unexpected_keys),
        pos_embed_grid=grid,
    )


def default_cache_dir() -> Path:
    """Where ``dinoxfer fetch`` puts downloaded weights (the OS cache folder, e.g. ``~/.cache/dinoxfer``)."""
    import pooch

    return Path(pooch.os_cache("dinoxfer"))


def weights_path(name_or_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """The file behind a registered weights name or a path.

    Published weights live in ``cache_dir`` (default :func:`default_cache_dir`) once ``dinoxfer fetch`` got them.
    Weights this book trains (``opencell_dino``) live in a run's store, which only the pipeline reads: a profile
    names them ``store``.
    """
    key = os.fspath(name_or_path)
    if key in PRETRAINED:
        meta = PRETRAINED[key]
        if meta.store_stage is not None:
            raise ConfigError(
                f"{key} is trained by this book (stage {meta.store_stage}): name it `store` in the profile "
                f"(embed.<domain>_weights), or give the path of its {meta.filename}"
            )
        path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / meta.filename
        if not path.is_file():
            raise FetchError(f"weights {key!r} are not in {path.parent}: run `dinoxfer fetch {meta.manifest}` first")
        return path
    path = Path(key)
    if not path.exists() and not path.suffix and os.sep not in key:
        pretrained_weights(key)  # a mistyped name: the ConfigError lists the registered ones
    return path


def build_backbone(
    name_or_path: str | os.PathLike,
    *,
    img_size: int,
    in_chans: int | None = None,
    arch: str | None = None,
    which: str = "teacher",
    cache_dir: str | os.PathLike | None = None,
) -> tuple[nn.Module, LoadReport]:
    """An eval-mode backbone with its weights loaded, and the :class:`LoadReport`.

    Parameters
    ----------
    name_or_path
        A key of :data:`~dinoxfer_lib.models.backbones.PRETRAINED` (``dino_vitb8_imagenet``,
        ``dino4cells_hpa_fov``, ``opencell_dino``) or a checkpoint file in any layout this module reads.
    img_size
        Input side the position embeddings are laid out for (interpolated from the checkpoint's grid).
    in_chans, arch
        Expected input channels and architecture; by default read from the checkpoint (width, patch size, depth).
        A mismatch is a one-line DataError.
    which, cache_dir
        Sub-model of full checkpoints; download cache.
    """
    path = weights_path(name_or_path, cache_dir=cache_dir)
    checkpoint = read_checkpoint(path)
    state, *_ = backbone_state_dict(checkpoint, which=which)
    found_arch, found_chans = infer_architecture(state)
    model = create_backbone(arch or found_arch, in_chans=in_chans or found_chans, img_size=img_size)
    report = load_backbone_weights(model, checkpoint, which=which)
    sha = file_sha256(path)
    source = os.fspath(name_or_path) if os.fspath(name_or_path) in PRETRAINED else str(path)
    model.dinoxfer_weights = {"source": source, "sha256": sha, "which": report.which}
    layout = "safetensors" if path.suffix == ".safetensors" else report.layout
    return model.eval(), replace(report, source=str(path), sha256=sha, layout=layout)


def save_backbone(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the backbone's weights as ``.safetensors`` (atomically: temporary file, then rename).

    The DINO trainer saves its teacher this way; :func:`build_backbone` reads it back with no pickle involved.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": "dinoxfer-backbone",
        "arch": str(getattr(model, "dinoxfer_arch", "")),
        "in_chans": str(model.patch_embed.proj.in_channels),
        "img_size": str(model.patch_embed.img_size[0]),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path
