"""Every kind of run report opened in a real browser (headless Chromium through Selenium).

One tiny demo (the demo's own wiring, with a plan far smaller than ``--quick``) writes a report of
each kind: a Claim-PT label-efficiency run, a transfer run, an NER comparison, an ECG comparison and
a fusion ablation. Each page is opened from disk at 1280 px wide and must: not scroll sideways (also
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


def _ok(*args) -> None:
    from typer.testing import CliRunner

    from clinfm.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"


# Tiny runs of each kind, through the command line, trained for a step or two: the reports are what
# is checked, not the models. The CSV logger stays on so that the pages draw their training curves.
TRAIN = ("--epochs", 1, "--batch-size", 32, "--accelerator", "cpu")
TASK = "asthma_exacerbation_180d"


def _claims(out: Path, request) -> Path:
    site = request.getfixturevalue("site_icd9")
    _ok("pretrain", "--data", site, "--out", out / "ckpt", "--min-subjects", 5, *TRAIN)
    run = out / "run"
    labels = site / "tasks" / f"{TASK}.parquet"
    fractions = ("--fractions", "0.5,1", "--seeds", "0", "--methods", "pretrained,logistic_regression")
    _ok(
        "efficiency",
        "--data",
        site,
        "--labels",
        labels,
        "--from",
        out / "ckpt",
        "--out",
        run,
        *fractions,
        *TRAIN,
    )
    return run


def _transfer(out: Path, request) -> Path:
    source, target = request.getfixturevalue("site_icd9"), request.getfixturevalue("site_icd10")
    run = out / "run"
    sites = ("--source", source, "--target", target, "--labels", TASK, "--held-out", 0.4)
    _ok(
        "transfer",
        *sites,
        "--preset",
        "paper",
        "--protocols",
        "local,transfer",
        "--fractions",
        "0.5,1",
        "--seeds",
        "0",
        "--out",
        run,
        *TRAIN,
    )
    return run


def _ner(out: Path, request) -> Path:
    corpus, run = out / "corpus", out / "compare"
    _ok("ner", "synth", "--out", corpus, "--train", 40, "--dev", 12, "--test", 12)
    data = ("--train", corpus / "train", "--dev", corpus / "dev", "--test", corpus / "test")
    _ok(
        "ner",
        "compare",
        *data,
        "--models",
        "transformer-crf,feature-crf",
        "--preset",
        "small",
        "--out",
        run,
        *TRAIN,
    )
    return run


def _ecg(out: Path, request) -> Path:
    records, run = out / "synth", out / "compare"
    synth = ("--pretrain-patients", 6, "--cohort-patients", 12, "--ecgs-per-patient", "2-2")
    _ok("ecg", "synth", "--out", records, *synth, "--sampling-rate", 100, "--workers", 2)
    data = ("--records", records / "cohort", "--pretrain-records", records / "pretrain")
    labels = ("--labels", records / "cohort" / "labels.csv", "--label", "af", "--label", "age")
    probes = ("--methods", "pclr,scratch,handcrafted", "--sizes", "4,all", "--seeds", 1, "--scratch-steps", 2)
    _ok("ecg", "compare", *data, *labels, *probes, "--out", run, *TRAIN)
    return run


def _fuse(out: Path, request) -> Path:
    site, run = request.getfixturevalue("site_icd9"), out / "ablation"
    _ok(
        "fuse", "ablate", "--data", site, "--variants", "labs,full", "--preset", "small", "--out", run, *TRAIN
    )
    return run


BUILDERS = {"claims": _claims, "transfer": _transfer, "ner": _ner, "ecg": _ecg, "fuse": _fuse}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """``reports(kind, request)``: the report.html of a tiny run of ``kind``, built once per module."""
    built: dict[str, Path] = {}

    def report(kind: str, request) -> Path:
        if kind not in built:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("CLINFM_CACHE", str(tmp_path_factory.getbasetemp() / "embedding-cache"))
                run = BUILDERS[kind](tmp_path_factory.mktemp(f"browser-{kind}"), request)
            built[kind] = run / "report.html"
        assert built[kind].is_file(), f"the {kind} run wrote no report at {built[kind]}"
        return built[kind]

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
  summary: (document.querySelector('.summary') || {innerText: ''}).innerText.trim(),
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


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_report_renders(kind: str, reports, browser, request) -> None:
    """No console error, every figure drawn, a headline and the Content-Security-Policy."""
    seen = _open(browser, reports(kind, request))
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors on the {kind} report: {errors}"

    browser.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; });")
    for figure in browser.execute_script(MEASURE)["figures"]:  # every <details> open: hidden ones too
        assert figure["width"] > 0 and figure["height"] > 0, f"{kind}: figure {figure['name']!r} has no size"
        assert figure["drawn"] > 0, f"{kind}: figure {figure['name']!r} draws nothing"

    headline = seen["headline"]
    if headline is None:
        # TODO(restructure): today's pages open with <p class="summary">; once the report is a template
        # whose first block is <section id="headline" class="headline">, delete this fallback.
        headline = seen["summary"]
    assert headline, f"the {kind} report has no headline (#headline)"

    assert len(seen["csp"]) == 1 and "default-src 'none'" in seen["csp"][0], seen["csp"]


# Found by this test on the reports of 2026-12: the NER comparison's results table is some 850 px wider
# than a 1280 px window, with any number of models. (The demo's transfer, ECG and fusion tables, with
# every protocol, method or variant, overflow too, by 50 to 250 px; the tiny runs here have fewer
# columns and fit.) Strict: once the table fits, or scrolls in a box of its own, the mark must go.
# TODO(restructure): the template's tables should fit; remove this mark with it.
WIDE_TABLE = pytest.mark.xfail(strict=True, reason="its results table is wider than a 1280 px window")
FITS = [pytest.param(kind, marks=WIDE_TABLE) if kind == "ner" else kind for kind in BUILDERS]


@pytest.mark.parametrize("kind", FITS)
def test_report_fits_the_window(kind: str, reports, browser, request) -> None:
    """At 1280 px the page does not scroll sideways, nor once every <details> is opened."""
    seen = _open(browser, reports(kind, request))
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
