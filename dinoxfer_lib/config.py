"""Profiles → one typed, validated, frozen config.

A profile (``smoke``, ``demo``, ``paper``) is a YAML file in ``dinoxfer_lib/profiles``. It only lists the values
that differ from the defaults below; a notebook's papermill parameters add ``overrides`` (a nested dict). Unknown
keys, wrong types and impossible values are a :class:`~dinoxfer_lib.errors.ConfigError` whose one line names the
key. Each field's comment says what it does and what a good value is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from dinoxfer_lib.errors import ConfigError, require_config as _require
from dinoxfer_lib.dino.config import DINOv2BackbonesConfig, DinoConfig
from dinoxfer_lib.probes.config import ProbeConfig
from dinoxfer_lib.tl.config import AnalysisConfig

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "demo"


@dataclass(frozen=True)
class DomainConfig:
    """Where one domain's images come from, and the size of its synthetic stand-in."""

    # synthetic = the embedded stand-in; opencell / hpa_kaggle = the real on-disk layouts; table = a CSV of
    # image paths + labels for your own data (see book/running.md).
    source: Literal["synthetic", "opencell", "hpa_kaggle", "table"] = "synthetic"
    # Folder (opencell, hpa_kaggle) or CSV file (table); ignored for synthetic.
    path: str | None = None
    # Synthetic only: number of images. The demo OpenCell-like set has >= 2,000 so 5-fold CV has ~360 per fold.
    n_images: int = 2400
    # Side of the square images in pixels (synthetic: rendered size; real: resized to this, None keeps the original).
    image_size: int | None = 64
    # Synthetic only: proteins (OpenCell) / antibodies (HPA) / photographs (natural). Several images per group.
    n_groups: int = 400
    # Synthetic only: plates (acquisition batches) with their own illumination, gain, offset and noise.
    n_batches: int = 6
    # Synthetic HPA-like only: cell-line families (cell shape and size).
    n_cell_lines: int = 4
    # Synthetic only: strength of plate effects (0 = none, 1 = as in the demo: visible, correctable by Harmony).
    batch_effect: float = 1.0

    def validate(self, key: str) -> None:
        _require(self.n_images >= 10, f"{key}.n_images", self.n_images, ">= 10")
        if self.image_size is not None:
            _require(self.image_size >= 16, f"{key}.image_size", self.image_size, ">= 16")
        _require(self.n_groups >= 1, f"{key}.n_groups", self.n_groups, ">= 1")
        _require(self.n_groups <= self.n_images, f"{key}.n_groups", self.n_groups, f"<= n_images ({self.n_images})")
        _require(self.n_batches >= 1, f"{key}.n_batches", self.n_batches, ">= 1")
        _require(self.n_cell_lines >= 1, f"{key}.n_cell_lines", self.n_cell_lines, ">= 1")
        _require(self.batch_effect >= 0, f"{key}.batch_effect", self.batch_effect, ">= 0")
        if self.source != "synthetic":
            _require(self.path is not None, f"{key}.path", self.path, f"a path (source is {self.source!r})")


@dataclass(frozen=True)
class DataConfig:
    """The three domains of the study (PAPER_SPEC.md §2)."""

    opencell: DomainConfig = field(default_factory=DomainConfig)
    hpa: DomainConfig = field(default_factory=lambda: DomainConfig(n_images=1600, n_groups=300, n_batches=4))
    natural: DomainConfig = field(default_factory=lambda: DomainConfig(n_images=1200, n_groups=12, n_batches=1))

    def validate(self, key: str) -> None:
        self.opencell.validate(f"{key}.opencell")
        self.hpa.validate(f"{key}.hpa")
        self.natural.validate(f"{key}.natural")
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
        _require(0 < self.test_fraction < 1, f"{key}.test_fraction", self.test_fraction, "between 0 and 1")
        _require(self.n_folds >= 2, f"{key}.n_folds", self.n_folds, ">= 2")


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
    # Weights of the backbone pretrained on each domain: "store" = this profile's own DINO run (randomly
    # initialised until one exists; the chapter says which), a registered name (dino_vitb8_imagenet,
    # dino4cells_hpa_fov) or a checkpoint path.
    natural_weights: str = "store"
    hpa_weights: str = "store"
    opencell_weights: str = "store"

    def validate(self, key: str) -> None:
        from dinoxfer_lib.models.backbones import ARCHITECTURES

        _require(self.arch in ARCHITECTURES, f"{key}.arch", self.arch, f"one of {', '.join(ARCHITECTURES)}")
        _require(self.img_size >= 16, f"{key}.img_size", self.img_size, ">= 16")
        _require(self.batch_size >= 1, f"{key}.batch_size", self.batch_size, ">= 1")


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
    dino: DinoConfig = field(default_factory=DinoConfig)
    dinov2: DINOv2BackbonesConfig = field(default_factory=DINOv2BackbonesConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def validate(self) -> None:
        _require(self.seed >= 0, "seed", self.seed, ">= 0")
        self.data.validate("data")
        self.split.validate("split")
        self.embed.validate("embed")
        self.probe.validate("probe")
        self.dino.validate("dino")
        self.dinov2.validate("dinov2")
        self.analysis.validate("analysis")

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


def load_config(profile: str = DEFAULT_PROFILE, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read ``profile``, apply nested ``overrides``, validate, return a frozen :class:`Config`.

    ``profile`` is a profile name or a path to a YAML file of the same shape.
    """
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{profile}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown profile {profile!r}: expected one of {', '.join(available_profiles())}")
    elif not path.is_file():
        raise ConfigError(f"profile file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"profile {path}: expected a mapping of keys to values at the top level")
    if overrides is not None and not isinstance(overrides, Mapping):
        # papermill's -p passes text: `-p overrides "{seed: 1}"` arrives as a string, not a mapping
        raise ConfigError(f"overrides = {overrides!r}: expected a mapping of config keys to values; with papermill "
                          "pass it as YAML: -y 'overrides: {seed: 1}'")
    values = _merge(values, dict(overrides or {}), prefix="")
    values["profile"] = path.stem if profile == str(path) else profile
    config = _build(Config, values, prefix="")
    config.validate()
    return config


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
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__} {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}: expected one of {', '.join(sorted(fields))}"
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
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(map(repr, allowed))}")
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
        raise ConfigError(f"config key {key!r}: expected {wanted}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"config key {key!r}: unsupported type {hint}")  # a programming error, caught by tests
