"""What ``clinfm ecg`` does: synthesise, prepare, pre-train, embed, probe and compare (PCLR).

Every command takes records (WFDB / Challenge .mat / .npy files or folders) or a prepared set
(:mod:`clinfm.ecg.corpus`); raw records are prepared into the run's work folder first, so training
streams windows from disk. Outputs are written atomically; pre-training and comparisons resume
after an interruption (rerun the same command).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from clinfm import progress
from clinfm.ecg.checkpoint import load_encoder, save_encoder
from clinfm.ecg.corpus import (
    RECORDS_FILE,
    WINDOWS_FILE,
    ECGSet,
    PrepareSettings,
    is_prepared,
    open_set,
    prepare,
    read_record_fields,
)
from clinfm.ecg.labels import Label, label_values, read_labels
from clinfm.ecg.model import PRESETS, ResNetConfig
from clinfm.ecg.probes import PAPER_SIZES, linear_probe, probe_curve
from clinfm.ecg.records import check_numeric, write_wfdb
from clinfm.ecg.results import (
    HANDCRAFTED,
    METHOD_LABELS,
    PRETRAINING_OBJECTIVES,
    curves_table,
    relative_gains,
)
from clinfm.errors import InputError
from clinfm.io import atomic_directory, check_output, read_csv_rows, write_json_atomic
from clinfm.train.engine import FitResult, TrainConfig, fit, is_global_zero, predict
from clinfm.train.runs import copy_logs, resume_note, work_dir, write_run

log = logging.getLogger(__name__)

# Pre-training: Adam as in the paper's code, at 1e-3 for every objective (the code's 1e-1 for PCLR,
# 1e-2 for CLOCS and 1e-4 for the autoencoder are reachable with --lr; see docs/ecg.md).
PRETRAINING = TrainConfig(max_epochs=50, batch_size=64, optimizer="adam", lr=1e-3, patience=5)
VALIDATION_SHARE = 0.1  # of pre-training patients, for early stopping
MIN_VALIDATION_PATIENTS = 20  # fewer patients than this: no validation split, every epoch runs


# ------------------------------------------------------------------------------------------ synth


def synth(
    out: str | os.PathLike,
    *,
    pretrain_patients: int = 400,
    cohort_patients: int = 200,
    ecgs_per_patient: tuple[int, int] = (2, 5),
    seconds: float = 10.0,
    sampling_rate: int = 250,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
) -> dict:
    """Synthetic WFDB records: ``pretrain/`` (unlabelled patients) and ``cohort/`` (other patients,
    with ``labels.csv``), each ECG with its rhythm as a WFDB annotation, as a real corpus has."""
    from clinfm.ecg.synth import LABELS, synthetic_patients

    if pretrain_patients < 0 or cohort_patients < 1:
        raise InputError("need at least one cohort patient and no negative counts")
    patients = synthetic_patients(pretrain_patients + cohort_patients, seed=seed)
    parts = {"pretrain": patients[:pretrain_patients], "cohort": patients[pretrain_patients:]}
    counts = {}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for part, members in parts.items():
            folder = tmp / part
            folder.mkdir()
            jobs = [(p, ecgs_per_patient, seconds, sampling_rate, seed, folder) for p in members]
            ecgs = _map(_write_patient, jobs, workers, f"synthesising {part} ECGs")
            counts[part] = {"patients": len(members), "ecgs": sum(ecgs)}
        _write_labels(tmp / "cohort" / "labels.csv", parts["cohort"], LABELS)
        config = {
            "seed": seed,
            "ecgs_per_patient": list(ecgs_per_patient),
            "seconds": seconds,
            "sampling_rate": sampling_rate,
        }
        note = "clinfm's rotating-dipole ECG simulator; approximations in clinfm.ecg.synth, docs/ecg.md"
        write_run(tmp, "ecg-synth", "Synthetic ECGs", config, counts, [note])
    return counts


def _map(function, jobs: list, workers: int, description: str) -> list:
    """``function`` over ``jobs`` in ``workers`` processes (1: in this one), with a progress bar."""
    if workers <= 1 or len(jobs) < 2:
        return [function(job) for job in progress.track(jobs, description)]
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_signals)
    try:
        return list(progress.track(pool.map(function, jobs, chunksize=4), description, total=len(jobs)))
    finally:  # on Ctrl-C or SIGTERM, drop the queued jobs instead of finishing them first
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_signals() -> None:
    """Workers end on SIGTERM as plain processes do; the parent, not they, reports and cleans up."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _write_patient(job: tuple) -> int:
    """Render one patient's ECGs and write each as a WFDB record (16-bit, 1 uV steps) + rhythm .atr."""
    import wfdb

    from clinfm.ecg.synth import patient_records

    patient, ecgs_per_patient, seconds, sampling_rate, seed, folder = job
    records = patient_records(
        patient, ecgs_per_patient, seconds=seconds, sampling_rate=sampling_rate, seed=seed
    )
    for record in records:
        write_wfdb(record, folder, comments=(f"patient_id: {record.patient_id}", *record.comments))
        samples = [start for start, _ in record.annotations]
        notes = [note for _, note in record.annotations]
        wfdb.wrann(
            record.record_id,
            "atr",
            np.array(samples),
            symbol=["+"] * len(samples),
            aux_note=notes,
            write_dir=str(folder),
        )
    return len(records)


