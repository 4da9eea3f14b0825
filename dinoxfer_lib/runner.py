"""Execute the book's notebooks with papermill, in order, into the run store.

Notebooks live as jupytext percent-format ``notebooks/NN_name.py``. Each is converted in memory, executed with the
profile (and overrides) injected into its ``parameters`` cell, and written to
``runs/<profile>/notebooks/NN_name.ipynb``. A failing notebook stops the run with its name, the failing cell and
the error; the executed notebook is kept beside the last good one as ``NN_name.failed.ipynb``. A kernel that dies
(killed, e.g. by the out-of-memory killer) is reported the same way, naming the cell that was running.

A notebook whose source, parameters, library code and every stage it used are unchanged since its last
successful run is not executed again: its executed copy is reused (``--force`` re-executes everything).

The executed notebooks are what the book renders, so their kernels run with progress bars off (``TQDM_DISABLE=1``,
see :mod:`dinoxfer_lib.progress`), and the parameters cell papermill injects (it prints this machine's
``runs_root``) is tagged ``remove-cell``: the book leaves it out, the notebook keeps it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dinoxfer_lib.config import PROFILE_DIR, absolute_paths, config_hash, load_config, parse_yaml, profile_path
from dinoxfer_lib.errors import ConfigError, NotebookError, clip, shown
from dinoxfer_lib.progress import DISABLE_VARIABLE
from dinoxfer_lib.store import EVENTS, ArtifactStore

LIBRARY_ROOT = Path(__file__).resolve().parent

NOTEBOOK_PATTERN = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
# Jupyter Book's cell tag that leaves a cell (input and output) out of the rendered page.
REMOVE_CELL_TAG = "remove-cell"


@dataclass(frozen=True)
class NotebookRun:
    """What one notebook did: where its executed copy is, how long it took, which stages it reused or computed."""

    name: str
    output: Path
    seconds: float
    reused: tuple[str, ...]
    computed: tuple[str, ...]
    skipped: bool = False
    reasons: Mapping[str, str] = field(default_factory=dict)  # computed stage -> why

    def summary(self) -> str:
        if self.skipped:
            return f"{self.name}: unchanged, reused the executed notebook and its {len(self.reused)} stage(s)"
        parts = [f"{self.name}: {self.seconds:.1f} s"]
        if self.reused:
            parts.append(f"reused {len(self.reused)} stage(s) ({', '.join(self.reused)})")
        if self.computed:
            why = [f"{stage} ({self.reasons[stage]})" if self.reasons.get(stage) else stage for stage in self.computed]
            parts.append(f"computed {len(self.computed)} stage(s): {', '.join(why)}")
        return "; ".join(parts)


def discover_notebooks(notebook_dir: Path) -> list[Path]:
    """The book's notebooks in execution order (``NN_name.py``)."""
    paths = sorted(p for p in Path(notebook_dir).glob("*.py") if NOTEBOOK_PATTERN.match(p.name))
    if not paths:
        raise NotebookError(f"no notebooks (NN_name.py) found in {notebook_dir}")
    return paths


def select_notebooks(paths: list[Path], only: Iterable[str]) -> list[Path]:
    """Filter by name (``01_datasets``), number (``01``) or stem prefix; an unknown name is an error."""
    only = list(only)
    if not only:
        return paths
    selected = []
    for key in only:
        matches = [p for p in paths if p.stem == key or p.stem.split("_", 1)[0] == key or p.stem.startswith(key)]
        if not matches:
            raise NotebookError(f"--only {key!r} matches no notebook: expected one of {', '.join(p.stem for p in paths)}")
        selected.extend(m for m in matches if m not in selected)
    return [p for p in paths if p in selected]


