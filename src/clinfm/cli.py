"""The clinfm command line: a thin layer over the Python API (``import clinfm``).

Bad input ends with one line on stderr and exit code 2; set CLINFM_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

import clinfm
from clinfm import progress
from clinfm.cli_common import (
    EXIT_BAD_INPUT,
    OVERWRITE_OPTION,
    RESUME_OPTION,
    console,
    error_console,
    training_options,
    training_settings,
    user_facing,
)
from clinfm.concepts.cli import concepts_app
from clinfm.ecg.cli import ecg_app
from clinfm.errors import InputError
from clinfm.events.meds import DEFAULT_SUBJECTS_PER_SHARD, TARGET_EVENTS_PER_SHARD
from clinfm.fuse.cli import fuse_app
from clinfm.ner.cli import ner_app
from clinfm.vocab import DEFAULT_MIN_SUBJECTS
from clinfm.vocab.vocabulary import MIN_SAVED_SUBJECTS

app = typer.Typer(
    help="Pre-train models on large unlabeled health data; transfer them to small cohorts and other sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
convert_app = typer.Typer(
    help="Convert source data (MIMIC-III, OMOP CDM, your own CSV) to MEDS.", no_args_is_help=True
)


@app.callback()
def main(
    allow_download: bool = typer.Option(
        False,
        "--allow-download",
        help="Let model ids be fetched from the Hugging Face hub (clinfm never goes online otherwise).",
    ),
):
    """Options that apply to every command."""
    if allow_download:
        from clinfm.pretrained import ALLOW_DOWNLOAD

        os.environ[ALLOW_DOWNLOAD] = "1"


app.add_typer(convert_app, name="convert")
app.add_typer(concepts_app, name="concepts")
app.add_typer(ner_app, name="ner")
app.add_typer(ecg_app, name="ecg")
app.add_typer(fuse_app, name="fuse")

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
@user_facing
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
@user_facing
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
@user_facing
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
@user_facing
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
@user_facing
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
@user_facing
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


class Preset(StrEnum):
    paper = "paper"
    modern = "modern"


class CodeEmbedding(StrEnum):
    id = "id"
    frozen = "frozen"
    projected = "projected"
    finetuned = "finetuned"


class TransferPreset(StrEnum):
    claimpt = "claimpt"
    paper = "paper"


class Missing(StrEnum):
    absent = "absent"
    zero = "zero"


class Strategy(StrEnum):
    full = "full"
    probe = "probe"
    llrd = "llrd"


DATA_OPTION = typer.Option(..., "--data", help="A MEDS dataset folder.")
LABELS_OPTION = typer.Option(
    ..., "--labels", help="A MEDS label file (subject_id, prediction_time, boolean_value)."
)
FROM_OPTION = typer.Option(..., "--from", help="A Claim-PT checkpoint folder (from clinfm pretrain).")
STRATEGY_OPTION = typer.Option(
    Strategy.full,
    help="How the pre-trained model is fine-tuned: full (every layer, the paper), probe (encoder "
    "frozen, the classification head trained), llrd (layer-wise learning-rate decay).",
)
ADAPT_OPTION = typer.Option(
    False,
    help="The data come from another site than the checkpoint's: rebuild the code table for its codes "
    "(from their descriptions with a concept-embedding checkpoint; at random with code ids).",
)


@app.command()
@user_facing
@training_options
def pretrain(
    data: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="Checkpoint folder to create."),
    preset: Preset = typer.Option(
        Preset.paper, help="paper: the published Claim-PT; modern: larger, pre-LN."
    ),
    min_subjects: int = typer.Option(
        DEFAULT_MIN_SUBJECTS,
        min=MIN_SAVED_SUBJECTS,
        help="A code enters the vocabulary only if this many patients have it.",
    ),
    split_seed: int | None = typer.Option(
        None, help="Split patients by a stable hash with this seed instead of the dataset's splits."
    ),
    held_out: float = typer.Option(0.1, help="With --split-seed: share of patients held out for testing."),
    code_embedding: CodeEmbedding = typer.Option(
        CodeEmbedding.id,
        help="id: a learned vector per code (the paper); frozen / projected / finetuned: vectors from the "
        "codes' descriptions through a text encoder, so another site's codes can be read.",
    ),
    encoder: str | None = typer.Option(
        None, help="Text encoder for the concept modes (default: the embedded all-MiniLM-L6-v2)."
    ),
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Pre-train Claim-PT on the train split's patients (no labels needed).

    The checkpoint remembers the split, so fine-tuning tests on patients pre-training never saw.
    """
    from clinfm.claims import recipes
    from clinfm.events.splits import SplitPolicy

    settings = training_settings(recipes.PRETRAIN[preset.value], **training)
    policy = SplitPolicy() if split_seed is None else SplitPolicy(seed=split_seed, held_out=held_out)
    path = recipes.pretrain(
        data,
        out,
        preset=preset.value,
        train=settings,
        min_subjects=min_subjects,
        splits=policy,
        code_embedding=code_embedding.value,
        encoder=encoder,
        overwrite=overwrite,
        resume=resume,
    )
    from clinfm.train.engine import is_global_zero

    if is_global_zero():  # under DDP every device runs this command; one reports
        console.print(f"wrote {path} (report: {path / 'report.html'})")


