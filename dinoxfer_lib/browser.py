"""Headless Chromium for the checks that need a real browser: the book's pages, JupyterLab, the embedding explorer.

Playwright's Python package drives the system's Chromium (Debian: ``apt-get install chromium``); Playwright's own
browser download is never used, so the checks run wherever a distribution Chromium is installed and nothing is
fetched at test time.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dinoxfer_lib.errors import DinoxferError

# Names the Chromium binary has on Debian/Ubuntu and elsewhere, in order of preference.
CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserUnavailable(DinoxferError):
    """A browser check cannot run here: no Chromium, or no Playwright package."""


def find_chromium() -> Path | None:
    """The first Chromium on ``PATH`` (see :data:`CHROMIUM_NAMES`), else None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def unavailable_reason() -> str | None:
    """Why the browser checks cannot run on this machine (one sentence), or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if find_chromium() is None:
        return f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}; Debian: apt-get install chromium)"
    return None


@contextmanager
def chromium(*, executable: Path | None = None) -> Iterator:
    """A headless Chromium (Playwright ``Browser``), closed on exit.

    Parameters
    ----------
    executable
        The Chromium binary; default :func:`find_chromium`.

    Raises
    ------
    BrowserUnavailable
        When Playwright or Chromium is missing.
    """
    reason = None if executable else unavailable_reason()
    if reason:
        raise BrowserUnavailable(f"cannot start a browser: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable or find_chromium()), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that must be told their port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # one line per request would bury the report
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL.

    Pages are read over HTTP, as a reader's browser reads a published book, rather than from ``file://`` URLs,
    where Chromium applies stricter rules to scripts and frames.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="dinoxfer-serve", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
