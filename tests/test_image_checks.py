"""Image files checked before their pixels are allocated, PNG colour types read as the channels they mean, one
pixel type per set whatever the row order, each file listed once, and images streamed into ``images.npy``."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from dinoxfer_lib.data.checks import read_header, read_image
from dinoxfer_lib.data.dataset import ImageWriter, load_imageset, save_imageset
from dinoxfer_lib.data.readers import read_hpa_kaggle, read_table
from dinoxfer_lib.errors import DataError

SIZE = 16
RAMP = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 251).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# File writers, one per kind of file a case needs: writer(path)


def grey_png(path):
    Image.fromarray(RAMP).save(path)


def grey_tif(path):
    tifffile.imwrite(path, RAMP.astype(np.uint16) * 200)


def two_channel_tif(path):
    tifffile.imwrite(path, np.stack([RAMP, RAMP[::-1]]).astype(np.uint16), photometric="minisblack")


def png_claiming(width, height, depth=8, colour=0):
    """A valid small PNG whose IHDR is rewritten (with a correct CRC) to claim another size or pixel format."""
    def write(path):
        grey_png(path)
        data = bytearray(path.read_bytes())
        ihdr = struct.pack(">IIBB", width, height, depth, colour) + bytes(data[26:29])
        data[16:29] = ihdr
        data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        path.write_bytes(bytes(data))
    return write


def tif_claiming(side):
    """A valid 2 x 8 x 8 TIFF whose ImageWidth / ImageLength tags are rewritten to ``side``."""
    def write(path):
        tifffile.imwrite(path, np.ones((2, 8, 8), np.uint16), photometric="minisblack")
        with tifffile.TiffFile(path) as tif:
            offsets = [tag.valueoffset for page in tif.pages for tag in page.tags.values() if tag.code in (256, 257)]
        data = bytearray(path.read_bytes())
        for offset in offsets:
            data[offset:offset + 4] = struct.pack("<I", side)
        path.write_bytes(bytes(data))
    return write


def npy_claiming(shape):
    """An NPY header for ``shape`` float32 with no data after it."""
    def write(path):
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return write


# --------------------------------------------------------------------------------------------------------------
# Bad input: one row per case. files: {name: writer}; paths: the table's `path` cells ({root} = the folder);
# channels: channel count the reader expects; fragments: what the one-line DataError must say.

BAD = [
    ("png-header-20000-squared", {"a.png": grey_png, "bomb.png": png_claiming(20000, 20000)}, ["a.png", "bomb.png"],
     1, ["t.csv row 2", "bomb.png", "20000 x 20000", "400,000,000 pixel values", "max_pixels = 268,435,456"]),
    ("tiff-header-2x100000-squared", {"a.tif": two_channel_tif, "bomb.tif": tif_claiming(100_000)},
     ["a.tif", "bomb.tif"], 2, ["t.csv row 2", "bomb.tif", "2 x 100000 x 100000", "max_pixels"]),
    ("npy-header-without-data", {"bomb.npy": npy_claiming((2, 50_000, 50_000))}, ["bomb.npy"], 2,
     ["t.csv row 1", "bomb.npy", "5,000,000,000 pixel values"]),
    ("16-bit-rgb-png", {"c.png": png_claiming(SIZE, SIZE, depth=16, colour=2)}, ["c.png"], 3,
     ["t.csv row 1", "c.png", "16-bit RGB PNG", "TIFF"]),
    ("same-file-with-dot", {"a.tif": two_channel_tif}, ["a.tif", "./a.tif"], 2,
     ["t.csv row 2", "a.tif", "row 1", "listed once"]),
    ("same-file-relative-and-absolute", {"a.tif": two_channel_tif}, ["a.tif", "{root}/a.tif"], 2,
     ["t.csv row 2", "row 1", "listed once"]),
    ("same-file-through-parent", {"a.tif": two_channel_tif, "b.tif": two_channel_tif},
     ["a.tif", "b.tif", "sub/../a.tif"], 2, ["t.csv row 3", "row 1", "listed once"]),
    ("channel-count-of-a-header", {"a.png": grey_png}, ["a.png"], 2, ["t.csv row 1", "has 1 channels, expected 2"]),
]


@pytest.mark.parametrize("files, paths, channels, fragments", [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_bad_image_is_one_line_naming_file_and_row(tmp_path, caplog, files, paths, channels, fragments):
    (tmp_path / "sub").mkdir()
    for name, write in files.items():
        write(tmp_path / name)
    cells = [p.format(root=tmp_path) for p in paths]
    pd.DataFrame({"path": cells, "labels": ["x"] * len(cells)}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError) as info:
        read_table(tmp_path / "t.csv", channel_names=[f"c{i}" for i in range(channels)],
                   images_file=tmp_path / "out" / "images.npy")
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing half-written
    assert not caplog.records  # no decoder's log lines (tifffile's) around the one line


def test_header_is_read_without_decoding_and_limit_is_a_parameter(tmp_path):
    two_channel_tif(tmp_path / "a.tif")
    header = read_header(tmp_path / "a.tif")
    assert header.shape == (2, SIZE, SIZE) and header.dtype == np.uint16
    with pytest.raises(DataError, match="512 pixel values; expected at most max_pixels = 511"):
        read_image(tmp_path / "a.tif", max_pixels=511)
    assert read_image(tmp_path / "a.tif", max_pixels=512).shape == (2, SIZE, SIZE)


def test_pillow_limit_does_not_refuse_what_max_pixels_allows(tmp_path, monkeypatch):
    grey_png(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow alone would refuse this 16 x 16 image
    np.testing.assert_array_equal(read_image(tmp_path / "a.png")[0], RAMP)
    assert Image.MAX_IMAGE_PIXELS == 10  # restored


# --------------------------------------------------------------------------------------------------------------
# PNG colour types


def test_grey_palette_png_is_one_channel_of_grey_levels(tmp_path):
    Image.fromarray(RAMP).convert("P").save(tmp_path / "p.png")  # an 'L' image converted keeps a grey palette
    with Image.open(tmp_path / "p.png") as saved:
        assert saved.mode == "P"
    image = read_image(tmp_path / "p.png", expected_channels=1)
    np.testing.assert_array_equal(image[0], RAMP)


def test_colour_palette_png_is_rgb(tmp_path):
    rgb = np.stack([RAMP, RAMP[::-1], np.full_like(RAMP, 7)], axis=-1)
    Image.fromarray(rgb).quantize(colors=64).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as saved:
        expected = np.asarray(saved.convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", expected_channels=3), expected)


def test_grey_alpha_png_is_its_grey_channel(tmp_path):
    Image.fromarray(np.stack([RAMP, np.full_like(RAMP, 128)], axis=-1), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png", expected_channels=1)[0], RAMP)


def test_hpa_channel_saved_as_palette_png_reads(tmp_path):
    (tmp_path / "train").mkdir()
    for colour in ("red", "green", "blue", "yellow"):
        Image.fromarray(RAMP).save(tmp_path / "train" / f"i1_{colour}.png")
    Image.fromarray(RAMP).convert("P").save(tmp_path / "train" / "i1_green.png")
    pd.DataFrame({"Id": ["i1"], "Target": ["0"]}).to_csv(tmp_path / "train.csv", index=False)
    ds = read_hpa_kaggle(tmp_path)
    np.testing.assert_array_equal(ds.images[0, 0], RAMP)


# --------------------------------------------------------------------------------------------------------------
# One pixel type per set


def _mixed_table(tmp_path, order):
    """A table over an 8-bit PNG, a 16-bit TIFF and (optionally) a float NPY, rows in ``order``."""
    grey_png(tmp_path / "u8.png")
    grey_tif(tmp_path / "u16.tif")
    np.save(tmp_path / "f.npy", RAMP.astype(np.float64) / 3)
    pd.DataFrame({"path": list(order), "labels": ["x"] * len(order)}).to_csv(tmp_path / "t.csv", index=False)
    return read_table(tmp_path / "t.csv", channel_names=("grey",))


@pytest.mark.parametrize("order", [("u8.png", "u16.tif"), ("u16.tif", "u8.png")])
def test_uint8_with_uint16_is_uint16_whatever_the_order(tmp_path, order):
    ds = _mixed_table(tmp_path, order)
    assert ds.images.dtype == np.uint16
    by_file = dict(zip(order, ds.images[:, 0]))
    np.testing.assert_array_equal(by_file["u8.png"], RAMP.astype(np.uint16) * 257)  # 255 -> 65535
    np.testing.assert_array_equal(by_file["u16.tif"], RAMP.astype(np.uint16) * 200)
    assert ds.extra["source_pixel_types"] == ["uint16", "uint8"]


@pytest.mark.parametrize("order", [("u8.png", "f.npy", "u16.tif"), ("f.npy", "u16.tif", "u8.png")])
def test_any_float_makes_a_float32_set_with_values_unchanged(tmp_path, order):
    ds = _mixed_table(tmp_path, order)
    assert ds.images.dtype == np.float32
    by_file = dict(zip(order, ds.images[:, 0]))
    np.testing.assert_array_equal(by_file["u8.png"], RAMP.astype(np.float32))
    np.testing.assert_array_equal(by_file["u16.tif"], RAMP.astype(np.float32) * 200)
    np.testing.assert_allclose(by_file["f.npy"], RAMP / 3, rtol=1e-6)


def test_uint8_per_channel_files_join_a_uint16_set_scaled(tmp_path):
    grey_png(tmp_path / "p.png")
    grey_tif(tmp_path / "n.tif")
    pd.DataFrame({"path_protein": ["p.png"], "path_nucleus": ["n.tif"], "labels": ["x"]}).to_csv(
        tmp_path / "t.csv", index=False)
    ds = read_table(tmp_path / "t.csv", channel_names=("protein", "nucleus"))
    assert ds.images.dtype == np.uint16
    np.testing.assert_array_equal(ds.images[0, 0], RAMP.astype(np.uint16) * 257)


# --------------------------------------------------------------------------------------------------------------
# Streaming into images.npy


def test_images_stream_into_the_dataset_folder_and_save_keeps_them(tmp_path):
    for k in range(3):
        tifffile.imwrite(tmp_path / f"{k}.tif", (np.stack([RAMP, RAMP.T]) * (k + 1)).astype(np.uint16),
                         photometric="minisblack")
    pd.DataFrame({"path": [f"{k}.tif" for k in range(3)], "labels": ["x", "y", "x"]}).to_csv(
        tmp_path / "t.csv", index=False)
    in_memory = read_table(tmp_path / "t.csv", channel_names=("a", "b"), image_size=8)
    folder = tmp_path / "set"
    streamed = read_table(tmp_path / "t.csv", channel_names=("a", "b"), image_size=8,
                          images_file=folder / "images.npy")
    assert isinstance(streamed.images, np.memmap) and not streamed.images.flags.writeable
    np.testing.assert_array_equal(streamed.images, in_memory.images)
    written = os.stat(folder / "images.npy")
    save_imageset(streamed, folder)
    assert os.stat(folder / "images.npy").st_mtime_ns == written.st_mtime_ns  # not rewritten
    np.testing.assert_array_equal(load_imageset(folder).images, in_memory.images)
    save_imageset(streamed.subset(np.array([2, 0])), tmp_path / "part")  # a reordered subset is written
    np.testing.assert_array_equal(load_imageset(tmp_path / "part").images, in_memory.images[[2, 0]])


def test_image_writer_leaves_nothing_when_interrupted(tmp_path):
    with pytest.raises(RuntimeError), ImageWriter((2, 1, 4, 4), np.uint8, tmp_path / "images.npy") as writer:
        writer.append(np.zeros((1, 4, 4), np.uint8))
        raise RuntimeError("reader failed at image 2")
    assert list(tmp_path.iterdir()) == []
