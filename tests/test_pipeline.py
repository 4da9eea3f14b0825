"""The stages notebooks call: datasets and splits through the store, and bad real input never clobbering results."""

import json

import numpy as np
import pytest

from dinoxfer_lib import pipeline
from dinoxfer_lib.errors import DataError

def test_datasets_and_splits_are_stored_and_reused(tmp_path, small_run):
    run = pipeline.open_run("smoke", small_run, runs_root=tmp_path)
    data = pipeline.load_datasets(run)
    assert {d: len(x) for d, x in data.items()} == {"opencell": 90, "hpa": 24, "natural": 12}
    assert all(x.synthetic for x in data.values())
    split = pipeline.load_split(run, "opencell", grouped=True)
    groups = data["opencell"].obs["group"].to_numpy()
    assert not set(groups[split.test]) & set(groups[split.dev]) and len(split.folds) == 3
    provenance = json.loads((tmp_path / "smoke" / "splits" / "opencell_grouped" / "provenance.json").read_text())
    assert provenance["inputs"]["datasets/opencell"] == run.store.artifact_hash("datasets/opencell")
    again = pipeline.load_split(pipeline.open_run("smoke", small_run, runs_root=tmp_path), "opencell", grouped=True)
    assert np.array_equal(again.test, split.test)
    events = (tmp_path / "smoke" / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["action"] == "reused"


def test_a_new_synthetic_world_regenerates_a_stored_dataset(tmp_path, small_run, monkeypatch):
    """A store built by an older generator is not reused as this one's world (nothing else in the config changed)."""
    from dinoxfer_lib.data import synthetic

    pipeline.load_datasets(pipeline.open_run("smoke", small_run, runs_root=tmp_path), ("hpa",))
    monkeypatch.setattr(synthetic, "WORLD_VERSION", synthetic.WORLD_VERSION + 1)
    run = pipeline.open_run("smoke", small_run, runs_root=tmp_path)
    pipeline.load_datasets(run, ("hpa",))
    events = [json.loads(line) for line in (tmp_path / "smoke" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["action"] == "computed" and "world" in events[-1]["reason"], events[-1]


def test_bad_real_data_never_overwrites_the_previous_result(tmp_path, small_run):
    run = pipeline.open_run("smoke", small_run, runs_root=tmp_path)
    pipeline.load_datasets(run, ("opencell",))
    stage = tmp_path / "smoke" / "datasets" / "opencell"
    before = {p.name: p.read_bytes() for p in stage.iterdir()}
    table = tmp_path / "mine.csv"
    table.write_text("path,labels\nmissing.tif,nucleoplasm\n")
    bad = {**small_run, "data": {**small_run["data"], "opencell": {"source": "table", "path": str(table)}}}
    with pytest.raises(DataError, match="missing.tif"):
        pipeline.load_datasets(pipeline.open_run("smoke", bad, runs_root=tmp_path), ("opencell",))
    assert {p.name: p.read_bytes() for p in stage.iterdir()} == before
