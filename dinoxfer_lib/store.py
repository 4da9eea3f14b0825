"""Artifact store: ``runs/<profile>/<stage>/`` with provenance, reuse and atomic writes.

A stage is computed into a private temporary folder; only when it finished are its file hashes and
``provenance.json`` written and the folder renamed into place. A stage is reused only when its provenance exists,
its config hash and input hashes match, and every recorded file is present with its recorded sha256 (checked on
every reuse: a changed byte recomputes the stage, with a warning, rather than being used). So a crash mid-write
never leaves an artifact a later run would trust, and a failing computation never touches the previous result.

A stage's config is the content it depends on (resolved config values, digests of the files it reads), never a
path standing for them; when a stage is recomputed, :attr:`Artifact.reason` says why ("probe.epochs: 30 -> 20",
"input datasets/opencell changed", "annotations.csv changed").

One process at a time computes a stage: :meth:`ArtifactStore.run_stage` holds the stage's file lock
(``.locks/<stage>.lock``), so a second run on the same store waits for the first and then reuses its result. A
scratch folder whose stage lock nobody holds belongs to a run that was killed; it is removed when that stage is next
computed and when ``dinoxfer run`` starts (:meth:`ArtifactStore.remove_stale_scratch`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dinoxfer_lib.config import config_hash
from dinoxfer_lib.errors import StoreError
from dinoxfer_lib.files import atomic_write_text, file_lock, file_sha256
from dinoxfer_lib.provenance import device_description, git_state, package_versions

PROVENANCE = "provenance.json"
EVENTS = "events.jsonl"
_SCRATCH = ".scratch"
_LOCKS = ".locks"
# A scratch folder is <stage, "/" as "__">-<8 hex digits>, and ".retired" while _publish swaps it in.
_SCRATCH_NAME = re.compile(r"^(?P<stage>.+)-[0-9a-f]{8}(\.retired)?$")


def _one_process_per_stage(run_stage: Callable) -> Callable:
    """Run ``run_stage`` holding the stage's lock (:meth:`ArtifactStore.stage_lock`): a second process asking for a
    stage that another is computing waits, then finds it finished and reuses it."""

    @functools.wraps(run_stage)
    def locked(self: ArtifactStore, stage: str, *args: Any, **kwargs: Any) -> Artifact:
        with self.stage_lock(stage):
            return run_stage(self, stage, *args, **kwargs)

    return locked


def _flat(stage: str) -> str:
    """``stage`` as one file name (``dino/opencell`` -> ``dino__opencell``)."""
    return stage.replace("/", "__")


@dataclass(frozen=True)
class Artifact:
    """A finished stage: its folder and provenance record; ``reason`` says why it was (re)computed."""

    name: str
    path: Path
    provenance: dict[str, Any]
    reused: bool
    reason: str = ""

    @property
    def hash(self) -> str:
        """Content hash of the stage (its files' hashes): what downstream stages record as their input."""
        return self.provenance["artifact_hash"]


class ArtifactStore:
    """Stages of one profile under ``root/<profile>``."""

    def __init__(self, root: str | os.PathLike, profile: str) -> None:
        self.root = Path(root).resolve() / profile
        self.profile = profile
        # Stages this store object recomputed under ``force``: forced once per run, then reused like any other
        # (a stage several later stages depend on would otherwise be recomputed for each of them).
        self._forced: set[str] = set()

    def path(self, stage: str) -> Path:
        return self.root / stage

    def artifact_hash(self, stage: str) -> str | None:
        """Content hash of a finished ``stage``, None when it has none (what a cached notebook run checks)."""
        provenance = self._read_provenance(self.path(stage))
        return provenance.get("artifact_hash") if provenance else None

    def load(self, stage: str) -> Artifact:
        """The finished artifact of ``stage``, or a StoreError saying which notebook makes it."""
        provenance = self._read_provenance(self.path(stage))
        if provenance is None:
            raise StoreError(f"stage {stage!r} has no finished artifact under {self.root}: run the notebook that makes it")
        damaged = damaged_files(self.path(stage), provenance)
        if damaged:
            raise StoreError(f"stage {stage!r} under {self.root}: {damaged[0]}; run the notebook that makes it again")
        return Artifact(stage, self.path(stage), provenance, reused=True)

    @_one_process_per_stage
    def run_stage(
        self,
        stage: str,
        compute: Callable[[Path], Any],
        *,
        config: Mapping[str, Any],
        inputs: Sequence[Artifact] = (),
        seed: int | None = None,
        force: bool = False,
        record: Mapping[str, Any] | None = None,
        explain: Mapping[str, str] | None = None,
    ) -> Artifact:
        """Reuse ``stage`` if unchanged, else run ``compute(folder)`` into a scratch folder and publish it.

        ``config`` is what the stage's result depends on (config values and digests of what it reads, as a dict);
        ``inputs`` are the upstream artifacts it reads. ``compute`` writes files into the folder it is given and must
        not write elsewhere. ``record`` is kept in the provenance without counting for reuse (e.g. where the data
        were read from). ``explain`` maps a top-level config key to what to say when it changed (e.g.
        ``{"table_sha256": "annotations.csv changed"}``).
        """
        final = self.path(stage)
        force = force and stage not in self._forced
        cfg_hash = config_hash(config)
        input_hashes = {a.name: a.hash for a in inputs}
        existing = self._read_provenance(final)
        unchanged = (not force and existing is not None and existing.get("config_hash") == cfg_hash
                     and existing.get("inputs") == input_hashes)
        damaged = damaged_files(final, existing) if unchanged else []  # hashed only when it would be reused
        if unchanged and not damaged:
            self._log(stage, "reused", cfg_hash)
            return Artifact(stage, final, existing, reused=True)
        if damaged:
            reason = "; ".join(damaged)
            warnings.warn(f"stage {stage!r}: {damaged[0]}; recomputing it instead of using it", stacklevel=3)
        elif force:
            reason = "recomputed as asked (force)"
        elif existing is None:
            reason = "not computed before"
        else:
            as_stored = json.loads(json.dumps(config, default=str))  # tuples as lists, as the provenance has them
            old_inputs = existing.get("inputs", {})
            reason = "; ".join([
                *config_changes(existing.get("config", {}), as_stored, explain or {}),
                *(f"input {name} changed" for name in sorted(set(input_hashes) | set(old_inputs))
                  if input_hashes.get(name) != old_inputs.get(name)),
            ]) or "its provenance differs"

        scratch = self.root / _SCRATCH / f"{_flat(stage)}-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        started = time.perf_counter()
        try:
            compute(scratch)
            files = {
                str(p.relative_to(scratch)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                for p in sorted(scratch.rglob("*"))
                if p.is_file()
            }
            provenance = {
                "stage": stage,
                "profile": self.profile,
                "config": config,
                "config_hash": cfg_hash,
                "reason": reason,
                **({"record": dict(record)} if record else {}),
                "inputs": input_hashes,
                "files": files,
                "artifact_hash": config_hash(files),
                "seed": seed,
                "git": git_state(),
                "packages": package_versions(),
                "device": device_description(),
                "wall_time_s": round(time.perf_counter() - started, 3),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            # Written last: a folder without provenance is never trusted.
            atomic_write_text(scratch / PROVENANCE, json.dumps(provenance, indent=2, default=str))
            _publish(scratch, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if force:
            self._forced.add(stage)
        self._log(stage, "computed", cfg_hash, reason=reason)
        return Artifact(stage, final, provenance, reused=False, reason=reason)

    @contextmanager
    def stage_lock(self, stage: str) -> Iterator[None]:
        """Hold ``stage``'s file lock: wait (saying so) while another process holds it, then remove the scratch
        folders of ``stage`` that killed runs left (nobody else can be writing them now)."""
        lock = self._lock_path(_flat(stage))
        busy = f"stage {stage!r} is being computed by another process: waiting for it ({lock})"
        with file_lock(lock, waiting=busy):
            for folder in self._scratch_folders(_flat(stage)):
                shutil.rmtree(folder, ignore_errors=True)
                print(f"removed {folder}: the scratch folder of a run of stage {stage!r} that was interrupted")
            yield

    def remove_stale_scratch(self) -> list[Path]:
        """Remove the scratch folders of killed runs (those of stages no process is computing now); return them."""
        removed = []
        for flat in sorted({_SCRATCH_NAME.match(p.name)["stage"] for p in self._scratch_folders()}):
            with file_lock(self._lock_path(flat), wait=False) as held:
                if not held:
                    continue  # a live run is computing this stage
                for folder in self._scratch_folders(flat):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        return removed

    def _lock_path(self, flat_stage: str) -> Path:
        return self.root / _LOCKS / f"{flat_stage}.lock"

    def _scratch_folders(self, flat_stage: str | None = None) -> list[Path]:
        """Folders under ``.scratch`` (of one stage, or all)."""
        scratch = self.root / _SCRATCH
        if not scratch.is_dir():
            return []
        return sorted(p for p in scratch.iterdir() if (m := _SCRATCH_NAME.match(p.name))
                      and flat_stage in (None, m["stage"]))

    def _read_provenance(self, folder: Path) -> dict[str, Any] | None:
        try:
            return json.loads((folder / PROVENANCE).read_text())
        except (OSError, ValueError):
            return None

    def stages(self) -> list[str]:
        """Every stage folder of this store that holds a ``provenance.json``, in path order."""
        return sorted(str(p.parent.relative_to(self.root)) for p in self.root.rglob(PROVENANCE)
                      if _SCRATCH not in p.relative_to(self.root).parts)

    def verify_stage(self, stage: str) -> list[str]:
        """What is wrong with ``stage``'s files (empty when every file matches its recorded sha256)."""
        provenance = self._read_provenance(self.path(stage))
        return ["no provenance.json"] if provenance is None else damaged_files(self.path(stage), provenance)

    def verify(self) -> dict[str, list[str]]:
        """:meth:`verify_stage` of every stage in the store."""
        return {stage: self.verify_stage(stage) for stage in self.stages()}

    def _log(self, stage: str, action: str, cfg_hash: str, reason: str = "") -> None:
        """Append to ``events.jsonl`` so the runner can say which stages a notebook reused or computed, and why."""
        self.root.mkdir(parents=True, exist_ok=True)
        event = {"stage": stage, "action": action, "config_hash": cfg_hash[:12], "time": time.time()}
        line = json.dumps({**event, "reason": reason} if reason else event)
        with open(self.root / EVENTS, "a") as handle:
            handle.write(line + "\n")


# sha256 of files already checked in this process, keyed on (path, size, mtime): a notebook that reads a stage five
# times hashes it once, and a file written since is hashed again.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def damaged_files(folder: Path, provenance: Mapping[str, Any]) -> list[str]:
    """What is wrong with the files ``provenance`` records in ``folder``: missing, another size, another sha256."""
    files = provenance.get("files")
    if not isinstance(files, Mapping):
        return ["provenance.json lists no files"]
    damaged = []
    for rel, expected in files.items():
        path = folder / rel
        try:
            stat = path.stat()
        except OSError:
            damaged.append(f"{rel} is missing")
            continue
        if stat.st_size != expected.get("bytes"):
            damaged.append(f"{rel} has {stat.st_size} bytes, its provenance {expected.get('bytes')}")
            continue
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _VERIFIED:
            _VERIFIED[key] = file_sha256(path)
        if _VERIFIED[key] != expected.get("sha256"):
            damaged.append(f"{rel} does not match the sha256 in its provenance")
    return damaged


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], explain: Mapping[str, str],
                   prefix: str = "") -> list[str]:
    """What differs between two stage configs, one phrase per changed leaf (``explain`` words top-level keys)."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key, "(unset)"), new.get(key, "(unset)")
        if before == after:
            continue
        if not prefix and key in explain:
            changes.append(explain[key])
        elif isinstance(before, Mapping) and isinstance(after, Mapping):
            changes.extend(config_changes(before, after, {}, prefix=f"{prefix}{key}."))
        else:
            changes.append(f"{prefix}{key}: {_short(before)} -> {_short(after)}")
    return changes


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _publish(scratch: Path, final: Path) -> None:
    """Swap ``scratch`` into ``final`` with renames; the old result is removed only after the new one is in place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    retired = None
    if final.exists():
        retired = scratch.with_name(f"{scratch.name}.retired")  # a stale-scratch name of the same stage
        os.replace(final, retired)
    os.replace(scratch, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
