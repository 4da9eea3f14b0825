"""Reading one image file into a checked ``(C, H, W)`` array.

Real data arrive as TIFF (OpenCell, microscopes), PNG (the HPA Kaggle release) or NPY (users' own pipelines). Every
reader goes through :func:`read_header` and :func:`read_image`, so a truncated download, an RGB PNG where a grayscale
one was expected, a header claiming a gigapixel image or a float image with NaNs fails here, once, with a one-line
:class:`~dinoxfer_lib.errors.DataError` that names the file and what was expected, instead of surfacing later as a
``MemoryError``, a shape error inside a ViT or a NaN loss.

:func:`read_header` reads only the header: shape, channel count and pixel type are checked, and the pixel count is
bounded by ``max_pixels``, before a single pixel is decoded or allocated. :func:`read_image` checks the header
first, then decodes and checks that the pixels are what the header promised.

PNG colour types are read as the channels they mean: grey (1 channel), grey + alpha (1: alpha is transparency, not
a measurement), RGB (3), RGBA (4, the alpha kept as the fourth channel, as an RGBY image is sometimes stored), and
palette images as the colours their palette holds (1 channel when every palette entry is grey, else RGB).

One pixel type per set (:func:`common_pixel_type`): whatever order the files come in, all uint8 stay uint8; uint8
mixed with uint16 become uint16, the 8-bit values scaled by 257 (0..255 onto 0..65535, full range onto full
range); anything else (floats, signed or wider integers) becomes float32 with its values unchanged.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from dinoxfer_lib.errors import DataError

# A channel axis is short (a microscope has a handful of channels), a spatial axis is long: the rule that tells
# (C, H, W) from (H, W, C) without metadata.
MAX_CHANNELS = 8

# Largest image accepted, in pixel values (channels x height x width), checked on the header before decoding:
# 2^28 is a 4-channel 8192 x 8192 field (512 MiB as uint16), far above any microscope field of view, far below what
# a corrupt or hostile header can claim (tens of GiB).
MAX_PIXELS = 2**28

# What the decoders raise on truncated or corrupt input (tifffile: ValueError/TiffFileError/struct.error;
# Pillow: OSError/SyntaxError; numpy: ValueError/EOFError). Missing files are checked before decoding.
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error, IndexError, KeyError)

_FORMATS = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".npy": "NPY"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels as read (palette: decided by the palette's colours)
_PNG_CHANNELS = {0: 1, 2: 3, 4: 1, 6: 4}
_PNG_COLOUR_NAMES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey + alpha", 6: "RGBA"}


@dataclass(frozen=True)
class ImageHeader:
    """What a file holds, read from its header alone.

    Attributes
    ----------
    path
        The file.
    shape
        ``(C, H, W)`` as :func:`read_image` will return it.
    dtype
        Pixel type as :func:`read_image` will return it (native byte order; bool files are uint8).
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype

    @property
    def size(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]


def read_header(
    path: str | os.PathLike,
    *,
    expected_channels: int | None = None,
    channel_names: Sequence[str] | None = None,
    channel_axis: int | str = "auto",
    max_pixels: int = MAX_PIXELS,
) -> ImageHeader:
    """Read and check an image's header without decoding its pixels.

    Parameters are those of :func:`read_image`.

    Raises
    ------
    DataError
        File missing, of an unsupported type, with an unreadable header, an unsupported pixel type, the wrong number
        of dimensions or channels, no pixels, or more than ``max_pixels`` pixel values.
    """
    path = Path(path)
    kind = _format_of(path)
    if expected_channels is None and channel_names is not None:
        expected_channels = len(channel_names)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        raw_shape, dtype = _HEADERS[kind](path)
    except DataError:
        raise
    except PermissionError as exc:
        raise DataError(f"{path}: cannot read {kind} image (permission denied)") from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot decode {kind} image (truncated or corrupt): {_first_line(exc)}") from exc
    dtype = _plain_dtype(np.dtype(dtype), path)
    count = math.prod(raw_shape)
    if count == 0:
        raise DataError(f"{path}: cannot decode {kind} image (truncated or corrupt): no pixel data")
    if count > max_pixels:
        raise DataError(
            f"{path}: header claims {' x '.join(map(str, raw_shape))} = {count:,} pixel values; expected at most "
            f"max_pixels = {max_pixels:,} per image (a corrupt header, or raise max_pixels for images this large)"
        )
    squeezed, axis = _layout(raw_shape, name=str(path), channel_axis=channel_axis, expected_channels=expected_channels)
    shape = _chw_shape(squeezed, axis)
    if expected_channels is not None and shape[0] != expected_channels:
        raise DataError(
            f"{path}: has {shape[0]} channels, expected {expected_channels}{_names_suffix(channel_names)}"
        )
    return ImageHeader(path, shape, dtype)


