"""Profiles → one typed, validated, frozen config.

A profile (``smoke``, ``demo``, ``paper``) is a YAML file in ``dinoxfer_lib/profiles``. It only lists the values
that differ from the defaults below; a notebook's papermill parameters add ``overrides`` (a nested dict). Unknown
keys, wrong types and impossible values are a :class:`~dinoxfer_lib.errors.ConfigError` whose one line names the
key. Each field's comment says what it does and what a good value is; every numeric value's bound is in the one
table of :mod:`dinoxfer_lib.bounds`. Profiles and ``--set`` values are read by :func:`parse_yaml`, which refuses
YAML aliases (an alias bomb of a few hundred bytes would otherwise expand to gigabytes when shown or hashed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from dinoxfer_lib.bounds import check_bounds
from dinoxfer_lib.errors import ConfigError, clip, require_config as _require, shown
from dinoxfer_lib.adapt.config import AdaptConfig
from dinoxfer_lib.data.em_config import EMDataConfig
from dinoxfer_lib.dino.config import DINOv2BackbonesConfig, DinoConfig
from dinoxfer_lib.probes.config import CeilingConfig, ProbeConfig
from dinoxfer_lib.seg.config import SegConfig
from dinoxfer_lib.tl.config import AnalysisConfig

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "demo"
# What relative paths in the shipped profiles are relative to: the repository's root in a checkout.
SHIPPED_PROFILE_BASE = PROFILE_DIR.parents[1]
# A profile lists a few dozen values: anything larger is not a profile.
MAX_PROFILE_BYTES = 1 << 20
# YAML 1.1 reads 1e-4 (no dot) as text; a float field takes it as the number everyone means.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class DomainConfig:
    """Where one domain's images come from, and the size of its synthetic stand-in."""

    # synthetic = the embedded stand-in; opencell / hpa_kaggle = the real on-disk layouts; table = a CSV of
    # image paths + labels for your own data (see book/running.md).
    source: Literal["synthetic", "opencell", "hpa_kaggle", "table"] = "synthetic"
    # Folder (opencell, hpa_kaggle) or CSV file (table); ignored for synthetic. A relative path is relative to the
    # profile file's folder (for the shipped profiles: the repository's root), and on the command line (--set) to
    # the current directory.
    path: str | None = field(default=None, metadata={"path": True})
    # Table sources only: the channel names of each image, in file order (default: the domain's own, e.g. protein,
    # nucleus for OpenCell). "protein" and "nucleus" are what channel mapping places; other channels are replicated.
    channels: tuple[str, ...] | None = None
    # Real sources: the most pixels (channels x height x width) one image file may claim in its header; a larger
    # one is refused before its pixels are allocated (a corrupt or hostile header). Generous for microscopy.
    max_pixels: int = 2**28
    # Synthetic only: number of images. The demo OpenCell-like set has >= 2,000 so 5-fold CV has ~360 per fold.
    n_images: int = 2400
    # Side of the square images in pixels (synthetic: rendered size; real: resized to this, None keeps the original).
    image_size: int | None = 64
    # Synthetic only: proteins (OpenCell) / antibodies (HPA; at most one per image) / photographs
    # (natural, at most the 14 scikit-image ships). Several images per group.
    n_groups: int = 400
    # Synthetic only: plates (acquisition batches) with their own illumination, gain, offset and noise.
    n_batches: int = 6
    # Synthetic HPA-like only: cell-line families (cell shape and size).
    n_cell_lines: int = 4
    # Synthetic only: strength of plate effects (0 = none, 1 = as in the demo: visible, correctable by Harmony).
    batch_effect: float = 1.0

    def validate(self, key: str) -> None:
        check_bounds(self, key)
        _require(self.n_groups <= self.n_images, f"{key}.n_groups", self.n_groups, f"<= n_images ({self.n_images})")
        if self.source != "synthetic":
            _require(self.path is not None, f"{key}.path", self.path, f"a path (source is {self.source!r})")


