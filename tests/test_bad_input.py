"""Bad input fails with one line that names the file, row or key and what was expected: real data, the command line
(profiles, --set values, a killed kernel), every config bound, and training that diverges."""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from dinoxfer_lib.config import load_config
from dinoxfer_lib.data.checks import check_finite, read_image
from dinoxfer_lib.data.readers import read_hpa_kaggle, read_opencell, read_table
from dinoxfer_lib.errors import ConfigError, DataError, TrainingError

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


# ---------------------------------------------------------------------------------------------------------------
# The command line: a bad profile, --set value or a killed kernel ends in one "error: ..." line and exit status 2.
# One row per case: the dinoxfer arguments ({tmp} = tmp_path), what the line must contain, and files to write first.


def _alias_bomb():
    """A few hundred bytes of YAML whose nine nested aliases of nine items each hold 9**9 references."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


BOMB = _alias_bomb()
DYING_NOTEBOOK = ('# %% tags=["parameters"]\nprofile = "demo"\noverrides = {}\nruns_root = "../runs"\nforce = False\n\n'
                  '# %%\nprint("loaded")\n\n# %%\nimport os\nos.kill(os.getpid(), 9)\n\n# %%\nprint("never")\n')
SET = "config --profile smoke --set"
PROFILE = "config --profile {tmp}/p.yaml"

CLI_CASES = {  # id: (arguments, fragments of the line, files to write first)
    "set value not YAML": (f"{SET} 'seed=[1'", ["--set 'seed=[1'", "not valid YAML at line 1, column 3"], {}),
    "set value then sub-key": (f"{SET} seed=1 seed.x=2", ["'seed.x=2'", "'seed' is already set by 'seed=1'"], {}),
    "set sub-key then value": (f"{SET} seed.x=2 seed=1", ["'seed=1'", "'seed' is already set by 'seed.x=2'"], {}),
    "set key twice": (f"{SET} seed=1 seed=2", ["'seed=2'", "already set by 'seed=1'", "give each key once"], {}),
    "set without value": (f"{SET} seed", ["--set 'seed'", "expected KEY=VALUE"], {}),
    "set empty key part": (f"{SET} probe..lr=0.1", ["'probe..lr=0.1'", "expected KEY=VALUE"], {}),
    "set alias bomb": (f"{SET} 'seed={{{BOMB.strip().replace(chr(10), ', ')}}}'", ["an alias", "line 1"], {}),
    "set huge value": (f"{SET} seed={'9x' * 50_000}", ["'seed'", "expected an integer", "..."], {}),
    "set huge key": (f"{SET} {'k' * 100_000}=1", ["unknown config key 'kkk", "..."], {}),
    "profile not UTF-8": (PROFILE, ["p.yaml", "not UTF-8", "0xff at offset 6"], {"p.yaml": b"seed: \xff\n"}),
    "profile alias bomb": (PROFILE, ["p.yaml", "line 2", "an alias"], {"p.yaml": BOMB.encode()}),
    "profile nested deeply": (PROFILE, ["nested too deeply"], {"p.yaml": b"[" * 5000 + b"]" * 5000}),
    "profile not a mapping": (PROFILE, ["p.yaml", "expected a mapping", "list"], {"p.yaml": b"- 1\n"}),
    "profile number key": (PROFILE, ["unknown config key '1'"], {"p.yaml": b"1: 2\n"}),
    "profile too large": (PROFILE, ["p.yaml", "at most 1048576 bytes"], {"p.yaml": b"#" * (2 << 20)}),
    "lr infinite": (f"{SET} probe.lr=.inf", ["'probe.lr' = inf", "a finite number in (0, 1)"], {}),
    "lr NaN": (f"{SET} dino.lr=.nan", ["'dino.lr' = nan", "in (0, 1)"], {}),
    "lr one": (f"{SET} dino.lr=1", ["'dino.lr' = 1.0", "in (0, 1)"], {}),
    "temperature zero": (f"{SET} dino.teacher_temp=0", ["'dino.teacher_temp' = 0.0", "> 0"], {}),
    "epochs zero": (f"{SET} probe.epochs=0", ["'probe.epochs' = 0", "an integer >= 1"], {}),
    "fraction one": (f"{SET} split.test_fraction=1", ["'split.test_fraction' = 1.0", "in (0, 1)"], {}),
    "fraction in a list": (f"{SET} probe.low_label_fractions=[0.5,1.5]", ["(0.5, 1.5)", "numbers in (0, 1]"], {}),
    "seed too large": (f"{SET} seed=4294967296", ["'seed' = 4294967296", "in [0, 4294967295]"], {}),
    "count too large": (f"{SET} probe.epochs={10**400}", ["'probe.epochs' = 1000", "..."], {}),
    "kernel killed": ("run --profile smoke --notebooks {tmp}/nbs --runs {tmp}/runs",
                      ["notebook 01_die", "kernel died while running cell 4 (`import os`)", "memory",
                       "partial notebook kept at", "01_die.failed.ipynb"], {"nbs/01_die.py": DYING_NOTEBOOK.encode()}),
}


@pytest.mark.parametrize("arguments, fragments, files", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_cli_gives_one_line_and_status_2(tmp_path, capsys, arguments, fragments, files):
    from dinoxfer_lib.cli import main

    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    status = main(shlex.split(arguments.replace("{tmp}", str(tmp_path))))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(lines) == 1, lines
    line = lines[0]
    assert len(line) < 600, f"{len(line)} characters"  # user values are shown cut to 200 characters
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    for kept in re.findall(r"kept at (\S+)", line):
        assert Path(kept).is_file()


def test_alias_bomb_from_papermill_yaml_is_shown_short():
    """papermill's -y reads YAML with aliases; the value reaches load_config as shared references, never expanded."""
    import yaml

    bomb = yaml.safe_load(BOMB)
    message = raises_one_line(lambda: load_config("smoke", {"seed": bomb}), "'seed'", "expected an integer",
                              error=ConfigError)
    assert len(message) < 400
    raises_one_line(lambda: load_config("smoke", {"analysis": bomb}), "unknown config key 'analysis.a'",
                    error=ConfigError)


