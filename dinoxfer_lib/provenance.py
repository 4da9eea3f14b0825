"""What produced an artifact: config, inputs, code version, packages, device, seed, wall time.

Written beside every stage's outputs as ``provenance.json`` (DESIGN.md "Artifacts and provenance"), in the spirit
of DINO printing its git commit and arguments at every start.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# Packages whose versions can change a number in the book.
TRACKED_PACKAGES = (
    "dinoxfer", "numpy", "scipy", "pandas", "scikit-learn", "scikit-image", "iterative-stratification", "torch",
    "torchvision", "timm", "anndata", "harmonypy", "umap-learn", "papermill", "jupyter-book",
)


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def source_sha256(package: Path = Path(__file__).resolve().parent) -> str:
    """One digest of the package's code and profiles (``*.py``, ``*.yaml``: paths and bytes, in path order).

    It names the code that ran where git cannot: a pip-installed or copied tree, or a copy whose ``.git`` is older
    than its files (then git's commit is wrong and only "dirty" says so). Equal digests, same code.
    """
    digest = hashlib.sha256()
    for path in sorted(p for pattern in ("*.py", "*.yaml") for p in package.rglob(pattern)):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def git_state() -> dict[str, str | bool | None]:
    """Commit of the source tree, whether it had uncommitted changes (a dirty tree is not reproducible), and the
    digest of the package's code (:func:`source_sha256`), which identifies it even without git."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if git("rev-parse", "HEAD") != commit:  # a commit landed between the two reads: the status is not commit's
        status = None
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "source_sha256": source_sha256()}


def commit_label(git: dict, *, digits: int = 7) -> str:
    """A :func:`git_state` commit as records and tables show it: ``+dirty`` after a tree with uncommitted changes,
    ``+unchecked`` when git gave the commit but not the tree's state (no status, or a commit landed while it was
    read), so that no record passes for a clean tree it was not checked to be."""
    commit = git.get("commit")
    if not commit:
        return "unknown"
    if git.get("dirty") is None:
        return commit[:digits] + "+unchecked"
    return commit[:digits] + ("+dirty" if git["dirty"] else "")


@lru_cache(maxsize=1)
def device_description() -> str:
    """The accelerator a run used: CUDA device name(s) or the CPU."""
    try:
        import torch
    except ImportError:
        return f"cpu ({platform.processor() or platform.machine()})"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"cuda: {', '.join(names)}"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