@dataclass(frozen=True)
class DataConfig:
    """The three domains of the study (PAPER_SPEC.md §2), and the EM pair of the adaptation chapter (paper 004)."""

    opencell: DomainConfig = field(default_factory=DomainConfig)
    # The pretraining stand-ins are larger than the target (HPA-like 5x its 90 % training split), as in the paper.
    hpa: DomainConfig = field(default_factory=lambda: DomainConfig(n_images=10800, n_groups=900, n_batches=12,
                                                                   n_cell_lines=6))
    natural: DomainConfig = field(default_factory=lambda: DomainConfig(n_images=2400, n_groups=14, n_batches=1))
    # Lucchi++ and VNC (or their synthetic stand-ins) as patches for the segmentation study.
    em: EMDataConfig = field(default_factory=EMDataConfig)

    def validate(self, key: str) -> None:
        self.opencell.validate(f"{key}.opencell")
        self.hpa.validate(f"{key}.hpa")
        self.natural.validate(f"{key}.natural")
        self.em.validate(f"{key}.em")
        _require(
            self.opencell.source in ("synthetic", "opencell", "table"), f"{key}.opencell.source",
            self.opencell.source, "synthetic, opencell or table",
        )
        _require(
            self.hpa.source in ("synthetic", "hpa_kaggle", "table"), f"{key}.hpa.source", self.hpa.source,
            "synthetic, hpa_kaggle or table",
        )
        _require(
            self.natural.source in ("synthetic", "table"), f"{key}.natural.source", self.natural.source,
            "synthetic or table",
        )


@dataclass(frozen=True)
class SplitConfig:
    """Hold-out + K-fold split shared by DINO training and the probes (paper: 90/10, then 5-fold on the 90 %)."""

    # Fraction of images held out as the untouched test set (paper: 0.1).
    test_fraction: float = 0.1
    # Cross-validation folds on the remaining images (paper: 5).
    n_folds: int = 5
    # Keep every protein on one side of every split (leakage-free). The paper splits by image (False); the book
    # reports both.
    group_by_protein: bool = False

    def validate(self, key: str) -> None:
        check_bounds(self, key)


@dataclass(frozen=True)
class EmbedConfig:
    """Backbones and embedding extraction (PAPER_SPEC.md §3; paper: ViT-B/8 at 224 px, CLS token)."""

    # Architecture of the backbones this profile trains with DINO (paper: vit_base_patch8; CPU: vit_micro).
    arch: str = "vit_micro"
    # Side of the images the backbone sees; images of another size are resized batch-wise (paper: 224).
    img_size: int = 64
    # Images per forward pass. Larger is faster until memory runs out (ViT-B/8 at 224 px: ~256 on an 80 GB GPU).
    batch_size: int = 128
    # cls = the last block's CLS token (the paper); cls4_patchmean = CLS of the last 4 blocks + mean patch token
    # (Cell-DINO / DINO BoC), 5x wider.
    feature: Literal["cls", "cls4_patchmean"] = "cls"
    # Bag-of-channels: concatenate the per-channel features (keeps which channel said what) or average them.
    bag_reduce: Literal["concat", "mean"] = "concat"
    # torch.compile the standardisation and backbone as one graph: a few per cent faster on a GPU for seconds of
    # compilation per process, so worth it for long runs only (the performance chapter has the figures). Never
    # changes which images are embedded.
    # true = torch's default mode; or a mode by name (dinoxfer_lib.embed.COMPILE_MODES).
    compile: bool | Literal["default", "max-autotune-no-cudagraphs"] = False
    # Weights of the backbone pretrained on each domain: "store" = this profile's own DINO run (trained first
    # when the store has none for this config), a registered name (dino_vitb8_imagenet, dino4cells_hpa_fov) or a
    # checkpoint path.
    natural_weights: str = "store"
    hpa_weights: str = "store"
    opencell_weights: str = "store"

    def validate(self, key: str) -> None:
        from dinoxfer_lib.models.backbones import ARCHITECTURES

        check_bounds(self, key)
        _require(self.arch in ARCHITECTURES, f"{key}.arch", self.arch, f"one of {', '.join(ARCHITECTURES)}")


