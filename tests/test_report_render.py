"""The report as a reader's browser shows it: headless Chromium opens the page, runs its
scripts, and reports back what it rendered.

Needs a Chromium binary (Debian: `apt install chromium`); where there is none the test is
skipped and says so. The README's pip set-up does not install one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from mechlistops.cli import main

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)

# Put first in <head>: records script errors. Put last in <body>: after load (and the
# circuitsvis renders), writes what the page shows into an attribute that --dump-dom prints.
_WATCH = (
    "<script>window.__errors = [];"
    " window.onerror = (m) => { window.__errors.push(String(m)); };</script>"
)
_REPORT = """<script>window.addEventListener("load", () => setTimeout(() => {
  const views = [...document.querySelectorAll("div[id]")].filter(d => d.nextElementSibling
      && d.nextElementSibling.tagName === "SCRIPT");
  document.body.setAttribute("data-check", JSON.stringify({
    errors: window.__errors,
    images: [...document.images].map(i => [i.naturalWidth, i.naturalHeight]),
    views: views.map(d => d.querySelectorAll("*").length),
    width: document.documentElement.scrollWidth, viewport: window.innerWidth,
  }));
}, 500));</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def rendered(page) -> dict:
    """What headless Chromium shows of an HTML page: script errors, each image's decoded size,
    each attention view's element count, and the page's width against the window's."""
    watched = page.with_name("watched.html")
    watched.write_text(
        page.read_text()
        .replace("<head>", "<head>" + _WATCH, 1)
        .replace("</body>", _REPORT + "</body>")
    )
    done = _chromium("--virtual-time-budget=15000", "--dump-dom", watched.as_uri())
    found = re.search(r'data-check="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium here (Debian: apt install chromium)"
)


@needs_chromium
def test_report_renders_in_headless_chromium(tiny_run, tmp_path, capsys):
    shutil.copytree(tiny_run, tmp_path / "run")
    page = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "run"), "--out", str(page), "--limit", "60"]) == 0
    capsys.readouterr()
    html = page.read_text()
    check = rendered(page)
    assert check["errors"] == []
    assert len(check["images"]) == html.count("data:image/png;base64,") >= 5
    assert all(w > 100 and h > 100 for w, h in check["images"])  # every figure decodes
    assert len(check["views"]) == html.count("CircuitsVis.render(") == 2 * 2
    assert all(n > 10 for n in check["views"])  # circuitsvis drew every attention view
    assert check["width"] <= check["viewport"] + 1  # nothing pushes the page sideways
    shot = tmp_path / "report.png"
    _chromium("--window-size=1400,2400", f"--screenshot={shot}", page.as_uri())
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1400) and pixels.std() > 0.05  # not a blank page