def _write_labels(path: Path, patients, labels: Sequence[str]) -> None:
    lines = ["patient_id," + ",".join(labels)]
    for patient in patients:
        values = patient.labels()
        lines.append(patient.patient_id + "," + ",".join(f"{values[name]:g}" for name in labels))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------- prepare


def prepare_command(
    records: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    settings: PrepareSettings,
    *,
    overwrite: bool,
) -> list[str]:
    """``clinfm ecg prepare``: a prepared set at ``out``; the report's lines."""
    with atomic_directory(out, overwrite=overwrite) as tmp:
        report = prepare(list(records), tmp, settings)
    return report.lines()


def resolve_set(records: Sequence[str | os.PathLike], work: Path, settings: PrepareSettings) -> ECGSet:
    """A prepared set given as such (checked against ``settings``), or ``records`` prepared into
    ``work/set`` (kept there, so a resumed run does not prepare again)."""
    records = [Path(r) for r in records]
    if not records:
        raise InputError("no records given")
    if len(records) == 1 and is_prepared(records[0]):
        ecg_set = open_set(records[0])
        _check_prepared(ecg_set, settings)
        return ecg_set
    target = work / "set"
    if is_prepared(target):
        return open_set(target)
    shutil.rmtree(target, ignore_errors=True)
    for line in prepare(records, target, settings).lines():
        log.info("%s", line)
    return open_set(target)


def _check_prepared(ecg_set: ECGSet, settings: PrepareSettings) -> None:
    have = ecg_set.meta["settings"]
    for name in ("samples", "seconds", "center"):
        if have[name] != getattr(settings, name):
            raise InputError(
                f"was prepared with {name} = {have[name]}, but this model needs {getattr(settings, name)}; "
                "prepare it again with matching settings, or pass the raw records",
                path=ecg_set.path,
            )
    if tuple(have["leads"]) != tuple(settings.leads):
        raise InputError(
            f"was prepared with leads {','.join(have['leads'])}, but this model needs "
            f"{','.join(settings.leads)}",
            path=ecg_set.path,
        )


class Rows:
    """Some rows of a (memory-mapped) array, read only when indexed: a subset without a copy."""

    def __init__(self, array: np.ndarray, rows: np.ndarray):
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), *array.shape[1:])
        self.ndim, self.dtype = array.ndim, array.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        return self.array[self.rows[index]]


# --------------------------------------------------------------------------------------- pretrain


def encoder_config(preset: str, leads: int) -> ResNetConfig:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return ResNetConfig(**{**PRESETS[preset].__dict__, "leads": leads})


def pretrain(
    records: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    objective: str = "pclr",
    preset: str = "paper",
    training: TrainConfig = PRETRAINING,
    settings: PrepareSettings | None = None,
    overwrite: bool = False,
    resume: bool = True,
) -> dict:
    """Pre-train an encoder with ``objective`` on every window of ``records``; write it to ``out``."""
    out = check_output(out, overwrite)
    if objective not in PRETRAINING_OBJECTIVES:
        raise InputError(
            f"unknown objective {objective!r}; choose one of {', '.join(PRETRAINING_OBJECTIVES)}"
        )
    settings = settings or PrepareSettings()
    config = encoder_config(preset, len(settings.leads))
    settings = replace(settings, samples=config.samples)
    recorded = {
        "records": sources(records),
        "objective": objective,
        "preset": preset,
        "training": training.to_dict(),
        "prepare": {**settings.__dict__, "leads": list(settings.leads)},
    }
    with work_dir(out, recorded, resume) as work:
        ecg_set = resolve_set(records, work, settings)
        model, result, counts = train_encoder(ecg_set, objective, config, training, work)
        if not is_global_zero():  # under DDP every process trained; one writes
            return counts
        with atomic_directory(out, overwrite=overwrite) as tmp:
            save_encoder(tmp, model, objective, settings, {"training": training.to_dict(), "data": counts})
            write_run(
                tmp,
                "ecg-pretrain",
                f"ECG encoder pre-trained with {METHOD_LABELS[objective]}",
                recorded,
                {"data": counts, "epochs": result.epochs, "best": {result.monitor: result.best_score}},
                resume_note(result) + counts.pop("notes", []),
            )
            copy_logs(work, tmp)
            from clinfm.report.html import write_report

            write_report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return counts


