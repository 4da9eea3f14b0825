"""Load every published DINO and DINOv2 checkpoint layout into a timm ViT, without executing pickled code.

Layouts understood (PAPER_SPEC.md §3), all through :func:`load_backbone_weights`:

- the official backbone-only ``.pth``: a bare state dict (``cls_token, pos_embed, patch_embed.proj.weight,
  blocks.N.*, norm.*``), DINO's and DINOv2's alike (DINOv2 adds ``blocks.N.ls1.gamma`` LayerScale weights, a
  ``mask_token`` and, with registers, ``register_tokens``);
- the official full DINO checkpoint: ``{"teacher": ..., "student": ..., "optimizer": ..., "epoch": ..., "args":
  argparse.Namespace, "dino_loss": ...}`` whose weights carry ``module.`` and/or ``backbone.`` prefixes and a
  ``head.*`` projection head. The teacher is taken by default, as DINO evaluates it;
- DINOv2's layouts: its evaluation checkpoint ``{"teacher": {backbone.*, dino_head.*, ibot_head.*}}`` and its
  training checkpoint ``{"model": {"student.backbone.*", "teacher.backbone.*", ...}}`` (block chunks
  ``blocks.<chunk>.<i>.*`` are unchunked);
- DINO4Cells' HPA checkpoints (the DINO layout with a 4-channel patch embedding) and this book's own trainer's
  checkpoints (DINO or DINOv2 layout);
- timm state dicts (bare, or under ``state_dict`` / ``model``) and ``.safetensors`` files, e.g. OpenCLIP's image
  tower as timm publishes it (``vit_base_patch16_clip``).

Loading is strict for the backbone: a checkpoint weight the model has no place for, or a model weight the
checkpoint lacks, is a one-line :class:`~dinoxfer_lib.errors.DataError` naming them. Projection heads (``head.*``,
``dino_head.*``, ``ibot_head.*``) and the training-only ``mask_token`` are dropped on purpose and listed in the
:class:`LoadReport`. Position embeddings laid out for another patch grid are resized as the official code resizes
them (:func:`resize_pos_embed`).

Pickles are opened with ``torch.load(weights_only=True)``: only tensors, containers and primitive values are
rebuilt, plus the one class real DINO checkpoints need (``argparse.Namespace``). A checkpoint that references any
other callable is refused before anything in it runs.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dinoxfer_lib.errors import ConfigError, DataError, FetchError
from dinoxfer_lib.files import atomic_path, file_sha256
from dinoxfer_lib.models.backbones import ARCHITECTURES, PRETRAINED, architecture, create_backbone, pretrained_weights

# Wrappers around the backbone's names: DistributedDataParallel, DINO's MultiCropWrapper, torch.compile.
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
# Projection heads (DINO's head, DINOv2's dino_head and ibot_head, a timm classifier): dropped, never transferred.
HEAD_PREFIXES = ("head.", "dino_head.", "ibot_head.")
# Backbone weights only training uses: the iBOT mask token that replaces masked patches in the student's input.
TRAINING_ONLY = ("mask_token",)
# DINOv2 groups blocks in FSDP chunks whose names keep the global block index: blocks.<chunk>.<block>.*
_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")
# The only non-tensor class a DINO checkpoint holds: its command-line arguments.
SAFE_GLOBALS = (argparse.Namespace,)
SUB_MODELS = ("teacher", "student")
IN_MEMORY = "<in-memory checkpoint>"


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
        ``bare``, ``dino_full`` (teacher/student), ``wrapped`` (timm ``state_dict``/``model``), ``dinov2_train``
        (DINOv2's ``model`` with ``teacher.``/``student.`` weights) or ``safetensors``.
    which
        ``teacher`` or ``student`` for checkpoints holding both, empty otherwise.
    dropped_keys
        Checkpoint weights left behind on purpose: projection heads, the mask token, the other sub-model's weights
        of a DINOv2 training checkpoint.
    pos_embed_grid
        ``(from, to)`` patch grids when the position embeddings were resized, else ``None``.
    adapted_in_chans
        ``(from, to)`` input channels when the patch embedding was adapted (``adapt_in_chans``), else ``None``.
    """

    source: str
    sha256: str
    layout: str
    which: str
    dropped_keys: tuple[str, ...]
    pos_embed_grid: tuple[tuple[int, int], tuple[int, int]] | None
    adapted_in_chans: tuple[int, int] | None = None


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


