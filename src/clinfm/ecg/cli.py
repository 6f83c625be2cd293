"""``clinfm ecg``: synthesise, prepare, pre-train (PCLR and baselines), embed, probe and compare.

Registered in clinfm/cli.py with ``app.add_typer(ecg_app, name="ecg")``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import typer

from clinfm.cli_common import (
    OVERWRITE_OPTION,
    RESUME_OPTION,
    console,
    training_options,
    training_settings,
    user_facing,
)
from clinfm.errors import InputError

ecg_app = typer.Typer(
    help="ECG representations: patient-contrastive pre-training (PCLR) and its baselines, linear probes "
    "on frozen representations at small label counts; WFDB, PhysioNet-challenge .mat and NumPy records.",
    no_args_is_help=True,
)

RECORDS_HELP = (
    "ECG records: a .hea (WFDB or Challenge .mat) or .npy file, a folder searched recursively, or a "
    "folder from clinfm ecg prepare. Repeat for several."
)


class Objective(StrEnum):
    pclr = "pclr"
    clocs = "clocs"
    autoencoder = "autoencoder"


class EcgPreset(StrEnum):
    paper = "paper"
    small = "small"


class MissingLeads(StrEnum):
    zeros = "zeros"
    skip = "skip"


LEADS_OPTION = typer.Option(
    "12",
    help="Leads in model order: 12 (I, II, III, aVR, aVL, aVF, V1-V6) or a comma list such as I,II.",
)
MISSING_OPTION = typer.Option(
    MissingLeads.zeros, help="A record without a lead asked for: that lead as zeros, or skip the record."
)
CENTER_OPTION = typer.Option(
    False, help="Subtract each lead's median per window (PCLR does not; for records with DC offsets)."
)
RATE_OPTION = typer.Option(None, help="Sampling rate (Hz) of .npy records, which carry none (50 to 10,000).")
SIZES_OPTION = typer.Option(
    "10,25,50,100,250,all", help="Training-set sizes, in labelled patients (comma list; all = every one)."
)
SEEDS_OPTION = typer.Option(3, min=1, help="Training draws per size; their test predictions are averaged.")
FOLDS_OPTION = typer.Option(
    None,
    min=2,
    help="Leave-patients-out: split patients into this many folds, each the test set once (small cohorts).",
)
TEST_SHARE_OPTION = typer.Option(0.25, min=0.01, max=0.99, help="Share of patients held out for testing.")
LABELS_CSV_OPTION = typer.Option(
    None, "--labels", help="A CSV with a record_id or patient_id column and one column per label."
)
LABEL_OPTION = typer.Option(
    ..., "--label", help="A label to probe: a column (0/1: AUROC; numbers: R^2) or COLUMN=VALUE. Repeatable."
)


def _leads(text: str) -> tuple[str, ...]:
    from clinfm.ecg.records import LEADS_12

    if text.strip() == "12":
        return LEADS_12
    leads = tuple(name.strip() for name in text.split(",") if name.strip())
    if not leads:
        raise InputError("--leads: give 12 or a comma list of lead names")
    return leads


def _settings(leads: str, missing: MissingLeads, center: bool, sampling_rate: float | None, **more):
    from clinfm.ecg.corpus import PrepareSettings

    return PrepareSettings(
        leads=_leads(leads), missing_leads=missing.value, center=center, sampling_rate=sampling_rate, **more
    )


def _sizes(text: str) -> list[int | None]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            sizes.append(None)
        elif part.isdigit() and int(part) > 0:
            sizes.append(int(part))
        elif part:
            raise InputError(f"--sizes: {part!r} is not a positive whole number or 'all'")
    if not sizes:
        raise InputError("--sizes: give at least one size")
    return sizes


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise InputError(f"--ecgs-per-patient: expected LOW-HIGH such as 2-5, got {text!r}") from None


@ecg_app.command("synth")
@user_facing
def synth_command(
    out: Path = typer.Option(..., "--out", help="Folder to create: pretrain/ and cohort/ (with labels.csv)."),
    pretrain_patients: int = typer.Option(400, min=0, help="Unlabelled patients for pre-training."),
    cohort_patients: int = typer.Option(200, min=1, help="Other patients, labelled, for probes."),
    ecgs_per_patient: str = typer.Option("2-5", help="ECGs per patient, LOW-HIGH."),
    seconds: float = typer.Option(10.0, min=1.0, help="Length of each ECG."),
    sampling_rate: int = typer.Option(250, min=50, help="Samples per second."),
    seed: int = typer.Option(0, help="Random seed: the same seed, the same ECGs."),
    workers: int = typer.Option(os.cpu_count() or 1, min=1, help="Processes simulating and writing ECGs."),
    overwrite: bool = OVERWRITE_OPTION,
):
    """Synthetic 12-lead ECGs (a rotating-dipole simulator) of patients with persistent traits and
    labels to probe: AF, bradycardia, tachycardia, wide QRS, sex, age. Written as WFDB records with
    rhythm annotations."""
    from clinfm.ecg import recipes

    counts = recipes.synth(
        out,
        pretrain_patients=pretrain_patients,
        cohort_patients=cohort_patients,
        ecgs_per_patient=_range(ecgs_per_patient),
        seconds=seconds,
        sampling_rate=sampling_rate,
        seed=seed,
        workers=workers,
        overwrite=overwrite,
    )
    for part, n in counts.items():
        console.print(f"{part}: {n['ecgs']} ECGs of {n['patients']} patients")
    console.print(f"wrote {out}")


@ecg_app.command("prepare")
@user_facing
def prepare_command(
    records: list[Path] = typer.Option(..., "--records", help=RECORDS_HELP),
    out: Path = typer.Option(..., "--out", help="Prepared-set folder to create."),
    seconds: float = typer.Option(10.0, min=0.1, help="Window length (the paper: 10 s)."),
    samples: int = typer.Option(4096, min=16, help="Samples per window after interpolation (paper: 4096)."),
    leads: str = LEADS_OPTION,
    missing_leads: MissingLeads = MISSING_OPTION,
    center: bool = CENTER_OPTION,
    sampling_rate: float | None = RATE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
):
    """Cut records into windows, order the leads and interpolate each window to the model's length,
    streamed into one memory-mapped array (for corpora larger than memory)."""
    from clinfm.ecg import recipes

    settings = _settings(leads, missing_leads, center, sampling_rate, seconds=seconds, samples=samples)
    for line in recipes.prepare_command(records, out, settings, overwrite=overwrite):
        console.print(line)
    console.print(f"wrote {out}")


@ecg_app.command("pretrain")
@user_facing
@training_options
def pretrain_command(
    records: list[Path] = typer.Option(..., "--records", help=RECORDS_HELP),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder to create."),
    objective: Objective = typer.Option(
        Objective.pclr,
        help="pclr (two ECGs of one patient), clocs (two halves of one ECG) or autoencoder.",
    ),
    preset: EcgPreset = typer.Option(
        EcgPreset.paper, help="paper (ResNet on 4,096 samples, 6.4M parameters) or small (1,024, for CPU)."
    ),
    leads: str = LEADS_OPTION,
    missing_leads: MissingLeads = MISSING_OPTION,
    center: bool = CENTER_OPTION,
    sampling_rate: float | None = RATE_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Pre-train an ECG encoder without labels (Adam; early stopping on held-out patients)."""
    from clinfm.ecg import recipes
    from clinfm.train.engine import is_global_zero

    counts = recipes.pretrain(
        records,
        out,
        objective=objective.value,
        preset=preset.value,
        training=training_settings(recipes.PRETRAINING, **training),
        settings=_settings(leads, missing_leads, center, sampling_rate),
        overwrite=overwrite,
        resume=resume,
    )
    if is_global_zero():
        console.print(
            f"pre-trained on {counts['train_windows']} windows of {counts['patients']} patients "
            f"in {counts['seconds']:.0f} s"
        )
        console.print(f"wrote {out}")


