"""report.html in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): it loads
from file:// with no console or page errors, fetches nothing beyond file: and data:, every image decodes,
and the page renders to a screenshot that is not blank."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness.report import write_report
from tests.report_helpers import make_runs, make_sweep, scored_copy

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory, harness_cache: Path) -> Path:
    base = tmp_path_factory.mktemp("report-browser")
    runs = make_runs(base, harness_cache)
    inputs = [scored_copy(runs["accuracy"], base / "scored"), runs["fast"], runs["failed"], make_sweep(base / "sweep")]
    return write_report(inputs, base / "out")[1]


def test_report_renders_offline_in_chromium(report_html: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (test extra)")
    from PIL import Image, ImageStat

    console_errors: list[str] = []
    page_errors: list[str] = []
    failed: list[str] = []
    requested: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:80]}: {r.failure}"))
            page.on("request", lambda r: requested.append(r.url))
            page.goto(report_html.as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
            )
            alert = page.inner_text(".alert")
            tables = page.evaluate("() => document.querySelectorAll('table').length")
            png = page.screenshot(full_page=True)
        finally:
            browser.close()

    assert console_errors == [] and page_errors == [] and failed == []
    assert requested and all(u.startswith(("file:", "data:")) for u in requested), requested
    # latency plot, contact sheet, two sweep plots
    assert len(images) >= 4, images
    assert all(complete and w > 0 and h > 0 for _, complete, w, h in images), images
    assert "injected failure on call 2" in alert
    assert tables >= 8
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    (tmp_path / "report.png").write_bytes(png)
    assert shot.height > 900  # the whole page, not one empty viewport
    assert len(shot.getcolors(1 << 20) or range(1 << 20)) > 50
    assert max(ImageStat.Stat(shot).stddev) > 10
