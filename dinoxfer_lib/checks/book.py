"""Read every page of a built book in headless Chromium, as a reader at a laptop width would, and list what is wrong.

A page fails on (the names in :data:`CHECKS`):

- ``missing image``: an ``<img>`` that did not load, or an image request answered with an error;
- ``console error``: a JavaScript error, a ``console.error`` message or a resource the server does not have;
- ``external request``: a request to another host (the book must work offline; such requests are blocked);
- ``too wide``: an element reaching past the right edge of the content column (Jupyter Book 1.x:
  ``article.bd-article``) that does not scroll inside a box of its own (``overflow-x: auto``/``scroll``), or a page
  that scrolls sideways;
- ``cut off``: a table or code block wider than the box that shows it, so its right-hand part is hidden until the
  reader scrolls sideways (tables inside closed toggles are opened for this check);
- ``stderr output``: a cell output block of stderr or a traceback;
- ``too tall``: a page taller than :data:`MAX_PAGE_HEIGHT_PX`;
- ``machine path``: a path of the building machine (its run store, repository, home folder) in the text;
- ``progress bar``: a tqdm bar in the text;
- ``kernel log``: the kernel's "Kernel is running over TCP" warning in the text;
- ``explorer tooltip``: an embedding explorer (:mod:`dinoxfer_lib.pl.explorer`) whose first point, hovered,
  shows no tooltip with a thumbnail.

Full-page screenshots go to ``_build/screenshots/`` beside ``_build/html`` for a person to look at.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dinoxfer_lib.browser import chromium, serve_folder
from dinoxfer_lib.checks.explorer import hover_point
from dinoxfer_lib.errors import DinoxferError, StoreError
from dinoxfer_lib.pl.explorer import IFRAME_CLASS

CHECKS: tuple[str, ...] = ("missing image", "console error", "external request", "too wide", "cut off",
                           "stderr output", "too tall", "machine path", "progress bar", "kernel log",
                           "explorer tooltip")
# A page taller than this is a wall of output, not a chapter: about 20 screens of a laptop.
MAX_PAGE_HEIGHT_PX = 20_000
# The reader's window: a laptop with the book's side bar open.
VIEWPORT = {"width": 1400, "height": 900}
# Jupyter Book 1.x (sphinx-book-theme / pydata-sphinx-theme): the column the chapter's text and outputs live in.
CONTENT_COLUMN = "article.bd-article"
# A part of a pixel past the column is rounding, not overflow.
WIDTH_TOLERANCE_PX = 1.0
# myst-nb's classes for cell outputs that are not results.
STDERR_OUTPUTS = ".output.stderr, .output.traceback, .output.error"
# tqdm's bar as it ends: "| 12/40 [00:03<00:07, ...", or a rate such as "3.21it/s]".
PROGRESS_BAR = re.compile(r"\|\s*\d+/\d+\s*\[\d+:\d\d|\d+(?:\.\d+)?\s?(?:it/s|s/it)\]")
KERNEL_LOG = "Kernel is running over TCP"
# Folders of a Sphinx build that hold assets, not pages.
_ASSET_FOLDERS = frozenset({"_static", "_sources", "_images", "_downloads"})

# Run in the page: every element of the content column whose box reaches past the column's right edge and is not
# inside a box that scrolls or clips it, outermost only; and whether the whole page scrolls sideways.
_WIDE_ELEMENTS_JS = """
([selector, tolerance]) => {
  const column = document.querySelector(selector) || document.querySelector("main") || document.body;
  const limit = column.getBoundingClientRect().right + tolerance;
  const contained = (el) => {
    for (let a = el.parentElement; a && a !== column; a = a.parentElement) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };
  const wide = [];
  for (const el of column.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= limit) continue;
    if (wide.some((outer) => outer.contains(el)) || contained(el)) continue;
    wide.push(el);
  }
  const describe = (el) => {
    const names = typeof el.className === "string" ? el.className.trim().split(/\\s+/).filter(Boolean) : [];
    const cls = names.length ? "." + names.slice(0, 3).join(".") : "";
    const text = (el.innerText || "").trim().replace(/\\s+/g, " ").slice(0, 60);
    const over = Math.round(el.getBoundingClientRect().right - limit + tolerance);
    return `<${el.tagName.toLowerCase()}${cls}> ${over} px past the column` + (text ? ` ("${text}")` : "");
  };
  const page = document.documentElement;
  return {elements: wide.map(describe), pageOverflow: page.scrollWidth - page.clientWidth};
}
"""

# Run in the page: every table and code block of the content column whose box (the nearest ancestor, or itself, that
# scrolls or clips sideways) holds more than it shows; closed toggles are opened first and closed again after.
_CUT_OFF_JS = """
([selector, tolerance]) => {
  const column = document.querySelector(selector) || document.querySelector("main") || document.body;
  const closed = [...column.querySelectorAll("details:not([open])")];
  closed.forEach((d) => { d.open = true; });
  const clips = (el) => ["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(el).overflowX);
  const cut = [];
  for (const el of column.querySelectorAll("table, pre")) {
    let box = el;
    while (box && box !== column && !clips(box)) box = box.parentElement;
    if (!box || box === column || cut.some((c) => c.box === box)) continue;
    const hidden = box.scrollWidth - box.clientWidth;
    if (hidden > tolerance) {
      const text = (el.innerText || "").trim().replace(/\\s+/g, " ").slice(0, 60);
      const quoted = text ? ` ("${text}")` : "";
      cut.push({box, detail: `<${el.tagName.toLowerCase()}> ${hidden} px hidden to the right${quoted}`});
    }
  }
  closed.forEach((d) => { d.open = false; });
  return cut.map((c) => c.detail);
}
"""

# Run in the page: the text a reader can find in it (hidden toggles included, scripts and styles not).
_PAGE_TEXT_JS = """
() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => ["SCRIPT", "STYLE", "NOSCRIPT"].includes(node.parentElement?.tagName)
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const parts = [];
  while (walker.nextNode()) parts.push(walker.currentNode.nodeValue);
  return parts.join("");
}
"""

# Run in the page: load lazy images now, then list those that failed (no pixels once complete).
_BROKEN_IMAGES_JS = """
async () => {
  const images = [...document.images];
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done, {once: true});
    img.addEventListener("error", done, {once: true});
  })));
  return images.filter((img) => img.naturalWidth === 0).map((img) => img.getAttribute("src") || "(no src)");
}
"""


@dataclass(frozen=True)
class Finding:
    """One thing wrong on a page: which check (one of :data:`CHECKS`) and what exactly."""

    check: str
    detail: str


@dataclass(frozen=True)
class PageReport:
    """What the browser saw on one page: its height, what failed, where its screenshot is."""

    page: str
    height: int
    findings: tuple[Finding, ...]
    screenshot: Path | None = None

    def failed(self, check: str | None = None) -> bool:
        return any(check is None or f.check == check for f in self.findings)


def book_pages(html_dir: Path) -> list[Path]:
    """The pages of a built book (``.html`` outside asset folders; redirect stubs such as ``index.html`` left out)."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise StoreError(f"{html_dir} is not a built book (no index.html): build it with `dinoxfer book` first")
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        if _ASSET_FOLDERS & set(path.relative_to(html_dir).parts):
            continue
        if 'http-equiv="Refresh"' in path.read_text(errors="replace")[:2000]:
            continue
        pages.append(path)
    return pages


