"""Readers for real data: OpenCell, the HPA Kaggle 2018 release, and a table of the user's own images.

Each reader returns an :class:`~dinoxfer_lib.data.dataset.ImageSet` (PAPER_SPEC.md §2), so splits, embeddings and
probes run unchanged on the synthetic stand-ins and on real data.

Reading runs in two passes. The first checks everything that can be checked without decoding a pixel: the table
(columns, labels), that each listed file exists and is listed once (after resolving ``./`` and relative paths), and
every file's header (format, channel count, size, pixel type, at most ``max_pixels`` pixel values): a typo in row
5,000 or a corrupt header fails in seconds, not after an hour of reading. It also fixes the set's one pixel type
(:func:`~dinoxfer_lib.data.checks.common_pixel_type`), so the result does not depend on the order of the rows.
The second pass decodes each image, converts it to that type, resizes it to ``image_size`` (bilinear, antialiased:
what the embedder does to a batch) and streams it into the ``(N, C, H, W)`` array, or with ``images_file`` straight
into an ``images.npy`` on disk: memory never holds more than one image at its source size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dinoxfer_lib.data.checks import MAX_PIXELS, common_pixel_type, read_header, read_image, to_pixel_type
from dinoxfer_lib.data.classes import HPA_CHANNELS, HPA_CLASSES, HPA_KAGGLE_COLOURS, OPENCELL_CHANNELS, OPENCELL_CLASSES
from dinoxfer_lib.data.dataset import ImageSet, ImageWriter
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.progress import progress_bar

# Physical pixel size of the OpenCell fields of view (paper, Table I: 0.102 µm).
OPENCELL_PIXEL_SIZE_UM = 0.102
OPENCELL_COLUMNS: tuple[str, ...] = (
    "filename", "target_name", "ensg_id", "plate_id", "well_id", "grade_3", "grade_2", "grade_1",
)
OPENCELL_GRADE_COLUMNS: dict[str, int] = {"grade_3": 3, "grade_2": 2, "grade_1": 1}
UNLABELLED_POLICIES: tuple[str, ...] = ("error", "drop")
# Sources without grades mark every present label as prominent.
DEFAULT_GRADE = 3


@dataclass(frozen=True)
class _Entry:
    """One image to read: the table row that listed it (for error messages) and its file(s)."""

    table: Path
    row: int  # 1-based data row, the header not counted: what a spreadsheet user finds
    files: tuple[Path, ...]  # one multi-channel file, or one single-channel file per channel

    @property
    def where(self) -> str:
        return f"{self.table} row {self.row}"


@dataclass
class _Listing:
    """A checked table: per image its ``obs`` row, its files and its ``{class: grade}`` map."""

    table: Path
    rows: list[dict] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)
    grade_maps: list[dict[str, int]] = field(default_factory=list)

    def add(self, row_number: int, obs_row: dict, files: tuple[Path, ...], grades: dict[str, int]) -> None:
        self.rows.append(obs_row)
        self.entries.append(_Entry(self.table, row_number, files))
        self.grade_maps.append(grades)

    def sample(self, n: int, *, seed: int) -> _Listing:
        """A seeded random ``n`` of the listed images, in table order."""
        if n < 1:
            raise ConfigError(f"max_images = {n}: expected a positive number of images")
        keep = np.sort(np.random.default_rng(seed).permutation(len(self.rows))[:n])
        return _Listing(self.table, [self.rows[i] for i in keep], [self.entries[i] for i in keep],
                        [self.grade_maps[i] for i in keep])


# --------------------------------------------------------------------------------------------------------------
# OpenCell


def read_opencell(
    root: str | os.PathLike,
    *,
    image_size: int | None = None,
    unlabelled: str = "error",
    max_pixels: int = MAX_PIXELS,
    images_file: str | os.PathLike | None = None,
) -> ImageSet:
    """Read OpenCell fields of view and their graded localisation annotations.

    Expected layout (see ``data_manifests/opencell.yaml``; OpenCell's own downloads are converted into it)::

        root/annotations.csv   one row per image: filename, target_name, ensg_id, plate_id, well_id,
                               grade_3, grade_2, grade_1  (each grade cell: ';'-separated OpenCell class names)
        root/images/<filename> two-channel 16-bit TIFF, channels (protein, nucleus)

    Parameters
    ----------
    root
        Folder holding ``annotations.csv`` and ``images/``.
    image_size
        Resize every image to ``image_size x image_size`` (anti-aliased, dtype kept); ``None`` keeps the size, which
        must then be the same for all images.
    unlabelled
        ``"error"`` refuses a row without any label; ``"drop"`` skips such rows (the paper used the 6,120 labelled
        of 6,301 images) and records how many in ``extra["unlabelled_dropped"]``.
    max_pixels
        Largest image accepted, in pixel values (channels x height x width), checked on each file's header before
        it is decoded.
    images_file
        Stream the images into this ``.npy`` file (e.g. ``<dataset folder>/images.npy``) instead of memory; the
        ImageSet's ``images`` is then that file, memory-mapped.

    Returns
    -------
    ImageSet
        Domain ``opencell``; ``group`` is the tagged protein (``target_name``) so a grouped split keeps each protein
        on one side, ``batch`` the plate. ``obs`` also carries ``ensg_id``, ``well_id`` and ``path``. The pixel size
        (0.102 µm) is scaled when ``image_size`` resizes.
    """
    if unlabelled not in UNLABELLED_POLICIES:
        raise ConfigError(f"unlabelled={unlabelled!r}: expected one of {', '.join(UNLABELLED_POLICIES)}")
    root = Path(root)
    listing = _Listing(root / "annotations.csv")
    table = _read_csv(listing.table, required=OPENCELL_COLUMNS)
    dropped = 0
    for i, row in enumerate(table.to_dict("records"), start=1):
        where = f"{listing.table} row {i}"
        filename = _required(row, "filename", where)
        grades = _opencell_grades(row, f"{where} ({filename})")
        if not grades and unlabelled == "error":
            raise DataError(
                f"{where} ({filename}): no label in grade_3, grade_2 or grade_1; pass unlabelled='drop' to skip "
                f"unlabelled images (the paper used the 6,120 labelled of 6,301)"
            )
        if not grades:
            dropped += 1
            continue
        path = root / "images" / filename
        obs_row = {
            "image_id": filename,
            "group": _required(row, "target_name", where),
            "batch": row["plate_id"].strip(),
            "domain": "opencell",
            "ensg_id": row["ensg_id"].strip(),
            "well_id": row["well_id"].strip(),
            "path": str(path),
        }
        listing.add(i, obs_row, (path,), grades)
    return _assemble(
        listing, class_names=OPENCELL_CLASSES, channel_names=OPENCELL_CHANNELS, domain="opencell",
        image_size=image_size, max_pixels=max_pixels, images_file=images_file, pixel_size_um=OPENCELL_PIXEL_SIZE_UM,
        unlabelled_dropped=dropped,
    )


def _opencell_grades(row: Mapping[str, str], where: str) -> dict[str, int]:
    """``{class: grade}`` of one annotation row; a class in two grade columns is contradictory and refused."""
    found: dict[str, int] = {}
    for column, grade in OPENCELL_GRADE_COLUMNS.items():
        for name in _split(row[column], ";"):
            _check_known(name, OPENCELL_CLASSES, f"{where} {column}")
            if found.get(name, grade) != grade:
                raise DataError(
                    f"{where}: label {name!r} is in grade_{found[name]} and {column}; expected each label in one "
                    f"grade column"
                )
            found[name] = grade
    return found


# --------------------------------------------------------------------------------------------------------------
# HPA Kaggle 2018


def read_hpa_kaggle(
    root: str | os.PathLike,
    *,
    image_size: int | None = None,
    split: str = "train",
    max_images: int | None = None,
    seed: int = 0,
    max_pixels: int = MAX_PIXELS,
    images_file: str | os.PathLike | None = None,
) -> ImageSet:
    """Read the Human Protein Atlas Image Classification (Kaggle 2018) release.

    Expected layout (the Kaggle download, unpacked)::

        root/<split>.csv                                columns Id, Target (space-separated class indices 0-27)
        root/<split>/<Id>_{red,green,blue,yellow}.png   8-bit grayscale, one file per channel

    The Kaggle colours are reordered to :data:`~dinoxfer_lib.data.classes.HPA_CHANNELS`: protein (green),
    microtubules (red), nucleus (blue), ER (yellow) - the protein channel comes first in every domain.

    Parameters
    ----------
    root
        The unpacked Kaggle folder.
    image_size
        Resize to ``image_size x image_size`` (the Kaggle PNGs are 512 x 512). Worth passing for the whole release:
        its 31,072 training images at full size fill 31,072 x 4 x 512 x 512 bytes, about 33 GB.
    split
        Name of the table and image folder; ``"train"`` is the only labelled split Kaggle ships, another name
        reads a folder laid out the same way (e.g. extra HPA images converted by the user).
    max_images
        Read a seeded random sample of this many rows (kept in table order) instead of all: enough for a check
        such as ``dinoxfer channels check`` without decoding 124,000 PNGs. The whole table is still checked.
    seed
        Seed of that sample.
    max_pixels
        Largest image accepted, in pixel values (channels x height x width), checked on each file's header before
        it is decoded.
    images_file
        Stream the images into this ``.npy`` file (e.g. ``<dataset folder>/images.npy``) instead of memory; the
        ImageSet's ``images`` is then that file, memory-mapped.

    Returns
    -------
    ImageSet
        Domain ``hpa`` with grade 3 for every present label (Kaggle has no grades). ``group`` is the image ``Id``:
        Kaggle does not publish which antibody or protein an image shows, so a grouped split cannot keep a protein
        on one side and degrades to a split by image. ``batch`` is empty (no plate information). The pixel size is
        left ``None``: the PNGs are downscaled from the microscope images and the release does not state the
        factor per image.
    """
    root = Path(root)
    listing = _Listing(root / f"{split}.csv")
    table = _read_csv(listing.table, required=("Id", "Target"))
    for i, row in enumerate(table.to_dict("records"), start=1):
        where = f"{listing.table} row {i}"
        image_id = _required(row, "Id", where)
        indices = _hpa_targets(row["Target"], f"{where} (Id {image_id})")
        files = tuple(root / split / f"{image_id}_{HPA_KAGGLE_COLOURS[ch]}.png" for ch in HPA_CHANNELS)
        obs_row = {"image_id": image_id, "group": image_id, "batch": "", "domain": "hpa", "path": str(files[0])}
        listing.add(i, obs_row, files, {HPA_CLASSES[k]: DEFAULT_GRADE for k in indices})
    if max_images is not None:
        listing = listing.sample(max_images, seed=seed)
    return _assemble(
        listing, class_names=HPA_CLASSES, channel_names=HPA_CHANNELS, domain="hpa", image_size=image_size,
        max_pixels=max_pixels, images_file=images_file, split=split,
    )


def _hpa_targets(cell: str, where: str) -> list[int]:
    """Class indices of one ``Target`` cell; every index must be an integer in ``[0, 28)``."""
    tokens = cell.split()
    if not tokens:
        raise DataError(f"{where}: empty Target; expected space-separated class indices 0-{len(HPA_CLASSES) - 1}")
    for token in tokens:
        if not (token.isascii() and token.isdigit()) or int(token) >= len(HPA_CLASSES):
            raise DataError(
                f"{where}: Target {token!r} is not a class index; expected integers 0-{len(HPA_CLASSES) - 1}"
            )
    return [int(token) for token in tokens]


# --------------------------------------------------------------------------------------------------------------
# The user's own table


def read_table(
    csv_path: str | os.PathLike,
    *,
    channel_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    domain: str = "custom",
    label_sep: str = ";",
    max_pixels: int = MAX_PIXELS,
    images_file: str | os.PathLike | None = None,
) -> ImageSet:
    """Read the user's own images listed in a CSV table.

    Columns:

    - either ``path`` (one multi-channel TIFF/PNG/NPY per image, channels in ``channel_names`` order) or one
      ``path_<channel>`` column per channel name (single-channel files); paths are relative to the CSV's folder
      or absolute;
    - ``labels``: class names separated by ``label_sep``; every image needs at least one;
    - optional ``image_id`` (default: the first path as written), ``group`` (protein / antibody; empty or missing
      means the image is its own group) and ``batch`` (plate; default empty). Other columns are kept in ``obs``.

    Parameters
    ----------
    csv_path
        The table.
    channel_names
        Meaning of each channel, protein first by convention; any count works.
    class_names
        Vocabulary and column order of the label matrix; a label outside it is an error. ``None`` uses the sorted
        union of the labels found.
    image_size
        Resize to ``image_size x image_size``; ``None`` requires all images to share one size.
    domain
        Name of the domain in ``obs`` and in the ImageSet.
    label_sep
        Separator inside the ``labels`` cell.
    max_pixels
        Largest image accepted, in pixel values (channels x height x width), checked on each file's header before
        it is decoded.
    images_file
        Stream the images into this ``.npy`` file (e.g. ``<dataset folder>/images.npy``) instead of memory; the
        ImageSet's ``images`` is then that file, memory-mapped.

    Returns
    -------
    ImageSet
        Grade 3 for every present label (no grades in this format); ``obs`` keeps ``path`` (the first file) and,
        for per-channel files, the resolved ``path_<channel>`` columns.
    """
    channel_names = tuple(channel_names)
    listing = _Listing(Path(csv_path))
    if not channel_names:
        raise ConfigError(f"{listing.table}: channel_names is empty; expected at least one channel name")
    table = _read_csv(listing.table, required=("labels",))
    path_columns = _path_columns(table, listing.table, channel_names)
    reserved = {"labels", "image_id", "group", "batch", "domain", "path", *path_columns}
    kept_columns = [c for c in table.columns if c not in reserved]
    for i, row in enumerate(table.to_dict("records"), start=1):
        where = f"{listing.table} row {i}"
        written = [_required(row, column, where) for column in path_columns]
        files = tuple(_resolve(listing.table.parent, p) for p in written)
        image_id = row.get("image_id", "").strip() or written[0]
        names = _table_labels(row["labels"], f"{where} ({image_id})", class_names=class_names, sep=label_sep)
        obs_row = {
            "image_id": image_id,
            "group": row.get("group", "").strip() or image_id,
            "batch": row.get("batch", "").strip(),
            "domain": domain,
            **{column: row[column] for column in kept_columns},
            "path": str(files[0]),
            **{column: str(path) for column, path in zip(path_columns, files)},
        }
        listing.add(i, obs_row, files, {name: DEFAULT_GRADE for name in names})
    vocabulary = tuple(class_names) if class_names is not None else tuple(sorted(set().union(*listing.grade_maps)))
    return _assemble(
        listing, class_names=vocabulary, channel_names=channel_names, domain=domain, image_size=image_size,
        max_pixels=max_pixels, images_file=images_file,
    )


def _table_labels(cell: str, where: str, *, class_names: Sequence[str] | None, sep: str) -> list[str]:
    names = _split(cell, sep)
    if not names:
        raise DataError(f"{where}: empty labels; expected at least one class name separated by {sep!r}")
    if class_names is not None:
        for name in names:
            _check_known(name, class_names, where)
    return names


def _path_columns(table: pd.DataFrame, csv_path: Path, channel_names: tuple[str, ...]) -> list[str]:
    """``["path"]`` or the ``path_<channel>`` columns in channel order; exactly one of the two forms."""
    per_channel = [f"path_{name}" for name in channel_names]
    has_single = "path" in table.columns
    present = [c for c in per_channel if c in table.columns]
    if has_single and present:
        raise DataError(f"{csv_path}: has both 'path' and {present}; expected one form")
    if has_single:
        return ["path"]
    if len(present) == len(per_channel):
        return per_channel
    missing = [c for c in per_channel if c not in table.columns]
    raise DataError(f"{csv_path}: no 'path' column and missing {missing}; expected 'path' or {per_channel}")


def _resolve(folder: Path, written: str) -> Path:
    path = Path(written).expanduser()
    return path if path.is_absolute() else folder / path


# --------------------------------------------------------------------------------------------------------------
# Shared: tables, labels, images


def _assemble(
    listing: _Listing,
    *,
    class_names: Sequence[str],
    channel_names: tuple[str, ...],
    domain: str,
    image_size: int | None,
    max_pixels: int,
    images_file: str | os.PathLike | None,
    pixel_size_um: float | None = None,
    **extra,
) -> ImageSet:
    """Read the listed images and build the ImageSet; ``extra`` goes into ``ImageSet.extra`` beside the sizes."""
    if not listing.rows:
        raise DataError(f"{listing.table}: no labelled image listed; expected at least one row")
    _check_unique(listing)
    images, original, source_types = _read_images(
        listing.entries, channel_names=channel_names, image_size=image_size, max_pixels=max_pixels,
        images_file=images_file, desc=domain,
    )
    labels, grades = _multi_hot(listing.grade_maps, class_names)
    return ImageSet(
        images=images,
        labels=labels,
        grades=grades,
        obs=pd.DataFrame(listing.rows),
        class_names=class_names,
        channel_names=channel_names,
        domain=domain,
        pixel_size_um=_scaled_pixel_size(pixel_size_um, original, image_size),
        extra={
            "source": str(listing.table),
            "original_size": list(original) if original is not None else None,
            "image_size": image_size,
            "source_pixel_types": source_types,
            **extra,
        },
    )


def _read_csv(path: Path, *, required: Sequence[str]) -> pd.DataFrame:
    """The whole table as strings (no NaN for empty cells), with the ``required`` columns present."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot parse CSV: {reason}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {list(required)}, found {list(table.columns)}")
    return table