@ecg_app.command("embed")
@user_facing
def embed_command(
    model: str = typer.Option(
        ..., "--model", help="A checkpoint from clinfm ecg pretrain, or 'handcrafted' (neurokit2 features)."
    ),
    records: list[Path] = typer.Option(..., "--records", help=RECORDS_HELP),
    out: Path = typer.Option(..., "--out", help="Folder to create: embeddings.npy + windows.csv."),
    leads: str = typer.Option("12", help="handcrafted only: leads to prepare (a checkpoint knows its own)."),
    sampling_rate: float | None = RATE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
):
    """Representations of every window: the encoder's pooled output (320-d for the paper preset)."""
    from clinfm.ecg import recipes
    from clinfm.ecg.corpus import PrepareSettings

    settings = PrepareSettings(leads=_leads(leads), sampling_rate=sampling_rate)
    counts = recipes.embed(model, records, out, settings=settings, overwrite=overwrite)
    console.print(f"{counts['windows']} windows x {counts['dimensions']} dimensions")
    console.print(f"wrote {out}")


@ecg_app.command("probe")
@user_facing
def probe_command(
    embeddings: Path = typer.Option(..., "--embeddings", help="A folder from clinfm ecg embed."),
    out: Path = typer.Option(..., "--out", help="Run folder to create: metrics.json + report.html."),
    labels_csv: Path | None = LABELS_CSV_OPTION,
    label: list[str] = LABEL_OPTION,
    sizes: str = SIZES_OPTION,
    seeds: int = SEEDS_OPTION,
    folds: int | None = FOLDS_OPTION,
    test_share: float = TEST_SHARE_OPTION,
    seed: int = typer.Option(0, help="Seed of the patient split."),
    overwrite: bool = OVERWRITE_OPTION,
):
    """Linear (logistic / ridge) probes on frozen representations at several training-set sizes, with
    patient-level splits and bootstrap 95% intervals over test patients."""
    from clinfm.ecg import recipes
    from clinfm.ecg.results import curves_table

    curves = recipes.probe(
        embeddings,
        out,
        labels=label,
        labels_csv=labels_csv,
        sizes=_sizes(sizes),
        seeds=list(range(seeds)),
        folds=folds,
        test_share=test_share,
        seed=seed,
        overwrite=overwrite,
    )
    console.print(curves_table(curves))
    console.print(f"wrote {out}")


