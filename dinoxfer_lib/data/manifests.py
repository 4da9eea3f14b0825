"""Records of every external dataset and checkpoint, and the download that follows them.

Each asset the book can use but does not ship (OpenCell, the HPA Kaggle release, the DINO and DINO4Cells weights;
PAPER_SPEC.md §2-§3) has one YAML file in ``data_manifests/``: where it comes from, its licence and citation, what the
readers expect on disk, and for downloadable files their URL, size and sha256. :func:`fetch` downloads with pooch
into a cache (skipping files already there), verifies the checksum, and turns every failure - offline, server gone,
HTTP error, checksum mismatch, manual-only asset - into one :class:`~dinoxfer_lib.errors.FetchError` line that says
what to do. pooch streams into a temporary file and moves it into place only after the hash matched, so a failed
download never leaves a file a later run would trust. pooch deletes that temporary file on any error; a download
killed mid-way cannot, so :func:`fetch` removes such leftovers when it next starts. Downloads into one cache take
turns (a file lock), so a leftover is never a live download of another process.

Manifest fields
---------------
``name`` (= file stem), ``kind`` (``dataset`` | ``checkpoint``), ``description``, ``url`` (landing page or source),
``licence``, ``citation``, ``layout`` (what is on disk once downloaded / converted), ``download``
(``{mode: auto | manual, instructions}``; instructions required for manual), optional ``files`` (list of
``{url, filename, size_bytes, sha256, note}``; required for ``auto``; ``size_bytes`` and ``sha256`` may be null when
unknown), optional ``notes`` and, for checkpoints, optional ``slot_order`` (which input slot holds which channel, as
``dinoxfer channels record`` writes it; read by :func:`dinoxfer_lib.models.slot_order.slot_order`). Unknown keys are
an error: a misspelt ``sha256`` must not silently disable the check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests
import yaml

from dinoxfer_lib.errors import DataError, FetchError
from dinoxfer_lib.files import file_lock

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
KINDS: tuple[str, ...] = ("dataset", "checkpoint")
DOWNLOAD_MODES: tuple[str, ...] = ("auto", "manual")

_REQUIRED = ("name", "kind", "description", "url", "licence", "citation", "layout", "download")
_OPTIONAL = ("files", "notes", "slot_order")
_FILE_REQUIRED = ("url", "filename", "size_bytes", "sha256")
_FILE_OPTIONAL = ("note",)
_SHA256 = re.compile(r"[0-9a-f]{64}")
# pooch downloads into tempfile.NamedTemporaryFile(dir=cache): "tmp" and 8 random characters.
_POOCH_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")
_CACHE_LOCK = ".dinoxfer-fetch.lock"


@dataclass(frozen=True)
class ManifestFile:
    """One downloadable file; ``sha256``/``size_bytes`` are ``None`` where nobody has pinned them yet."""

    url: str
    filename: str
    size_bytes: int | None
    sha256: str | None
    note: str = ""


@dataclass(frozen=True)
class Manifest:
    """A validated ``data_manifests/<name>.yaml``."""

    name: str
    kind: str
    description: str
    url: str
    licence: str
    citation: str
    layout: str
    download_mode: str
    instructions: str
    files: tuple[ManifestFile, ...]
    notes: str
    source: Path
    slot_order: dict | None = None


def list_manifests(*, manifest_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the manifests in ``manifest_dir`` (default: the repository's ``data_manifests/``), sorted."""
    return sorted(path.stem for path in _manifest_dir(manifest_dir).glob("*.yaml"))


