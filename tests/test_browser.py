"""Every kind of run report opened in a real browser (headless Chromium through Selenium).

The session's ``clinfm demo --quick`` run (tests/conftest.py) wrote a report of each kind: Claim-PT
pre-training and label efficiency, transfer, an NER comparison, an ECG comparison, a fusion ablation,
and the index of them all. Each page is opened from disk at 1280 px wide and must: not scroll sideways (also
with every <details> opened), log no console error (a Content-Security-Policy violation is one),
draw every SVG figure at a non-zero size with at least one drawn path or line, open with a headline,
and carry its Content-Security-Policy.

Skipped, with the reason, where Chromium, chromedriver or Selenium is missing (``.ci/run`` installs
Debian's chromium and chromium-driver when they are absent).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CLINFM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("CLINFM_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)
WIDTH, HEIGHT = 1280, 900
PAGE_LOAD_S = 120  # a loaded 2-core CI machine can be slow to lay out a page of inline SVG


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not Path(path).is_file():
            return f"{name} not found at {path} (apt-get install chromium chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def chrome():
    """Headless Chromium at 1280x900, its console logged, Selenium Manager kept offline."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never download a driver: the paths are given
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_S)
    driver.set_script_timeout(PAGE_LOAD_S)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    try:
        yield driver
    finally:
        driver.quit()


REPORTS = (
    "index.html",
    "claims/pretrained/report.html",
    "claims/asthma_exacerbation_180d/report.html",
    "transfer/asthma_exacerbation_180d/report.html",
    "ner/compare/report.html",
    "ecg/compare/report.html",
    "fuse/ablation/report.html",
)


@pytest.fixture(scope="module")
def reports(quick_demo):
    """``reports(name)``: a page of the shared ``clinfm demo --quick`` run (tests/conftest.py)."""
    demo, result = quick_demo
    result.ok()

    def report(name: str) -> Path:
        page = demo / name
        assert page.is_file(), f"the demo wrote no {name}"
        return page

    return report


# Everything the page is checked for, measured in one script.
MEASURE = """
const root = document.documentElement;
const figures = [...document.querySelectorAll('svg')].filter(svg => !svg.parentElement.closest('svg'));
const drawn = svg => [...svg.querySelectorAll('path, line, polyline, polygon')].filter(
  el => !el.closest('defs, clipPath, marker, pattern, mask')
    && (el.tagName !== 'path' || (el.getAttribute('d') || '').trim().length > 0)
).length + svg.querySelectorAll('use').length;
const headline = document.querySelector('#headline');
return {
  width: window.innerWidth,
  scrollWidth: root.scrollWidth,
  headline: headline ? headline.innerText.trim() : null,
  csp: [...document.querySelectorAll('meta[http-equiv="Content-Security-Policy"]')]
    .map(m => m.getAttribute('content')),
  figures: figures.map((svg, i) => {
    const box = svg.getBoundingClientRect();
    const caption = (svg.closest('figure')?.querySelector('figcaption')?.innerText || '').trim();
    return {name: caption || 'svg #' + (i + 1), width: box.width, height: box.height, drawn: drawn(svg)};
  }),
  wide: [...document.body.querySelectorAll('*')]
    .filter(el => el.getBoundingClientRect().right > window.innerWidth + 0.5)
    .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')),
};
"""


def _open(browser, page: Path) -> dict:
    browser.get_log("browser")  # drop what an earlier page logged
    browser.get(page.resolve().as_uri())
    return browser.execute_script(MEASURE)


@pytest.mark.parametrize("kind", REPORTS)
def test_report_renders(kind: str, reports, browser) -> None:
    """No console error, every figure drawn, a headline and the Content-Security-Policy."""
    seen = _open(browser, reports(kind))
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors on the {kind} report: {errors}"

    browser.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; });")
    for figure in browser.execute_script(MEASURE)["figures"]:  # every <details> open: hidden ones too
        assert figure["width"] > 0 and figure["height"] > 0, f"{kind}: figure {figure['name']!r} has no size"
        assert figure["drawn"] > 0, f"{kind}: figure {figure['name']!r} draws nothing"

    assert seen["headline"], f"the {kind} report has no headline (#headline)"

    assert len(seen["csp"]) == 1 and "default-src 'none'" in seen["csp"][0], seen["csp"]


@pytest.mark.parametrize("kind", REPORTS)
def test_report_fits_the_window(kind: str, reports, browser) -> None:
    """At 1280 px the page does not scroll sideways, nor once every <details> is opened."""
    seen = _open(browser, reports(kind))
    assert seen["width"] == WIDTH
    assert seen["scrollWidth"] <= seen["width"], (
        f"the {kind} report scrolls sideways ({seen['scrollWidth']} px > {seen['width']} px): {seen['wide']}"
    )
    browser.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; });")
    opened = browser.execute_script(MEASURE)
    assert opened["scrollWidth"] <= opened["width"], (
        f"with its details opened, the {kind} report scrolls sideways "
        f"({opened['scrollWidth']} px > {opened['width']} px): {opened['wide']}"
    )
