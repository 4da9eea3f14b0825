"""Files written so that a crash never leaves half of one, the digests that identify them, and the file locks that
let one process at a time write them.

Everything that writes a result (the artifact store, checkpoints, embeddings) writes through :func:`atomic_path`,
and everything that records what it read hashes it with :func:`file_sha256`. Two processes that could write the
same thing (two runs on one store, two downloads into one cache) take turns through :func:`file_lock`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (checkpoints and image sets do not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to; renamed onto ``path`` only if the block finishes.

    Readers see the old file or the new one, never half of one; a failed write leaves no temporary file behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`), flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def file_lock(path: str | os.PathLike, *, waiting: str = "", wait: bool = True) -> Iterator[bool]:
    """Hold the lock file ``path`` (an OS lock: released when the process dies, however it dies) for the block.

    While another process holds it, print ``waiting`` (if given) and wait; with ``wait=False`` enter at once and
    yield False instead. Yields whether the lock is held.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if not wait:
            yield False
            return
        if waiting:
            print(waiting)
        lock.acquire()
    try:
        yield True
    finally:
        lock.release()
