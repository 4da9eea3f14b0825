"""Bad real-data input fails with one DataError line that names the file or row and what was expected."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from dinoxfer_lib.data.checks import check_finite, read_image
from dinoxfer_lib.data.readers import read_hpa_kaggle, read_opencell, read_table
from dinoxfer_lib.errors import ConfigError, DataError

SIZE = 24
OPENCELL_HEADER = ("filename", "target_name", "ensg_id", "plate_id", "well_id", "grade_3", "grade_2", "grade_1")


def raises_one_line(call, *fragments, error=DataError):
    """Run ``call``; assert it raises ``error`` with a one-line message containing every fragment."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in {message!r}"
    return message


def _tiff(path, channels=2):
    tifffile.imwrite(path, np.ones((channels, SIZE, SIZE), np.uint16), photometric="minisblack")


def _opencell(root, rows):
    """OpenCell folder with a 2-channel TIFF for every listed filename and the given annotation rows."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        if not (root / "images" / row[0]).exists():
            _tiff(root / "images" / row[0])
    pd.DataFrame(rows, columns=OPENCELL_HEADER).to_csv(root / "annotations.csv", index=False)


def _row(filename, g3="", g2="", g1=""):
    return (filename, "LMNB1", "ENSG1", "P1", "A1", g3, g2, g1)


# ---------------------------------------------------------------------------------------------------------------
# One file


def test_missing_file(tmp_path):
    raises_one_line(lambda: read_image(tmp_path / "nope.tif"), "nope.tif", "file not found")


@pytest.mark.parametrize("keep", [0.5, 100])
def test_truncated_tiff(tmp_path, keep):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    raises_one_line(lambda: read_image(path), "cut.tif", "cannot decode TIFF image (truncated or corrupt)")


def test_header_only_tiff(tmp_path):
    path = tmp_path / "header.tif"
    _tiff(path)
    path.write_bytes(path.read_bytes()[:8])
    raises_one_line(lambda: read_image(path), "header.tif", "cannot decode TIFF image")


def test_garbage_tiff(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"this is not a tiff at all" * 4)
    raises_one_line(lambda: read_image(path), "junk.tif", "cannot decode TIFF image (truncated or corrupt)")


@pytest.mark.parametrize("keep", [0.5, 40])
def test_truncated_png(tmp_path, keep):
    path = tmp_path / "cut.png"
    iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    raises_one_line(lambda: read_image(path), "cut.png", "cannot decode PNG image (truncated or corrupt)")


def test_truncated_npy(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((2, SIZE, SIZE), np.float32))
    path.write_bytes(path.read_bytes()[:200])
    raises_one_line(lambda: read_image(path), "cut.npy", "cannot decode NPY image")


def test_pickled_npy_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    raises_one_line(lambda: read_image(path), "obj.npy", "cannot decode NPY image")


def test_wrong_channel_count(tmp_path):
    path = tmp_path / "rgb.tif"
    _tiff(path, channels=3)
    raises_one_line(
        lambda: read_image(path, channel_names=("protein", "nucleus")),
        "rgb.tif", "has 3 channels, expected 2 (protein, nucleus)",
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_npy(tmp_path, bad):
    image = np.ones((2, SIZE, SIZE), np.float32)
    image[0, :3, :4] = bad  # 12 bad pixels
    np.save(tmp_path / "bad.npy", image)
    raises_one_line(lambda: read_image(tmp_path / "bad.npy"), "bad.npy", "contains 12 NaN/Inf pixels")


def test_check_finite_names_the_array():
    raises_one_line(lambda: check_finite(np.array([1.0, np.nan]), "embedding X"), "embedding X", "1 NaN/Inf")


@pytest.mark.parametrize("shape", [(SIZE,), (2, 3, SIZE, SIZE)])
def test_wrong_dimensionality(tmp_path, shape):
    np.save(tmp_path / "odd.npy", np.ones(shape, np.float32))
    raises_one_line(lambda: read_image(tmp_path / "odd.npy"), "odd.npy", f"has {len(shape)} dimensions", "2-D image")


def test_zstack_without_channel_axis(tmp_path):
    np.save(tmp_path / "stack.npy", np.ones((20, SIZE, SIZE), np.float32))
    raises_one_line(lambda: read_image(tmp_path / "stack.npy"), "stack.npy", "no channel axis", "(C, H, W)")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    raises_one_line(lambda: read_image(tmp_path / "x.jpg"), "x.jpg", "expected .tif, .tiff, .png or .npy")


# ---------------------------------------------------------------------------------------------------------------
# OpenCell tables


def test_unknown_opencell_label_names_row_and_valid_names(tmp_path):
    _opencell(tmp_path, [_row("a.tif", g3="er"), _row("b.tif", g2="nucleus")])
    raises_one_line(
        lambda: read_opencell(tmp_path), "annotations.csv row 2", "b.tif", "'nucleus'", "nucleoplasm", "chromatin",
    )


def test_unlabelled_row_says_to_drop(tmp_path):
    _opencell(tmp_path, [_row("a.tif", g3="er"), _row("b.tif"), _row("c.tif", g1="golgi")])
    raises_one_line(lambda: read_opencell(tmp_path), "row 2", "b.tif", "unlabelled='drop'")
    assert read_opencell(tmp_path, unlabelled="drop").extra["unlabelled_dropped"] == 1


def test_unlabelled_policy_is_validated(tmp_path):
    _opencell(tmp_path, [_row("a.tif", g3="er")])
    raises_one_line(lambda: read_opencell(tmp_path, unlabelled="keep"), "'keep'", "error, drop", error=ConfigError)


def test_label_in_two_grade_columns(tmp_path):
    _opencell(tmp_path, [_row("a.tif", g3="er;golgi", g1="golgi")])
    raises_one_line(lambda: read_opencell(tmp_path), "row 1", "a.tif", "'golgi'", "grade_3", "grade_1")


def test_opencell_wrong_channel_count_names_row_and_file(tmp_path):
    (tmp_path / "images").mkdir()
    _tiff(tmp_path / "images" / "rgb.tif", channels=3)
    _opencell(tmp_path, [_row("ok.tif", g3="er"), _row("rgb.tif", g3="er")])
    raises_one_line(
        lambda: read_opencell(tmp_path), "row 2", "rgb.tif", "has 3 channels, expected 2 (protein, nucleus)",
    )


def test_opencell_missing_image(tmp_path):
    _opencell(tmp_path, [_row("a.tif", g3="er"), _row("b.tif", g3="er")])
    (tmp_path / "images" / "b.tif").unlink()
    raises_one_line(lambda: read_opencell(tmp_path), "row 2", "b.tif", "not found")


def test_opencell_missing_columns(tmp_path):
    pd.DataFrame({"filename": ["a.tif"], "grade_3": ["er"]}).to_csv(tmp_path / "annotations.csv", index=False)
    raises_one_line(lambda: read_opencell(tmp_path), "annotations.csv", "missing columns", "target_name")


def test_opencell_missing_table(tmp_path):
    raises_one_line(lambda: read_opencell(tmp_path), "annotations.csv", "file not found")


def test_duplicate_image_names_both_rows(tmp_path):
    _opencell(tmp_path, [_row("a.tif", g3="er"), _row("a.tif", g3="golgi")])
    raises_one_line(lambda: read_opencell(tmp_path), "row 2", "'a.tif'", "row 1")


# ---------------------------------------------------------------------------------------------------------------
# HPA Kaggle


def _hpa(root, targets):
    (root / "train").mkdir(parents=True)
    for image_id in targets:
        for colour in ("red", "green", "blue", "yellow"):
            iio.imwrite(root / "train" / f"{image_id}_{colour}.png", np.zeros((SIZE, SIZE), np.uint8))
    pd.DataFrame({"Id": list(targets), "Target": list(targets.values())}).to_csv(root / "train.csv", index=False)


@pytest.mark.parametrize("target", ["0 x", "1.5", "28", "-1", ""])
def test_bad_hpa_target_names_the_id(tmp_path, target):
    _hpa(tmp_path, {"good": "0", "bad-id": target})
    raises_one_line(lambda: read_hpa_kaggle(tmp_path), "row 2", "Id bad-id", "0-27")


def test_hpa_missing_colour_file(tmp_path):
    _hpa(tmp_path, {"i1": "0"})
    (tmp_path / "train" / "i1_yellow.png").unlink()
    raises_one_line(lambda: read_hpa_kaggle(tmp_path), "row 1", "i1_yellow.png", "not found")


def test_hpa_rgb_png_where_grayscale_expected(tmp_path):
    _hpa(tmp_path, {"i1": "0"})
    iio.imwrite(tmp_path / "train" / "i1_green.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    raises_one_line(lambda: read_hpa_kaggle(tmp_path), "row 1", "i1_green.png", "has 3 channels, expected 1 (protein)")


def test_hpa_channels_of_one_image_differ_in_size(tmp_path):
    _hpa(tmp_path, {"i1": "0"})
    iio.imwrite(tmp_path / "train" / "i1_blue.png", np.zeros((SIZE, SIZE + 2), np.uint8))
    raises_one_line(lambda: read_hpa_kaggle(tmp_path), "row 1", "i1_blue.png", "24x26", "i1_green.png", "share a size")


# ---------------------------------------------------------------------------------------------------------------
# The user's table


def _table(tmp_path, rows, files=("a.tif", "b.tif")):
    for name in files:
        _tiff(tmp_path / name)
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


CHANNELS = ("protein", "nucleus")


def test_table_empty_label(tmp_path):
    csv = _table(tmp_path, {"path": ["a.tif", "b.tif"], "labels": ["er", " ; "]})
    raises_one_line(lambda: read_table(csv, channel_names=CHANNELS), "t.csv row 2", "b.tif", "empty labels")


def test_table_unknown_label(tmp_path):
    csv = _table(tmp_path, {"path": ["a.tif", "b.tif"], "labels": ["er", "ER"]})
    raises_one_line(
        lambda: read_table(csv, channel_names=CHANNELS, class_names=("er", "golgi")),
        "t.csv row 2", "'ER'", "er, golgi",
    )


def test_table_missing_listed_file(tmp_path):
    csv = _table(tmp_path, {"path": ["a.tif", "sub/gone.tif"], "labels": ["er", "er"]})
    raises_one_line(lambda: read_table(csv, channel_names=CHANNELS), "t.csv row 2", "sub/gone.tif", "not found")


def test_table_size_mismatch_names_first_mismatching_file(tmp_path):
    csv = _table(tmp_path, {"path": ["a.tif", "b.tif", "big.tif"], "labels": ["er"] * 3})
    tifffile.imwrite(tmp_path / "big.tif", np.ones((2, 30, 30), np.uint16))
    raises_one_line(
        lambda: read_table(csv, channel_names=CHANNELS), "row 3", "big.tif", "30x30", "24x24", "image_size",
    )


def test_table_without_path_columns(tmp_path):
    csv = _table(tmp_path, {"file": ["a.tif"], "labels": ["er"], "path_protein": ["a.tif"]})
    raises_one_line(lambda: read_table(csv, channel_names=CHANNELS), "t.csv", "path_nucleus", "'path'")


def test_table_wrong_channel_count(tmp_path):
    csv = _table(tmp_path, {"path": ["a.tif"], "labels": ["er"]})
    raises_one_line(
        lambda: read_table(csv, channel_names=("protein", "nucleus", "er")),
        "t.csv row 1", "a.tif", "has 2 channels, expected 3 (protein, nucleus, er)",
    )


def test_table_nan_image(tmp_path):
    image = np.ones((2, SIZE, SIZE), np.float32)
    image[1, 0, 0] = np.nan
    np.save(tmp_path / "n.npy", image)
    csv = _table(tmp_path, {"path": ["n.npy"], "labels": ["er"]}, files=())
    raises_one_line(lambda: read_table(csv, channel_names=CHANNELS), "t.csv row 1", "n.npy", "1 NaN/Inf")


def test_table_unparsable_csv(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"\xff\xfe\x00bad")
    raises_one_line(lambda: read_table(tmp_path / "t.csv", channel_names=CHANNELS), "t.csv", "cannot parse CSV")