def train_encoder(
    ecg_set: ECGSet, objective: str, config: ResNetConfig, training: TrainConfig, work: Path
) -> tuple[torch.nn.Module, FitResult, dict]:
    """Fit a pre-training model on the set's windows (a share of patients for early stopping)."""
    from clinfm.ecg.baselines import pretraining_model

    ids = ecg_set.patient_ids
    patients = np.unique(ids)
    if len(patients) >= MIN_VALIDATION_PATIENTS:
        held_out = np.random.default_rng(training.seed).permutation(patients)[
            : max(2, round(VALIDATION_SHARE * len(patients)))
        ]
        val_rows, train_rows = np.flatnonzero(np.isin(ids, held_out)), np.flatnonzero(~np.isin(ids, held_out))
    else:
        val_rows, train_rows = np.array([], dtype=np.int64), np.arange(len(ids))
    train_data = _pretraining_data(objective, ecg_set, train_rows)
    val_data = _pretraining_data(objective, ecg_set, val_rows) if len(val_rows) else None
    notes = []
    if objective == "pclr":
        training, val_data, capped = _fit_pair_batches(training, train_data, val_data)
        notes += capped
    torch.manual_seed(training.seed)
    model = pretraining_model(objective, config)
    started = time.perf_counter()
    result = fit(model, "pretrain", train_data, val_data, training, work, name=objective)
    counts = {
        "windows": len(ids),
        "patients": len(patients),
        "train_windows": len(train_rows),
        "validation_windows": len(val_rows),
        "seconds": round(time.perf_counter() - started, 1),
        "epochs": result.epochs,
        f"best_{result.monitor}": result.best_score,
        "notes": notes,
    }
    if objective == "pclr":
        counts["single_ecg_patients"] = len(set(train_data.patient_ids)) - train_data.pair_patients
    return model, result, counts


def _pretraining_data(objective: str, ecg_set: ECGSet, rows: np.ndarray):
    from clinfm.ecg.data import ECGPairs, ECGWindows

    signals, ids = Rows(ecg_set.signals, rows), ecg_set.patient_ids[rows]
    if objective == "pclr":
        return ECGPairs(signals, ids, record_ids=ecg_set.record_ids[rows])
    return ECGWindows(signals, ids)


def _fit_pair_batches(training: TrainConfig, train_data, val_data) -> tuple[TrainConfig, object, list[str]]:
    """PCLR batches hold distinct patients with two recordings: no more per batch than training has
    (validation batches are capped by the dataset itself); too few in validation: none."""
    available = train_data.pair_patients
    if available < 2:
        raise InputError(
            f"PCLR needs patients with at least two ECGs (recordings), and {available} have them; "
            "use --objective clocs or autoencoder, or add records"
        )
    notes = []
    if val_data is not None and val_data.pair_patients < 2:
        val_data = None
        notes.append("no validation: fewer than 2 held-out patients have two ECGs; every epoch runs")
    if available < training.batch_size:
        notes.append(
            f"batch size lowered from {training.batch_size} to {available} pairs: the patients with 2+ ECGs"
        )
        training = training.replace(batch_size=available)
    for note in notes:
        log.info("%s", note)
    return training, val_data, notes


# ------------------------------------------------------------------------------------------ embed


PARALLEL_FEATURES_FROM = 64  # ECGs: fewer are measured in this process


