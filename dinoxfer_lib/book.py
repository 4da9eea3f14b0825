"""Build the HTML book with Jupyter Book 1.x from executed notebooks (execution off: it only renders).

The book's source is staged in ``<output>/_build/_src``: ``_config.yml``, ``_toc.yml``, the prose in ``book/`` and
the executed notebooks of one profile copied to ``book/notebooks/``. The HTML lands in ``<output>/_build/html``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dinoxfer_lib.errors import NotebookError, StoreError


def toc_notebooks(toc_path: Path) -> list[str]:
    """Stems of the executed notebooks the table of contents refers to (``book/notebooks/<stem>``)."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            file = node.get("file")
            if isinstance(file, str) and file.startswith("book/notebooks/"):
                found.append(Path(file).name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


# Where the intro says which profile and which data built the book (written at build time, from the run store).
THIS_BUILD_MARKER = "<!-- this-build -->"


def this_build(profile: str, runs_root: Path) -> str:
    """A MyST admonition naming the profile and, per domain, the data the book's numbers come from."""
    from dinoxfer_lib.data.dataset import load_imageset
    from dinoxfer_lib.pipeline.run import DOMAINS
    from dinoxfer_lib.report.common import describe_data

    datasets = Path(runs_root).resolve() / Path(profile).stem / "datasets"
    name = f"`{Path(profile).stem}` ({profile})" if Path(profile).suffix in (".yaml", ".yml") else f"`{profile}`"
    described = [load_imageset(datasets / domain) for domain in DOMAINS  # the study's domains, not the EM pair
                 if (datasets / domain / "provenance.json").is_file()]
    lines = [f"- {describe_data(d)}" for d in described]
    if any(d.synthetic for d in described):
        return "\n".join([
            ":::{warning}",
            f"**This build: profile {name}, synthetic data.** Its numbers come from:", "", *lines, "",
            "The stand-ins are procedural fluorescence images with the real datasets' channels, class vocabularies, "
            "label grades, protein groups and plate effects. Numbers computed on them test the *pipeline*, not the "
            "*biology*: they are not comparable with the paper's, and every chapter says so where it shows them. "
            "{doc}`own_data` and {doc}`running` explain how to build this book from real data.",
            ":::",
        ])
    return "\n".join([":::{note}", f"**This build: profile {name}.** Its numbers come from:", "", *lines, ":::"])


def build_book(*, profile: str, runs_root: Path, repo_root: Path, output_dir: Path) -> Path:
    """Stage the sources, run ``jupyter-book build``, return the path of ``index.html``."""
    repo_root, output_dir = Path(repo_root).resolve(), Path(output_dir).resolve()
    executed = Path(runs_root).resolve() / Path(profile).stem / "notebooks"
    needed = toc_notebooks(repo_root / "_toc.yml")
    missing = [stem for stem in needed if not (executed / f"{stem}.ipynb").is_file()]
    if missing:
        raise StoreError(
            f"no executed notebook {missing[0]!r} for profile {profile!r} in {executed}: "
            f"run `dinoxfer run --profile {profile}` first"
        )
    src = output_dir / "_build" / "_src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(repo_root / "book", src / "book", ignore=shutil.ignore_patterns("notebooks"))
    intro = src / "book" / "intro.md"
    intro.write_text(intro.read_text().replace(THIS_BUILD_MARKER, this_build(profile, Path(runs_root))))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(repo_root / name, src / name)
    (src / "book" / "notebooks").mkdir()
    for stem in needed:
        shutil.copy2(executed / f"{stem}.ipynb", src / "book" / "notebooks" / f"{stem}.ipynb")
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src), "--path-output", str(output_dir), "--all"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise NotebookError(f"jupyter-book build failed: {tail[0]}")
    index = output_dir / "_build" / "html" / "index.html"
    if not index.is_file():
        raise NotebookError(f"jupyter-book build finished but {index} is missing")
    return index