# ---------------------------------------------------------------------------------------------------------------
# Config bounds: every numeric value of every config section is checked against the one table in bounds.py


def _config_sections():
    """Every config dataclass: those of the profile's Config (found by walking it) and those not registered yet."""
    from dinoxfer_lib.adapt.config import AdaptConfig
    from dinoxfer_lib.config import Config
    from dinoxfer_lib.data.em import EMDataConfig
    from dinoxfer_lib.seg.config import SegConfig

    found, todo = {}, [Config, AdaptConfig, SegConfig, EMDataConfig]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        default = cls()
        todo += [type(getattr(default, f.name)) for f in dataclasses.fields(cls)
                 if dataclasses.is_dataclass(getattr(default, f.name))]
    return found


def test_every_numeric_config_value_has_a_bound_and_every_bound_a_value():
    from dinoxfer_lib.bounds import numeric_fields, table_rows

    sections = _config_sections()
    assert {"DinoConfig", "ProbeConfig", "AnalysisConfig", "EmbedConfig", "SplitConfig", "DomainConfig",
            "AdaptConfig", "LoraSettings", "SegConfig", "EMDataConfig"} <= set(sections)
    for name, cls in sections.items():
        assert set(table_rows(cls)) == set(numeric_fields(cls)), name


def _outside(bound, integer):
    """Values just outside ``bound`` (and the non-finite ones) for a field of integers or floats."""
    step = 1 if integer else 1e-9
    values = [math.nan, math.inf, -math.inf, bound.low if not bound.low_closed else bound.low - step]
    if math.isfinite(bound.high):
        values.append(bound.high if not bound.high_closed else bound.high + step)
    return [v for v in values if not integer or not math.isfinite(v) or v == int(v)]


def _validate(section, key):
    return section.validate() if key == "" else section.validate(key)


def test_every_bound_refuses_non_finite_and_just_outside_values():
    from dinoxfer_lib.bounds import Bound, BOUNDS, numeric_fields

    checked = 0
    for name, cls in _config_sections().items():
        if name not in BOUNDS:  # no numeric values
            continue
        default, integers = cls(), numeric_fields(cls)
        key = "" if name == "Config" else "section"
        _validate(default, key)  # the defaults are inside every bound
        for field, spec in BOUNDS.get(name, {}).items():
            bound, value = Bound.parse(spec), getattr(default, field)
            for bad in _outside(bound, integers[field]):
                bad = int(bad) if integers[field] and math.isfinite(bad) else bad
                if isinstance(value, tuple):  # one bad item among good ones
                    bad = (bad, *value[1:]) if value else (bad,)
                changed = dataclasses.replace(default, **{field: bad})
                with pytest.raises(ConfigError) as info:
                    _validate(changed, key)
                message = str(info.value)
                assert f"'{f'section.{field}' if key else field}' = " in message and "expected" in message, message
                checked += 1
    assert checked > 300


