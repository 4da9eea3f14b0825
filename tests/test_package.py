"""The package's shape: no import cycles, pure computation kept away from the store, cheap imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dinoxfer_lib"
# Pure computation: these never read or write the run store (the pipeline does).
PURE = ("adapt", "dino", "models", "probes", "seg", "tl")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere (also inside functions), except under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
               for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(path, known) - {name} for name, path in paths.items()}


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("subpackage", PURE)
def test_computation_never_touches_the_store(subpackage):
    graph = import_graph()
    offenders = {m: sorted(i for i in imports if i.startswith(("dinoxfer_lib.store", "dinoxfer_lib.pipeline")))
                 for m, imports in graph.items() if m.startswith(f"dinoxfer_lib.{subpackage}")}
    assert not {m: i for m, i in offenders.items() if i}


def test_config_store_and_cli_import_without_torch():
    code = ("import sys, dinoxfer_lib.config, dinoxfer_lib.store, dinoxfer_lib.cli, dinoxfer_lib.pipeline, "
            "dinoxfer_lib.probes; dinoxfer_lib.config.load_config('demo'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
