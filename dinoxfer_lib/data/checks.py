"""Reading one image file into a checked ``(C, H, W)`` array.

Real data arrive as TIFF (OpenCell, microscopes), PNG (the HPA Kaggle release) or NPY (users' own pipelines). Every
reader goes through :func:`read_image`, so a truncated download, an RGB PNG where a grayscale one was expected or a
float image with NaNs fails here, once, with a one-line :class:`~dinoxfer_lib.errors.DataError` that names the file
and what was expected, instead of surfacing later as a shape error inside a ViT or a NaN loss.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from dinoxfer_lib.errors import DataError

# A channel axis is short (a microscope has a handful of channels), a spatial axis is long: the rule that tells
# (C, H, W) from (H, W, C) without metadata.
MAX_CHANNELS = 8

# What the decoders raise on truncated or corrupt input (tifffile: ValueError/TiffFileError/struct.error;
# Pillow: OSError/SyntaxError; numpy: ValueError/EOFError). Missing files are checked before decoding.
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error, IndexError, KeyError)

_FORMATS = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".npy": "NPY"}


def read_image(
    path: str | os.PathLike,
    *,
    expected_channels: int | None = None,
    channel_names: Sequence[str] | None = None,
    channel_axis: int | str = "auto",
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

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)``; a 2-D file is one channel. Integer data keep their dtype (uint8/uint16); bool becomes uint8.

    Raises
    ------
    DataError
        File missing, undecodable, of an unsupported type, with the wrong number of dimensions or channels, or
        with NaN/Inf values.
    """
    path = Path(path)
    kind = _format_of(path)
    if expected_channels is None and channel_names is not None:
        expected_channels = len(channel_names)
    array = _decode(path, kind)
    image = to_chw(array, name=str(path), channel_axis=channel_axis, expected_channels=expected_channels)
    if expected_channels is not None and image.shape[0] != expected_channels:
        raise DataError(
            f"{path}: has {image.shape[0]} channels, expected {expected_channels}{_names_suffix(channel_names)}"
        )
    check_finite(image, str(path))
    return image


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
    series) is refused rather than guessed.
    """
    if array.ndim > 3:
        # TIFF writers often add singleton axes (T=1, Z=1); they carry no data.
        array = array.reshape([n for n in array.shape if n != 1] or [1])
    if array.ndim == 2:
        return array[np.newaxis]
    if array.ndim != 3:
        raise DataError(
            f"{name}: has {array.ndim} dimensions (shape {array.shape}), expected a 2-D image or a 3-D "
            f"(C, H, W) / (H, W, C) stack"
        )
    axis = _channel_axis(array.shape, name=name, channel_axis=channel_axis, expected_channels=expected_channels)
    return np.moveaxis(array, axis, 0)


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
    if not path.is_file():
        raise DataError(f"{path}: file not found")
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
    return _plain_dtype(array, path)


def _plain_dtype(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise DataError(f"{path}: pixel type {array.dtype} is not supported, expected integer or float pixels")
    return array


def _read_tiff(path: Path) -> np.ndarray:
    return tifffile.imread(path)


def _read_png(path: Path) -> np.ndarray:
    return iio.imread(path)


def _read_npy(path: Path) -> np.ndarray:
    # allow_pickle=False: an .npy from elsewhere must never execute code.
    return np.load(path, allow_pickle=False)


_DECODERS = {"TIFF": _read_tiff, "PNG": _read_png, "NPY": _read_npy}


def _names_suffix(channel_names: Sequence[str] | None) -> str:
    return f" ({', '.join(channel_names)})" if channel_names else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
