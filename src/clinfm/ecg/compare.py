"""``clinfm ecg compare``: PCLR's comparison on the user's records. Each pre-training objective's
frozen representation, hand-crafted features and networks trained from scratch, probed on each label
at each training size; resumable (finished representations and curves are kept in the work folder).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from clinfm.ecg.checkpoint import save_encoder
from clinfm.ecg.corpus import ECGSet, PrepareSettings
from clinfm.ecg.labels import Label
from clinfm.ecg.model import ResNetConfig
from clinfm.ecg.probes import PAPER_SIZES
from clinfm.ecg.recipes import (
    PRETRAINING,
    Rows,
    encoder_config,
    parse_labels,
    probe_label,
    representations,
    resolve_set,
    sizes_json,
    sources,
    train_encoder,
    write_results,
)
from clinfm.ecg.records import PAPER_SAMPLES
from clinfm.ecg.results import HANDCRAFTED, METHOD_LABELS, METHODS, PRETRAINING_OBJECTIVES, SCRATCH
from clinfm.errors import InputError
from clinfm.io import check_output, write_json_atomic
from clinfm.train.engine import TrainConfig, fit, is_global_zero, predict
from clinfm.train.runs import work_dir

log = logging.getLogger(__name__)

# From-scratch networks per probe point: a fixed number of steps whatever the training size, so
# 10 patients are not trained for 30 steps while 250 get 800; no validation (none to spare).
SCRATCH_TRAINING = TrainConfig(
    max_epochs=20, batch_size=32, optimizer="adam", lr=1e-3, patience=None, steps_per_epoch=10, logger="none"
)


def scratch_training(steps: int, **changes) -> TrainConfig:
    """The from-scratch networks' settings for about ``steps`` optimiser steps (whole epochs of
    :data:`SCRATCH_TRAINING`'s steps each, at least one)."""
    per_epoch = SCRATCH_TRAINING.steps_per_epoch
    return SCRATCH_TRAINING.replace(max_epochs=max(1, round(steps / per_epoch)), **changes)