def read_image(
    path: str | os.PathLike,
    *,
    expected_channels: int | None = None,
    channel_names: Sequence[str] | None = None,
    channel_axis: int | str = "auto",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read a TIFF, PNG or NPY image as a ``(C, H, W)`` array in its own dtype and intensity range.

    Parameters
    ----------
    path
        The image file; the suffix (``.tif``/``.tiff``, ``.png``, ``.npy``) picks the decoder.
    expected_channels
        Channel count the caller needs; a different count is an error. Defaults to ``len(channel_names)`` when
        names are given, else any count is accepted.
    channel_names
        Names of the expected channels, only used to make the error message say which channels were expected.
    channel_axis
        ``"auto"`` infers it (see :func:`to_chw`); ``0`` or ``-1`` (or ``2``) state it for files whose shape is
        ambiguous, e.g. tiny images where every axis is short.
    max_pixels
        Refuse, from the header and before decoding, an image of more pixel values (channels x height x width).

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)``; a 2-D file is one channel. Integer data keep their dtype (uint8/uint16); bool becomes uint8.
        PNG colour types are read as the module docstring says.

    Raises
    ------
    DataError
        Everything :func:`read_header` refuses; pixel data that are undecodable or differ from the header; NaN/Inf
        values.
    """
    header = read_header(path, expected_channels=expected_channels, channel_names=channel_names,
                         channel_axis=channel_axis, max_pixels=max_pixels)
    path, kind = header.path, _FORMATS[header.path.suffix.lower()]
    array = _decode(path, kind)
    image = to_chw(array, name=str(path), channel_axis=channel_axis, expected_channels=expected_channels)
    if image.shape != header.shape or image.dtype != header.dtype:
        raise DataError(
            f"{path}: cannot decode {kind} image (corrupt): its header says {header.shape} {header.dtype}, its pixel "
            f"data are {image.shape} {image.dtype}"
        )
    check_finite(image, str(path))
    return image


def common_pixel_type(dtypes: Iterable[np.dtype]) -> np.dtype:
    """The one pixel type of a set whose files have ``dtypes``, independent of their order (module docstring)."""
    found = {np.dtype(d) for d in dtypes}
    if found <= {np.dtype(np.uint8)}:
        return np.dtype(np.uint8)
    if found <= {np.dtype(np.uint8), np.dtype(np.uint16)}:
        return np.dtype(np.uint16)
    return np.dtype(np.float32)


def to_pixel_type(image: np.ndarray, dtype: np.dtype, *, name: str) -> np.ndarray:
    """``image`` converted to the set's pixel type ``dtype`` by :func:`common_pixel_type`'s rule.

    Raises
    ------
    DataError
        A float64 value too large for float32 (it would become Inf).
    """
    dtype = np.dtype(dtype)
    if image.dtype == dtype:
        return image
    if dtype == np.uint16 and image.dtype == np.uint8:
        return image.astype(np.uint16) * np.uint16(257)
    if dtype != np.float32:
        raise DataError(f"{name}: {image.dtype} pixels cannot join a {dtype} set; expected the pixel type rule's input")
    converted = image.astype(np.float32)
    check_finite(converted, f"{name} (as float32)")
    return converted


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise if a floating-point ``array`` holds NaN or Inf values.

    Non-finite pixels would propagate through normalisation into every embedding and loss, so they are refused at
    the door. Integer arrays cannot hold them and pass at no cost.

    Raises
    ------
    DataError
        ``"<name>: contains <n> NaN/Inf pixels"``.
    """
    if not np.issubdtype(array.dtype, np.inexact):
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise DataError(f"{name}: contains {bad} NaN/Inf pixels; expected finite values")