def load_manifest(name: str, *, manifest_dir: str | os.PathLike | None = None) -> Manifest:
    """Read and validate one manifest.

    Raises
    ------
    FetchError
        No manifest of that name (the message lists the valid names).
    DataError
        The YAML is malformed or breaks the schema in the module docstring.
    """
    folder = _manifest_dir(manifest_dir)
    path = folder / f"{name}.yaml"
    if not path.is_file():
        names = list_manifests(manifest_dir=folder)
        valid = ", ".join(names) if names else f"(no manifests in {folder})"
        raise FetchError(f"unknown manifest {name!r}: expected one of {valid}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    return _validate(data, path)


def fetch(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    manifest_dir: str | os.PathLike | None = None,
) -> list[Path]:
    """Download the files of manifest ``name`` into ``cache_dir`` and return their paths.

    Files already in the cache with the right checksum are not downloaded again. A file whose manifest has no
    sha256 yet is downloaded and its sha256 printed, so that it can be pinned in the YAML.

    Parameters
    ----------
    name
        Manifest name (``dinoxfer fetch`` lists them).
    cache_dir
        Download folder; default ``pooch.os_cache("dinoxfer")`` (the folder the checkpoint loader looks in).
    manifest_dir
        Folder of the YAML files; default the repository's ``data_manifests/``.

    Raises
    ------
    FetchError
        Unknown name, manual-only asset not yet in the cache, unreachable server or HTTP error, checksum or size
        mismatch. The message is one line; no partial file is left in the cache.
    """
    manifest = load_manifest(name, manifest_dir=manifest_dir)
    cache = Path(cache_dir) if cache_dir is not None else Path(pooch.os_cache("dinoxfer"))
    if manifest.download_mode == "manual":
        return _manual(manifest, cache)
    with _downloading_into(cache):
        return [_fetch_file(manifest, item, cache) for item in manifest.files]


# --------------------------------------------------------------------------------------------------------------
# Downloading


@contextmanager
def _downloading_into(cache: Path) -> Iterator[None]:
    """Hold ``cache``'s download lock, first removing the temporary files of downloads that were killed."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the download cache {cache}: {_one_line(str(exc))}") from exc
    if not os.access(cache, os.W_OK):  # read-only: files already there are verified, nothing can be written
        yield
        return
    with file_lock(cache / _CACHE_LOCK, waiting=f"another download into {cache} is running: waiting for it"):
        for path in sorted(cache.iterdir()):
            if path.is_file() and _POOCH_TEMPORARY.fullmatch(path.name):
                path.unlink()
                print(f"removed {path}: the partial download of an interrupted fetch")
        yield


def _manual(manifest: Manifest, cache: Path) -> list[Path]:
    """Manual assets: accept files the user already placed in the cache, else say where to get and put them."""
    paths = [cache / item.filename for item in manifest.files]
    if paths and all(path.is_file() for path in paths):
        for item, path in zip(manifest.files, paths):
            _verify_placed(manifest, item, path)
        return paths
    where = (
        f"then put {', '.join(item.filename for item in manifest.files)} into {cache}"
        if manifest.files
        else f"then arrange it as the layout in {manifest.source} says and point the profile's path at that folder"
    )
    how = _one_line(manifest.instructions).rstrip(".")
    raise FetchError(f"fetch {manifest.name}: manual download - {how}; {where}")


def _verify_placed(manifest: Manifest, item: ManifestFile, path: Path) -> None:
    if item.sha256 is not None:
        actual = pooch.file_hash(str(path), alg="sha256")
        if actual != item.sha256:
            raise FetchError(
                f"fetch {manifest.name}: {path} has sha256 {actual}, expected {item.sha256}; replace the file"
            )


def _fetch_file(manifest: Manifest, item: ManifestFile, cache: Path) -> Path:
    known_hash = f"sha256:{item.sha256}" if item.sha256 else None
    downloader = _HashingDownloader()
    try:
        path = Path(pooch.retrieve(
            item.url, known_hash=known_hash, fname=item.filename, path=cache, downloader=downloader,
        ))
    except requests.exceptions.RequestException as exc:
        raise FetchError(
            f"fetch {manifest.name}: cannot reach {item.url}: {_reason(exc)}; check your connection or download it "
            f"by hand into {cache / item.filename}"
        ) from exc
    except ValueError as exc:
        if item.sha256 is None or downloader.sha256 in (None, item.sha256):
            raise FetchError(f"fetch {manifest.name}: {item.url}: {_one_line(str(exc))}") from exc
        # pooch raises ValueError on a hash mismatch after deleting the temporary download.
        raise FetchError(
            f"fetch {manifest.name}: checksum mismatch for {item.filename} from {item.url}: expected sha256 "
            f"{item.sha256}, got {downloader.sha256}; the download was deleted - retry, or update the manifest if "
            f"the file changed upstream"
        ) from exc
    except OSError as exc:
        raise FetchError(f"fetch {manifest.name}: cannot write {cache / item.filename}: {_one_line(str(exc))}") from exc
    if item.sha256 is None:
        _check_size(manifest, item, path)
        print(f"{manifest.name}: {path.name} sha256 {pooch.file_hash(str(path), alg='sha256')} "
              f"(not pinned: add it to {manifest.source} to verify later downloads)")
    return path


def _check_size(manifest: Manifest, item: ManifestFile, path: Path) -> None:
    """Without a checksum, a recorded size is the only integrity check left."""
    size = path.stat().st_size
    if item.size_bytes is not None and size != item.size_bytes:
        path.unlink()
        raise FetchError(
            f"fetch {manifest.name}: {item.filename} has {size} bytes, expected {item.size_bytes}; the download "
            f"was deleted - retry"
        )


class _HashingDownloader:
    """pooch's HTTP downloader that remembers the sha256 of what it fetched.

    pooch verifies and deletes a mismatching download itself; keeping the hash lets the error say what arrived.
    """

    def __init__(self) -> None:
        self._http = pooch.HTTPDownloader(progressbar=True)
        self.sha256: str | None = None

    def __call__(self, url: str, output_file: str, pooch_object, check_only: bool = False):
        result = self._http(url, output_file, pooch_object, check_only=check_only)
        if not check_only:
            self.sha256 = pooch.file_hash(str(output_file), alg="sha256")
        return result


def _reason(exc: requests.exceptions.RequestException) -> str:
    """A short cause: requests' own messages nest whole exception reprs."""
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        detail = re.search(r"IncompleteRead\([^)]*\)", str(exc))
        return f"the transfer broke off ({detail.group(0)})" if detail else "the transfer broke off"
    if isinstance(exc, requests.exceptions.ConnectionError):
        errno_text = re.search(r"\[Errno -?\d+\] [^'\"\)]+", str(exc))
        return f"connection failed ({errno_text.group(0)})" if errno_text else "connection failed"
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------------------------
# Validation


def _manifest_dir(manifest_dir: str | os.PathLike | None) -> Path:
    folder = Path(manifest_dir) if manifest_dir is not None else MANIFEST_DIR
    if not folder.is_dir():
        raise FetchError(f"manifest folder {folder} not found; expected the repository's data_manifests/")
    return folder


def _validate(data: object, path: Path) -> Manifest:
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of manifest fields, got {type(data).__name__}")
    _check_keys(data, _REQUIRED, _OPTIONAL, str(path))
    for key in ("name", "kind", "description", "url", "licence", "citation", "layout"):
        _check_text(data[key], f"{path}: {key}")
    if data["name"] != path.stem:
        raise DataError(f"{path}: name {data['name']!r} differs from the file name; expected {path.stem!r}")
    _check_choice(data["kind"], KINDS, f"{path}: kind")
    mode, instructions = _validate_download(data["download"], path)
    files = tuple(_validate_file(item, f"{path}: files[{i}]") for i, item in enumerate(data.get("files") or []))
    if mode == "auto" and not files:
        raise DataError(f"{path}: download mode 'auto' needs a non-empty 'files' list")
    if "notes" in data:
        _check_text(data["notes"], f"{path}: notes")
    return Manifest(
        name=data["name"], kind=data["kind"], description=data["description"], url=data["url"],
        licence=data["licence"], citation=data["citation"], layout=data["layout"], download_mode=mode,
        instructions=instructions, files=files, notes=data.get("notes", ""), source=path,
        slot_order=data.get("slot_order"),
    )


def _validate_download(download: object, path: Path) -> tuple[str, str]:
    where = f"{path}: download"
    if not isinstance(download, dict):
        raise DataError(f"{where}: expected a mapping with 'mode' and 'instructions'")
    _check_keys(download, ("mode",), ("instructions",), where)
    _check_choice(download["mode"], DOWNLOAD_MODES, f"{where}.mode")
    instructions = download.get("instructions") or ""
    if download["mode"] == "manual":
        _check_text(instructions, f"{where}.instructions (required for manual downloads)")
    return download["mode"], instructions


def _validate_file(item: object, where: str) -> ManifestFile:
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected a mapping with {', '.join(_FILE_REQUIRED)}")
    _check_keys(item, _FILE_REQUIRED, _FILE_OPTIONAL, where)
    url, filename, size, sha = item["url"], item["filename"], item["size_bytes"], item["sha256"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise DataError(f"{where}: url {url!r}; expected an http(s) URL")
    if not isinstance(filename, str) or not filename or Path(filename).name != filename:
        raise DataError(f"{where}: filename {filename!r}; expected a bare file name (no folders)")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise DataError(f"{where}: size_bytes {size!r}; expected a positive integer or null")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
        raise DataError(f"{where}: sha256 {sha!r}; expected 64 lowercase hex digits or null")
    note = item.get("note") or ""
    return ManifestFile(url=url, filename=filename, size_bytes=size, sha256=sha, note=note)


def _check_keys(data: dict, required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown}; expected {', '.join(required + optional)}")
    missing = [key for key in required if key not in data]
    if missing:
        raise DataError(f"{where}: missing keys {missing}")


def _check_text(value: object, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected non-empty text, got {value!r}")


def _check_choice(value: object, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise DataError(f"{where} is {value!r}; expected one of {', '.join(choices)}")