def _some(keys: list[str], n: int = 3) -> str:
    """``a, b, c (+4 more)``: a few names of a long list, for one-line errors."""
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def backbone_state_dict(
    checkpoint: Mapping[str, Any], *, which: str = "teacher", source: str = IN_MEMORY
) -> tuple[dict, str, str, list]:
    """Bare backbone weights from any layout, checked to be a ViT.

    Parameters
    ----------
    checkpoint
        What :func:`read_checkpoint` returned (or a state dict built in memory).
    which
        Sub-model of checkpoints holding a teacher and a student.
    source
        Named in errors (the file).

    Returns
    -------
    state, layout, which, dropped
        Backbone weights without wrapper prefixes and block chunks; the layout name; the sub-model used (``""`` if
        none); the checkpoint keys dropped on purpose (heads, mask token, the other sub-model).
    """
    if which not in SUB_MODELS:
        raise ConfigError(f"which = {which!r}: expected one of {', '.join(SUB_MODELS)}")
    if not isinstance(checkpoint, Mapping):
        raise DataError(f"{source}: expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}")
    chosen, dropped = "", []
    if any(k in checkpoint for k in SUB_MODELS):
        if which not in checkpoint:
            present = ", ".join(k for k in SUB_MODELS if k in checkpoint)
            raise DataError(f"{source}: checkpoint has no {which!r} weights, only {present}")
        weights, layout, chosen = checkpoint[which], "dino_full", which
        where = f"checkpoint[{which!r}]"
    elif "state_dict" in checkpoint or "model" in checkpoint:
        where = "checkpoint['state_dict']" if "state_dict" in checkpoint else "checkpoint['model']"
        weights, layout = checkpoint.get("state_dict", checkpoint.get("model")), "wrapped"
    else:
        weights, layout, where = checkpoint, "bare", "checkpoint"
    if not isinstance(weights, Mapping):
        raise DataError(f"{source}: {where} is a {type(weights).__name__}, expected a state dict (name -> tensor)")
    if layout == "wrapped" and any(str(k).startswith(("teacher.", "student.")) for k in weights):
        # DINOv2's training checkpoint: the whole SSL model, teacher.* and student.* side by side
        prefix, layout, chosen = f"{which}.", "dinov2_train", which
        if not any(str(k).startswith(prefix) for k in weights):
            raise DataError(f"{source}: {where} has no {which!r} weights")
        dropped = [k for k in weights if not str(k).startswith(prefix)]
        weights = {k[len(prefix):]: v for k, v in weights.items() if str(k).startswith(prefix)}
    state = {}
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        while name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        if name.startswith(HEAD_PREFIXES) or name in TRAINING_ONLY:
            dropped.append(key)  # a projection head or the mask token: not part of the backbone that transfers
            continue
        state[_CHUNKED_BLOCK.sub(r"blocks.\1.", name)] = value
    _check_vit(state, source)
    return state, layout, chosen, dropped


def _check_vit(state: Mapping[str, torch.Tensor], source: str) -> None:
    """One line for each way a state dict can fail to be a ViT backbone (issue 16's malformed checkpoints)."""
    if "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise DataError(f"{source}: checkpoint holds no ViT backbone (no cls_token / patch_embed.proj.weight weights)")
    patch = state["patch_embed.proj.weight"]
    if patch.ndim != 4 or patch.shape[-1] != patch.shape[-2]:
        raise DataError(f"{source}: patch_embed.proj.weight has shape {tuple(patch.shape)}, expected 4-D "
                        "(width, channels, patch, patch) square convolution filters")
    for key in ("cls_token", "reg_token", "register_tokens"):
        if key in state and (state[key].ndim != 3 or state[key].shape[-1] != patch.shape[0]):
            raise DataError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected (1, tokens, "
                            f"{patch.shape[0]})")
    if "pos_embed" not in state:
        raise DataError(f"{source}: no pos_embed weights, expected the ViT's position embeddings "
                        f"(1, tokens, {patch.shape[0]})")
    pos = state["pos_embed"]
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[2] != patch.shape[0]:
        raise DataError(f"{source}: pos_embed has shape {tuple(pos.shape)}, expected (1, tokens, {patch.shape[0]})")
    pos_grid(pos, source)


