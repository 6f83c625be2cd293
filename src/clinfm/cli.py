"""The clinfm command line: a thin layer over the Python API (``import clinfm``).

Bad input ends with one line on stderr and exit code 2; set CLINFM_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

import clinfm
from clinfm import progress
from clinfm.errors import InputError
from clinfm.events.meds import DEFAULT_SUBJECTS_PER_SHARD, TARGET_EVENTS_PER_SHARD
from clinfm.vocab import DEFAULT_MIN_SUBJECTS

app = typer.Typer(
    help="Pre-train models on large unlabeled health data; transfer them to small cohorts and other sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
convert_app = typer.Typer(
    help="Convert source data (MIMIC-III, OMOP CDM, your own CSV) to MEDS.", no_args_is_help=True
)
app.add_typer(convert_app, name="convert")

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)
EXIT_BAD_INPUT = 2


def _user_facing(command):
    """Run a command with progress bars on; turn bad input into one line and exit code 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        import polars as pl
        import pyarrow as pa

        progress.enable(sys.stderr.isatty())
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            return command(*args, **kwargs)
        except (InputError, pl.exceptions.PolarsError, pa.ArrowException, OSError) as err:
            if os.environ.get("CLINFM_DEBUG"):
                raise
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            error_console.print(f"[bold red]error:[/] {message}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run


SHARD_OPTION = typer.Option(
    None,
    min=1,
    help=f"Subjects per output shard (memory follows the shard). Default: about {TARGET_EVENTS_PER_SHARD:,} "
    f"events per shard, at most {DEFAULT_SUBJECTS_PER_SHARD:,} subjects.",
)


class Coding(StrEnum):
    icd9 = "icd9"
    icd10 = "icd10"


class SynthFormat(StrEnum):
    meds = "meds"
    mimic3 = "mimic3"


@app.command()
@_user_facing
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to create for the MEDS dataset."),
    patients: int = typer.Option(1000, help="Number of children."),
    site: str = typer.Option("site_a", help="Site name; a site's habits and population derive from it."),
    coding: Coding = typer.Option(Coding.icd9, help="Diagnosis coding system of the site."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same cohort."),
    years: float = typer.Option(4.0, help="Length of the observation window in years."),
    format: SynthFormat = typer.Option(
        SynthFormat.meds, "--format", help="mimic3 also writes MIMIC-III CSVs to OUT/mimic3."
    ),
    overwrite: bool = typer.Option(
        False, help="Replace OUT if it exists (only once the new one is complete)."
    ),
):
    """Synthesize a pediatric claims cohort with labs, notes and built-in tasks, as MEDS."""
    path = clinfm.synthesize(
        out,
        patients=patients,
        site=site,
        coding=coding.value,
        seed=seed,
        years=years,
        mimic3=format == SynthFormat.mimic3,
        overwrite=overwrite,
    )
    console.print(f"wrote {path}")


@convert_app.command("mimic3")
@_user_facing
def convert_mimic3(
    src: Path = typer.Argument(
        ..., help="Folder with PATIENTS, ADMISSIONS, DIAGNOSES_ICD, ... (.csv or .csv.gz)."
    ),
    out: Path = typer.Argument(..., help="Folder to create for the MEDS dataset."),
    subjects_per_shard: int | None = SHARD_OPTION,
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Convert MIMIC-III tables to MEDS."""
    with progress.status(f"Converting MIMIC-III tables in {src}"):
        path = clinfm.convert_mimic3(src, out, subjects_per_shard=subjects_per_shard, overwrite=overwrite)
    console.print(f"wrote {path}")


@convert_app.command("omop")
@_user_facing
def convert_omop(
    src: Path = typer.Argument(..., help="Folder with OMOP CDM 5.3/5.4 CSV tables (PERSON, ..., CONCEPT)."),
    out: Path = typer.Argument(..., help="Folder to create for the MEDS dataset."),
    subjects_per_shard: int | None = SHARD_OPTION,
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Convert OMOP CDM tables to MEDS."""
    with progress.status(f"Converting OMOP tables in {src}"):
        path = clinfm.convert_omop(src, out, subjects_per_shard=subjects_per_shard, overwrite=overwrite)
    console.print(f"wrote {path}")


@convert_app.command("csv")
@_user_facing
def convert_csv(
    src: Path = typer.Argument(..., help="Folder with the CSV files the mapping names."),
    out: Path = typer.Argument(..., help="Folder to create for the MEDS dataset."),
    mapping: Path = typer.Option(
        ..., "--mapping", help="YAML file describing the tables (see docs/data.md)."
    ),
    subjects_per_shard: int | None = SHARD_OPTION,
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Convert your own CSV extract to MEDS, as a YAML mapping describes it."""
    with progress.status(f"Converting {src}"):
        path = clinfm.convert_csv(
            src, out, mapping, subjects_per_shard=subjects_per_shard, overwrite=overwrite
        )
    console.print(f"wrote {path}")


@app.command()
@_user_facing
def validate(
    meds_dir: Path = typer.Argument(..., help="A MEDS dataset folder."),
    strict: bool = typer.Option(
        False, help="Treat warnings (unknown vocabularies, invalid ICD codes) as errors."
    ),
):
    """Check a MEDS dataset against the MEDS schemas and ordering rules."""
    with progress.status(f"Validating {meds_dir}"):
        report = clinfm.validate(meds_dir)
    if not strict:
        for warning in report.warnings:
            error_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    problems = report.errors + (report.warnings if strict else [])
    for problem in problems:
        error_console.print(f"[bold red]error:[/] {problem}", highlight=False)
    if problems:
        raise typer.Exit(EXIT_BAD_INPUT)
    version = f" (meds_version {report.meds_version})" if report.meds_version else ""
    console.print(f"{meds_dir}: valid MEDS{version}")


def print_description(description: clinfm.DatasetDescription) -> None:
    """Render a dataset description as rich tables."""
    overview = Table(title=description.name or "MEDS dataset", show_header=False)
    for label, value in (
        ("subjects", f"{description.subjects:,}"),
        ("events", f"{description.events:,}"),
        ("distinct codes", f"{description.distinct_codes:,}"),
        (
            f"codes of < {DEFAULT_MIN_SUBJECTS} patients (kept out of vocabularies)",
            f"{description.rare_codes:,}",
        ),
        ("time span", f"{description.first_time} to {description.last_time}"),
        ("events per subject (median)", f"{description.events_per_subject_median:,.0f}"),
        ("events with a numeric value", f"{description.events_with_numeric_value:,}"),
        ("events with a text value", f"{description.events_with_text_value:,}"),
        ("splits", ", ".join(f"{k} {v:,}" for k, v in description.splits.items()) or "none"),
    ):
        overview.add_row(label, value)
    console.print(overview)
    vocabularies = Table(title="Codes by vocabulary")
    for column in ("vocabulary", "codes", "events"):
        vocabularies.add_column(column, justify="left" if column == "vocabulary" else "right")
    for row in description.vocabularies:
        vocabularies.add_row(row["vocabulary"], f"{row['codes']:,}", f"{row['events']:,}")
    console.print(vocabularies)
    if description.tasks:
        tasks = Table(title="Tasks (label files)")
        for column in ("task", "kind", "samples", "subjects", "prevalence / classes"):
            tasks.add_column(column, justify="left" if column in ("task", "kind") else "right")
        for task in description.tasks:
            spread = (
                f"{task.prevalence:.1%}" if task.prevalence is not None else f"{task.classes or 0:,} classes"
            )
            tasks.add_row(task.name, task.kind, f"{task.samples:,}", f"{task.subjects:,}", spread)
        console.print(tasks)


@app.command()
@_user_facing
def describe(
    meds_dir: Path = typer.Argument(..., help="A MEDS dataset folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Subjects, events, codes by vocabulary, time span, splits and label prevalence of a MEDS dataset."""
    with progress.status(f"Describing {meds_dir}"):
        description = clinfm.describe(meds_dir)
    if as_json:
        console.print_json(json.dumps(description.to_dict()))
    else:
        print_description(description)


@app.command()
@_user_facing
def demo(
    out: Path = typer.Option(Path("clinfm-demo"), "--out", help="Folder for the demo's outputs."),
    patients: int = typer.Option(2000, help="Children per synthetic site."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Synthesize two sites (ICD-9-CM and ICD-10-CM), validate and describe them."""
    result = clinfm.demo(out, patients=patients, overwrite=overwrite)
    for site in result.sites:
        console.rule(f"{site.name}: {site.path}")
        print_description(site.description)
        console.print(f"validation: valid MEDS, {len(site.report.warnings)} warning(s)")
    console.rule("How the sites differ")
    console.print(_site_comparison(result.sites))
    console.print(f"\nwrote {result.out} (summary in {result.summary_path})")


def _site_comparison(sites) -> Table:
    """Coding system, utilisation and label prevalence side by side: the shift transfer must bridge."""
    table = Table()
    table.add_column("")
    for site in sites:
        table.add_column(site.name, justify="right")
    rows = {
        "coding system": [{"icd9": "ICD-9-CM", "icd10": "ICD-10-CM"}[site.coding] for site in sites],
        "events per child (median)": [f"{s.description.events_per_subject_median:,.0f}" for s in sites],
        "distinct codes": [f"{s.description.distinct_codes:,}" for s in sites],
    }
    for task in sites[0].description.tasks:
        if task.prevalence is not None:
            found = [{t.name: t for t in s.description.tasks}.get(task.name) for s in sites]
            rows[task.name] = [f"{t.prevalence:.1%}" if t is not None else "-" for t in found]
    for label, values in rows.items():
        table.add_row(label, *values)
    return table
