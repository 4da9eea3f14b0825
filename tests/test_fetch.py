"""Manifests and fetch against a local HTTP server: checksums, offline, HTTP errors, manual items, no partial files."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from dinoxfer_lib.data.manifests import MANIFEST_DIR, fetch, list_manifests, load_manifest
from dinoxfer_lib.errors import DataError, FetchError

PAYLOAD = b"weights of a very small model\n" * 100


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        if self.path != "/cut.pth":
            return super().do_GET()
        # A transfer that breaks off: announces the whole file, sends a tenth, closes the connection.
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[: len(PAYLOAD) // 10])
        self.close_connection = True


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1:<ephemeral port>; yields (base url, stop function)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "model.pth").write_bytes(PAYLOAD)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    yield f"http://127.0.0.1:{httpd.server_address[1]}", stop
    if thread.is_alive():
        stop()


def _manifest(folder, stem, *, files=None, mode="auto", **override):
    data = {
        "name": stem,
        "kind": "checkpoint",
        "description": "a test asset",
        "url": "https://example.org",
        "licence": "CC0-1.0",
        "citation": "nobody (2026)",
        "layout": "<cache>/model.pth",
        "download": {"mode": mode, **({"instructions": "ask the lab for it"} if mode == "manual" else {})},
        **({"files": files} if files is not None else {}),
        **override,
    }
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _file(url, sha256=None, size_bytes=None, filename="model.pth"):
    return {"url": url, "filename": filename, "size_bytes": size_bytes, "sha256": sha256}


GOOD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
BAD_SHA = "0" * 64


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _cache_files(cache):
    """The files in the cache, but for the lock that lets one download at a time in (no partial file)."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_good_download_then_cached(tmp_path, server):
    base, stop = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "good", files=[_file(f"{base}/model.pth", GOOD_SHA, len(PAYLOAD))])

    paths = fetch("good", cache_dir=cache, manifest_dir=manifests)
    assert paths == [cache / "model.pth"]
    assert paths[0].read_bytes() == PAYLOAD

    stop()  # a second fetch finds the verified file in the cache and needs no server
    assert fetch("good", cache_dir=cache, manifest_dir=manifests) == paths


def test_partial_download_of_a_killed_fetch_is_removed_next_time(tmp_path, server, capsys):
    base, _ = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "good", files=[_file(f"{base}/model.pth", GOOD_SHA, len(PAYLOAD))])
    cache.mkdir()
    (cache / "tmpa1b2_c3d").write_bytes(PAYLOAD[:100])  # pooch's temporary file, left by a killed download
    (cache / "tmp_notes.txt").write_text("mine")  # not pooch's: kept
    fetch("good", cache_dir=cache, manifest_dir=manifests)
    assert _cache_files(cache) == ["model.pth", "tmp_notes.txt"]
    assert f"removed {cache / 'tmpa1b2_c3d'}" in capsys.readouterr().out


def test_bad_checksum_leaves_no_file(tmp_path, server):
    base, _ = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "bad", files=[_file(f"{base}/model.pth", BAD_SHA)])

    with pytest.raises(FetchError) as info:
        fetch("bad", cache_dir=cache, manifest_dir=manifests)
    message = _one_line(info)
    assert "fetch bad" in message and "checksum mismatch" in message
    assert f"expected sha256 {BAD_SHA}" in message and f"got {GOOD_SHA}" in message
    assert _cache_files(cache) == []


def test_server_gone(tmp_path, server):
    base, stop = server
    stop()
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "gone", files=[_file(f"{base}/model.pth", GOOD_SHA)])

    with pytest.raises(FetchError) as info:
        fetch("gone", cache_dir=cache, manifest_dir=manifests)
    message = _one_line(info)
    assert f"fetch gone: cannot reach {base}/model.pth" in message
    assert "check your connection" in message and str(cache / "model.pth") in message
    assert _cache_files(cache) == []


def test_broken_transfer_leaves_no_partial_file(tmp_path, server):
    base, _ = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "cut", files=[_file(f"{base}/cut.pth")])  # no checksum: only the transfer can fail

    with pytest.raises(FetchError) as info:
        fetch("cut", cache_dir=cache, manifest_dir=manifests)
    assert f"fetch cut: cannot reach {base}/cut.pth: the transfer broke off" in _one_line(info)
    assert _cache_files(cache) == []


def test_http_error(tmp_path, server):
    base, _ = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "missing", files=[_file(f"{base}/not-there.pth", GOOD_SHA)])

    with pytest.raises(FetchError) as info:
        fetch("missing", cache_dir=cache, manifest_dir=manifests)
    assert "HTTP 404" in _one_line(info)
    assert _cache_files(cache) == []


def test_unpinned_file_prints_its_sha256(tmp_path, server, capsys):
    base, _ = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "unpinned", files=[_file(f"{base}/model.pth")])

    assert fetch("unpinned", cache_dir=cache, manifest_dir=manifests) == [cache / "model.pth"]
    assert GOOD_SHA in capsys.readouterr().out