def representations(
    method: str | Path, ecg_set: ECGSet, *, batch_size: int = 256, workers: int | None = None
) -> np.ndarray:
    """Every window's representation: the encoder's 320-d pooled output, or hand-crafted features
    (measured in ``workers`` processes, default one per core)."""
    from clinfm.ecg.data import ECGWindows

    if str(method) == HANDCRAFTED:
        from clinfm.ecg.features import FEATURES

        rate = ecg_set.samples / float(ecg_set.meta["settings"]["seconds"])
        jobs = [(signal, rate, ecg_set.leads) for signal in ecg_set.signals]  # memory-mapped views
        # neurokit2 measures about 10 ECGs a second per core; below a few dozen, starting workers
        # (each importing neurokit2) costs more than it saves.
        workers = (workers or os.cpu_count() or 1) if len(jobs) >= PARALLEL_FEATURES_FROM else 1
        rows = _map(_features, jobs, workers, f"measuring hand-crafted features of {len(jobs):,} ECGs")
        return np.stack(rows) if rows else np.empty((0, len(FEATURES)))
    model, _, _ = load_encoder(method)
    data = ECGWindows(ecg_set.signals, ecg_set.patient_ids)
    return predict(model, data, "embed", batch_size=batch_size).numpy()


def _features(job: tuple) -> np.ndarray:
    """Hand-crafted features of one ECG (a worker's job: signal, sampling rate, leads)."""
    from clinfm.ecg.features import ecg_features

    signal, rate, leads = job
    return ecg_features(np.asarray(signal), rate, leads)


def embed(
    model: str | os.PathLike,
    records: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    settings: PrepareSettings | None = None,
    overwrite: bool = False,
) -> dict:
    """``embeddings.npy`` (windows x dimensions) + ``windows.csv`` for ``records`` under ``model``
    (a checkpoint folder, or "handcrafted")."""
    out = check_output(out, overwrite)
    if str(model) == HANDCRAFTED:
        settings = settings or PrepareSettings()
        described = HANDCRAFTED
    else:
        rate = settings.sampling_rate if settings else None
        _, settings, config = load_encoder(model)
        settings = replace(settings, sampling_rate=rate)  # .npy records carry none; the user's
        described = {"checkpoint": str(model), "objective": config["objective"]}
    with work_dir(out, {"model": str(model), "records": sources(records)}, False) as work:
        ecg_set = resolve_set(records, work, settings)
        vectors = representations(model, ecg_set)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            np.save(tmp / "embeddings.npy", vectors.astype(np.float32))
            for name in (WINDOWS_FILE, RECORDS_FILE):
                if (ecg_set.path / name).exists():
                    shutil.copy(ecg_set.path / name, tmp / name)
            counts = {"windows": len(vectors), "dimensions": int(vectors.shape[1])}
            write_run(
                tmp,
                "ecg-embed",
                "ECG representations",
                {"model": described, "set": str(ecg_set.path)},
                counts,
                [],
            )
    shutil.rmtree(work, ignore_errors=True)
    return counts


# ------------------------------------------------------------------------------------------ probe


def read_embeddings(folder: str | os.PathLike) -> tuple[np.ndarray, list[dict]]:
    """(vectors, window rows) from a folder ``embed`` wrote: numbers, none infinite (NaN is a
    hand-crafted feature an ECG did not allow measuring)."""
    folder = Path(folder)
    try:
        vectors = np.load(folder / "embeddings.npy", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"not an embeddings folder from clinfm ecg embed ({error})", path=folder) from None
    check_numeric(vectors, folder / "embeddings.npy")
    if np.isinf(vectors).any():
        raise InputError(
            "holds infinite values, expected finite numbers or NaN", path=folder / "embeddings.npy"
        )
    rows = [row for _, row in read_csv_rows(folder / WINDOWS_FILE, what="windows table")[1]]
    if vectors.ndim != 2 or len(vectors) != len(rows):
        raise InputError(f"embeddings {vectors.shape} do not match {len(rows)} windows", path=folder)
    return vectors, rows


