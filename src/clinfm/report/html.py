"""One self-contained HTML page per run, written for a clinician-researcher who never saw the code.

The page is ``templates/page.html.j2`` with ``templates/report.css`` inlined; SVG figures are inline
too, and a Content-Security-Policy forbids any network load: health-data results must open offline
and never call out. Its shape, top to bottom: an optional smoke-test banner, the headline, the
caveats, the sections of the system that wrote the run (found through
:mod:`clinfm.report.systems`), and the data-processing details, folded away.

Jinja escapes every value it is given; the HTML the blocks build (already escaped there) enters as
``Markup``, here and nowhere else.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from clinfm.report import blocks, systems
from clinfm.report.folder import MIN_CLASS_PATIENTS, RunFolder, read_run_folder

__all__ = ["RunFolder", "read_run_folder", "render", "write_report"]


def write_report(run_dir: str | os.PathLike, *, min_class_patients: int = MIN_CLASS_PATIENTS) -> Path:
    """Write ``run_dir/report.html`` from the run's files and return its path.

    A binary test set with fewer than ``min_class_patients`` patients with (or without) the outcome
    is reported as one that cannot be evaluated: no winner named, no curves drawn. Written through a
    temporary file and a rename, so a crash never leaves half a page.
    """
    folder = read_run_folder(run_dir, min_class_patients=min_class_patients)
    page = render(folder)
    out = folder.path / "report.html"
    tmp = out.with_name(f".report.html.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def render(folder: RunFolder) -> str:
    """The whole page as one string."""
    system = systems.system_for(folder.kind)  # first: importing it registers its method names
    run = folder.run
    return _template().render(
        title=run["title"],
        kind=folder.kind,
        created=_when(run["created"]) if run.get("created") else None,
        version=run.get("clinfm_version"),
        folder_name=folder.path.name,
        smoke_test=_smoke_test(run.get("smoke_test")),
        headline=Markup(system.headline(folder)),
        caveats=system.caveats(folder),
        sections=Markup(system.section(folder)),
        processing=Markup(_processing(system, folder)),
        css=Markup(_css()),
    )


def headline_sentence(run_dir: str | os.PathLike, *, min_class_patients: int = MIN_CLASS_PATIENTS) -> str:
    """The report's answer in one sentence of plain text, for a list of reports (the demo's index):
    the headline's first sentence with a figure in it (its opening ones say what the run asks)."""
    folder = read_run_folder(run_dir, min_class_patients=min_class_patients)
    text = html.unescape(re.sub(r"<[^>]+>", "", systems.system_for(folder.kind).headline(folder))).strip()
    sentences = re.split(r"(?<=[.?])\s+(?=[A-Z0-9a-z])", text)
    answers = [s for s in sentences if re.search(r"\d", s) and not s.endswith("?")]
    return (answers or sentences or [""])[0]


@dataclass(frozen=True)
class IndexEntry:
    """One report on an index page: what it is, where, its headline and how long it took."""

    title: str
    report: str  # path relative to the index page
    headline: str
    seconds: float | None = None


def write_index(
    out: str | os.PathLike,
    title: str,
    entries: list[IndexEntry],
    *,
    note: str = "",
    left_out: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``out/index.html``: a self-contained page linking each report with its headline, then
    what the run left out and why (``left_out``: title, reason)."""
    page = _template("index.html.j2").render(
        title=title, note=note, entries=entries, left_out=left_out, duration=duration, css=Markup(_css())
    )
    path = Path(out) / "index.html"
    tmp = path.with_name(f".index.html.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def duration(seconds: float | None) -> str:
    """``42 s`` or ``3 min 05 s``: how long a step took, as a person reads it."""
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 90 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _processing(system, folder: RunFolder) -> str:
    """The shared data-processing details, then the system's own (its optional ``processing(folder)``:
    what its processing log recorded, such as windows prepared or notes truncated)."""
    own = getattr(system, "processing", None)
    return blocks.join(blocks.processing(folder), own(folder) if callable(own) else "")


def _smoke_test(flag: object) -> bool | str:
    """run.json's ``smoke_test``: true, or a string saying why (shown in the banner); else no banner."""
    if isinstance(flag, str):
        return flag.strip() or True
    return flag is True


def _when(created: object) -> str:
    """ISO time as ``2026-11-22 01:40 UTC``; anything else as written."""
    try:
        moment = datetime.fromisoformat(str(created))
    except ValueError:
        return str(created)
    zone = " UTC" if moment.utcoffset() is not None and not moment.utcoffset() else ""
    return moment.strftime("%Y-%m-%d %H:%M") + zone


@cache
def _template(name: str = "page.html.j2") -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("clinfm.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests, not the page
    )
    return environment.get_template(name)


@cache
def _css() -> str:
    return resources.files("clinfm.report").joinpath("templates/report.css").read_text(encoding="utf-8")
