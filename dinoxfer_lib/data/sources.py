"""What a real-data source consists of, by content: its table's bytes and each image file's sha256.

A dataset stage depends on the data, not on where they live: its identity is the digest of the table a reader reads
and of every file under the source's image folder (``opencell``: ``images/``; ``hpa_kaggle``: ``train/``) or, for a
``table`` source, of every file its path columns list. Editing a row, replacing an image or deleting one changes
it; moving the folder does not. Image digests are cached by (path, size, modification time), so a second run stats
the files instead of reading them.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dinoxfer_lib.errors import DataError
from dinoxfer_lib.files import atomic_write_text, file_sha256

# Where each layout keeps its table and its images, relative to the source's folder.
LAYOUTS = {"opencell": ("annotations.csv", "images"), "hpa_kaggle": ("train.csv", "train")}


@dataclass(frozen=True)
class SourceDigest:
    """A source's content: its table and the sha256 of each image file (relative paths, sorted)."""

    table: Path
    table_sha256: str
    files: dict[str, str]

    @property
    def files_sha256(self) -> str:
        from dinoxfer_lib.config import config_hash

        return config_hash(self.files)

    def summary(self) -> dict:
        """What a stage's config records: enough to tell any change, small enough for a provenance file."""
        return {"table": self.table.name, "table_sha256": self.table_sha256, "n_files": len(self.files),
                "files_sha256": self.files_sha256}

    def changes_from(self, before: dict[str, str]) -> str:
        """How this source's image files differ from an earlier listing, in words."""
        changed = sum(1 for name in self.files.keys() & before.keys() if self.files[name] != before[name])
        added, removed = len(self.files.keys() - before.keys()), len(before.keys() - self.files.keys())
        parts = [f"{n} image file(s) {what}" for n, what in ((changed, "changed"), (added, "added"),
                                                            (removed, "removed")) if n]
        return ", ".join(parts) or "image files changed"

    def write_listing(self, path: Path) -> None:
        """``file,sha256`` of every image file: kept with the dataset so the next run can say what changed."""
        rows = ["file,sha256", *(f"{name},{digest}" for name, digest in self.files.items())]
        path.write_text("\n".join(rows) + "\n")


def read_listing(path: Path) -> dict[str, str]:
    """The ``file -> sha256`` listing :meth:`SourceDigest.write_listing` wrote; empty when there is none."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["file"]: row["sha256"] for row in csv.DictReader(handle)}


def source_files(source: str, path: str | os.PathLike) -> tuple[Path, list[Path]]:
    """(the table, the image files) of a real-data source, as its reader will find them."""
    path = Path(path)
    if source in LAYOUTS:
        table_name, folder = LAYOUTS[source]
        table, images = path / table_name, path / folder
        if not table.is_file():
            raise DataError(f"{table}: not found; a {source} source needs {table_name} in {path}")
        return table, sorted(p for p in images.rglob("*") if p.is_file()) if images.is_dir() else []
    if source == "table":
        if not path.is_file():
            raise DataError(f"{path}: not found; a table source needs the CSV file's path")
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c for c in reader.fieldnames or () if c == "path" or c.startswith("path_")]
            listed = {(path.parent / Path(cell.strip()).expanduser()).resolve()
                      for row in reader for c in columns if (cell := row.get(c) or "").strip()}
        return path, sorted(p for p in listed if p.is_file())  # a missing file is the reader's error to report
    raise DataError(f"source {source!r} has no files to fingerprint")


def source_digest(source: str, path: str | os.PathLike, *, cache: Path | None = None) -> SourceDigest:
    """The content digest of a real-data source; with ``cache`` (a JSON file) unchanged files are not re-read."""
    table, files = source_files(source, path)
    base = table.parent if source == "table" else Path(path)
    known, read = _read_cache(cache), 0
    digests = {}
    for file in files:
        stat = file.stat()
        key = str(file)
        entry = known.get(key)
        if not entry or entry[0] != stat.st_size or entry[1] != stat.st_mtime_ns:
            entry = known[key] = [stat.st_size, stat.st_mtime_ns, file_sha256(file)]
            read += 1
        digests[os.path.relpath(file, base)] = entry[2]
    if cache is not None and read:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps(known))
    return SourceDigest(table, file_sha256(table), digests)


def _read_cache(cache: Path | None) -> dict[str, list]:
    if cache is None or not cache.is_file():
        return {}
    try:
        return json.loads(cache.read_text())
    except ValueError:
        return {}  # a damaged cache only costs re-reading the files