def pos_grid(pos_embed: torch.Tensor, source: str = IN_MEMORY) -> tuple[int, int]:
    """(prefix positions, grid side) of ``pos_embed`` (1, prefix + side², D): a square patch grid, with (DINO,
    DINOv2) or without (timm's ``no_embed_class``) a position for the CLS token."""
    tokens = pos_embed.shape[1]
    for prefix in (1, 0):
        side = math.isqrt(max(tokens - prefix, 0))
        if side > 0 and side * side == tokens - prefix:
            return prefix, side
    raise DataError(f"{source}: pos_embed holds {tokens} positions, expected a square patch grid (side²), "
                    "plus one for the CLS token")


def resize_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], *, num_prefix_tokens: int, offset: float = 0.1,
    antialias: bool = False,
) -> torch.Tensor:
    """Position embeddings (1, prefix + side², D) laid out for another patch ``grid`` (rows, columns).

    As the official ``interpolate_pos_encoding`` does: bicubic over the square grid; with ``offset`` > 0 the
    interpolation is given the scale factor ``(grid + offset) / side`` (DINO and DINOv2 add 0.1 "to avoid floating
    point error", which also sets where each output position samples the grid), with ``offset`` = 0 the exact output
    size (DINOv2 with registers, which also antialiases). Prefix positions (CLS) are kept as they are.
    """
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    side, dim = math.isqrt(patches.shape[1]), patches.shape[2]
    grid_map = patches.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, D, side, side)
    if offset:
        scale = ((grid[0] + offset) / side, (grid[1] + offset) / side)
        resized = F.interpolate(grid_map, scale_factor=scale, mode="bicubic", antialias=antialias)
    else:
        resized = F.interpolate(grid_map, size=tuple(grid), mode="bicubic", antialias=antialias)
    resized = resized.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)  # (1, rows * columns, D)
    return torch.cat((prefix, resized), dim=1)


def infer_architecture(state: Mapping[str, torch.Tensor], source: str = IN_MEMORY) -> tuple[str, int]:
    """(registered architecture, input channels) of a backbone state dict, from its width, patch size, depth,
    register tokens and whether it has CLIP's pre-norm (``norm_pre.*``)."""
    width, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    registers = state.get("reg_token", state.get("register_tokens"))
    n_registers = 0 if registers is None else registers.shape[1]
    pre_norm = "norm_pre.weight" in state
    for name, spec in ARCHITECTURES.items():
        if (spec.embed_dim, spec.patch_size, spec.depth, spec.reg_tokens, spec.pre_norm) == (
                width, patch, depth, n_registers, pre_norm):
            return name, in_chans
    raise DataError(
        f"{source}: checkpoint ViT (width {width}, patch {patch}, depth {depth}, {n_registers} registers"
        f"{', pre-norm' if pre_norm else ''}) matches no architecture in {', '.join(ARCHITECTURES)}"
    )