def run_notebooks(
    *,
    profile: str,
    notebook_dir: Path,
    runs_root: Path,
    only: Iterable[str] = (),
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[NotebookRun]:
    """Execute the selected notebooks in order; stop at the first failure (raising :class:`NotebookError`).

    A profile file and relative paths in it or in ``overrides`` are resolved here, against the current directory,
    so the notebooks (whose kernels run in ``notebook_dir``) see absolute paths.
    """
    config = load_config(profile, overrides)  # fail on a bad profile or override before any kernel starts
    runs_root = Path(runs_root).resolve()
    notebooks = select_notebooks(discover_notebooks(Path(notebook_dir)), only)
    path = profile_path(profile)
    out_dir = runs_root / config.profile / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {
        "profile": profile if path.parent == PROFILE_DIR else str(path),
        "overrides": absolute_paths(overrides or {}),
        "runs_root": str(runs_root),
        "force": force,
    }
    store = ArtifactStore(runs_root, config.profile)
    for folder in store.remove_stale_scratch():
        log(f"removed {folder}: the scratch folder of a stage an interrupted run left unfinished")
    inputs = _run_inputs(config, store)
    results = []
    for path in notebooks:
        fingerprint = _fingerprint(path, parameters, inputs)
        reusable = None if force else _reusable_run(path, out_dir, fingerprint, store)
        if reusable is not None:
            log("  " + reusable.summary())
            results.append(reusable)
            continue
        log(f"running {path.stem} (profile {profile})")
        result = _execute(path, out_dir, parameters, events=store.root / EVENTS)
        _write_record(out_dir / f"{path.stem}.run.json", fingerprint, result, store)
        log("  " + result.summary())
        results.append(result)
    return results


def _library_hash() -> str:
    """Hash of the library's code and profiles: a change there can change any notebook's output."""
    digest = hashlib.sha256()
    for file in sorted([*LIBRARY_ROOT.rglob("*.py"), *LIBRARY_ROOT.rglob("*.yaml")]):
        digest.update(str(file.relative_to(LIBRARY_ROOT)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _run_inputs(config, store: ArtifactStore) -> dict[str, Any]:
    """What every notebook's output depends on besides its own source: the resolved config (a profile file's
    contents, not its name) and the content of each real-data source."""
    from dinoxfer_lib.data.sources import source_digest

    sources = {}
    for domain in (f.name for f in dataclasses.fields(config.data)):
        spec = getattr(config.data, domain)
        if spec.source != "synthetic":
            sources[domain] = source_digest(spec.source, spec.path, cache=store.root / ".source_sha256.json").summary()
    return {"config_sha256": config_hash(config.to_dict()), "sources": sources}


def _fingerprint(path: Path, parameters: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "notebook_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "parameters": {k: v for k, v in parameters.items() if k != "force"},
        "library_sha256": _library_hash(),
        **inputs,
    }


def _reusable_run(path: Path, out_dir: Path, fingerprint: Mapping, store: ArtifactStore) -> NotebookRun | None:
    """The last run of ``path`` if nothing it depends on changed, else None."""
    final, record_path = out_dir / f"{path.stem}.ipynb", out_dir / f"{path.stem}.run.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if not final.is_file() or record.get("fingerprint") != fingerprint:
        return None
    stages = record.get("stages", {})
    if any(store.artifact_hash(stage) != artifact_hash for stage, artifact_hash in stages.items()):
        return None
    if any(store.verify_stage(stage) for stage in stages):  # a damaged artifact: the notebook recomputes it
        return None
    return NotebookRun(path.stem, final, 0.0, tuple(stages), (), skipped=True)


def _write_record(record_path: Path, fingerprint: Mapping, result: NotebookRun, store: ArtifactStore) -> None:
    from dinoxfer_lib.files import atomic_write_text

    stages = {stage: store.artifact_hash(stage) for stage in (*result.computed, *result.reused)}
    record = {"fingerprint": fingerprint, "stages": stages, "seconds": round(result.seconds, 1)}
    atomic_write_text(record_path, json.dumps(record, indent=2))


def _execute(path: Path, out_dir: Path, parameters: dict[str, Any], *, events: Path) -> NotebookRun:
    import jupytext
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    source = out_dir / f".{path.stem}.input.ipynb"
    executing = out_dir / f".{path.stem}.executing.ipynb"
    final = out_dir / f"{path.stem}.ipynb"
    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(notebook, source)
    events_offset = events.stat().st_size if events.exists() else 0
    started = time.perf_counter()
    try:
        with _environment({DISABLE_VARIABLE: "1"}):  # the kernel inherits it: no bar reaches the notebook
            papermill.execute_notebook(
                str(source),
                str(executing),
                parameters=parameters,
                kernel_name="python3",
                language="python",
                cwd=str(path.parent),
                progress_bar=False,
            )
    except PapermillExecutionError as exc:
        failed = out_dir / f"{path.stem}.failed.ipynb"
        os.replace(executing, failed)
        evalue = str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else ""
        raise NotebookError(
            f"notebook {path.stem} failed in cell {exc.exec_count}: {exc.ename}: {clip(evalue)} "
            f"(executed notebook kept at {failed})"
        ) from None
    except DeadKernelError:
        failed = out_dir / f"{path.stem}.failed.ipynb"
        if executing.exists():  # papermill saves the notebook as each cell starts: outputs up to the dead cell
            os.replace(executing, failed)
            where, kept = _last_started_cell(failed), f"partial notebook kept at {failed}"
        else:
            where, kept = "its first cell", "no partial notebook was written"
        raise NotebookError(
            f"notebook {path.stem}: the kernel died while running {where} - killed, perhaps out of memory (lower "
            f"embed.batch_size, dino.batch_size or the image counts; `dmesg` lists kills by the OOM killer); {kept}"
        ) from None
    finally:
        source.unlink(missing_ok=True)
    _hide_injected_parameters(executing)
    os.replace(executing, final)
    reused, computed, reasons = _stage_events(events, events_offset)
    return NotebookRun(path.stem, final, time.perf_counter() - started, reused, computed, reasons=reasons)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` set in this process's environment (and so in the kernels it starts) for the block, then restored."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _hide_injected_parameters(notebook_path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` in an executed notebook, in place."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and REMOVE_CELL_TAG not in tags:
            cell.metadata["tags"] = [*tags, REMOVE_CELL_TAG]
    nbformat.write(notebook, notebook_path)


def _last_started_cell(notebook_path: Path) -> str:
    """``cell N (`first line`)``: the last code cell papermill started in the saved notebook (N counts code cells,
    the injected parameters included, as Jupyter shows the notebook)."""
    import nbformat

    code = [c for c in nbformat.read(notebook_path, as_version=4).cells if c.cell_type == "code"]
    started = [i for i, c in enumerate(code) if c.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return "its first cell"
    cell = code[started[-1]]
    first_line = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {started[-1] + 1} (`{clip(first_line, 60)}`)"


def _stage_events(events: Path, offset: int) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """(reused stages, computed stages, why each was computed) from the events a notebook's run appended."""
    if not events.exists():
        return (), (), {}
    with open(events) as handle:
        handle.seek(offset)
        records = [json.loads(line) for line in handle if line.strip()]
    computed = tuple(dict.fromkeys(r["stage"] for r in records if r["action"] == "computed"))
    reused = tuple(dict.fromkeys(r["stage"] for r in records if r["action"] == "reused" and r["stage"] not in computed))
    reasons = {r["stage"]: r["reason"] for r in records if r["action"] == "computed" and r.get("reason")}
    return reused, computed, reasons


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``--set data.opencell.n_images=500`` → nested dict; values are parsed as YAML (without aliases).

    Each key is given once: a second value for it, or a value and a sub-key (``seed=1 seed.x=2``), is a
    :class:`ConfigError` rather than one silently winning.
    """
    overrides: dict[str, Any] = {}
    given: dict[str, str] = {}  # dotted key -> the pair that set it
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {shown(pair)}: expected KEY=VALUE, e.g. data.opencell.n_images=500")
        node = overrides
        for depth, part in enumerate(parts, start=1):
            dotted = ".".join(parts[:depth])
            if dotted in given or (depth == len(parts) and part in node):
                earlier = given.get(dotted) or next(p for k, p in given.items() if k.startswith(f"{dotted}."))
                raise ConfigError(f"--set {shown(pair)}: {shown(dotted)} is already set by {shown(earlier)}; "
                                  "give each key once")
            if depth < len(parts):
                node = node.setdefault(part, {})
        node[parts[-1]] = parse_yaml(raw, f"--set {shown(pair)}")
        given[key.strip()] = pair
    return overrides