def check_book(
    html_dir: Path,
    *,
    machine_paths: Iterable[str | Path] = (),
    max_height: int = MAX_PAGE_HEIGHT_PX,
    screenshot_dir: Path | None = None,
    chromium_path: Path | None = None,
) -> list[PageReport]:
    """Open every page of the book in ``html_dir`` in headless Chromium and check it (see the module docstring).

    Parameters
    ----------
    html_dir
        The built HTML (``_build/html``).
    machine_paths
        Paths of the building machine that must not appear in any page's text: its run store, the repository,
        the home folder. Each is also looked for in its resolved form.
    max_height
        Page height bound in CSS pixels at :data:`VIEWPORT`'s width.
    screenshot_dir
        Where full-page screenshots go (one ``.png`` per page, named after its path); default
        ``html_dir/../screenshots``.
    chromium_path
        The Chromium binary (default: found on ``PATH``).

    Returns
    -------
    list of PageReport
        One per page, in path order.
    """
    html_dir = Path(html_dir).resolve()
    pages = book_pages(html_dir)
    screenshot_dir = Path(screenshot_dir) if screenshot_dir else html_dir.parent / "screenshots"
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    forbidden = _forbidden_paths(machine_paths)
    reports = []
    with serve_folder(html_dir) as base_url, chromium(executable=chromium_path) as browser:
        context = browser.new_context(viewport=VIEWPORT)
        for path in pages:
            relative = path.relative_to(html_dir).as_posix()
            screenshot = screenshot_dir / (relative.removesuffix(".html").replace("/", "__") + ".png")
            reports.append(_check_page(context, f"{base_url}/{relative}", relative, forbidden=forbidden,
                                       max_height=max_height, screenshot=screenshot))
        context.close()
    return reports


def _forbidden_paths(paths: Iterable[str | Path]) -> list[str]:
    """Absolute forms of ``paths`` (as given and resolved); a relative form such as "runs" would match prose."""
    found = []
    for path in map(Path, paths):
        for form in {str(path.expanduser()), str(path.expanduser().resolve())}:
            if Path(form).is_absolute() and len(form) > 1 and form not in found:  # "/" would match any path
                found.append(form)
    return sorted(found)


