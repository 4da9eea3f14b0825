"""The artifact store reuses unchanged stages, recomputes on change or --force, and never trusts a partial write."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dinoxfer_lib.errors import StoreError
from dinoxfer_lib.files import atomic_write_text
from dinoxfer_lib.store import PROVENANCE, ArtifactStore


def writer(text, calls):
    def compute(folder):
        calls.append(text)
        (folder / "out.txt").write_text(text)

    return compute


def test_stage_is_computed_then_reused(tmp_path):
    store = ArtifactStore(tmp_path, "smoke")
    calls = []
    first = store.run_stage("a", writer("x", calls), config={"k": 1}, seed=0)
    second = store.run_stage("a", writer("x", calls), config={"k": 1}, seed=0)
    assert calls == ["x"]
    assert not first.reused and second.reused
    assert (second.path / "out.txt").read_text() == "x"
    assert first.hash == second.hash


def test_provenance_records_what_made_the_artifact(tmp_path):
    artifact = ArtifactStore(tmp_path, "smoke").run_stage("a", writer("x", []), config={"k": 1}, seed=5)
    record = json.loads((artifact.path / PROVENANCE).read_text())
    for key in ("config", "config_hash", "inputs", "files", "git", "packages", "device", "seed", "wall_time_s"):
        assert key in record
    assert record["seed"] == 5 and record["config"] == {"k": 1}
    assert record["files"]["out.txt"]["bytes"] == 1
    assert "numpy" in record["packages"]
    assert artifact.path == tmp_path / "smoke" / "a"
    assert len(record["git"]["source_sha256"]) == 64


def test_source_digest_names_the_code_wherever_it_lies(tmp_path):
    """Two copies of the same code in different places agree (a GPU machine's copy vs the checkout); a changed
    line or profile changes the digest; caches and other files do not."""
    from dinoxfer_lib.provenance import source_sha256

    def package(root):
        (root / "sub").mkdir(parents=True)
        (root / "a.py").write_text("x = 1\n")
        (root / "sub" / "b.py").write_text("y = 2\n")
        (root / "sub" / "demo.yaml").write_text("seed: 0\n")
        return root

    first, second = package(tmp_path / "one" / "pkg"), package(tmp_path / "two" / "pkg")
    assert source_sha256(first) == source_sha256(second)
    (second / "__pycache__").mkdir()
    (second / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (second / "notes.txt").write_text("scratch")
    assert source_sha256(first) == source_sha256(second)
    (second / "sub" / "b.py").write_text("y = 3\n")
    assert source_sha256(first) != source_sha256(second)
    (second / "sub" / "b.py").write_text("y = 2\n")
    (second / "sub" / "demo.yaml").write_text("seed: 1\n")
    assert source_sha256(first) != source_sha256(second)


def test_changed_config_force_or_changed_input_recompute(tmp_path):
    store = ArtifactStore(tmp_path, "smoke")
    calls = []
    upstream = store.run_stage("up", writer("u1", calls), config={})
    store.run_stage("down", writer("d", calls), config={"k": 1}, inputs=[upstream])
    store.run_stage("down", writer("d", calls), config={"k": 2}, inputs=[upstream])
    store.run_stage("down", writer("d", calls), config={"k": 2}, inputs=[upstream], force=True)
    upstream2 = store.run_stage("up", writer("u2", calls), config={}, force=True)
    assert upstream2.hash != upstream.hash
    store.run_stage("down", writer("d", calls), config={"k": 2}, inputs=[upstream2])
    assert calls == ["u1", "d", "d", "d", "u2", "d"]


def test_failed_compute_keeps_the_previous_result(tmp_path):
    store = ArtifactStore(tmp_path, "smoke")
    store.run_stage("a", writer("good", []), config={"k": 1})

    def broken(folder):
        (folder / "out.txt").write_text("half")
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        store.run_stage("a", broken, config={"k": 2})
    assert (tmp_path / "smoke" / "a" / "out.txt").read_text() == "good"
    assert store.load("a").provenance["config"] == {"k": 1}
    assert not list((tmp_path / "smoke" / ".scratch").iterdir())


def test_truncated_file_is_not_trusted(tmp_path):
    store = ArtifactStore(tmp_path, "smoke")
    artifact = store.run_stage("a", writer("complete", []), config={})
    (artifact.path / "out.txt").write_text("comp")  # a later partial overwrite
    calls = []
    again = store.run_stage("a", writer("complete", calls), config={})
    assert calls == ["complete"] and not again.reused
    with pytest.raises(StoreError, match="'missing'"):
        store.load("missing")


@pytest.mark.parametrize("heads, status, label", [
    (["a" * 40, "a" * 40], "", "aaaaaaa"),
    (["a" * 40, "a" * 40], " M dinoxfer_lib/cli.py", "aaaaaaa+dirty"),
    (["a" * 40, "b" * 40], "", "aaaaaaa+unchecked"),  # a commit landed between reading HEAD and the status
])
def test_a_record_never_passes_for_a_clean_tree_it_was_not_checked_to_be(monkeypatch, heads, status, label):
    from dinoxfer_lib import provenance

    heads = iter(heads)

    def fake_git(command, **kwargs):
        out = next(heads) if command[1] == "rev-parse" else status
        return subprocess.CompletedProcess(command, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(provenance.subprocess, "run", fake_git)
    assert provenance.commit_label(provenance.git_state.__wrapped__()) == label  # not the cached state
    assert provenance.commit_label({"commit": None, "dirty": None}) == "unknown"


def test_folder_without_provenance_is_not_trusted(tmp_path):
    (tmp_path / "smoke" / "a").mkdir(parents=True)
    (tmp_path / "smoke" / "a" / "out.txt").write_text("orphan")
    calls = []
    ArtifactStore(tmp_path, "smoke").run_stage("a", writer("fresh", calls), config={})
    assert calls == ["fresh"]


def test_process_killed_mid_stage_leaves_nothing_trusted(tmp_path):
    """Kill a real process while it writes a stage: the next run must recompute, never reuse the half-written files."""
    script = textwrap.dedent(
        f"""
        import time
        from dinoxfer_lib.store import ArtifactStore

        def slow(folder):
            with open(folder / "big.bin", "wb") as handle:
                handle.write(b"0" * 1000)
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)

        ArtifactStore({str(tmp_path)!r}, "smoke").run_stage("a", slow, config={{}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ArtifactStore(tmp_path, "smoke")
    with pytest.raises(StoreError):
        store.load("a")
    (left,) = (tmp_path / "smoke" / ".scratch").iterdir()  # the killed run's half-written stage
    calls = []
    artifact = store.run_stage("a", writer("done", calls), config={})
    assert calls == ["done"] and not artifact.reused
    assert not left.exists() and not any((tmp_path / "smoke" / ".scratch").iterdir())


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_events_log_says_reused_or_computed(tmp_path):
    store = ArtifactStore(tmp_path, "smoke")
    store.run_stage("a", writer("x", []), config={})
    store.run_stage("a", writer("x", []), config={})
    events = [json.loads(line) for line in (tmp_path / "smoke" / "events.jsonl").read_text().splitlines()]
    assert [e["action"] for e in events] == ["computed", "reused"]
    assert time.time() - events[-1]["time"] < 60


def _stage_process(root, seconds):
    """A process that runs stage "a" (its compute takes ``seconds`` and logs its call to root/calls.txt)."""
    script = textwrap.dedent(
        f"""
        import time
        from dinoxfer_lib import store

        # provenance (git, package versions, torch's device) is not what this test is about, and slow to start
        store.git_state, store.package_versions, store.device_description = dict, dict, str

        def compute(folder):
            with open({str(root / "calls.txt")!r}, "a") as log:
                log.write("computed\\n")
            print("computing", flush=True)
            time.sleep({seconds})
            (folder / "out.txt").write_text("x")

        artifact = store.ArtifactStore({str(root)!r}, "smoke").run_stage("a", compute, config={{}})
        print("reused" if artifact.reused else "published", flush=True)
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_two_processes_on_one_store_compute_a_stage_once(tmp_path):
    """The second process waits for the first one's lock, then reuses what it published."""
    first = _stage_process(tmp_path, seconds=1.0)
    assert first.stdout.readline().strip() == "computing"
    second = _stage_process(tmp_path, seconds=0)
    second_out, _ = second.communicate(timeout=60)
    first_out, _ = first.communicate(timeout=60)
    assert first_out.split() == ["published"]
    assert "waiting for it" in second_out and second_out.split()[-1] == "reused"
    assert (tmp_path / "calls.txt").read_text().split() == ["computed"]


def test_stale_scratch_is_removed_at_start_but_not_a_live_run_s(tmp_path, capsys):
    from dinoxfer_lib.files import file_lock

    scratch = tmp_path / "smoke" / ".scratch"
    killed, live = scratch / "a-0123abcd", scratch / "embeddings__b-89abcdef"
    for folder in (killed, live, scratch / "a-00000000.retired"):
        folder.mkdir(parents=True)
        (folder / "part.bin").write_bytes(b"0" * 10)
    store = ArtifactStore(tmp_path, "smoke")
    with file_lock(tmp_path / "smoke" / ".locks" / "embeddings__b.lock"):  # as a live run computing the stage holds
        removed = store.remove_stale_scratch()
    assert removed == [scratch / "a-00000000.retired", killed] and live.is_dir()
    store.run_stage("embeddings/b", writer("x", []), config={})  # its next computation removes it
    assert not live.exists() and "removed" in capsys.readouterr().out


def test_force_recomputes_a_stage_once_per_run(tmp_path):
    """Chapter 02 asks for dino/opencell twice (its own runs, then trained vs random): --force trains it once."""
    store, calls = ArtifactStore(tmp_path, "p"), []
    write = lambda folder: calls.append(folder) or (folder / "out.txt").write_text("x")  # noqa: E731
    store.run_stage("a", write, config={})
    assert not store.run_stage("a", write, config={}, force=True).reused
    assert store.run_stage("a", write, config={}, force=True).reused
    assert len(calls) == 2
    assert not ArtifactStore(tmp_path, "p").run_stage("a", write, config={}, force=True).reused  # a new run forces again