def _required(row: Mapping[str, str], column: str, where: str) -> str:
    value = row[column].strip()
    if not value:
        raise DataError(f"{where}: empty {column}; expected a value")
    return value


def _split(cell: str, sep: str) -> list[str]:
    return [name.strip() for name in cell.split(sep) if name.strip()]


def _check_known(name: str, vocabulary: Sequence[str], where: str) -> None:
    if name not in vocabulary:
        raise DataError(f"{where}: unknown label {name!r}; expected one of {', '.join(vocabulary)}")


def _check_unique(listing: _Listing) -> None:
    """Refuse a repeated image id or a file listed twice (``a.tif`` and ``./a.tif``, a relative and an absolute
    path), naming both rows: one image on both sides of a split would inflate every score."""
    first_id: dict[str, int] = {}
    first_file: dict[str, tuple[int, Path]] = {}
    for row, entry in zip(listing.rows, listing.entries):
        image_id = row["image_id"]
        if image_id in first_id:
            raise DataError(
                f"{entry.where}: image_id {image_id!r} already used in row {first_id[image_id]}; expected unique ids"
            )
        first_id[image_id] = entry.row
        for path in entry.files:
            key = os.path.realpath(path)
            if key in first_file and first_file[key][0] != entry.row:
                other_row, other = first_file[key]
                raise DataError(
                    f"{entry.where}: {path} is the file {other} of row {other_row} ({key}); expected each image "
                    f"listed once"
                )
            first_file.setdefault(key, (entry.row, path))


