"""Screenshots of the top of each demo report, for the docs.

python benchmarks/report_screenshots.py DEMO [--out docs/img] [--scale 0.75]

DEMO is a folder written by ``clinfm demo`` (``--quick`` is enough): every report it holds
(claims/<task>, transfer/<task>, ner/compare, ecg/compare, fuse/ablation) is opened in headless
Chromium at a 1280x900 viewport and its first screen saved as ``<out>/<section>-<run>.png``
(``claims-asthma_exacerbation_180d.png``, ``ner-compare.png``, ...). The page is laid out at 1280 CSS
pixels and drawn at ``--scale`` device pixels per CSS pixel (960x675 by default), then reduced to a
256-colour palette when Pillow is installed, which keeps each file well under 150 KB.

Needs Selenium (the ``dev`` extra) and Debian's ``chromium`` and ``chromium-driver`` (or set
CLINFM_CHROMIUM / CLINFM_CHROMEDRIVER); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
from pathlib import Path

WIDTH, HEIGHT = 1280, 900
REPORTS = ("claims/*/report.html", "transfer/*/report.html", "ner/compare/report.html",
           "ecg/compare/report.html", "fuse/ablation/report.html")  # fmt: skip


def chrome(scale: float):
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = os.environ.get("CLINFM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = os.environ.get("CLINFM_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
                     f"--force-device-scale-factor={scale}"):  # fmt: skip
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(120)
    # The window's size is not quite the viewport's: make the viewport itself 1280x900.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": scale, "mobile": False},
    )
    return browser


def compress(png: bytes) -> bytes:
    """A 256-colour palette PNG when Pillow is installed; the screenshot as it is otherwise."""
    try:
        from PIL import Image
    except ImportError:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a folder written by clinfm demo")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--scale", type=float, default=0.75, help="device pixels per CSS pixel")
    args = parser.parse_args()
    pages = sorted(page for pattern in REPORTS for page in args.demo.glob(pattern))
    if not pages:
        print(f"no reports under {args.demo} (expected a clinfm demo folder)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    browser = chrome(args.scale)
    try:
        for page in pages:
            name = "-".join(page.parent.relative_to(args.demo).parts)
            browser.get(page.resolve().as_uri())
            png = compress(browser.get_screenshot_as_png())
            target = args.out / f"{name}.png"
            target.write_bytes(png)
            print(f"{target}  {len(png) / 1024:.0f} KB")
    finally:
        browser.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