def test_config_values_read_as_people_write_them():
    config = load_config("smoke", {"probe": {"lr": "1e-3"}, "dino": {"min_lr": "2E-7"}})  # YAML 1.1 keeps these text
    assert config.probe.lr == 1e-3 and config.dino.min_lr == 2e-7
    raises_one_line(lambda: load_config("smoke", {"probe": {"lr": "fast"}}), "'probe.lr'", "'fast'", error=ConfigError)


# ---------------------------------------------------------------------------------------------------------------
# Training that diverges: each loop stops at the first non-finite loss with one line naming the step and value


def _dino_on_nan_images(tmp_path):
    from dinoxfer_lib.dino.config import DinoConfig
    from dinoxfer_lib.dino.train import train_dino

    config = DinoConfig(epochs=2, batch_size=4, out_dim=16, hidden_dim=8, bottleneck_dim=4, n_local_crops=1,
                        local_crop_size=8, checkpoint_every=1, warmup_epochs=0)
    images = np.full((8, 2, 16, 16), np.nan, np.float32)
    train_dino(images, config=config, arch="vit_micro", img_size=16, channel_names=("protein", "nucleus"),
               out_dir=tmp_path / "dino", progress=False)


def _probes_on_one_nan_set(tmp_path):
    from dinoxfer_lib.probes.config import ProbeConfig
    from dinoxfer_lib.probes.mlp import train_mlps

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(2, 40, 8)).astype(np.float32), rng.random((40, 3)) < 0.4
    features[1, 3, 0] = np.nan  # only the second model reads set 1
    train_mlps(features, labels, sets=[0, 1], train_rows=[np.arange(40)] * 2, keys=[1, 2],
               config=ProbeConfig(hidden=(8,), epochs=2, batch_size=16))


def _adaptation_on_nan_images(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    from dinoxfer_lib.adapt import AdaptConfig, run_adaptation
    from dinoxfer_lib.data.splits import make_split
    from dinoxfer_lib.models.channels import make_encoder
    from dinoxfer_lib.probes.config import ProbeConfig

    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=2, num_classes=0, embed_dim=16, depth=1,
                            num_heads=2, dynamic_img_size=True)
    labels = np.random.default_rng(0).random((30, 2)) < 0.5
    run_adaptation(make_encoder("native", vit, target_channels=("protein", "nucleus")),
                   np.full((30, 2, 16, 16), np.nan, np.float32), labels, split=make_split(labels, n_folds=2, seed=0),
                   config=AdaptConfig(regimes=("frozen",), folds=1, epochs=1, batch_size=8),
                   probe=ProbeConfig(hidden=(8,)), class_names="ab", set_name="nan")


def _segmentation_on_nan_images(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    from dinoxfer_lib.data.em import EMSet, make_lucchi_like
    from dinoxfer_lib.models.channels import make_encoder
    from dinoxfer_lib.seg import SegConfig, train_segmenter

    em = make_lucchi_like(n_stacks=2, n_slices=2, size=16, test_stacks=1).split("train")
    em = EMSet(np.full(em.images.shape, np.nan, np.float32), em.masks, **{
        f.name: getattr(em, f.name) for f in dataclasses.fields(em) if f.name not in ("images", "masks")})
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=0, embed_dim=16, depth=1,
                            num_heads=2, dynamic_img_size=True)
    train_segmenter(make_encoder("native", vit, target_channels=("em",)), [em],
                    config=SegConfig(head="linear", epochs=1, batch_size=2), regime="frozen")


DIVERGING = {
    "dino": (_dino_on_nan_images, ["DINO loss is nan at step 1 (epoch 1, step 1 of 2)", "lower dino.lr"]),
    "probe": (_probes_on_one_nan_set, ["probe loss (model 2 of 2 trained together) is nan at step 1 (epoch 1, "
                                       "step 1 of 3)", "lower probe.lr"]),
    "adapt": (_adaptation_on_nan_images, ["frozen training loss is nan at step 1 (epoch 1, step 1 of", "adapt.lr"]),
    "seg": (_segmentation_on_nan_images, ["segmentation loss (frozen) is nan at step 1 (epoch 1, step 1 of",
                                          "lower seg.lr"]),
}


@pytest.mark.parametrize("train, fragments", list(DIVERGING.values()), ids=list(DIVERGING))
def test_non_finite_loss_stops_training_naming_step_and_value(tmp_path, train, fragments):
    torch.set_num_threads(1)
    message = raises_one_line(lambda: train(tmp_path), *fragments, "nothing was stored", error=TrainingError)
    assert not (tmp_path / "dino").exists() or not any((tmp_path / "dino").iterdir()), message