def to_chw(
    array: np.ndarray,
    *,
    name: str,
    channel_axis: int | str = "auto",
    expected_channels: int | None = None,
) -> np.ndarray:
    """Bring a 2-D or 3-D image into ``(C, H, W)`` order.

    With ``channel_axis="auto"``: a 2-D array is one channel; in a 3-D array the channel axis is the first or last
    axis of length <= :data:`MAX_CHANNELS`. When both qualify (tiny images), the one matching ``expected_channels``
    wins, and channels-first when that does not decide. A 3-D array with no short end axis (a z-stack, a time
    series) is refused rather than guessed. Singleton axes beyond three (TIFF's T=1, Z=1) are dropped.
    """
    squeezed, axis = _layout(array.shape, name=name, channel_axis=channel_axis, expected_channels=expected_channels)
    array = array.reshape(squeezed)
    return array[np.newaxis] if axis is None else np.moveaxis(array, axis, 0)


def _layout(
    shape: tuple[int, ...], *, name: str, channel_axis: int | str, expected_channels: int | None
) -> tuple[tuple[int, ...], int | None]:
    """``(shape without extra singleton axes, channel axis or None for a 2-D image)``: the one rule that both the
    header check and the decoded array follow."""
    shape = tuple(int(n) for n in shape)
    if len(shape) > 3:
        # TIFF writers often add singleton axes (T=1, Z=1); they carry no data.
        shape = tuple(n for n in shape if n != 1) or (1,)
    if len(shape) == 2:
        return shape, None
    if len(shape) != 3:
        raise DataError(
            f"{name}: has {len(shape)} dimensions (shape {shape}), expected a 2-D image or a 3-D "
            f"(C, H, W) / (H, W, C) stack"
        )
    return shape, _channel_axis(shape, name=name, channel_axis=channel_axis, expected_channels=expected_channels)


def _chw_shape(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    if axis is None:
        return (1, *shape)
    return (shape[axis], *(n for i, n in enumerate(shape) if i != axis))


def _channel_axis(shape: tuple[int, ...], *, name: str, channel_axis: int | str, expected_channels: int | None) -> int:
    if channel_axis != "auto":
        if channel_axis not in (0, 2, -1):
            raise DataError(f"{name}: channel_axis={channel_axis!r}, expected 'auto', 0 or -1")
        return int(channel_axis) % 3
    first, last = shape[0] <= MAX_CHANNELS, shape[2] <= MAX_CHANNELS
    if first and last and expected_channels is not None and shape[2] == expected_channels != shape[0]:
        return 2
    if first:
        return 0
    if last:
        return 2
    raise DataError(
        f"{name}: shape {shape} has no channel axis (first or last axis <= {MAX_CHANNELS}); expected "
        f"(C, H, W) or (H, W, C) - a z-stack or time series must be projected first"
    )


def _format_of(path: Path) -> str:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}, expected .tif, .tiff, .png or .npy")
    return kind


def _decode(path: Path, kind: str) -> np.ndarray:
    try:
        array = _DECODERS[kind](path)
    except PermissionError as exc:
        raise DataError(f"{path}: cannot read {kind} image (permission denied)") from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot decode {kind} image (truncated or corrupt): {_first_line(exc)}") from exc
    array = np.asarray(array)
    if array.size == 0:
        # tifffile returns an empty array for a header without image data.
        raise DataError(f"{path}: cannot decode {kind} image (truncated or corrupt): no pixel data")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array.astype(_plain_dtype(array.dtype, path), copy=False)


def _plain_dtype(dtype: np.dtype, path: Path) -> np.dtype:
    """The pixel type as arrays carry it: native byte order, bool as uint8; other kinds refused."""
    if dtype == bool:
        return np.dtype(np.uint8)
    if dtype.kind not in "uif":
        raise DataError(f"{path}: pixel type {dtype} is not supported, expected integer or float pixels")
    return dtype.newbyteorder("=")


