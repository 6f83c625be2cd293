"""``clinfm demo``: every part of clinfm at work on embedded synthetic data.

For now: two synthetic sites that differ in coding system (ICD-9-CM vs ICD-10-CM), population and
habits, each validated and described. Later systems add their training and reports here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clinfm.events.describe import DatasetDescription, describe
from clinfm.events.synth import synthesize
from clinfm.events.validate import ValidationReport, validate
from clinfm.io import atomic_directory, write_json_atomic

DEMO_SITES = (("site_a", "icd9"), ("site_b", "icd10"))


@dataclass
class DemoSite:
    name: str
    coding: str
    path: Path
    description: DatasetDescription
    report: ValidationReport


@dataclass
class DemoResult:
    out: Path
    sites: list[DemoSite]
    summary_path: Path


def demo(
    out: str | os.PathLike = "clinfm-demo", *, patients: int = 2000, seed: int = 0, overwrite: bool = False
) -> DemoResult:
    """Synthesize, validate and describe two sites under ``out``; write ``summary.json`` there."""
    out = Path(out)
    sites = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for name, coding in DEMO_SITES:
            synthesize(tmp / name, patients=patients, site=name, coding=coding, seed=seed)
            report = validate(tmp / name)
            report.raise_for_errors()
            sites.append(DemoSite(name, coding, out / name, describe(tmp / name), report))
        summary = {
            site.name: {"coding": site.coding, "warnings": site.report.warnings, **site.description.to_dict()}
            for site in sites
        }
        write_json_atomic(tmp / "summary.json", summary)
    return DemoResult(out=out, sites=sites, summary_path=out / "summary.json")