def load_backbone_weights(
    model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, Any], *, which: str = "teacher",
    adapt_in_chans: bool = False,
) -> LoadReport:
    """Load a checkpoint of any supported layout into ``model``, strictly for backbone weights.

    Parameters
    ----------
    model
        A ViT from :func:`~dinoxfer_lib.models.backbones.create_backbone` (any ``img_size``: position embeddings of
        another grid are resized with :func:`resize_pos_embed` as the architecture's official code does).
    path_or_state
        A checkpoint file (``.pth``/``.pt``/``.safetensors``) or an already-read checkpoint / state dict.
    which
        Sub-model of a checkpoint holding both: ``teacher`` (default; the one DINO evaluates) or ``student``.
    adapt_in_chans
        Adapt 3-channel (RGB) patch filters to the model's channel count with timm's ``adapt_input_conv`` (summed
        for 1 channel, repeated and rescaled otherwise) instead of refusing them: to start training microscopy
        from natural-image weights (Cell-DINO+).

    Raises
    ------
    DataError
        The file is unsafe, corrupt, malformed or not a ViT; its patch embedding has another channel count (the
        message names the channel strategy to use instead) or patch size; backbone weights are missing, unexpected
        or of another shape.
    """
    if isinstance(path_or_state, Mapping):
        checkpoint, source, sha = path_or_state, IN_MEMORY, ""
    elif isinstance(path_or_state, (str, os.PathLike)):
        source = str(path_or_state)
        checkpoint, sha = read_checkpoint(path_or_state), file_sha256(Path(path_or_state))
    else:
        raise DataError(f"expected a checkpoint path or a state dict, got {type(path_or_state).__name__}")
    report = _load(model, checkpoint, source=source, which=which, adapt_in_chans=adapt_in_chans)
    model.dinoxfer_weights = {"source": source, "sha256": sha, "which": report.which}  # for the embedding provenance
    return replace(report, sha256=sha)