def probe_label(
    method: str,
    label: Label,
    patient_ids: np.ndarray,
    *,
    vectors: np.ndarray | None = None,
    fit_predict=None,
    sizes: Sequence[int | None] = PAPER_SIZES,
    seeds: Sequence[int] = (0, 1, 2),
    folds: int | None = None,
    test_share: float = 0.25,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """One method's probe curve for one label, over the windows that have the label."""
    known = label.known
    rows = np.flatnonzero(known)
    if fit_predict is None:
        x = vectors[rows]
        # NaN is a hand-crafted feature an ECG did not allow measuring; in a network's output it is
        # a diverged model, which must not be scored as chance
        if method != HANDCRAFTED and not np.isfinite(vectors).all():
            raise InputError(
                f"{METHOD_LABELS.get(method, method)} representations hold NaN or infinite values"
            )
        impute = method == HANDCRAFTED
        fit_predict = linear_probe(x, label.values[rows], label.task == "binary", impute_missing=impute)
    else:
        inner = fit_predict
        fit_predict = lambda train, test, s: inner(rows[train], rows[test], s)  # noqa: E731
    points = probe_curve(
        None,
        label.values[rows],
        patient_ids[rows],
        task=label.task,
        sizes=sizes,
        seeds=seeds,
        folds=folds,
        test_share=test_share,
        n_bootstrap=n_bootstrap,
        seed=seed,
        fit_predict=fit_predict,
    )
    values = label.values[rows]
    return {
        "method": method,
        "label": label.name,
        "task": label.task,
        "windows": len(rows),
        "patients": len(np.unique(patient_ids[rows])),
        "windows_without_label": int((~known).sum()),
        "positives": int(values.sum()) if label.task == "binary" else None,
        "points": points,
    }


def parse_labels(
    specs: Sequence[str], rows: list[dict], labels_csv: str | os.PathLike | None, folder: Path
) -> list[Label]:
    """The labels named by ``specs`` for the window ``rows`` of a prepared set or embeddings ``folder``."""
    if not specs:
        raise InputError("name at least one --label (a labels CSV column, or e.g. rhythm=AFIB)")
    table = read_labels(labels_csv) if labels_csv else None
    records = read_record_fields(folder)
    return [label_values(spec, rows, table, records) for spec in specs]


def probe(
    embeddings: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: Sequence[str],
    labels_csv: str | os.PathLike | None = None,
    sizes: Sequence[int | None] = PAPER_SIZES,
    seeds: Sequence[int] = (0, 1, 2),
    folds: int | None = None,
    test_share: float = 0.25,
    seed: int = 0,
    overwrite: bool = False,
) -> list[dict]:
    """``clinfm ecg probe``: linear probes of one embeddings folder for each label."""
    out = check_output(out, overwrite)
    vectors, rows = read_embeddings(embeddings)
    targets = parse_labels(labels, rows, labels_csv, Path(embeddings))
    ids = np.array([row["patient_id"] for row in rows], dtype=str)
    run = _read_run(Path(embeddings) / "run.json")
    method = _method_of(run)
    curves = [
        probe_label(
            method,
            label,
            ids,
            vectors=vectors,
            sizes=sizes,
            seeds=seeds,
            folds=folds,
            test_share=test_share,
            seed=seed,
        )
        for label in progress.track(targets, "probing")
    ]
    recorded = {
        "embeddings": str(embeddings),
        "labels": list(labels),
        "labels_csv": str(labels_csv) if labels_csv else None,
        "sizes": sizes_json(sizes),
        "seeds": list(seeds),
        "folds": folds,
        "test_share": test_share,
    }
    write_results(out, "ecg-probe", "Linear probes on ECG representations", recorded, curves, [], overwrite)
    return curves


def _read_run(path: Path) -> dict:
    """A run.json when there is one ({} otherwise); one line when it is damaged."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"unreadable run.json: {error}", path=path) from None


def sources(records: Sequence[str | os.PathLike]) -> list[str]:
    """Where records came from, for run.json: folders as given, single files by their folder only
    (a record's file name can be an id, and checkpoints hold none)."""
    folders = [str(Path(r)) for r in records if not Path(r).is_file()]
    files: dict[str, int] = {}
    for record in records:
        if Path(record).is_file():
            files[str(Path(record).parent)] = files.get(str(Path(record).parent), 0) + 1
    return folders + [f"{folder} ({n} files)" for folder, n in files.items()]


def _method_of(run: dict) -> str:
    model = (run.get("config") or {}).get("model")
    if model == HANDCRAFTED:
        return HANDCRAFTED
    return model.get("objective", "encoder") if isinstance(model, dict) else "encoder"


def sizes_json(sizes: Sequence[int | None]) -> list:
    return ["all" if size is None else int(size) for size in sizes]


def write_results(
    out,
    kind: str,
    title: str,
    recorded: dict,
    curves: list[dict],
    notes: list[str],
    overwrite: bool,
    encoders: dict[str, Path] | None = None,
):
    """The run folder: metrics.json, table.md, run.json, report.html (+ ``models/<method>/``)."""
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for method, folder in (encoders or {}).items():  # copied: the work folder goes only on success
            shutil.copytree(folder, tmp / "models" / method)
        write_json_atomic(tmp / "metrics.json", {"ecg": {"probes": curves, "gains": relative_gains(curves)}})
        (tmp / "table.md").write_text(curves_table(curves) + "\n", encoding="utf-8")
        write_run(tmp, kind, title, recorded, {"metrics": "metrics.json"}, notes)
        from clinfm.report.html import write_report

        write_report(tmp)
