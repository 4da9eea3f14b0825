"""Reuse that never goes stale: stages count by content, say why they recompute, and never use a damaged file."""


import numpy as np
import pytest
import tifffile

from dinoxfer_lib import pipeline
from dinoxfer_lib.cli import main
from dinoxfer_lib.config import load_config
from dinoxfer_lib.errors import ConfigError, DataError
from dinoxfer_lib.store import ArtifactStore


def write_tiff(path, seed):
    tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 4000, (2, 16, 16), dtype=np.uint16))


def write_table_source(folder, n=12, seed=0):
    """A generic table of 2-channel TIFF images (the user's own data), labelled with two OpenCell classes."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,labels,group"]
    for i in range(n):
        write_tiff(folder / f"img{i:02d}.tif", seed + i)
        rows.append(f"img{i:02d}.tif,{'nucleoplasm' if i % 2 else 'cytoplasmic'},p{i // 2}")
    (folder / "images.csv").write_text("\n".join(rows) + "\n")
    return folder / "images.csv"


def table_run(tmp_path, table, small_run, **extra):
    overrides = {**small_run, "data": {**small_run["data"], "opencell": {"source": "table", "path": str(table),
                                                                          "image_size": 16}}, **extra}
    return pipeline.open_run("smoke", overrides, runs_root=tmp_path / "runs")


def test_a_stage_says_why_it_recomputes_and_never_uses_a_damaged_file(tmp_path):
    store = ArtifactStore(tmp_path, "p")
    write = lambda text: lambda folder: (folder / "out.txt").write_text(text)  # noqa: E731
    first = store.run_stage("a", write("x"), config={"lr": 0.1, "hidden": (512, 256)})
    assert first.reason == "not computed before"
    assert store.run_stage("a", write("x"), config={"lr": 0.1, "hidden": (512, 256)}).reused
    again = store.run_stage("a", write("y"), config={"lr": 0.2, "hidden": (512, 256)})
    assert again.reason == "lr: 0.1 -> 0.2"  # tuples against their stored lists are no change
    downstream = store.run_stage("b", write("z"), config={}, inputs=[again])
    changed = store.run_stage("a", write("w"), config={"lr": 0.3, "hidden": (512, 256)})
    assert store.run_stage("b", write("z"), config={}, inputs=[changed]).reason == "input a changed"
    assert downstream.reused is False

    out = store.path("a") / "out.txt"
    out.write_text("v")  # the same size: only the sha256 can tell
    with pytest.warns(UserWarning, match="out.txt does not match the sha256"):
        redone = store.run_stage("a", write("w"), config={"lr": 0.3, "hidden": (512, 256)})
    assert not redone.reused and "out.txt does not match" in redone.reason and out.read_text() == "w"


def test_verify_names_every_damaged_stage(tmp_path, capsys):
    store = ArtifactStore(tmp_path / "runs", "smoke")
    for stage in ("datasets/x", "probes/y"):
        store.run_stage(stage, lambda folder: (folder / "f.bin").write_bytes(b"\0" * 64), config={})
    assert main(["verify", "--profile", "smoke", "--runs", str(tmp_path / "runs")]) == 0
    damaged = store.path("probes/y") / "f.bin"
    data = bytearray(damaged.read_bytes())
    data[10] ^= 1
    damaged.write_bytes(bytes(data))
    assert main(["verify", "--profile", "smoke", "--runs", str(tmp_path / "runs")]) == 2
    out, err = capsys.readouterr()
    assert "datasets/x: ok" in out and "probes/y: f.bin does not match the sha256" in out
    assert "1 of 2 stage(s)" in err and "\n" not in err.strip()


def test_real_data_stages_follow_the_content_of_the_table_and_images(tmp_path, small_run):
    table = write_table_source(tmp_path / "lab")
    run = table_run(tmp_path, table, small_run)
    first = pipeline.make_dataset(run, "opencell")
    assert not first.reused and first.provenance["record"]["path"] == str(table)
    assert pipeline.make_dataset(table_run(tmp_path, table, small_run), "opencell").reused  # nothing changed
    pipeline.make_split(run, "opencell")

    lines = table.read_text().splitlines()
    assert "nucleoplasm" in lines[2]
    table.write_text("\n".join([*lines[:2], lines[2].replace("nucleoplasm", "cytoplasmic"), *lines[3:]]) + "\n")
    relabelled = pipeline.make_dataset(table_run(tmp_path, table, small_run), "opencell")
    assert not relabelled.reused and relabelled.reason == "images.csv changed"
    split = pipeline.make_split(table_run(tmp_path, table, small_run), "opencell")
    assert split.reason == "input datasets/opencell changed"

    write_tiff(tmp_path / "lab" / "img05.tif", seed=99)
    replaced = pipeline.make_dataset(table_run(tmp_path, table, small_run), "opencell")
    assert replaced.reason == "1 image file(s) changed"

    table.write_text("\n".join(table.read_text().splitlines()[:-1]) + "\n")  # the last row deleted
    shorter = pipeline.make_dataset(table_run(tmp_path, table, small_run), "opencell")
    assert shorter.reason == "1 image file(s) removed; images.csv changed"
    assert len(pipeline.load_datasets(table_run(tmp_path, table, small_run), ("opencell",))["opencell"]) == 11

    moved = tmp_path / "moved"
    (tmp_path / "lab").rename(moved)
    assert pipeline.make_dataset(table_run(tmp_path, moved / "images.csv", small_run), "opencell").reused


def test_paths_resolve_as_users_write_them(tmp_path, monkeypatch):
    lab = tmp_path / "lab"
    table = write_table_source(lab / "data")
    (lab / "my_lab.yaml").write_text("data:\n  opencell: {source: table, path: data/images.csv}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(lab)
    config = load_config("my_lab.yaml")  # relative to the current directory
    assert config.profile == "my_lab" and config.data.opencell.path == str(table)
    monkeypatch.chdir(elsewhere)
    assert load_config(str(lab / "my_lab.yaml")).data.opencell.path == str(table)  # relative to the profile
    moved = load_config(str(lab / "my_lab.yaml"), {"data": {"opencell": {"path": "other.csv"}}})
    assert moved.data.opencell.path == str(elsewhere / "other.csv")  # overrides: relative to where you are
    with pytest.raises(ConfigError, match=str(elsewhere / "missing.yaml")):
        load_config("missing.yaml")
    run = pipeline.open_run(str(lab / "my_lab.yaml"), {"data": {"opencell": {"path": "nowhere.csv"}}},
                            runs_root=tmp_path / "runs")
    with pytest.raises(DataError, match=str(elsewhere / "nowhere.csv")):
        pipeline.load_datasets(run, ("opencell",))


def test_the_runner_reruns_a_notebook_when_the_profile_file_or_the_data_change(tmp_path, monkeypatch):
    from dinoxfer_lib.runner import run_notebooks

    lab = tmp_path / "lab"
    write_table_source(lab / "data")
    profile = lab / "my_lab.yaml"
    profile.write_text("seed: 0\ndata:\n  opencell: {source: table, path: data/images.csv}\n")
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    (notebooks / "01_seed.py").write_text(
        '# %% tags=["parameters"]\nprofile = "demo"\noverrides = {}\nruns_root = "../runs"\nforce = False\n\n'
        "# %%\nfrom dinoxfer_lib import config\nprint(config.load_config(profile, overrides).seed)\n")
    monkeypatch.chdir(lab)

    def run():
        return run_notebooks(profile="my_lab.yaml", notebook_dir=notebooks, runs_root=tmp_path / "runs",
                             log=lambda s: None)[0]

    assert not run().skipped and run().skipped
    profile.write_text(profile.read_text().replace("seed: 0", "seed: 1"))
    assert not run().skipped  # the file's contents count, not its name
    assert run().skipped
    (lab / "data" / "img03.tif").write_bytes((lab / "data" / "img04.tif").read_bytes())
    assert not run().skipped  # so do the data's