def test_unpinned_file_with_wrong_size_is_deleted(tmp_path, server):
    base, _ = server
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "short", files=[_file(f"{base}/model.pth", size_bytes=len(PAYLOAD) + 1)])

    with pytest.raises(FetchError) as info:
        fetch("short", cache_dir=cache, manifest_dir=manifests)
    assert f"{len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}" in _one_line(info)
    assert _cache_files(cache) == []


def test_manual_item_explains_where_to_get_and_put_it(tmp_path):
    manifests, cache = tmp_path / "manifests", tmp_path / "cache"
    _manifest(manifests, "by_hand", mode="manual", files=[_file("https://example.org/record", GOOD_SHA)])

    with pytest.raises(FetchError) as info:
        fetch("by_hand", cache_dir=cache, manifest_dir=manifests)
    message = _one_line(info)
    assert "manual download" in message and "ask the lab for it" in message
    assert f"put model.pth into {cache}" in message

    cache.mkdir()
    (cache / "model.pth").write_bytes(PAYLOAD)  # once placed (and matching its checksum) it is accepted
    assert fetch("by_hand", cache_dir=cache, manifest_dir=manifests) == [cache / "model.pth"]
    (cache / "model.pth").write_bytes(b"something else")
    with pytest.raises(FetchError, match=f"expected {GOOD_SHA}"):
        fetch("by_hand", cache_dir=cache, manifest_dir=manifests)


def test_manual_dataset_points_at_its_layout(tmp_path):
    manifests = tmp_path / "manifests"
    _manifest(manifests, "dataset_by_hand", mode="manual", kind="dataset")
    with pytest.raises(FetchError) as info:
        fetch("dataset_by_hand", cache_dir=tmp_path / "cache", manifest_dir=manifests)
    assert "dataset_by_hand.yaml" in _one_line(info)


def test_unknown_name_lists_the_valid_ones(tmp_path):
    manifests = tmp_path / "manifests"
    _manifest(manifests, "alpha", files=[_file("https://example.org/a.pth")])
    _manifest(manifests, "beta", files=[_file("https://example.org/b.pth")])
    with pytest.raises(FetchError) as info:
        fetch("gamma", cache_dir=tmp_path / "cache", manifest_dir=manifests)
    assert _one_line(info) == "unknown manifest 'gamma': expected one of alpha, beta"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"sha265": "typo"}, "unknown keys ['sha265']"),
        ({"kind": "weights"}, "expected one of dataset, checkpoint"),
        ({"files": [_file("https://example.org/a.pth", sha256="ABC")]}, "64 lowercase hex"),
        ({"files": [_file("https://example.org/a.pth", filename="../escape.pth")]}, "bare file name"),
        ({"files": [_file("ftp://example.org/a.pth")]}, "http(s) URL"),
        ({"files": []}, "needs a non-empty 'files'"),
        ({"name": "other"}, "differs from the file name"),
    ],
)
def test_malformed_manifest(tmp_path, override, fragment):
    manifests = tmp_path / "manifests"
    _manifest(manifests, "broken", **{"files": [_file("https://example.org/a.pth")], **override})
    with pytest.raises(DataError) as info:
        load_manifest("broken", manifest_dir=manifests)
    message = _one_line(info)
    assert "broken.yaml" in message and fragment in message


def test_shipped_manifests_load_and_validate():
    names = list_manifests()
    assert {"opencell", "hpa_kaggle", "dino_vitb8_imagenet", "dino4cells_hpa_fov"} <= set(names)
    assert all(path.stem in names for path in MANIFEST_DIR.glob("*.yaml"))
    for name in names:
        manifest = load_manifest(name)
        assert manifest.name == name and manifest.licence and manifest.citation and manifest.layout
        if manifest.download_mode == "auto":
            assert all(item.url.startswith("https://") for item in manifest.files)
    assert load_manifest("opencell").kind == "dataset" and load_manifest("opencell").download_mode == "manual"
    imagenet = load_manifest("dino_vitb8_imagenet").files[0]
    assert imagenet.url.endswith("/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth")


def test_pretrained_weights_point_at_shipped_manifests():
    from dinoxfer_lib.models.backbones import PRETRAINED

    for weights in PRETRAINED.values():
        if weights.manifest is None:  # weights this project trains itself have no download
            continue
        filenames = [item.filename for item in load_manifest(weights.manifest).files]
        assert weights.filename in filenames


def test_cli_lists_manifests_and_reports_errors_in_one_line(capsys):
    from dinoxfer_lib.cli import main

    assert main(["fetch", "--list"]) == 0
    assert capsys.readouterr().out.split() == list_manifests()

    assert main(["fetch", "no_such_asset"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown manifest 'no_such_asset'" in err and "opencell" in err