def scratch_fit_predict(ecg_set: ECGSet, label: Label, config: ResNetConfig, training: TrainConfig):
    """A network trained from scratch on the training rows' ECGs, predicting the test rows."""
    from clinfm.ecg.baselines import SupervisedModel
    from clinfm.ecg.data import ECGWindows

    objective = "classify" if label.task == "binary" else "regress"
    ids = ecg_set.patient_ids

    def fit_predict(train_rows: np.ndarray, test_rows: np.ndarray, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        model = SupervisedModel(config, label.task)
        y = label.values[train_rows]
        # Regression targets (ages of 20-85) standardised on the training rows, as the probes'
        # ridge sees them: an output starting near 0 would otherwise spend its steps on the scale.
        shift, scale = (0.0, 1.0) if label.task == "binary" else (y.mean(), y.std() or 1.0)
        train = ECGWindows(Rows(ecg_set.signals, train_rows), ids[train_rows], (y - shift) / scale)
        with _scratch_folder() as work:
            fit(model, objective, train, None, training.replace(seed=seed), work, resume=False)
        test = ECGWindows(Rows(ecg_set.signals, test_rows), ids[test_rows])
        return predict(model, test, objective).numpy().reshape(-1) * scale + shift

    return fit_predict


def _scratch_folder():
    import tempfile

    return tempfile.TemporaryDirectory(prefix="clinfm-scratch-")


def compare(
    records: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    labels: Sequence[str],
    labels_csv: str | os.PathLike | None = None,
    pretrain_records: Sequence[str | os.PathLike] | None = None,
    methods: Sequence[str] = METHODS,
    preset: str = "small",
    training: TrainConfig = PRETRAINING,
    scratch_training: TrainConfig = SCRATCH_TRAINING,
    settings: PrepareSettings | None = None,
    sizes: Sequence[int | None] = PAPER_SIZES,
    seeds: Sequence[int] = (0, 1, 2),
    folds: int | None = None,
    test_share: float = 0.25,
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = True,
) -> list[dict]:
    """The paper's comparison: each pre-training objective's frozen representation, hand-crafted
    features and networks trained from scratch, probed on each label at each training size.

    Encoders pre-train on ``pretrain_records`` (default: ``records`` themselves, every window but
    no labels, which a caveat notes); probes train and test on ``records``' labelled windows.
    """
    out = check_output(out, overwrite)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    settings = settings or PrepareSettings()
    config = encoder_config(preset, len(settings.leads))
    settings = replace(settings, samples=config.samples)
    recorded = {
        "records": sources(records),
        "pretrain_records": sources(pretrain_records) if pretrain_records else None,
        "labels": list(labels),
        "labels_csv": str(labels_csv) if labels_csv else None,
        "methods": list(methods),
        "preset": preset,
        "training": training.to_dict(),
        "scratch_training": scratch_training.to_dict(),
        "prepare": {**settings.__dict__, "leads": list(settings.leads)},
        "sizes": sizes_json(sizes),
        "seeds": list(seeds),
        "folds": folds,
        "test_share": test_share,
        "seed": seed,
    }
    notes = []
    with work_dir(out, recorded, resume) as work:
        cohort = resolve_set(records, work, settings)
        targets = parse_labels(labels, cohort.windows, labels_csv, cohort.path)
        unlabelled = cohort
        if pretrain_records:
            unlabelled = resolve_set(pretrain_records, work / "pretrain", settings)
        elif any(m in PRETRAINING_OBJECTIVES for m in methods):
            notes.append(
                "Encoders were pre-trained on the probed records themselves (their windows, not their "
                "labels), test patients included; pass --pretrain-records for a separate unlabelled set."
            )
        ids = cohort.patient_ids
        curves = []
        for method in methods:
            vectors, fit_predict = None, None
            if method == SCRATCH:
                fit_predicts = {
                    t.name: scratch_fit_predict(cohort, t, config, scratch_training) for t in targets
                }
            elif method == HANDCRAFTED:
                vectors = _handcrafted_vectors(records, cohort, settings, work)
            else:
                vectors = _method_vectors(method, cohort, unlabelled, config, training, settings, work)
            for target in targets:
                cached = work / "points" / f"{method}__{_safe(target.name)}.json"
                if cached.exists():
                    curves.append(json.loads(cached.read_text()))
                    continue
                log.info("probing %s with %s", target.name, METHOD_LABELS[method])
                if method == SCRATCH:
                    fit_predict = fit_predicts[target.name]
                curve = probe_label(
                    method,
                    target,
                    ids,
                    vectors=vectors,
                    fit_predict=fit_predict,
                    sizes=sizes,
                    seeds=seeds,
                    folds=folds,
                    test_share=test_share,
                    seed=seed,
                )
                if is_global_zero():
                    write_json_atomic(cached, curve)
                curves.append(curve)
        if not is_global_zero():  # under DDP every process trained the encoders; one writes
            return curves
        encoders = {m: work / "models" / m / "encoder" for m in methods if m in PRETRAINING_OBJECTIVES}
        title = "ECG representations compared"
        write_results(out, "ecg-compare", title, recorded, curves, notes, overwrite, encoders)
    shutil.rmtree(work, ignore_errors=True)
    return curves


def _handcrafted_vectors(records, cohort: ECGSet, settings: PrepareSettings, work: Path) -> np.ndarray:
    """Hand-crafted features of the cohort's windows, measured at no fewer samples than the paper's
    4,096 per window (the small preset's 1,024 would time QRS and PR to 10 ms at 10 s windows)."""
    cached = work / "points" / f"{HANDCRAFTED}.npy"
    if cached.exists():
        return np.load(cached, allow_pickle=False)
    fine = cohort
    if cohort.samples < PAPER_SAMPLES:
        fine = resolve_set(records, work / "features", replace(settings, samples=PAPER_SAMPLES))
    vectors = representations(HANDCRAFTED, fine)
    if len(vectors) != len(cohort.windows):
        raise InputError(
            f"{len(vectors)} feature rows for {len(cohort.windows)} windows: the records changed"
        )
    if is_global_zero():
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
    return vectors


def _method_vectors(method, cohort, unlabelled, config, training, settings, work: Path) -> np.ndarray:
    """The cohort's representations under ``method`` (cached in the work folder, with the encoder
    a pre-training method trained, which the run keeps under ``models/<method>``)."""
    cached = work / "points" / f"{method}.npy"
    if cached.exists():
        return np.load(cached, allow_pickle=False)
    from clinfm.ecg.data import ECGWindows

    log.info("pre-training %s", METHOD_LABELS[method])
    model, _, counts = train_encoder(unlabelled, method, config, training, work / "models" / method)
    if is_global_zero():
        extra = {"training": training.to_dict(), "data": counts}
        save_encoder(work / "models" / method / "encoder", model, method, settings, extra)
    vectors = predict(model, ECGWindows(cohort.signals, cohort.patient_ids), "embed", batch_size=256).numpy()
    if is_global_zero():
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
    return vectors


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
