"""The notebooks as Jupyter users meet them: paired ``.ipynb`` files and the parameters papermill can set.

The book's notebooks are stored as jupytext percent-format ``notebooks/NN_name.py``; ``jupytext.toml`` pairs each
with an ``.ipynb`` that carries the kernelspec, so JupyterLab and a plain ``papermill`` call open it as is. Each
notebook's ``parameters`` cell holds plain literals only (DESIGN.md), so its names and defaults can be read
without running anything.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dinoxfer_lib.errors import NotebookError
from dinoxfer_lib.runner import discover_notebooks

# A percent-format cell marker carrying the papermill tag, e.g. `# %% tags=["parameters"]`.
_PARAMETERS_MARKER = re.compile(r"^# %%.*\btags=\[[^\]]*[\"']parameters[\"']")
_CELL_MARKER = re.compile(r"^# %%")


def pair_notebooks(notebook_dir: Path) -> list[Path]:
    """Write or update the paired ``.ipynb`` of every notebook in ``notebook_dir`` (``jupytext --sync``).

    A pair is synchronised in the direction of its newer file, so edits saved from JupyterLab are kept; outputs
    already in an ``.ipynb`` stay. Returns the ``.ipynb`` paths.
    """
    from jupytext.cli import jupytext

    paths = discover_notebooks(Path(notebook_dir))
    jupytext(["--sync", "--quiet", *map(str, paths)])
    unpaired = [p for p in paths if not p.with_suffix(".ipynb").is_file()]
    if unpaired:
        raise NotebookError(
            f"{unpaired[0]} is not paired: expected a jupytext.toml with formats = \"ipynb,py:percent\" in "
            f"{unpaired[0].parent} or a folder above it (the repository's root has one)"
        )
    return [p.with_suffix(".ipynb") for p in paths]


def _parameters_cell(path: Path, lines: list[str]) -> tuple[int, int]:
    """Line range ``[start, end)`` of the ``parameters`` cell's code (after its marker line)."""
    start = next((i for i, line in enumerate(lines) if _PARAMETERS_MARKER.match(line)), None)
    if start is None:
        raise NotebookError(f"{path}: no cell tagged 'parameters' (expected a line # %% tags=[\"parameters\"])")
    end = next((i for i in range(start + 1, len(lines)) if _CELL_MARKER.match(lines[i])), len(lines))
    return start + 1, end


def read_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of a percent-format notebook's ``parameters`` cell, in order.

    Raises :class:`~dinoxfer_lib.errors.NotebookError` when the notebook has no such cell or the cell assigns
    anything but a literal to a name (papermill could not override it).
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    start, end = _parameters_cell(path, lines)
    source = "\n".join(lines[start:end])
    try:
        body = ast.parse(source, filename=str(path)).body
    except SyntaxError as exc:
        raise NotebookError(f"{path}: parameters cell is not valid Python ({exc.msg}, line {exc.lineno})") from None
    parameters = {}
    for node in body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise NotebookError(f"{path}: parameters cell line {node.lineno}: expected `name = literal`, "
                                f"found {ast.unparse(node)!r}")
        try:
            parameters[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise NotebookError(f"{path}: parameter {node.targets[0].id!r} = {ast.unparse(node.value)!r} is not a "
                                "literal; papermill can only override literals") from None
    return parameters


def common_parameters(paths: Iterable[Path]) -> dict[str, Any]:
    """The parameters every notebook in ``paths`` accepts, with the first notebook's defaults, in its order."""
    tables = [read_parameters(path) for path in paths]
    if not tables:
        return {}
    return {name: default for name, default in tables[0].items() if all(name in table for table in tables)}


def write_with_parameters(source: Path, target: Path, **values: Any) -> Path:
    """Copy a percent-format notebook to ``target`` with new defaults in its ``parameters`` cell.

    What a JupyterLab user does by editing that cell before running the notebook: the copy runs as is, with no
    injected cell, e.g. on the smoke profile with its own run store. Every name must already be a parameter.
    """
    source, target = Path(source), Path(target)
    parameters = read_parameters(source)
    unknown = sorted(set(values) - set(parameters))
    if unknown:
        raise NotebookError(f"{source}: no parameter {unknown[0]!r}; expected one of {', '.join(parameters)}")
    lines = source.read_text().splitlines()
    start, end = _parameters_cell(source, lines)
    # replace bottom-up, so the line numbers of the assignments above stay valid
    for node in reversed(ast.parse("\n".join(lines[start:end])).body):
        name = node.targets[0].id  # read_parameters checked the cell holds `name = literal` lines only
        if name in values:
            lines[start + node.lineno - 1:start + node.end_lineno] = [f"{name} = {values[name]!r}"]
    target.write_text("\n".join(lines) + "\n")
    return target
