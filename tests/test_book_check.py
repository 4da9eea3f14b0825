"""The book checker reads pages in headless Chromium and finds what a reader would see wrong; the smoke book passes.

Skipped, with the reason in pytest's summary, where Chromium or Playwright is missing; `make check-book` runs the
checker on a built book regardless.
"""

from pathlib import Path

import pytest

from dinoxfer_lib.browser import unavailable_reason
from dinoxfer_lib.checks.book import CHECKS, book_pages, check_book, format_report
from dinoxfer_lib.errors import StoreError
from dinoxfer_lib.pl.explorer import embedding_explorer

REPO = Path(__file__).resolve().parents[1]
BROWSER_MISSING = unavailable_reason()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"browser check skipped: {BROWSER_MISSING}")

MACHINE_PATH = "/srv/build-host/dinoxfer/runs"
PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; }} article.bd-article {{ width: 600px; margin-left: 100px; }}
</style></head><body><main><article class="bd-article">
<p>A chapter.</p><img src="ok.png" alt="a figure">
<div style="overflow-x: auto"><table style="width: 500px"><tr><td>a table that fits its box</td></tr></table></div>
<details><summary>more</summary><pre style="overflow-x: auto; white-space: pre-wrap">a long line that wraps
</pre></details>
{body}
</article></main></body></html>"""
BAD_BODY = f"""
<div style="width: 900px">a figure wider than the column</div>
<div style="overflow-x: auto"><table style="width: 1200px"><tr><td>a wide table in its own scroll box</td></tr>
</table></div>
<img src="missing.png"><img src="https://example.org/remote.png">
<script>console.error("plot failed");</script>
<div class="cell_output"><div class="output stderr"><pre>UserWarning: something</pre></div></div>
<p>Artifacts written to {MACHINE_PATH}/smoke.</p>
<pre>DINO vit_micro:  40%|████      | 2/5 [00:00&lt;00:00,  4.59step/s]</pre>
<p>[IPKernelApp] WARNING | Kernel is running over TCP without encryption.</p>
<div style="height: 3000px"></div>
"""
# a 1x1 PNG
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                      "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e3f6"
                      "5f2e0000000049454e44ae426082")


@pytest.fixture
def tiny_book(tmp_path, tiny_embedding_set):
    html = tmp_path / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/good.html" />')
    (html / "_static" / "asset.html").write_text("not a page")
    (html / "book" / "ok.png").write_bytes(PIXEL)
    (html / "book" / "good.html").write_text(PAGE.format(body="<p>Nothing wrong here.</p>"))
    adata, _ = tiny_embedding_set(10)
    without_thumbnails = embedding_explorer(adata)._repr_html_()
    (html / "book" / "bad.html").write_text(PAGE.format(body=BAD_BODY + without_thumbnails))
    return html


def test_pages_are_the_html_files_outside_assets_and_redirects(tiny_book, tmp_path):
    assert [p.relative_to(tiny_book).as_posix() for p in book_pages(tiny_book)] == ["book/bad.html", "book/good.html"]
    with pytest.raises(StoreError, match="dinoxfer book"):
        book_pages(tmp_path / "nothing")


@needs_browser
def test_checker_finds_every_kind_of_problem_and_passes_a_clean_page(tiny_book):
    reports = {r.page: r for r in check_book(tiny_book, machine_paths=[MACHINE_PATH], max_height=2000)}
    bad, good = reports["book/bad.html"], reports["book/good.html"]
    assert good.findings == (), format_report([good])
    assert {f.check for f in bad.findings} == set(CHECKS), format_report([bad])
    details = "\n".join(f"{f.check}: {f.detail}" for f in bad.findings)
    assert "missing.png" in details and "example.org/remote.png" in details and "plot failed" in details
    assert "explorer 1: the tooltip of oc_0000 shows no image" in details
    assert "too wide: <div> 300 px past the column" in details
    assert "cut off: <table> 600 px hidden to the right" in details  # it scrolls in its own box: still cut off
    assert bad.height > 2000 and good.height < 2000
    for report in (bad, good):
        assert report.screenshot.is_file() and report.screenshot.read_bytes()[:4] == b"\x89PNG"
    assert good.screenshot.parent == tiny_book.parent / "screenshots"
    assert "2 page(s); failed checks: " + ", ".join(CHECKS) in format_report(list(reports.values()))


@pytest.fixture(scope="module")
def smoke_book_reports(smoke_book, smoke_runs):
    runs, _, _ = smoke_runs
    reports = check_book(smoke_book, machine_paths=[runs, REPO, Path.home(), smoke_book.parent.parent])
    print(format_report(reports))
    return reports


@needs_browser
@pytest.mark.slow
@pytest.mark.parametrize("check", CHECKS)
def test_smoke_book_pages_pass_in_a_browser(smoke_book_reports, check):
    failing = [r for r in smoke_book_reports if r.failed(check)]
    assert not failing, format_report(failing)