def _check_page(context, url: str, name: str, *, forbidden: Sequence[str], max_height: int,
                screenshot: Path) -> PageReport:
    page = context.new_page()
    findings: list[Finding] = []

    def on_console(message) -> None:
        text = message.text.strip()
        # a failed load is reported by on_response / on_failed with its URL, which Chromium's message lacks
        if message.type == "error" and not text.startswith("Failed to load resource"):
            findings.append(Finding("console error", text.splitlines()[0][:200] if text else "(empty)"))

    def on_response(response) -> None:
        if response.status >= 400:
            check = "missing image" if response.request.resource_type == "image" else "console error"
            findings.append(Finding(check, f"{_short(response.url)} answered {response.status}"))

    def on_failed(request) -> None:
        if not request.url.startswith(origin):  # blocked below; reported as an external request
            return
        check = "missing image" if request.resource_type == "image" else "console error"
        findings.append(Finding(check, f"{_short(request.url)} failed: {request.failure}"))

    def keep_offline(route) -> None:
        if route.request.url.startswith(origin) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            findings.append(Finding("external request", _short(route.request.url)))
            route.abort()

    origin = "/".join(url.split("/", 3)[:3])  # http://127.0.0.1:PORT
    page.on("console", on_console)
    page.on("pageerror", lambda error: findings.append(Finding("console error", str(error).splitlines()[0][:200])))
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.route("**/*", keep_offline)
    page.goto(url, wait_until="load")
    findings += [Finding("missing image", f"{src} did not load") for src in page.evaluate(_BROKEN_IMAGES_JS)]

    wide = page.evaluate(_WIDE_ELEMENTS_JS, [CONTENT_COLUMN, WIDTH_TOLERANCE_PX])
    findings += [Finding("too wide", detail) for detail in wide["elements"]]
    if wide["pageOverflow"] > WIDTH_TOLERANCE_PX:
        findings.append(Finding("too wide", f"the page scrolls sideways by {wide['pageOverflow']} px"))
    findings += [Finding("cut off", detail) for detail in page.evaluate(_CUT_OFF_JS, [CONTENT_COLUMN,
                                                                                      WIDTH_TOLERANCE_PX])]

    for block in page.locator(STDERR_OUTPUTS).all():
        first_line = next((line for line in block.inner_text().splitlines() if line.strip()), "(empty)")
        findings.append(Finding("stderr output", first_line.strip()[:120]))

    height = page.evaluate("() => document.documentElement.scrollHeight")
    if height > max_height:
        findings.append(Finding("too tall", f"{height} px, more than {max_height} px"))

    text = page.evaluate(_PAGE_TEXT_JS)
    for path in forbidden:
        if path in text:
            findings.append(Finding("machine path", f"{path} appears {text.count(path)} time(s)"))
    bars = PROGRESS_BAR.findall(text)
    if bars:
        findings.append(Finding("progress bar", f"{len(bars)} tqdm bar line(s), e.g. {bars[0]!r}"))
    if KERNEL_LOG in text:
        findings.append(Finding("kernel log", f"{KERNEL_LOG!r} appears {text.count(KERNEL_LOG)} time(s)"))

    page.screenshot(path=str(screenshot), full_page=True)  # before hovering: the hover scrolls the page
    for number, iframe in enumerate(page.locator(f"iframe.{IFRAME_CLASS}").all(), start=1):
        try:
            tooltip = hover_point(iframe.element_handle().content_frame())
        except LookupError as exc:
            findings.append(Finding("explorer tooltip", f"explorer {number}: {exc}"))
            continue
        if tooltip.image_width == 0:
            findings.append(Finding("explorer tooltip", f"explorer {number}: the tooltip of {tooltip.image_id} "
                                                        "shows no image"))
    page.close()
    return PageReport(page=name, height=height, findings=tuple(findings), screenshot=screenshot)


def _short(url: str) -> str:
    """A URL without the local server's address, shortened for a one-line report."""
    local = re.sub(r"^http://127\.0\.0\.1:\d+/", "", url)
    return local if len(local) <= 120 else local[:117] + "..."


def format_report(reports: Sequence[PageReport]) -> str:
    """Page heights and findings as plain text, one line per page and one indented line per finding."""
    lines = []
    width = max((len(r.page) for r in reports), default=0)
    for report in reports:
        status = "ok" if not report.findings else f"{len(report.findings)} finding(s)"
        lines.append(f"{report.page:<{width}}  {report.height:>7,} px  {status}")
        lines += [f"    {finding.check}: {finding.detail}" for finding in report.findings]
    failed = sorted({f.check for r in reports for f in r.findings}, key=CHECKS.index)
    lines.append(f"{len(reports)} page(s); " + (f"failed checks: {', '.join(failed)}" if failed else "all checks pass"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dinoxfer_lib.checks.book", description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, nargs="?", default=Path("_build/html"),
                        help="the built book (default: %(default)s)")
    parser.add_argument("--machine-path", action="append", default=[], metavar="PATH",
                        help="a path that must not appear in any page (repeatable; the repository, runs/ and the "
                             "home folder are always included)")
    parser.add_argument("--max-height", type=int, default=MAX_PAGE_HEIGHT_PX,
                        help="page height bound in px (default: %(default)s)")
    args = parser.parse_args(argv)
    machine_paths = [Path.cwd(), Path("runs"), Path.home(), *args.machine_path]
    try:
        reports = check_book(args.html, machine_paths=machine_paths, max_height=args.max_height)
    except DinoxferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(reports))
    print(f"screenshots: {reports[0].screenshot.parent if reports else '-'}")
    return 1 if any(r.findings for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