@dataclass(frozen=True)
class BenchConfig:
    """Benchmarks of the performance chapter (``dinoxfer bench`` takes the same sizes)."""

    # small = seconds (CI), demo = CPU-sized problems, paper = ViT-B/8 at 224 px (a GPU).
    size: Literal["small", "demo", "paper"] = "demo"


@dataclass(frozen=True)
class Config:
    """Everything a run needs. Built only by :func:`load_config`; frozen afterwards."""

    profile: str = DEFAULT_PROFILE
    # Global seed: data generation, splits, training. Same seed + same config = same numbers.
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    # The supervised ceiling beside Table III (a small CNN trained with the labels; not in the paper).
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    dinov2: DINOv2BackbonesConfig = field(default_factory=DINOv2BackbonesConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def validate(self) -> None:
        check_bounds(self, "")
        self.data.validate("data")
        self.split.validate("split")
        self.embed.validate("embed")
        self.probe.validate("probe")
        self.ceiling.validate("ceiling")
        self.dino.validate("dino")
        self.dinov2.validate("dinov2")
        self.analysis.validate("analysis")
        self.adapt.validate("adapt")
        self.seg.validate("seg")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *keys: str) -> str:
        """Stable hash of the named top-level sections (what a stage's reuse depends on)."""
        payload = {k: self.to_dict()[k] for k in keys} if keys else self.to_dict()
        return config_hash(payload)


def config_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of a JSON-serialisable mapping with sorted keys (order-independent)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(profile: str | os.PathLike) -> Path:
    """The YAML file of ``profile``: a shipped profile's name, or a file path (relative to the current directory)."""
    path = Path(profile).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{profile}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown profile {shown(str(profile))}: expected one of "
                              f"{', '.join(available_profiles())} or a .yaml file")
        return path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"profile file {path} does not exist")
    return path