def _multi_hot(grade_maps: Sequence[Mapping[str, int]], class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, grades)`` matrices over ``class_names`` from one ``{class: grade}`` map per image."""
    column = {name: k for k, name in enumerate(class_names)}
    grades = np.zeros((len(grade_maps), len(class_names)), dtype=np.int8)
    for i, grade_map in enumerate(grade_maps):
        for name, grade in grade_map.items():
            grades[i, column[name]] = grade
    return grades > 0, grades


def _read_images(
    entries: Sequence[_Entry],
    *,
    channel_names: tuple[str, ...],
    image_size: int | None,
    max_pixels: int,
    images_file: str | os.PathLike | None,
    desc: str,
) -> tuple[np.ndarray, tuple[int, int] | None, list[str]]:
    """Check every header, then stream all images into one ``(N, C, H, W)`` array (in memory or ``images_file``).

    Returns the array, the common original ``(H, W)`` (``None`` when sizes differed and were resized) and the
    sorted pixel types found in the files.
    """
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size={image_size}: expected a positive integer or None")
    sizes, dtypes = _check_headers(entries, channel_names=channel_names, image_size=image_size, max_pixels=max_pixels,
                                   desc=desc)
    dtype = common_pixel_type(dtypes)
    size = sizes[0] if image_size is None else (image_size, image_size)
    with ImageWriter((len(entries), len(channel_names), *size), dtype, images_file) as writer:
        for entry in progress_bar(entries, desc=f"reading {desc}"):
            image = _load(entry, channel_names, dtype=dtype, max_pixels=max_pixels)
            writer.append(image if image_size is None else _resize(image, image_size))
        images = writer.finish()
    same_size = all(s == sizes[0] for s in sizes)
    return images, (tuple(sizes[0]) if same_size else None), sorted({str(d) for d in dtypes})


def _check_headers(
    entries: Sequence[_Entry], *, channel_names: tuple[str, ...], image_size: int | None, max_pixels: int, desc: str
) -> tuple[list[tuple[int, int]], set[np.dtype]]:
    """The first pass: every listed file's header, before any pixel is decoded. Returns each image's ``(H, W)`` and
    the pixel types found."""
    sizes, dtypes = [], set()
    for entry in progress_bar(entries, desc=f"checking {desc} headers"):
        for path in entry.files:
            if not path.is_file():
                raise DataError(f"{entry.where}: listed file {path} not found")
        try:
            if len(entry.files) == 1:
                headers = [read_header(entry.files[0], channel_names=channel_names, max_pixels=max_pixels)]
            else:
                headers = [read_header(path, channel_names=(name,), max_pixels=max_pixels)
                           for path, name in zip(entry.files, channel_names)]
                _check_plane_sizes(headers)
        except DataError as exc:
            raise DataError(f"{entry.where}: {exc}") from exc
        size = headers[0].size
        if image_size is None and sizes and size != sizes[0]:
            raise DataError(
                f"{entry.where}: {entry.files[0]} is {size[0]}x{size[1]} pixels but {entries[0].files[0]} is "
                f"{sizes[0][0]}x{sizes[0][1]}; expected one size - pass image_size to resize them"
            )
        sizes.append(size)
        dtypes.update(header.dtype for header in headers)
    return sizes, dtypes


def _check_plane_sizes(headers: Sequence) -> None:
    """The single-channel files of one image must share a size."""
    first = headers[0]
    for header in headers[1:]:
        if header.size != first.size:
            raise DataError(
                f"{header.path} is {header.size[0]}x{header.size[1]} pixels but {first.path} is "
                f"{first.size[0]}x{first.size[1]}; expected the channels of one image to share a size"
            )


def _load(entry: _Entry, channel_names: tuple[str, ...], *, dtype: np.dtype, max_pixels: int) -> np.ndarray:
    """Read one entry as ``(C, H, W)`` in the set's pixel type; a file error is prefixed with the table row."""
    try:
        if len(entry.files) == 1:
            image = read_image(entry.files[0], channel_names=channel_names, max_pixels=max_pixels)
            return to_pixel_type(image, dtype, name=str(entry.files[0]))
        planes = [
            to_pixel_type(read_image(path, channel_names=(name,), max_pixels=max_pixels)[0], dtype, name=str(path))
            for path, name in zip(entry.files, channel_names)
        ]
        return np.stack(planes)
    except DataError as exc:
        raise DataError(f"{entry.where}: {exc}") from exc


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, size, size)``, bilinear and antialiased as the embedder resizes a batch, in the
    input's dtype and intensity range (integers rounded and clipped)."""
    if image.shape[1:] == (size, size):
        return image
    x = torch.from_numpy(image.astype(np.float32, copy=False))[None]  # (1, C, H, W)
    shrink = image.shape[1] > size or image.shape[2] > size
    resized = F.interpolate(x, size=(size, size), mode="bilinear", antialias=shrink, align_corners=False)[0].numpy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(resized), info.min, info.max).astype(image.dtype)
    return resized.astype(image.dtype)


def _scaled_pixel_size(
    pixel_size: float | None, original: tuple[int, int] | None, image_size: int | None
) -> float | None:
    """Pixel size after resizing; unknown when originals of different sizes were resized to one size."""
    if pixel_size is None or image_size is None:
        return pixel_size
    if original is None:
        return None
    return pixel_size * original[1] / image_size
