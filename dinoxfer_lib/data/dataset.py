"""One in-memory dataset type for every domain and reader.

Synthetic generators and real readers all return an :class:`ImageSet`, so everything downstream (splits,
embeddings, probes, plots) is written once. On disk an ImageSet is a folder: ``images.npy`` (memory-mappable),
``labels.npy`` and ``grades.npy``, ``obs.csv`` (one row per image) and ``meta.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.errors import DataError

# Columns every ``obs`` table carries; readers fill what the source knows and leave the rest empty strings.
OBS_COLUMNS: tuple[str, ...] = ("image_id", "group", "batch", "domain")


@dataclass
class ImageSet:
    """Images of one domain with their labels and metadata.

    Attributes
    ----------
    images
        ``(N, C, H, W)`` array in the source's own intensity range (uint16 for microscopy, uint8 for photographs,
        float for NPY inputs). May be a read-only memory map.
    labels
        ``(N, K)`` bool multi-hot matrix over ``class_names``.
    grades
        ``(N, K)`` int8: 0 where the label is absent, else its grade (OpenCell: 3 prominent, 2 less pronounced,
        1 weak). Sources without grades use 3 for every present label.
    obs
        One row per image. Always has ``image_id`` (unique), ``group`` (protein / antibody: images of one group must
        stay on one side of a grouped split), ``batch`` (plate or acquisition batch) and ``domain``; may add more
        (``cell_line``, ``path``, ...).
    class_names, channel_names
        Column order of ``labels`` and channel order of ``images``.
    domain
        Short domain name (``opencell``, ``hpa``, ``natural`` or a user's own).
    pixel_size_um
        Physical pixel size in micrometres, ``None`` for photographs.
    synthetic
        True for the embedded stand-ins; the book says so wherever it shows their numbers.
    """

    images: np.ndarray
    labels: np.ndarray
    grades: np.ndarray
    obs: pd.DataFrame
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    domain: str
    pixel_size_um: float | None = None
    synthetic: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.channel_names = tuple(self.channel_names)
        n = len(self.images)
        if self.images.ndim != 4:
            raise DataError(f"{self.domain}: images must be (N, C, H, W), got shape {self.images.shape}")
        if self.images.shape[1] != len(self.channel_names):
            raise DataError(
                f"{self.domain}: images have {self.images.shape[1]} channels, "
                f"expected {len(self.channel_names)} ({', '.join(self.channel_names)})"
            )
        if self.labels.shape != (n, len(self.class_names)):
            raise DataError(f"{self.domain}: labels shape {self.labels.shape}, expected {(n, len(self.class_names))}")
        if self.grades.shape != self.labels.shape:
            raise DataError(f"{self.domain}: grades shape {self.grades.shape} differs from labels {self.labels.shape}")
        if len(self.obs) != n:
            raise DataError(f"{self.domain}: obs has {len(self.obs)} rows for {n} images")
        missing = [c for c in OBS_COLUMNS if c not in self.obs.columns]
        if missing:
            raise DataError(f"{self.domain}: obs lacks columns {missing}")
        if self.obs["image_id"].duplicated().any():
            dup = self.obs["image_id"][self.obs["image_id"].duplicated()].iloc[0]
            raise DataError(f"{self.domain}: image_id {dup!r} appears more than once")
        self.labels = self.labels.astype(bool, copy=False)
        self.grades = self.grades.astype(np.int8, copy=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def subset(self, index: np.ndarray) -> ImageSet:
        """Rows ``index`` (integer positions or a boolean mask) as a new ImageSet."""
        index = np.asarray(index)
        return ImageSet(
            images=self.images[index],
            labels=self.labels[index],
            grades=self.grades[index],
            obs=self.obs.iloc[index].reset_index(drop=True),
            class_names=self.class_names,
            channel_names=self.channel_names,
            domain=self.domain,
            pixel_size_um=self.pixel_size_um,
            synthetic=self.synthetic,
            extra=dict(self.extra),
        )

    def label_strings(self) -> list[str]:
        """Each image's labels joined by ``|`` (for tables and tooltips)."""
        names = np.asarray(self.class_names)
        return ["|".join(names[row]) for row in self.labels]


def save_imageset(dataset: ImageSet, folder: Path) -> None:
    """Write ``dataset`` into ``folder`` (which the store makes atomic)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.ascontiguousarray(dataset.images))
    np.save(folder / "labels.npy", dataset.labels)
    np.save(folder / "grades.npy", dataset.grades)
    dataset.obs.to_csv(folder / "obs.csv", index=False)
    meta = {
        "class_names": list(dataset.class_names),
        "channel_names": list(dataset.channel_names),
        "domain": dataset.domain,
        "pixel_size_um": dataset.pixel_size_um,
        "synthetic": dataset.synthetic,
        "extra": dataset.extra,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))


def load_imageset(folder: Path, *, mmap: bool = True) -> ImageSet:
    """Read a folder written by :func:`save_imageset`; images are memory-mapped by default."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{folder}: not an ImageSet folder (no meta.json)")
    meta = json.loads(meta_path.read_text())
    obs = pd.read_csv(folder / "obs.csv", dtype={"image_id": str, "group": str, "batch": str}, keep_default_na=False)
    return ImageSet(
        images=np.load(folder / "images.npy", mmap_mode="r" if mmap else None),
        labels=np.load(folder / "labels.npy"),
        grades=np.load(folder / "grades.npy"),
        obs=obs,
        class_names=tuple(meta["class_names"]),
        channel_names=tuple(meta["channel_names"]),
        domain=meta["domain"],
        pixel_size_um=meta["pixel_size_um"],
        synthetic=meta["synthetic"],
        extra=meta.get("extra", {}),
    )