def load_config(profile: str | os.PathLike = DEFAULT_PROFILE, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``profile``, apply nested ``overrides``, validate, return a frozen :class:`Config`.

    ``profile`` is a profile name or a path to a YAML file of the same shape. Relative paths in the file are made
    absolute against its folder (the repository's root for the shipped profiles), relative paths in ``overrides``
    against the current directory, so a config never depends on where a notebook's kernel runs.
    """
    path = profile_path(profile)
    values = _profile_values(path, seen=())
    if overrides is not None and not isinstance(overrides, Mapping):
        # papermill's -p passes text: `-p overrides "{seed: 1}"` arrives as a string, not a mapping
        raise ConfigError(f"overrides = {shown(overrides)}: expected a mapping of config keys to values; with "
                          "papermill pass it as YAML: -y 'overrides: {seed: 1}'")
    values = _merge(values, absolute_paths(overrides or {}), prefix="")
    values["profile"] = path.stem
    config = _build(Config, values, prefix="")
    config.validate()
    return config


def _profile_values(path: Path, *, seen: tuple[Path, ...]) -> dict:
    """A profile file's values with its paths made absolute, on top of its ``base:`` profile's (if it names one)."""
    if path in seen:
        raise ConfigError(f"profile {path}: its base profiles form a cycle ({' -> '.join(map(str, (*seen, path)))})")
    values = read_profile(path)
    folder = SHIPPED_PROFILE_BASE if path.parent == PROFILE_DIR else path.parent
    base = values.pop("base", None)
    values = absolute_paths(values, base=folder)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"profile {path}: base = {shown(base)}: expected a profile name or a .yaml file")
    base_path = profile_path(base if Path(base).suffix not in (".yaml", ".yml") else folder / base)
    return _merge(_profile_values(base_path, seen=(*seen, path)), values, prefix="")


def absolute_paths(values: Mapping[str, Any], *, base: str | os.PathLike | None = None,
                   cls: type | None = None) -> dict:
    """``values`` (a profile's or overrides' nested mapping) with every path key made absolute against ``base``
    (default: the current directory). Path keys are the config fields marked ``metadata={"path": True}``."""
    cls = cls or Config
    base = Path(base) if base is not None else Path.cwd()
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    hints = typing.get_type_hints(cls) if fields else {}
    out = dict(values)
    for key, value in values.items():
        spec = fields.get(key)
        if spec is None:
            continue  # unknown keys are reported by _build
        if spec.metadata.get("path") and isinstance(value, str) and value:
            out[key] = str((base / Path(value).expanduser()).resolve())
        elif isinstance(value, Mapping) and dataclasses.is_dataclass(hints[key]):
            out[key] = absolute_paths(value, base=base, cls=hints[key])
    return out


def read_profile(path: Path) -> dict[str, Any]:
    """The mapping a profile file holds (empty for an empty file); anything else is a one-line ConfigError."""
    try:
        if (size := path.stat().st_size) > MAX_PROFILE_BYTES:
            raise ConfigError(f"profile {path}: {size} bytes, expected a profile of at most {MAX_PROFILE_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"profile {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"profile {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    values = parse_yaml(text, f"profile {path}")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"profile {path}: expected a mapping of keys to values at the top level, got "
                          f"{type(values).__name__}")
    return values


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases: a profile never needs one, and nine nested aliases of nine items
    each make a 317-byte document hold 9**9 references."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "an alias (*name): aliases are not supported, write the "
                                              "value out", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` (a profile, a ``--set`` value) as YAML without aliases; ``where`` names it in the one-line error."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {clip(exc.problem or exc.context or '', 120)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {clip(str(exc), 120)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None


def config_yaml(config: Config, *, source: str | None = None, overrides: Mapping[str, Any] | None = None) -> str:
    """``config`` as a profile: YAML that :func:`load_config` reads back into an equal config.

    Every key is written, defaults included, so the text documents the whole run and can be copied and edited.
    ``source`` and ``overrides`` (what the config was resolved from) go into a comment at the top.
    """

    def plain(value: Any) -> Any:  # safe_dump knows lists, not tuples
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    values = plain(config.to_dict())
    values.pop("profile")  # load_config names a profile file after its stem
    header = f"# dinoxfer config resolved from profile {source or config.profile!r}"
    header += f" with overrides {json.dumps(dict(overrides))}\n" if overrides else "\n"
    header += "# use it as a profile: save as NAME.yaml, then --profile NAME.yaml (or papermill -p profile NAME.yaml)\n"
    return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False)


def _merge(base: dict, overrides: Mapping[str, Any], prefix: str) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value, prefix=f"{prefix}{key}.")
        else:
            merged[key] = value
    return merged


def _build(cls: type, values: Any, prefix: str) -> Any:
    """Recursively turn a mapping into dataclass ``cls``, checking keys and types."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__} {shown(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [key for key in values if key not in fields]  # YAML keys may be numbers or null, so no sorting
    if unknown:
        raise ConfigError(
            f"unknown config key {shown(f'{prefix}{unknown[0]}')}: expected one of {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _expected(hint: Any) -> str:
    """What a value of type ``hint`` looks like in a profile, for error messages."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"config key {shown(key)}: {shown(value)} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        wanted = " or ".join(_expected(a) for a in args if a is not type(None))
        raise ConfigError(f"config key {shown(key)}: expected {wanted}, got {shown(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {shown(key)}: expected a list, got {shown(value)}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {shown(key)}: expected true or false, got {shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {shown(key)}: expected an integer, got {shown(value)}")
        return value
    if hint is float:
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {shown(key)}: expected a number, got {shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {shown(key)}: expected a string, got {shown(value)}")
        return value
    raise ConfigError(f"config key {shown(key)}: unsupported type {hint}")  # a programming error, caught by tests
