"""``clinfm demo``: every part of clinfm at work on embedded synthetic data.

Two synthetic sites that differ in coding system (ICD-9-CM vs ICD-10-CM), population and habits,
each validated and described; then Claim-PT: pre-trained on site A's unlabeled train patients,
fine-tuned on both population-specific tasks at several label fractions against the cold start and
the baselines, each task with its HTML report; then cross-site transfer from A to B with the
concept-embedding paper's protocol (one-hot vs text-embedded findings); then clinical NER on a
synthetic medication corpus (TransformerCRF from scratch vs BERT-CRF vs a feature CRF, with and
without SamBD); then ECG representations (PCLR pre-trained on synthetic patients' ECGs, probed with
few labels against CLOCS-style and autoencoder pre-training, hand-crafted features and networks
trained from scratch). Later systems add their parts here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clinfm import progress
from clinfm.errors import InputError
from clinfm.events.describe import DatasetDescription, describe
from clinfm.events.splits import SplitPolicy
from clinfm.events.synth import synthesize
from clinfm.events.validate import ValidationReport, validate
from clinfm.io import atomic_directory, write_json_atomic

log = logging.getLogger(__name__)

DEMO_SITES = (("site_a", "icd9"), ("site_b", "icd10"))
DEMO_TASKS = ("asthma_exacerbation_180d", "self_harm_365d")
TRANSFER_TASK = "asthma_exacerbation_180d"


QUICK_LEFT_OUT = (
    (
        "Claim-PT: self harm 365d",
        "about 3 % of children have the outcome, so a --quick test set (about 130 children at 4,000 "
        "per site) holds about 4 of them, and comparing methods needs at least 10; the full demo runs it",
    ),
    (
        "ECG: atrial fibrillation, wide QRS",
        "about 12 % of patients each, so --quick's 25 test patients would hold about 3; --quick probes "
        "sex and age instead; the full demo probes AF, wide QRS and age on 400 patients",
    ),
)


@dataclass(frozen=True)
class DemoPlan:
    """How much work each section of the demo does: the full demo, or --quick."""

    claims_tasks: tuple[str, ...] = DEMO_TASKS
    pretrain_epochs: int = 15
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)

    transfer_epochs: int = 10  # of the paper's 50 (100 steps each): the demo's time, not a result
    transfer_fractions: tuple[float, ...] = (0.1, 1.0)

    ner_documents: tuple[int, int, int] = (500, 100, 100)  # train, dev, test
    ner_models: tuple[str, ...] = ("transformer-crf", "bert-crf", "feature-crf")
    ner_epochs: int | None = None  # None: each model's own (small preset: 10; BERT-CRF: the paper's 3)

    # Unlabelled (pre-training) and labelled patients: a quarter of the labelled ones are tested, so
    # 400 give about 100 test patients, 12 of them with AF or a wide QRS (12 % each).
    ecg_patients: tuple[int, int] = (150, 400)
    ecg_per_patient: tuple[int, int] = (2, 3)
    ecg_epochs: int = 10
    ecg_labels: tuple[str, ...] = ("af", "wide_qrs", "age")
    ecg_sizes: tuple[int | None, ...] = (10, 25, None)
    ecg_seeds: tuple[int, ...] = (0, 1)
    ecg_scratch_steps: int = 100

    fuse_patients: int = 2_000  # a cohort of its own: one sample per child, notes embedded by MiniLM
    fuse_epochs: tuple[int, int] = (20, 20)  # masked lab pre-training, each fusion model

    # What this plan does not run, and why (title, reason): shown in the index and on the console.
    left_out: tuple[tuple[str, str], ...] = ()

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(
            pretrain_epochs=4,
            fractions=(0.25, 1.0),
            seeds=(0,),
            transfer_epochs=1,
            ner_documents=(200, 60, 60),
            ner_models=("transformer-crf", "feature-crf"),
            ner_epochs=2,
            # Sex, not AF, is --quick's binary label: at 12 % prevalence a test set of 25 patients
            # holds about 3 with AF, and a comparison needs 10 with and 10 without.
            ecg_patients=(12, 100),
            ecg_per_patient=(2, 2),
            ecg_epochs=3,
            ecg_labels=("sex", "age"),
            ecg_sizes=(10, None),
            ecg_seeds=(0,),
            ecg_scratch_steps=30,
            fuse_patients=1_200,  # about 120 held-out children: 12 with asthma, 17 with eczema
            fuse_epochs=(2, 3),
            claims_tasks=("asthma_exacerbation_180d",),
            left_out=QUICK_LEFT_OUT,
        )


@dataclass
class DemoSite:
    name: str
    coding: str
    path: Path
    description: DatasetDescription
    report: ValidationReport


@dataclass
class DemoReport:
    """One report of the demo: its title, where it is, its one-sentence answer and the time it took."""

    key: str  # the run's folder under the demo's output, e.g. "claims/self_harm_365d"
    title: str
    path: Path
    headline: str
    seconds: float | None


@dataclass
class DemoResult:
    out: Path
    sites: list[DemoSite]
    summary_path: Path
    checkpoint: Path | None = None
    runs: dict[str, Path] | None = None
    reports: list[DemoReport] = field(default_factory=list)
    index_path: Path | None = None
    left_out: tuple[tuple[str, str], ...] = ()  # (title, reason) of what the plan did not run
    seconds: float | None = None


SMOKE_TEST = "clinfm demo --quick"  # the banner's reason on every --quick report


def report_title(key: str) -> str:
    """What each demo run shows, as the index and the console list it."""
    kind, _, name = key.partition("/")
    titles = {
        "claims": f"Claim-PT: {name.replace('_', ' ')}",
        "transfer": f"Transfer site A -> site B: {name.replace('_', ' ')}",
        "ner": "Clinical NER on synthetic medication notes",
        "ecg": "ECG representations probed with few labels",
        "fuse": "Labs + notes: MEDFuse and its ablations, 10 diseases",
    }
    return "Claim-PT pre-training on site A" if key == "claims/pretrained" else titles[kind]


def demo(
    out: str | os.PathLike = "clinfm-demo",
    *,
    patients: int = 20_000,
    seed: int = 0,
    quick: bool = False,
    claims: bool = True,
    ner: bool = True,
    ecg: bool = True,
    fuse: bool = True,
    overwrite: bool = False,
) -> DemoResult:
    """Synthesize, validate and describe two sites, then pre-train and evaluate Claim-PT on site A.

    Everything goes under ``out`` (written atomically): the sites, ``claims/pretrained`` (the
    checkpoint), ``claims/<task>/`` (a label-efficiency run with ``report.html`` per task) and
    ``transfer/<task>/`` (site A to site B, the concept-embedding paper's protocol),
    ``ner/corpus`` (synthetic brat) and ``ner/compare`` (taggers compared), ``ecg/synthetic`` (WFDB
    records) and ``ecg/compare`` (representations probed), ``fuse/cohort`` (a cohort with labs and
    notes) and ``fuse/ablation`` (MEDFuse and its ablations), and ``summary.json``.
    """
    out = Path(out)
    began = time.monotonic()
    sites = []
    runs: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for name, coding in DEMO_SITES:
            with progress.status(f"synthesizing {name} ({coding}, {patients:,} patients)"):
                synthesize(tmp / name, patients=patients, site=name, coding=coding, seed=seed)
                report = validate(tmp / name)
            report.raise_for_errors()
            sites.append(DemoSite(name, coding, out / name, describe(tmp / name), report))
        plan = DemoPlan.quick() if quick else DemoPlan()
        sections: list[tuple[bool, Callable[[], dict[str, Path]]]] = [
            (claims, lambda: _claims(tmp, plan, seconds)),
            (claims, lambda: _timed(seconds, lambda: _transfer(tmp, plan))),
            (ner, lambda: _timed(seconds, lambda: _ner(tmp, plan, seed))),
            (ecg, lambda: _timed(seconds, lambda: _ecg(tmp, plan, seed))),
            (fuse, lambda: _timed(seconds, lambda: _fuse(tmp, plan, seed))),
        ]
        for wanted, run_section in sections:
            if wanted:
                runs |= run_section()
        reports = _relocate(tmp, out, runs, seconds, smoke_test=SMOKE_TEST if quick else None)
        total = time.monotonic() - began
        index = _write_index(tmp, reports, quick, total, plan.left_out)
        summary = {
            site.name: {"coding": site.coding, "warnings": site.report.warnings, **site.description.to_dict()}
            for site in sites
        }
        summary["reports"] = [
            {"run": r.key, "title": r.title, "headline": r.headline, "seconds": r.seconds} for r in reports
        ]
        summary["left_out"] = [{"title": title, "reason": reason} for title, reason in plan.left_out]
        summary["seconds"] = round(total, 1)
        write_json_atomic(tmp / "summary.json", summary)
    return DemoResult(
        out=out,
        sites=sites,
        summary_path=out / "summary.json",
        checkpoint=out / "claims" / "pretrained" if claims else None,
        runs={task: out / path.relative_to(tmp) for task, path in runs.items()},
        reports=[
            DemoReport(r.key, r.title, out / r.key / "report.html", r.headline, r.seconds) for r in reports
        ],
        index_path=out / index.name,
        left_out=plan.left_out,
        seconds=total,
    )


def _timed(seconds: dict[str, float], run_section: Callable[[], dict[str, Path]]) -> dict[str, Path]:
    """Run one section, recording its wall time under each run it wrote (a section writes one)."""
    began = time.monotonic()
    runs = run_section()
    for key in runs:
        seconds[key] = time.monotonic() - began
    return runs


def _relocate(
    tmp: Path, out: Path, runs: dict[str, Path], seconds: dict[str, float], *, smoke_test: str | None
) -> list[DemoReport]:
    """Runs record the paths they read: name the final folder, not the temporary one being built;
    mark --quick runs as smoke tests; then write each report."""
    import json

    from clinfm.report.html import headline_sentence, write_report

    folders = {"claims/pretrained": tmp / "claims" / "pretrained", **runs}
    for record in [
        *(folder / "run.json" for folder in folders.values()),
        *tmp.glob("ner/compare/models/*/run.json"),
    ]:
        if not record.exists():
            continue
        run = json.loads(record.read_text().replace(str(tmp), str(out.resolve())))
        if smoke_test:
            run["smoke_test"] = smoke_test
        write_json_atomic(record, run)
    reports = []
    for key, folder in folders.items():
        if (folder / "run.json").exists():
            write_report(folder)
            headline = headline_sentence(folder)
            reports.append(DemoReport(key, report_title(key), folder, headline, seconds.get(key)))
    return reports


def _write_index(
    tmp: Path, reports: list[DemoReport], quick: bool, total: float, left_out: tuple[tuple[str, str], ...]
) -> Path:
    """``index.html``: every report with its one-sentence answer and the time its section took, then
    what the plan left out and why."""
    from clinfm.report.html import IndexEntry, duration, write_index

    note = (
        f"Smoke test on tiny data ({SMOKE_TEST}): these numbers show that the pipeline runs, not how well "
        "the methods work."
        if quick
        else ""
    )
    entries = [IndexEntry(r.title, f"{r.key}/report.html", r.headline, r.seconds) for r in reports]
    title = f"clinfm demo: {len(entries)} reports in {duration(total)}"
    return write_index(tmp, title, entries, note=note, left_out=left_out)


def _claims(tmp: Path, plan: DemoPlan, seconds: dict[str, float]) -> dict[str, Path]:
    """Pre-train on site A's train patients; a label-efficiency run per task on its held-out ones."""
    from clinfm.claims import recipes

    site = tmp / DEMO_SITES[0][0]
    began = time.monotonic()
    # A quarter of the patients held out: the self-harm task is rare, and a 10% test set of a
    # demo-sized site can hold no positive at all.
    checkpoint = recipes.pretrain(
        site,
        tmp / "claims" / "pretrained",
        train=recipes.PRETRAIN["paper"].replace(max_epochs=plan.pretrain_epochs),
        splits=SplitPolicy(seed=0, held_out=0.25),
    )
    seconds["claims/pretrained"] = time.monotonic() - began
    runs = {}
    for task in plan.claims_tasks:
        began = time.monotonic()
        try:
            runs[f"claims/{task}"] = recipes.efficiency(
                site,
                site / "tasks" / f"{task}.parquet",
                checkpoint,
                tmp / "claims" / task,
                fractions=plan.fractions,
                seeds=plan.seeds,
            )
        except InputError as error:  # a small demo site can have too few labels for a rare task
            log.warning("skipped %s: %s", task, error)
        seconds[f"claims/{task}"] = time.monotonic() - began
    return runs


def _transfer(tmp: Path, plan: DemoPlan) -> dict[str, Path]:
    """Site A (ICD-9-CM) to site B (ICD-10-CM): the paper's CNN on findings tables, one-hot vs the
    default text encoder, every protocol, shortened to ``transfer_epochs``."""
    from clinfm.claims.cross_site import transfer
    from clinfm.concepts.cnn import PAPER_TRAINING

    (a, _), (b, _) = DEMO_SITES
    try:
        run = transfer(
            tmp / a,
            tmp / b,
            TRANSFER_TASK,
            tmp / "transfer" / TRANSFER_TASK,
            preset="paper",
            fractions=plan.transfer_fractions,
            seeds=plan.seeds[:1],
            settings=PAPER_TRAINING.replace(max_epochs=plan.transfer_epochs),
            held_out=0.25,
        )
    except InputError as error:
        log.warning("skipped the transfer section: %s", error)
        return {}
    return {f"transfer/{TRANSFER_TASK}": run}


def _ner(tmp: Path, plan: DemoPlan, seed: int) -> dict[str, Path]:
    """A synthetic medication corpus in brat; the taggers compared on it, with and without SamBD."""
    from clinfm.ner.recipes import compare
    from clinfm.ner.synth import synthetic_corpus

    train, dev, test = plan.ner_documents
    with progress.status("writing the synthetic medication corpus"):
        corpus = synthetic_corpus(tmp / "ner" / "corpus", train=train, dev=dev, test=test, seed=seed)
    run = compare(
        corpus / "train",
        corpus / "test",
        tmp / "ner" / "compare",
        dev_data=corpus / "dev",
        models=plan.ner_models,
        preset="small",
        settings={"max_epochs": plan.ner_epochs},
        seed=seed,
    )
    return {"ner/compare": run}


def _ecg(tmp: Path, plan: DemoPlan, seed: int) -> dict[str, Path]:
    """Synthetic ECGs of unlabelled and labelled patients; PCLR and the baselines probed on them."""
    from clinfm.ecg.compare import compare, scratch_training
    from clinfm.ecg.recipes import PRETRAINING, synth

    unlabelled, labelled = plan.ecg_patients
    records = tmp / "ecg" / "synthetic"
    synth(
        records,
        pretrain_patients=unlabelled,
        cohort_patients=labelled,
        ecgs_per_patient=plan.ecg_per_patient,
        seed=seed,
        workers=os.cpu_count() or 1,
    )
    compare(
        [records / "cohort"],
        tmp / "ecg" / "compare",
        labels=plan.ecg_labels,
        labels_csv=records / "cohort" / "labels.csv",
        pretrain_records=[records / "pretrain"],
        preset="small",
        training=PRETRAINING.replace(max_epochs=plan.ecg_epochs, seed=seed),
        scratch_training=scratch_training(plan.ecg_scratch_steps, seed=seed),
        sizes=plan.ecg_sizes,
        seeds=plan.ecg_seeds,
        seed=seed,
    )
    return {"ecg/compare": tmp / "ecg" / "compare"}


def _fuse(tmp: Path, plan: DemoPlan, seed: int) -> dict[str, Path]:
    """A cohort with labs and notes; MEDFuse and its ablations on its 10-disease task."""
    from clinfm.fuse.ablation import ablate
    from clinfm.fuse.recipes import FINE_TUNING, PRETRAINING, fusion_preset

    cohort = tmp / "fuse" / "cohort"
    with progress.status(f"synthesizing the fusion cohort ({plan.fuse_patients:,} patients)"):
        synthesize(cohort, patients=plan.fuse_patients, site="site_a", coding="icd9", seed=seed)
    pretrain_epochs, epochs = plan.fuse_epochs
    ablate(
        cohort,
        "diseases",
        tmp / "fuse" / "ablation",
        base=fusion_preset("small"),
        preset="small",
        pretraining=PRETRAINING.replace(max_epochs=pretrain_epochs, seed=seed),
        training=FINE_TUNING.replace(max_epochs=epochs, seed=seed),
    )
    return {"fuse/ablation": tmp / "fuse" / "ablation"}
