"""The measured frontier: `dinoxfer frontier` trains the OpenCell backbone at several budgets in its own stores and
records the points; chapter 04 reads the latest record of its profile and says what it shows."""

import dataclasses
import json

import pytest

from dinoxfer_lib.bench.frontier import frontier_table, latest_frontier, recipe_fields, write_frontier_record
from dinoxfer_lib.cli import main
from dinoxfer_lib.config import load_config
from dinoxfer_lib.report.classifier import frontier_note

CONFIG = load_config("demo")


def point(scale, difference, low, high):
    """A budget of ``scale`` x 4 epochs (34 steps and 10 s each)."""
    return {"epochs": 4 * scale, "steps": 136 * scale, "dino_seconds": 40.0 * scale,
            "trained_f1": 0.4 + difference, "random_f1": 0.4,
            "difference": difference, "low": low, "high": high, "healthy": True}


def record(points, *, profile="demo", date="2026-12-02", time="04:00 UTC"):
    return {"profile": profile, "profile_epochs": 16, "recipe": recipe_fields(CONFIG), "overrides": {},
            "machine": "x86_64, 2 cores", "date": date,
            "time": time, "commit": "abc1234", "command": "dinoxfer frontier --profile demo --epochs 4 8 16",
            "points": points}


def test_the_note_names_the_first_budget_that_meets_the_target():
    text = frontier_note(record([point(1, -0.05, -0.09, -0.01), point(2, 0.16, 0.10, 0.22),
                                 point(4, 0.20, 0.15, 0.25)]), profile="demo", config=CONFIG)
    assert "not by this build" in text and "abc1234" in text
    assert "first met at 8 epochs (272 steps, 1.3 CPU minutes of DINO)" in text and "trains 16 epochs" in text


def test_the_note_says_when_no_budget_meets_it_and_reports_the_largest_gain():
    text = frontier_note(record([point(1, -0.05, -0.09, -0.01), point(2, 0.10, 0.02, 0.18),
                                 point(4, 0.16, -0.01, 0.30)]),
                         profile="demo", config=CONFIG)  # 4x: large but not resolved
    assert "No measured budget meets the target" in text
    assert "+0.160 [-0.010, +0.300], took 16 epochs" in text


def test_without_a_record_the_note_gives_the_command():
    assert "`dinoxfer frontier --profile paper`" in frontier_note(None, profile="paper", config=CONFIG)


def test_a_record_of_another_recipe_says_so():
    same = frontier_note(record([point(1, 0.2, 0.1, 0.3)]), profile="demo", config=CONFIG)
    assert "another recipe" not in same
    dino = dataclasses.replace(CONFIG.dino, lr=CONFIG.dino.lr * 2, epochs=CONFIG.dino.epochs * 2)  # not the epochs
    other = dataclasses.replace(CONFIG, dino=dino, probe=dataclasses.replace(CONFIG.probe, dropout=0.5))
    text = frontier_note(record([point(1, 0.2, 0.1, 0.3)]), profile="demo", config=other)
    assert "**It was measured with another recipe** (differs in dino.lr, probe.dropout)" in text


def test_records_are_numbered_and_the_latest_of_the_profile_is_read(tmp_path):
    first = write_frontier_record(record([point(1, 0.0, -0.1, 0.1)], time="03:00 UTC"), tmp_path)
    second = write_frontier_record(record([point(1, 0.1, 0.0, 0.2)], time="05:00 UTC"), tmp_path)
    write_frontier_record(record([point(1, 0.3, 0.2, 0.4)], profile="smoke", time="06:00 UTC"), tmp_path)
    assert first.name == "demo_2026-12-02.json" and second.name == "demo_2026-12-02_2.json"
    assert latest_frontier("demo", tmp_path)["points"][0]["difference"] == 0.1
    assert latest_frontier("paper", tmp_path) is None
    table = frontier_table(latest_frontier("demo", tmp_path))
    assert table.loc[4, "dino_minutes"] == pytest.approx(40 / 60, abs=0.01)
    assert table.loc[4, "interval"] == "[+0.000, +0.200]" and table.loc[4, "this profile"] == ""


def test_the_command_records_each_budget_in_its_own_store(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    assert main(["frontier", "--profile", "smoke", "--epochs", "1", "2", "--runs", str(runs),
                 "--record-dir", str(records)]) == 0
    (path,) = records.glob("smoke_*.json")
    saved = json.loads(path.read_text())
    points = saved["points"]
    assert saved["recipe"] == recipe_fields(load_config("smoke"))
    assert [p["epochs"] for p in points] == [1, 2] and points[1]["steps"] == 2 * points[0]["steps"]
    assert all(0 <= p["trained_f1"] <= 1 and p["low"] <= p["difference"] <= p["high"] for p in points)
    assert not (runs / "smoke").exists()  # the book's own store is never written
    assert {p.name for p in (runs / "frontier").iterdir()} == {"e1", "e2"}


def test_epochs_out_of_order_are_refused_in_one_line(tmp_path, capsys):
    assert main(["frontier", "--profile", "smoke", "--epochs", "2", "1", "--runs", str(tmp_path)]) == 2
    assert "--epochs 2 1: expected distinct whole numbers >= 1 in increasing order" in capsys.readouterr().err


def test_the_default_budgets_bracket_the_profiles_epochs():
    from dinoxfer_lib.bench.frontier import default_epochs

    assert default_epochs(16) == [4, 8, 16, 32] and default_epochs(2) == [1, 2, 4]