def _load(model: nn.Module, checkpoint: Mapping[str, Any], *, source: str, which: str, adapt_in_chans: bool
          ) -> LoadReport:
    state, layout, chosen, dropped = backbone_state_dict(checkpoint, which=which, source=source)
    layout = "safetensors" if source.endswith(".safetensors") else layout
    state = _timm_registers(state, model, source)
    target = model.state_dict()
    adapted = None
    got, want = state["patch_embed.proj.weight"].shape, target["patch_embed.proj.weight"].shape
    if got[1] != want[1] and adapt_in_chans and got[1] == 3:
        from timm.models import adapt_input_conv

        state["patch_embed.proj.weight"] = adapt_input_conv(want[1], state["patch_embed.proj.weight"])
        adapted = (got[1], want[1])
    elif got[1] != want[1]:
        raise DataError(
            f"{source}: weights expect {got[1]} input channels, the model has {want[1]}: build the backbone with "
            f"in_chans={got[1]} and feed it with the 'mapping' or 'replication' channel strategy"
        )
    if got[2:] != want[2:]:
        raise DataError(f"{source}: weights use {got[-1]} px patches, the model {want[-1]} px: pick another arch")
    grid = None
    if state["pos_embed"].shape != target["pos_embed"].shape:
        state["pos_embed"], grid = _resized_pos_embed(state["pos_embed"], model, source)
    wrong = [k for k, v in state.items() if k in target and target[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise DataError(
            f"{source}: {len(wrong)} weights have the wrong shape, e.g. {k} {tuple(state[k].shape)} vs the model's "
            f"{tuple(target[k].shape)}: pick the architecture the checkpoint was trained with"
        )
    unexpected = sorted(set(state) - set(target))
    if unexpected:
        raise DataError(
            f"{source}: {len(unexpected)} checkpoint weights have no place in the "
            f"{getattr(model, 'dinoxfer_arch', 'model')} backbone: {_some(unexpected)}; pick the architecture the "
            "checkpoint was trained with"
        )
    missing = sorted(set(target) - set(state) - set(TRAINING_ONLY))  # a model's mask token keeps its own value
    if missing:
        hint = ("; it has no LayerScale: build the backbone without (dino.layerscale_init: 0)"
                if all(".ls1." in k or ".ls2." in k for k in missing) else "")
        raise DataError(f"{source}: checkpoint lacks {len(missing)} backbone weights, e.g. {_some(missing)}{hint}")
    model.load_state_dict(state, strict=False)  # every other key was checked above
    return LoadReport(source=source, sha256="", layout=layout, which=chosen, dropped_keys=tuple(dropped),
                      pos_embed_grid=grid, adapted_in_chans=adapted)


def _timm_registers(state: dict, model: nn.Module, source: str) -> dict:
    """DINOv2's ``register_tokens`` layout → timm's: registers as ``reg_token``, and, for timm's DINOv2 models
    (no position for prefix tokens), the CLS position folded into ``cls_token``. Exact: DINOv2 adds positions
    before it inserts the registers."""
    if "register_tokens" not in state:
        return state
    if getattr(model, "reg_token", None) is None:
        raise DataError(f"{source}: checkpoint has {state['register_tokens'].shape[1]} register tokens, the "
                        f"{getattr(model, 'dinoxfer_arch', 'model')} backbone none: pick a *_reg4_dinov2 arch")
    state = dict(state)
    state["reg_token"] = state.pop("register_tokens")
    if model.no_embed_class and pos_grid(state["pos_embed"], source)[0] == 1:
        state["cls_token"] = state["cls_token"] + state["pos_embed"][:, :1]
        state["pos_embed"] = state["pos_embed"][:, 1:]
    return state


def _resized_pos_embed(pos_embed: torch.Tensor, model: nn.Module, source: str
                       ) -> tuple[torch.Tensor, tuple[tuple[int, int], tuple[int, int]]]:
    """The checkpoint's position embeddings on the model's patch grid, by the architecture's official rule."""
    prefix, side = pos_grid(pos_embed, source)
    model_prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    if prefix != model_prefix:
        raise DataError(f"{source}: pos_embed has {prefix} prefix positions, the model {model_prefix}: pick the "
                        "architecture the checkpoint was trained with")
    arch = getattr(model, "dinoxfer_arch", None)
    spec = architecture(arch) if arch in ARCHITECTURES else None
    new = tuple(int(n) for n in model.patch_embed.grid_size)
    resized = resize_pos_embed(
        pos_embed, new, num_prefix_tokens=prefix,
        offset=spec.interpolate_offset if spec else 0.1, antialias=spec.interpolate_antialias if spec else False,
    )
    return resized, ((side, side), new)


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
        ``dino4cells_hpa_fov``, ``dinov2_vitb14``, ``openclip_vitb16_laion2b``, ...) or a checkpoint file in any
        layout this module reads.
    img_size
        Input side the position embeddings are laid out for (resized from the checkpoint's grid).
    in_chans
        Expected input channels; by default the checkpoint's. A mismatch is a one-line DataError.
    arch
        The architecture to build (a key of :data:`~dinoxfer_lib.models.backbones.ARCHITECTURES`); by default
        recognised from the checkpoint (width, patch size, depth, registers, CLIP's pre-norm). A given ``arch`` is
        built as named; LayerScale is added when the checkpoint has LayerScale weights (the DINOv2 objective adds
        it to any arch).
    which, cache_dir
        Sub-model of full checkpoints; download cache.
    """
    path = weights_path(name_or_path, cache_dir=cache_dir)
    checkpoint = read_checkpoint(path)
    state, *_ = backbone_state_dict(checkpoint, which=which, source=str(path))
    if arch is None:
        arch, found_chans = infer_architecture(state, str(path))
    else:
        architecture(arch)  # an unknown name is a ConfigError listing the registered ones
        found_chans = int(state["patch_embed.proj.weight"].shape[1])
    has_layerscale = any(k.endswith(".ls1.gamma") for k in state)
    layerscale = 1.0 if has_layerscale and architecture(arch).layerscale is None else None  # values come from the file
    model = create_backbone(arch, in_chans=in_chans or found_chans, img_size=img_size, layerscale=layerscale)
    report = _load(model, checkpoint, source=str(path), which=which, adapt_in_chans=False)
    sha = file_sha256(path)
    source = os.fspath(name_or_path) if os.fspath(name_or_path) in PRETRAINED else str(path)
    model.dinoxfer_weights = {"source": source, "sha256": sha, "which": report.which}
    return model.eval(), replace(report, sha256=sha)


def save_backbone(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the backbone's weights as ``.safetensors`` (atomically: temporary file, then rename).

    The DINO trainer saves its teacher this way; :func:`build_backbone` reads it back with no pickle involved.
    Training-only weights (the DINOv2 mask token) are left out: the file holds what embedding uses.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in TRAINING_ONLY}
    metadata = {
        "format": "dinoxfer-backbone",
        "arch": str(getattr(model, "dinoxfer_arch", "")),
        "in_chans": str(model.patch_embed.proj.in_channels),
        "img_size": str(model.patch_embed.img_size[0]),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path