def _method_settings(epochs, batch_size, lr, strategy: Strategy | None = None, **training):
    from clinfm.claims import recipes

    finetune = training_settings(recipes.FINETUNE, epochs, batch_size, lr, **training)
    if strategy is not None:
        finetune = finetune.replace(strategy=strategy.value)
    scratch = training_settings(recipes.FROM_SCRATCH, epochs, batch_size, None, **training)
    return recipes.MethodSettings(finetune, scratch)


@app.command()
@user_facing
@training_options
def finetune(
    data: Path = DATA_OPTION,
    labels: Path = LABELS_OPTION,
    from_checkpoint: Path = FROM_OPTION,
    out: Path = typer.Option(..., "--out", help="Run folder to create."),
    strategy: Strategy = STRATEGY_OPTION,
    baselines: bool = typer.Option(True, help="Also train the cold start, GRU and code-count baselines."),
    adapt: bool = ADAPT_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Fine-tune a pre-trained model on a labelled task; compare with baselines on held-out patients."""
    from clinfm.claims import recipes

    settings = _method_settings(strategy=strategy, **training)
    path = recipes.finetune(
        data,
        labels,
        from_checkpoint,
        out,
        seed=training["seed"],
        strategy=strategy.value,
        baselines=baselines,
        settings=settings,
        overwrite=overwrite,
        adapt=adapt,
        resume=resume,
    )
    _print_metrics(path)


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--{name} takes comma-separated numbers, e.g. 0.1,0.5,1") from None


def _integers(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--{name} takes comma-separated whole numbers, e.g. 0,1,2") from None


@app.command()
@user_facing
@training_options
def efficiency(
    data: Path = DATA_OPTION,
    labels: Path = LABELS_OPTION,
    from_checkpoint: Path = FROM_OPTION,
    out: Path = typer.Option(..., "--out", help="Run folder to create."),
    fractions: str = typer.Option("0.05,0.1,0.25,0.5,1", help="Shares of the train labels to train on."),
    seeds: str = typer.Option("0,1,2", help="Seeds per fraction (subsample and initialisation)."),
    methods: str = typer.Option(
        "pretrained,cold_start,gru,logistic_regression,gradient_boosting", help="Methods to compare."
    ),
    strategy: Strategy = STRATEGY_OPTION,
    adapt: bool = ADAPT_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Label-efficiency curves: pre-trained vs cold start vs baselines at several label fractions."""
    from clinfm.claims import recipes

    path = recipes.efficiency(
        data,
        labels,
        from_checkpoint,
        out,
        fractions=_floats(fractions, "fractions"),
        seeds=_integers(seeds, "seeds"),
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        settings=_method_settings(strategy=strategy, **training),
        overwrite=overwrite,
        adapt=adapt,
        resume=resume,
    )
    _print_metrics(path)


@app.command()
@user_facing
@training_options
def nextvisit(
    data: Path = DATA_OPTION,
    from_checkpoint: Path = FROM_OPTION,
    out: Path = typer.Option(..., "--out", help="Run folder to create."),
    max_train: int = typer.Option(10_000, min=1, help="Train patients used for tuning (the paper used 10k)."),
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Next-visit category prediction (Recall@5/10/30) on held-out patients, as the paper's autoDiag."""
    from clinfm.claims import recipes

    path = recipes.next_visit(
        data,
        from_checkpoint,
        out,
        max_train=max_train,
        seed=training["seed"],
        settings=_method_settings(**training),
        overwrite=overwrite,
        resume=resume,
    )
    _print_metrics(path)


@app.command("transfer")
@user_facing
@training_options
def transfer_command(
    source: Path = typer.Option(..., "--source", help="Site A: the MEDS dataset a model is trained at."),
    target: Path = typer.Option(..., "--target", help="Site B: the MEDS dataset it should help."),
    labels: str = typer.Option(
        ..., "--labels", help="Task both sites have (tasks/<name>.parquet) or a path in each."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder to create."),
    source_labels: Path | None = typer.Option(None, help="The source's label file, if not under --source."),
    target_labels: Path | None = typer.Option(None, help="The target's label file, if not under --target."),
    preset: TransferPreset = typer.Option(
        TransferPreset.claimpt,
        help="claimpt: Claim-PT on visit sequences; paper: the paper's 1-D CNN over findings tables.",
    ),
    encoder: list[str] | None = typer.Option(
        None,
        help="Text encoder for the concept embeddings (default MiniLM); repeat to compare several.",
    ),
    code_embedding: CodeEmbedding = typer.Option(
        CodeEmbedding.projected, help="claimpt: how the text vectors are read (frozen, projected, finetuned)."
    ),
    max_findings: int = typer.Option(100, min=1, help="paper: findings per table (the most common codes)."),
    missing: Missing = typer.Option(
        Missing.absent, help="paper: a missing finding reads as absent (the paper's) or as zeros."
    ),
    finding_codes: str | None = typer.Option(
        None, help="paper: only codes with these prefixes are findings, e.g. ICD9CM/,ICD10CM/."
    ),
    fractions: str = typer.Option("0.1,0.25,0.5,1", help="Shares of the target's training labels."),
    seeds: str = typer.Option("0,1,2", help="Seeds per share."),
    protocols: str = typer.Option("local,shared,transfer,transfer_head,pooled", help="Protocols to run."),
    held_out: float | None = typer.Option(
        None, help="Hold out this share of each site's patients instead of its splits."
    ),
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Cross-site transfer: local / shared / transfer / pooled, code ids vs concept embeddings."""
    from clinfm.claims import recipes
    from clinfm.claims.cross_site import transfer
    from clinfm.concepts.cnn import PAPER_TRAINING

    if code_embedding == CodeEmbedding.id:
        raise InputError("--code-embedding id is the code-id arm every run has; choose a text mode")
    path = transfer(
        source,
        target,
        labels,
        out,
        preset=preset.value,
        encoders=tuple(encoder or (None,)),
        code_embedding=code_embedding.value,
        max_findings=max_findings,
        missing=missing.value,
        finding_prefixes=tuple(c.strip() for c in finding_codes.split(",") if c.strip())
        if finding_codes
        else None,
        source_labels=source_labels,
        target_labels=target_labels,
        fractions=_floats(fractions, "fractions"),
        seeds=_integers(seeds, "seeds"),
        protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()),
        settings=training_settings(PAPER_TRAINING if preset == "paper" else recipes.FROM_SCRATCH, **training),
        held_out=held_out,
        overwrite=overwrite,
    )
    _print_metrics(path)


@app.command()
@user_facing
def predict(
    from_model: Path = typer.Option(..., "--from", help="A fine-tuning run folder (or its model/ folder)."),
    data: Path = DATA_OPTION,
    labels: Path = typer.Option(..., "--labels", help="Label file: the samples to predict."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write (meds-evaluation columns)."),
    overwrite: bool = OVERWRITE_OPTION,
):
    """Predict a fine-tuned task for every label row (probabilities in the meds-evaluation columns)."""
    from clinfm.claims import recipes

    path = recipes.predict_labels(from_model, data, labels, out, overwrite=overwrite)
    console.print(f"wrote {path}")


@app.command()
@user_facing
def embed(
    from_model: Path = typer.Option(..., "--from", help="A Claim-PT checkpoint or fine-tuning run folder."),
    data: Path = DATA_OPTION,
    out: Path = typer.Option(
        ..., "--out", help="Parquet file to write: subject_id, prediction_time, embedding."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Embed each label row's history up to its time."
    ),
    overwrite: bool = OVERWRITE_OPTION,
):
    """Patient vectors from a Claim-PT model, one per subject (or per label row), to Parquet."""
    from clinfm.claims import recipes

    path = recipes.embed(from_model, data, out, labels=labels, overwrite=overwrite)
    console.print(f"wrote {path}")


@app.command()
@user_facing
def report(
    run_dir: Path = typer.Argument(..., help="A run folder (from finetune, efficiency, pretrain, ...)."),
    min_class_patients: int = typer.Option(
        10, min=1, help="Test patients needed with and without the outcome before methods are compared."
    ),
):
    """Write the run's self-contained HTML report (report.html in the run folder)."""
    from clinfm.report import write_report

    console.print(f"wrote {write_report(run_dir, min_class_patients=min_class_patients)}")


def _print_metrics(run_dir: Path) -> None:
    """The test-set table with 95% CIs, so the terminal shows what the report shows first."""
    from clinfm.train.engine import is_global_zero

    if not is_global_zero():
        return
    metrics = json.loads((run_dir / "metrics.json").read_text())
    methods = metrics["methods"]
    shown = ("auroc", "auprc", "brier", "recall@5", "recall@10", "recall@30")
    names = [name for name in shown if name in next(iter(methods.values()))]
    table = Table(
        title=f"held-out samples: {metrics['test']['n']:,} (95% bootstrap CIs; all metrics in the report)"
    )
    table.add_column("method")
    for name in names:
        table.add_column(name, justify="right")
    for method, values in methods.items():
        table.add_row(method, *(_estimate(values[name]) for name in names))
    console.print(table)
    console.print(f"wrote {run_dir} (report: {run_dir / 'report.html'})")


def _estimate(estimate: dict) -> str:
    if estimate.get("value") is None:
        return "-"
    if estimate.get("low") is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} ({estimate['low']:.3f}-{estimate['high']:.3f})"


@app.command()
@user_facing
def demo(
    out: Path = typer.Option(Path("clinfm-demo"), "--out", help="Folder for the demo's outputs."),
    patients: int | None = typer.Option(
        None, min=100, help="Children per synthetic site [default: 20,000; 4,000 with --quick]."
    ),
    quick: bool = typer.Option(False, help="A smaller, faster run (fewer patients, fractions and seeds)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Two synthetic sites; Claim-PT pre-trained and compared with baselines on two tasks; transfer
    from site A to site B (the concept-embedding paper's protocol); NER taggers compared on synthetic
    medication sentences; ECG representations (PCLR and baselines) probed with few labels; lab + note
    fusion (MEDFuse) and its ablations on a 10-disease task; a report for each."""
    from rich.markup import escape

    from clinfm.report.html import duration

    patients = patients or (4_000 if quick else 20_000)
    result = clinfm.demo(out, patients=patients, quick=quick, overwrite=overwrite)
    for site in result.sites:
        console.rule(f"{site.name}: {site.path}")
        print_description(site.description)
        console.print(f"validation: valid MEDS, {len(site.report.warnings)} warning(s)")
    console.rule("How the sites differ")
    console.print(_site_comparison(result.sites))
    console.rule("Reports")
    for report in result.reports:
        took = f" ({duration(report.seconds)})" if report.seconds is not None else ""
        console.print(f"[bold]{escape(report.title)}[/]{took}\n  {escape(report.headline)}")
        console.print(f"  {report.path}", style="dim", highlight=False)
    for title, reason in result.left_out:
        console.print(f"[bold]Left out: {escape(title)}[/]\n  {escape(reason)}")
    console.print(
        f"\nwrote {result.out} in {duration(result.seconds)}: open {result.index_path} for every report",
        highlight=False,
    )


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
