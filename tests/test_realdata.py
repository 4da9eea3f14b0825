"""The real-format writer of tests/realdata.py produces exactly what the readers document."""

import numpy as np
import pandas as pd

from dinoxfer_lib.data.classes import HPA_CLASSES, NATURAL_CHANNELS, OPENCELL_CLASSES
from dinoxfer_lib.data.readers import read_hpa_kaggle, read_opencell, read_table
from realdata import OPENCELL_COLUMNS, write_hpa_kaggle, write_opencell, write_table


def test_opencell_layout(tmp_path):
    table = write_opencell(tmp_path, 7, size=24, images_per_protein=3, n_unlabelled=1)
    assert tuple(pd.read_csv(table).columns) == OPENCELL_COLUMNS
    ds = read_opencell(tmp_path, unlabelled="drop")
    assert ds.images.shape == (6, 2, 24, 24) and ds.images.dtype == np.uint16
    assert ds.extra["unlabelled_dropped"] == 1 and ds.class_names == OPENCELL_CLASSES
    assert list(ds.obs["group"]) == ["PROT0"] * 3 + ["PROT1"] * 3
    assert (ds.grades[:3] == ds.grades[0]).all() and ds.labels.any(axis=1).all()  # a protein's labels, every image


def test_hpa_kaggle_layout(tmp_path):
    table = write_hpa_kaggle(tmp_path, 5, size=16)
    targets = pd.read_csv(table, dtype=str)["Target"]
    ds = read_hpa_kaggle(tmp_path)
    assert ds.images.shape == (5, 4, 16, 16) and ds.images.dtype == np.uint8 and ds.class_names == HPA_CLASSES
    assert [sorted(np.flatnonzero(row)) for row in ds.labels] == [sorted(map(int, t.split())) for t in targets]


def test_generic_table_of_rgb_pngs(tmp_path):
    table = write_table(tmp_path, 8, size=20, images_per_group=2)
    ds = read_table(table, channel_names=NATURAL_CHANNELS)
    assert ds.images.shape == (8, 3, 20, 20) and ds.images.dtype == np.uint8
    assert ds.class_names == ("bark", "leaf", "stone", "water") and list(ds.obs["group"][:3]) == ["G0", "G0", "G1"]
