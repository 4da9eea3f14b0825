"""Real-data readers on tiny files written in the real on-disk formats (TIFF, PNG, NPY + CSV tables)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from dinoxfer_lib.data.checks import check_finite, read_image
from dinoxfer_lib.data.classes import HPA_CHANNELS, HPA_CLASSES, OPENCELL_CHANNELS, OPENCELL_CLASSES
from dinoxfer_lib.data.dataset import load_imageset, save_imageset
from dinoxfer_lib.data.readers import read_hpa_kaggle, read_opencell, read_table

SIZE = 24


def _image(rng, channels, dtype=np.uint16, high=60000):
    return rng.integers(0, high, size=(channels, SIZE, SIZE)).astype(dtype)


OPENCELL_ROWS = [
    # filename, target, plate, grade_3, grade_2, grade_1
    ("a.tif", "LMNB1", "P1", "nuclear_membrane", "", "er"),
    ("b.tif", "LMNB1", "P1", "nuclear_membrane;chromatin", "", ""),
    ("c.tif", "TOMM20", "P2", "", "mitochondria", ""),
    ("d.tif", "NONE", "P2", "", "", ""),  # unannotated
]


def write_opencell(root, rng):
    (root / "images").mkdir(parents=True)
    images = {}
    for k, (filename, *_rest) in enumerate(OPENCELL_ROWS):
        image = _image(rng, 2)
        images[filename] = image
        # OpenCell exports differ: write one file channels-last to exercise the axis inference.
        tifffile.imwrite(root / "images" / filename, image.transpose(1, 2, 0) if k == 1 else image)
    table = pd.DataFrame(
        [
            {"filename": f, "target_name": t, "ensg_id": f"ENSG{k:011d}", "plate_id": p, "well_id": f"A{k + 1}",
             "grade_3": g3, "grade_2": g2, "grade_1": g1}
            for k, (f, t, p, g3, g2, g1) in enumerate(OPENCELL_ROWS)
        ]
    )
    table.to_csv(root / "annotations.csv", index=False)
    return images


def test_read_opencell_values_labels_grades_groups(tmp_path):
    images = write_opencell(tmp_path, np.random.default_rng(0))
    ds = read_opencell(tmp_path, unlabelled="drop")

    assert ds.domain == "opencell"
    assert ds.channel_names == OPENCELL_CHANNELS == ("protein", "nucleus")
    assert ds.class_names == OPENCELL_CLASSES
    assert ds.images.shape == (3, 2, SIZE, SIZE) and ds.images.dtype == np.uint16
    for i, filename in enumerate(["a.tif", "b.tif", "c.tif"]):
        np.testing.assert_array_equal(ds.images[i], images[filename])
    assert list(ds.obs["image_id"]) == ["a.tif", "b.tif", "c.tif"]
    assert list(ds.obs["group"]) == ["LMNB1", "LMNB1", "TOMM20"]
    assert list(ds.obs["batch"]) == ["P1", "P1", "P2"]
    assert ds.obs["path"].iloc[0].endswith("images/a.tif")
    col = {name: k for k, name in enumerate(OPENCELL_CLASSES)}
    assert ds.grades[0, col["nuclear_membrane"]] == 3 and ds.grades[0, col["er"]] == 1
    assert ds.labels[1, [col["nuclear_membrane"], col["chromatin"]]].all()
    assert ds.grades[2, col["mitochondria"]] == 2
    assert ds.labels.sum(axis=1).tolist() == [2, 2, 1]
    assert ds.extra["unlabelled_dropped"] == 1
    assert ds.pixel_size_um == pytest.approx(0.102)


def test_read_opencell_resize_keeps_dtype_and_range(tmp_path):
    write_opencell(tmp_path, np.random.default_rng(1))
    ds = read_opencell(tmp_path, image_size=12, unlabelled="drop")
    assert ds.images.shape == (3, 2, 12, 12)
    assert ds.images.dtype == np.uint16
    assert ds.images.max() > 255  # still in the 16-bit range, not rescaled to [0, 1]
    assert ds.pixel_size_um == pytest.approx(0.102 * SIZE / 12)
    assert ds.extra["original_size"] == [SIZE, SIZE] and ds.extra["image_size"] == 12


def test_resize_of_a_constant_image_is_exact(tmp_path):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, np.full((2, SIZE, SIZE), 1234, np.uint16))
    table = tmp_path / "t.csv"
    pd.DataFrame({"path": ["flat.tif"], "labels": ["er"]}).to_csv(table, index=False)
    ds = read_table(table, channel_names=("protein", "nucleus"), image_size=10)
    assert ds.images.shape == (1, 2, 10, 10)
    assert (ds.images == 1234).all()


def test_opencell_roundtrips_through_the_imageset_folder(tmp_path):
    write_opencell(tmp_path / "src", np.random.default_rng(2))
    ds = read_opencell(tmp_path / "src", unlabelled="drop")
    save_imageset(ds, tmp_path / "saved")
    back = load_imageset(tmp_path / "saved", mmap=False)
    np.testing.assert_array_equal(back.images, ds.images)
    np.testing.assert_array_equal(back.grades, ds.grades)
    assert back.extra["unlabelled_dropped"] == 1
    assert list(back.obs["well_id"]) == list(ds.obs["well_id"])


KAGGLE_COLOURS = ("red", "green", "blue", "yellow")


def write_hpa(root, targets):
    (root / "train").mkdir(parents=True)
    for k, image_id in enumerate(targets):
        for c, colour in enumerate(KAGGLE_COLOURS):
            # Each colour gets its own constant + a ramp, so a channel swap changes the values.
            plane = (10 * (c + 1) + k + np.arange(SIZE)[None, :] % 5).astype(np.uint8).repeat(SIZE, axis=0)
            iio.imwrite(root / "train" / f"{image_id}_{colour}.png", plane)
    pd.DataFrame({"Id": list(targets), "Target": list(targets.values())}).to_csv(root / "train.csv", index=False)


def test_read_hpa_kaggle_reorders_colours_to_protein_first(tmp_path):
    targets = {"id-a": "0 25", "id-b": "16", "id-c": "27 2 0"}
    write_hpa(tmp_path, targets)
    ds = read_hpa_kaggle(tmp_path)

    assert ds.channel_names == HPA_CHANNELS == ("protein", "microtubules", "nucleus", "er")
    assert ds.images.shape == (3, 4, SIZE, SIZE) and ds.images.dtype == np.uint8
    # green (colour index 1) -> protein, red (0) -> microtubules, blue (2) -> nucleus, yellow (3) -> er
    base = ds.images[:, :, 0, 0].astype(int) - np.arange(3)[:, None]
    assert base.tolist() == [[20, 10, 30, 40]] * 3
    green = iio.imread(tmp_path / "train" / "id-b_green.png")
    np.testing.assert_array_equal(ds.images[1, 0], green)
    assert ds.class_names == HPA_CLASSES
    assert [sorted(np.flatnonzero(row)) for row in ds.labels] == [[0, 25], [16], [0, 2, 27]]
    assert set(np.unique(ds.grades)) == {0, 3}
    assert list(ds.obs["group"]) == list(targets) and set(ds.obs["batch"]) == {""}
    assert ds.pixel_size_um is None


def test_read_hpa_kaggle_resize(tmp_path):
    write_hpa(tmp_path, {"x": "1", "y": "2"})
    ds = read_hpa_kaggle(tmp_path, image_size=8)
    assert ds.images.shape == (2, 4, 8, 8) and ds.images.dtype == np.uint8


def test_read_table_single_file_paths_any_channel_count(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "imgs").mkdir()
    a = rng.random((3, SIZE, SIZE), dtype=np.float32)
    b = rng.random((SIZE, SIZE, 3), dtype=np.float32)  # channels last in an NPY
    np.save(tmp_path / "imgs" / "a.npy", a)
    np.save(tmp_path / "imgs" / "b.npy", b)
    c = _image(rng, 3)
    tifffile.imwrite(tmp_path / "c.tif", c, photometric="minisblack")
    pd.DataFrame(
        {
            "path": ["imgs/a.npy", "imgs/b.npy", str(tmp_path / "c.tif")],  # relative and absolute
            "labels": ["golgi;er", "er", "zeta"],
            "group": ["P1", "P1", ""],
            "batch": ["b1", "b2", "b2"],
            "cell_line": ["U2OS", "U2OS", "HeLa"],
        }
    ).to_csv(tmp_path / "mine.csv", index=False)
    ds = read_table(tmp_path / "mine.csv", channel_names=("protein", "nucleus", "actin"), domain="mine")

    assert ds.domain == "mine" and ds.n_channels == 3
    assert ds.class_names == ("er", "golgi", "zeta")  # sorted union
    assert ds.labels.astype(int).tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert set(np.unique(ds.grades)) == {0, 3}
    np.testing.assert_allclose(ds.images[0], a)
    np.testing.assert_allclose(ds.images[1], b.transpose(2, 0, 1))
    np.testing.assert_allclose(ds.images[2], c)  # uint16 widened safely into the float32 array
    assert list(ds.obs["image_id"]) == ["imgs/a.npy", "imgs/b.npy", str(tmp_path / "c.tif")]
    assert list(ds.obs["group"]) == ["P1", "P1", str(tmp_path / "c.tif")]  # empty group = its own group
    assert list(ds.obs["cell_line"]) == ["U2OS", "U2OS", "HeLa"]
    assert set(ds.obs["domain"]) == {"mine"}


def test_read_table_per_channel_pngs_and_given_class_order(tmp_path):
    rng = np.random.default_rng(4)
    rows = []
    for k in range(3):
        planes = rng.integers(0, 255, size=(2, SIZE, SIZE)).astype(np.uint8)
        for name, plane in zip(("dna", "prot"), planes):
            iio.imwrite(tmp_path / f"{k}_{name}.png", plane)
        rows.append({"image_id": f"img{k}", "path_protein": f"{k}_prot.png", "path_nucleus": f"{k}_dna.png",
                     "labels": ["b", "a;b", "c"][k]})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    ds = read_table(tmp_path / "t.csv", channel_names=("protein", "nucleus"), class_names=("c", "b", "a", "unused"))

    assert ds.class_names == ("c", "b", "a", "unused")
    assert ds.labels.astype(int).tolist() == [[0, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]
    np.testing.assert_array_equal(ds.images[2, 0], iio.imread(tmp_path / "2_prot.png"))
    np.testing.assert_array_equal(ds.images[2, 1], iio.imread(tmp_path / "2_dna.png"))
    assert ds.obs["path_nucleus"].iloc[0].endswith("0_dna.png")


def test_read_table_mixed_sizes_need_image_size(tmp_path):
    rng = np.random.default_rng(5)
    tifffile.imwrite(tmp_path / "s.tif", _image(rng, 2))
    tifffile.imwrite(tmp_path / "l.tif", rng.integers(0, 999, size=(2, 40, 32)).astype(np.uint16))
    pd.DataFrame({"path": ["s.tif", "l.tif"], "labels": ["x", "y"]}).to_csv(tmp_path / "t.csv", index=False)
    ds = read_table(tmp_path / "t.csv", channel_names=("protein", "nucleus"), image_size=16)
    assert ds.images.shape == (2, 2, 16, 16)
    assert ds.extra["original_size"] is None  # no single original size to scale a pixel size from


def test_read_image_layouts(tmp_path):
    rng = np.random.default_rng(6)
    plane = rng.integers(0, 60000, size=(SIZE, SIZE)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "gray.tif", plane)
    assert read_image(tmp_path / "gray.tif").shape == (1, SIZE, SIZE)

    rgb = rng.integers(0, 255, size=(SIZE, SIZE, 3)).astype(np.uint8)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    out = read_image(tmp_path / "rgb.png", expected_channels=3)
    np.testing.assert_array_equal(out, rgb.transpose(2, 0, 1))

    tiny = rng.random((4, 5, 2)).astype(np.float32)  # every axis short: the expected count decides
    np.save(tmp_path / "tiny.npy", tiny)
    assert read_image(tmp_path / "tiny.npy", expected_channels=2).shape == (2, 4, 5)
    assert read_image(tmp_path / "tiny.npy", channel_axis=0).shape == (4, 5, 2)

    stacked = rng.integers(0, 9, size=(1, 2, SIZE, SIZE)).astype(np.uint16)  # singleton T/Z axis
    tifffile.imwrite(tmp_path / "hyper.tif", stacked)
    assert read_image(tmp_path / "hyper.tif", channel_names=("protein", "nucleus")).shape == (2, SIZE, SIZE)


def test_check_finite_passes_integers_and_finite_floats():
    check_finite(np.zeros((2, 3, 3), np.uint16), "ints")
    check_finite(np.ones((2, 3, 3), np.float32), "floats")