# --------------------------------------------------------------------------------------------------------------
# Headers: (shape as the decoder returns the array, dtype), without reading pixels


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs what it finds odd in a file (strip counts, shapes) to stderr; a file it cannot use fails with
    one DataError line instead, so its log lines would only bury that line."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
        series = tif.series[0]  # what tifffile.imread returns
        return tuple(series.shape), series.dtype


def _png_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Walk the chunks up to the first image data: IHDR gives size, bit depth and colour type, PLTE the palette."""
    with open(path, "rb") as handle:
        if handle.read(8) != _PNG_SIGNATURE:
            raise ValueError("not a PNG file (no PNG signature)")
        ihdr, palette = None, None
        while True:
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("the file ends before the image data")
            length, chunk = struct.unpack(">I4s", head)
            if chunk == b"IHDR":
                ihdr = struct.unpack(">IIBB", handle.read(10))
                handle.seek(length - 10 + 4, os.SEEK_CUR)  # rest of IHDR, CRC
            elif chunk == b"PLTE":
                palette = handle.read(length)
                handle.seek(4, os.SEEK_CUR)
            elif chunk in (b"IDAT", b"IEND"):
                break
            else:
                handle.seek(length + 4, os.SEEK_CUR)
    if ihdr is None:
        raise ValueError("no IHDR chunk before the image data")
    width, height, depth, colour = ihdr
    if colour == 3:
        if palette is None:
            raise ValueError("palette image without a PLTE chunk")
        channels = 1 if _grey_palette(palette) else 3
    elif colour in _PNG_CHANNELS:
        channels = _PNG_CHANNELS[colour]
    else:
        raise ValueError(f"unknown PNG colour type {colour}")
    if depth == 16 and colour != 0:
        raise DataError(
            f"{path}: 16-bit {_PNG_COLOUR_NAMES[colour]} PNG, which Pillow reduces to 8 bits; expected 16-bit PNGs "
            f"to be greyscale (one file per channel) - save multi-channel 16-bit images as TIFF"
        )
    dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
    return ((height, width) if channels == 1 else (height, width, channels)), dtype


def _grey_palette(palette: bytes) -> bool:
    """Every RGB entry of a palette has equal components (the image means grey levels, not colours)."""
    entries = np.frombuffer(palette[: len(palette) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
    return bool((entries == entries[:, :1]).all())


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"NPY format version {version[0]}.{version[1]} is not supported (1.0 or 2.0 expected)")
    if dtype.hasobject:
        raise ValueError("holds Python objects (a pickle), expected a numeric array")
    return tuple(shape), dtype


_HEADERS = {"TIFF": _tiff_header, "PNG": _png_header, "NPY": _npy_header}


# --------------------------------------------------------------------------------------------------------------
# Pixels


def _read_tiff(path: Path) -> np.ndarray:
    with _quiet_tifffile():
        return tifffile.imread(path)


@contextmanager
def _without_pillow_pixel_limit() -> Iterator[None]:
    """Pillow's own decompression-bomb limit, off while decoding: :func:`read_header` has already bounded the size
    with ``max_pixels``, and Pillow's error would name neither the file nor the limit to change."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _read_png(path: Path) -> np.ndarray:
    with _without_pillow_pixel_limit(), Image.open(path) as image:
        if image.mode == "P":
            colours = image.getpalette() or []
            image = image.convert("L" if _grey_palette(bytes(colours)) else "RGB")
        elif image.mode in ("LA", "La"):
            image = image.getchannel(0)
        return np.asarray(image)


def _read_npy(path: Path) -> np.ndarray:
    # allow_pickle=False: an .npy from elsewhere must never execute code.
    return np.load(path, allow_pickle=False)


_DECODERS = {"TIFF": _read_tiff, "PNG": _read_png, "NPY": _read_npy}


def _names_suffix(channel_names: Sequence[str] | None) -> str:
    return f" ({', '.join(channel_names)})" if channel_names else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
