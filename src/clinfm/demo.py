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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DemoPlan:
    """How much work each section of the demo does: the full demo, or --quick."""

    pretrain_epochs: int = 15
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)

    transfer_epochs: int = 10  # of the paper's 50 (100 steps each): the demo's time, not a result
    transfer_fractions: tuple[float, ...] = (0.1, 1.0)

    ner_documents: tuple[int, int, int] = (500, 100, 100)  # train, dev, test
    ner_models: tuple[str, ...] = ("transformer-crf", "bert-crf", "feature-crf")
    ner_epochs: int | None = None  # None: each model's own (small preset: 10; BERT-CRF: the paper's 3)

    ecg_patients: tuple[int, int] = (150, 100)  # unlabelled (pre-training), labelled cohort
    ecg_per_patient: tuple[int, int] = (2, 3)  # ECGs each: simulating them is the section's main cost
    ecg_epochs: int = 10
    ecg_labels: tuple[str, ...] = ("af", "wide_qrs", "age")
    ecg_sizes: tuple[int | None, ...] = (10, 25, None)
    ecg_seeds: tuple[int, ...] = (0, 1)
    ecg_scratch_steps: int = 100

    fuse_patients: int = 2_000  # a cohort of its own: one sample per child, notes embedded by MiniLM
    fuse_epochs: tuple[int, int] = (20, 20)  # masked lab pre-training, each fusion model

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
            ecg_patients=(20, 30),
            ecg_per_patient=(2, 2),
            ecg_epochs=3,
            ecg_labels=("af", "age"),
            ecg_sizes=(10, None),
            ecg_seeds=(0,),
            ecg_scratch_steps=30,
            fuse_patients=400,
            fuse_epochs=(2, 3),
        )


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
    checkpoint: Path | None = None
    runs: dict[str, Path] | None = None


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
    sites = []
    runs: dict[str, Path] = {}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for name, coding in DEMO_SITES:
            with progress.status(f"synthesizing {name} ({coding}, {patients:,} patients)"):
                synthesize(tmp / name, patients=patients, site=name, coding=coding, seed=seed)
                report = validate(tmp / name)
            report.raise_for_errors()
            sites.append(DemoSite(name, coding, out / name, describe(tmp / name), report))
        plan = DemoPlan.quick() if quick else DemoPlan()
        if claims:
            runs = _claims(tmp, plan) | _transfer(tmp, plan)
        if ner:
            runs |= _ner(tmp, plan, seed)
        if ecg:
            runs |= _ecg(tmp, plan, seed)
        if fuse:
            runs |= _fuse(tmp, plan, seed)
        _relocate(tmp, out)
        summary = {
            site.name: {"coding": site.coding, "warnings": site.report.warnings, **site.description.to_dict()}
            for site in sites
        }
        write_json_atomic(tmp / "summary.json", summary)
    return DemoResult(
        out=out,
        sites=sites,
        summary_path=out / "summary.json",
        checkpoint=out / "claims" / "pretrained" if claims else None,
        runs={task: out / path.relative_to(tmp) for task, path in runs.items()},
    )


def _relocate(tmp: Path, out: Path) -> None:
    """Runs record the paths they read; name the final folder, not the temporary one being built."""
    from clinfm.report import write_report

    reports = [
        *tmp.glob("claims/*/run.json"),
        *tmp.glob("transfer/*/run.json"),
        *tmp.glob("ner/compare/run.json"),
        *tmp.glob("ecg/compare/run.json"),
        *tmp.glob("fuse/ablation/run.json"),
    ]
    for record in [*reports, *tmp.glob("ner/compare/models/*/run.json")]:
        record.write_text(record.read_text().replace(str(tmp), str(out.resolve())))
    for record in reports:
        write_report(record.parent)


def _claims(tmp: Path, plan: DemoPlan) -> dict[str, Path]:
    """Pre-train on site A's train patients; a label-efficiency run per task on its held-out ones."""
    from clinfm.claims import recipes

    site = tmp / DEMO_SITES[0][0]
    # A quarter of the patients held out: the self-harm task is rare, and a 10% test set of a
    # demo-sized site can hold no positive at all.
    checkpoint = recipes.pretrain(
        site,
        tmp / "claims" / "pretrained",
        train=recipes.PRETRAIN["paper"].replace(max_epochs=plan.pretrain_epochs),
        splits=SplitPolicy(seed=0, held_out=0.25),
    )
    runs = {}
    for task in DEMO_TASKS:
        try:
            runs[task] = recipes.efficiency(
                site,
                site / "tasks" / f"{task}.parquet",
                checkpoint,
                tmp / "claims" / task,
                fractions=plan.fractions,
                seeds=plan.seeds,
            )
        except InputError as error:  # a small demo site can have too few labels for a rare task
            log.warning("skipped %s: %s", task, error)
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
