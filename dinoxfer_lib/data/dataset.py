"""One in-memory dataset type for every domain and reader.

Synthetic generators and real readers all return an :class:`ImageSet`, so everything downstream (splits,
embeddings, probes, plots) is written once. On disk an ImageSet is a folder: ``images.npy`` (memory-mappable),
``labels.npy`` and ``grades.npy``, ``obs.csv`` (one row per image) and ``meta.json``.

Real datasets are larger than memory at their source size (the HPA Kaggle release is 33 GB of pixels): readers
stream each image, resized, through an :class:`ImageWriter` straight into ``images.npy``, and
:func:`save_imageset` then writes only the small files beside it.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dinoxfer_lib.errors import DataError

# Columns every ``obs`` table carries; readers fill what the source knows and leave the rest empty strings.
OBS_COLUMNS: tuple[str, ...] = ("image_id", "group", "batch", "domain")
IMAGES_FILE = "images.npy"


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


class ImageWriter:
    """Collects ``(C, H, W)`` images, in order, into one ``(N, C, H, W)`` array: in memory, or streamed into an
    ``.npy`` file.

    With ``path`` each image is appended to the file as it comes (sequential writes: the pixels go to the page
    cache, not to the process's memory) under a temporary name that becomes ``path`` only when all ``N`` were
    written; :meth:`finish` returns the file memory-mapped read-only. Used as a context manager, a failure removes
    the partial file.
    """

    def __init__(self, shape: tuple[int, int, int, int], dtype: np.dtype, path: str | os.PathLike | None = None):
        self.shape, self.dtype, self.count = tuple(shape), np.dtype(dtype), 0
        self.path = None if path is None else Path(path)
        if self.path is None:
            self.array = np.empty(self.shape, dtype=self.dtype)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial")
        self.handle = open(self.partial, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self.handle, header)

    def append(self, image: np.ndarray) -> None:
        """Add the next image; it must have the set's shape and pixel type."""
        if image.shape != self.shape[1:] or image.dtype != self.dtype:
            raise ValueError(f"image {self.count}: {image.shape} {image.dtype}, expected {self.shape[1:]} {self.dtype}")
        if self.count == self.shape[0]:
            raise ValueError(f"more than the {self.shape[0]} images announced")
        if self.path is None:
            self.array[self.count] = image
        else:
            self.handle.write(np.ascontiguousarray(image).tobytes())
        self.count += 1

    def finish(self) -> np.ndarray:
        """The complete array (a read-only memory map of ``path`` when writing to a file)."""
        if self.count != self.shape[0]:
            raise ValueError(f"{self.count} of {self.shape[0]} images written")
        if self.path is None:
            return self.array
        self.handle.close()
        os.replace(self.partial, self.path)
        return np.load(self.path, mmap_mode="r")

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path is not None:
            self.handle.close()
            self.partial.unlink(missing_ok=True)


def save_imageset(dataset: ImageSet, folder: Path) -> None:
    """Write ``dataset`` into ``folder`` (which the store makes atomic).

    Images a reader already streamed into ``folder/images.npy`` (an :class:`ImageWriter` with that path) stay
    where they are; anything else is written there.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not _maps_file(dataset.images, folder / IMAGES_FILE):
        np.save(folder / IMAGES_FILE, np.ascontiguousarray(dataset.images))
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
        images=np.load(folder / IMAGES_FILE, mmap_mode="r" if mmap else None),
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


def _maps_file(images: np.ndarray, path: Path) -> bool:
    """``images`` is a memory map of all of ``path``: same file, same shape and type, contiguous (so not a part or a
    reordering of it)."""
    filename = getattr(images, "filename", None)
    if not isinstance(images, np.memmap) or filename is None or not path.is_file():
        return False
    if not os.path.samefile(filename, path) or not images.flags.c_contiguous:
        return False
    stored = np.load(path, mmap_mode="r")
    return images.shape == stored.shape and images.dtype == stored.dtype