@ecg_app.command("compare")
@user_facing
@training_options
def compare_command(
    records: list[Path] = typer.Option(..., "--records", help="Labelled records to probe. " + RECORDS_HELP),
    out: Path = typer.Option(..., "--out", help="Run folder to create: metrics.json + report.html."),
    labels_csv: Path | None = LABELS_CSV_OPTION,
    label: list[str] = LABEL_OPTION,
    pretrain_records: list[Path] | None = typer.Option(
        None, "--pretrain-records", help="Unlabelled records to pre-train on (default: --records)."
    ),
    methods: str = typer.Option(
        "pclr,clocs,autoencoder,scratch,handcrafted", help="Comma list of the methods to compare."
    ),
    preset: EcgPreset = typer.Option(
        EcgPreset.small, help="Encoder preset of every network: small or paper."
    ),
    scratch_steps: int = typer.Option(
        200, min=1, help="Optimizer steps of each from-scratch network (one per size, seed and fold)."
    ),
    sizes: str = SIZES_OPTION,
    seeds: int = SEEDS_OPTION,
    folds: int | None = FOLDS_OPTION,
    test_share: float = TEST_SHARE_OPTION,
    leads: str = LEADS_OPTION,
    missing_leads: MissingLeads = MISSING_OPTION,
    center: bool = CENTER_OPTION,
    sampling_rate: float | None = RATE_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """The paper's comparison: PCLR's frozen representation against CLOCS-style and autoencoder
    pre-training, hand-crafted features and networks trained from scratch, across training sizes."""
    from clinfm.ecg.compare import compare, scratch_training
    from clinfm.ecg.recipes import PRETRAINING
    from clinfm.ecg.results import curves_table
    from clinfm.train.engine import is_global_zero

    pretraining = training_settings(PRETRAINING, **training)
    scratch = scratch_training(scratch_steps, seed=pretraining.seed, accelerator=pretraining.accelerator)
    curves = compare(
        records,
        out,
        labels=label,
        labels_csv=labels_csv,
        pretrain_records=pretrain_records or None,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        preset=preset.value,
        training=pretraining,
        scratch_training=scratch,
        settings=_settings(leads, missing_leads, center, sampling_rate),
        sizes=_sizes(sizes),
        seeds=list(range(seeds)),
        folds=folds,
        test_share=test_share,
        seed=pretraining.seed,
        overwrite=overwrite,
        resume=resume,
    )
    if is_global_zero():  # under DDP every device runs this command; one reports
        console.print(curves_table(curves))
        console.print(f"wrote {out}")
