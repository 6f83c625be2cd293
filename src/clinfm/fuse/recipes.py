"""MEDFuse end to end: pre-train the lab branch, train and evaluate fusion models, run the ablation.

Data: a MEDS dataset with labs (``numeric_value``) and notes (``text_value``) and a multi-label
task: ``tasks/<task>/<disease>.parquet`` (one binary label file per disease on shared samples, as
the synthetic cohort's ``diseases`` and ``clinfm fuse diagnosis-task`` write) or such a folder by
path. Patients are split by ``metadata/subject_splits.parquet``: ``train`` fits, ``tuning`` stops
early and picks each disease's threshold, ``held_out`` is scored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from clinfm.checks import (
    MAX_FEED_FORWARD,
    MAX_LABELS,
    MAX_LAYERS,
    MAX_VOCABULARY,
    check_field,
    check_fields,
    config_from,
    each,
    flag,
    integer,
    mapping,
    nested,
    number,
    optional,
    text,
)
from clinfm.errors import InputError
from clinfm.fuse.data import FusionSamples, NoteVectors, SampleRows
from clinfm.fuse.labs import (
    LabEncoderConfig,
    LabTokens,
    MaskedLabModel,
    ValueScaler,
    fit_value_scaler,
    lab_vocabulary,
)
from clinfm.fuse.model import FusionConfig, FusionModel
from clinfm.fuse.samples import LAB_PREFIXES, SampleReport, assemble, lab_table, select_events
from clinfm.io import atomic_directory, check_output, write_json_atomic
from clinfm.train.checkpoint import load_weights, read_config_of_kind, save_checkpoint
from clinfm.train.engine import TrainConfig, clone, fit, is_global_zero, predict
from clinfm.train.runs import copy_logs, resume_note, work_dir, write_run
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, Vocabulary, check_saved_min_subjects

LAB_KIND = "fuse-lab-encoder"
MODEL_KIND = "fuse-model"
VOCAB_FILE, SCALER_FILE = "lab_vocabulary.json", "lab_scaler.json"
SPLITS = ("train", "tuning", "held_out")
PRETRAINING = TrainConfig(max_epochs=100, batch_size=256, optimizer="adamw", lr=1e-3, patience=5)
FINE_TUNING = TrainConfig(max_epochs=50, batch_size=64, optimizer="adamw", lr=5e-4, patience=5)
#: Lab pre-training samples: every distinct time a patient had labs drawn, at most this many.
MAX_PANELS = 200_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputSettings:
    """How samples are read from MEDS; recorded with a model and reused to evaluate it."""

    labs: tuple[str, ...] = LAB_PREFIXES
    window_days: float | None = None  # look-back for labs; None = all history
    sections: tuple[str, ...] | None = None  # note sections to keep (notes with headings)
    encoder: str = "default"  # the note branch's language model (clinfm.concepts specs)
    max_chunks: int = 8  # note chunks per sample the model reads (the rest are counted)
    labs_as_text: bool = False  # append abnormal labs to the note text (MEDFuse's LABTEXT)
    lab_text_threshold: float = 2.0  # |z| at which a lab counts as abnormal for LABTEXT
    note_train_layers: int = 0  # > 0: fine-tune the note encoder's top layers (tokens, not cached vectors)

    @property
    def window(self) -> dt.timedelta | None:
        return dt.timedelta(days=self.window_days) if self.window_days is not None else None

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, payload: dict, *, where: object = None, section: str | None = None) -> InputSettings:
        """Settings read from a file (``where``), every field checked."""
        lists = {"labs": tuple, "sections": tuple}
        return config_from(cls, payload, INPUT_RULES, where, section=section, convert=lists)


#: What each field of saved InputSettings may hold (clinfm.checks).
INPUT_RULES = {
    "labs": each(text(), 1, 10_000),
    "window_days": optional(number(0, 1e6)),
    "sections": optional(each(text(), 0, 10_000)),
    "encoder": text(),
    "max_chunks": integer(1, 100_000),
    "labs_as_text": flag(),
    "lab_text_threshold": number(0, 1e6),
    "note_train_layers": integer(0, MAX_LAYERS),
}
#: A lab item's unit, by item (for the vocabulary's items only).
UNITS = mapping(text(), MAX_VOCABULARY)
#: The top-level settings of a fusion model's config.json (clinfm.checks); its fusion, lab encoder
#: and input settings are checked by their own classes.
FUSION_MODEL_RULES = {
    "note_dim": integer(0, MAX_FEED_FORWARD),
    "note_encoder": optional(text()),
    "diseases": each(text(), 1, MAX_LABELS, unique=True),
    "thresholds": each(number(0, 1), 1, MAX_LABELS),
    "units": UNITS,
}


# ---------------------------------------------------------------------------------------- cohort


def load_task(data: str | os.PathLike, task: str) -> tuple[pl.DataFrame, list[str]]:
    """The task's samples and disease columns; ``task`` is a name under ``tasks/`` or a folder."""
    from clinfm.fuse.samples import disease_labels
    from clinfm.fuse.targets import read_task

    under_data = not Path(task).is_absolute() and (Path(data) / "tasks" / task).is_dir()
    if not under_data and Path(task).is_dir():
        labels, names = read_task(task)[:2]
    else:
        labels, names = disease_labels(data, task)
    for name in names:
        missing = labels[name].null_count()
        if missing:
            raise InputError(
                f"task {task!r}: {missing:,} samples have no value for {name!r} (expected true/false)"
            )
    return labels, names


def with_splits(data: str | os.PathLike, labels: pl.DataFrame) -> pl.DataFrame:
    """``labels`` with each subject's ``split``; subjects the split file does not name are refused."""
    from clinfm.events.meds import read_splits

    splits = read_splits(data)
    if splits is None:
        raise InputError("has no metadata/subject_splits.parquet (train / tuning / held_out)", path=data)
    joined = labels.join(splits.select("subject_id", "split"), on="subject_id", how="left")
    unknown = joined.filter(pl.col("split").is_null())
    if unknown.height:
        raise InputError(
            f"{unknown['subject_id'].n_unique():,} subjects of the task have no split in "
            "metadata/subject_splits.parquet",
            path=data,
        )
    return joined


@dataclass
class Cohort:
    """One task's samples with both modalities' inputs, read once and shared by every model."""

    labels: pl.DataFrame  # subject_id, prediction_time, split, one bool column per disease
    names: list[str]
    labs: pl.DataFrame  # lab_table rows aligned with labels
    note_texts: list[str]
    report: SampleReport
    settings: InputSettings
    units: dict[str, str]  # the unit each lab item is read in (the training split's, or a model's)
    notes: object = None  # every sample's note input (NoteVectors or NoteTokens), once prepared
    note_dim: int = 0
    note_counts: dict = field(default_factory=dict)

    def require(self, *splits: str) -> None:
        """Refuse, before any training, a task without samples in a split a command needs."""
        for split in splits:
            if not len(self.rows(split)):
                raise InputError(f"the task has no sample of a subject in the {split} split")

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.labels["split"].to_numpy() == split)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        return self.labels.select(self.names).to_numpy()[rows].astype(np.float32)


def training_units(
    events: pl.LazyFrame, samples: pl.DataFrame, window: dt.timedelta | None, labs: Sequence[str]
) -> dict[str, str]:
    """Each lab item's most frequent known unit among the lab events ``samples`` see (ties:
    alphabetical), older results included: the units a model is trained in."""
    report = SampleReport()
    lab_table(events, samples, window=window, labs=tuple(labs), report=report)
    return report.item_units


def read_cohort(
    data: str | os.PathLike, task: str, settings: InputSettings, units: dict[str, str] | None = None
) -> Cohort:
    """Samples of ``task`` with their labs and notes known at prediction time.

    An item seen in several units is read in the unit ``units`` gives (a trained model's), else in
    its most frequent unit among the training samples: never chosen by tuning or held-out rows.
    """
    from clinfm.events.meds import scan_events

    labels, names = load_task(data, task)
    labels = with_splits(data, labels)
    samples = labels.select("subject_id", "prediction_time")
    train = labels.filter(pl.col("split") == "train").select("subject_id", "prediction_time")
    events = scan_events(data)
    chosen = training_units(events, train, settings.window, settings.labs) | (units or {})
    inputs = assemble(
        events, samples, window=settings.window, sections=settings.sections, labs=settings.labs, units=chosen
    )
    texts = inputs.notes["text"].fill_null("").to_list()
    return Cohort(labels, names, inputs.labs, texts, inputs.report, settings, chosen)


NOTE_CACHE = ".clinfm/note-embeddings"  # under the dataset the notes come from


def note_cache(data: str | os.PathLike, cache: object) -> object:
    """Where vectors of patient notes are cached: beside the dataset they come from (``NOTE_CACHE``),
    so they are kept, moved and deleted with it and never gather in the user's home folder.
    $CLINFM_CACHE, a folder or an EmbeddingCache given by the caller wins; False: no cache. A
    dataset folder this user cannot write gets no cache (said once)."""
    if cache is not True or os.environ.get("CLINFM_CACHE"):
        return cache
    if not os.access(data, os.W_OK):
        log.info("not caching note embeddings: %s is read-only", data)
        return False
    return Path(data) / NOTE_CACHE


def prepare_notes(cohort: Cohort, branch: LabBranch | None, *, cache=True) -> None:
    """Every sample's note input, made once: chunk vectors embedded through the on-disk cache, or
    (fine-tuning the note encoder) the chunks' token ids. LABTEXT is appended when asked: abnormal by
    the lab branch's scaler, or (no lab branch) by one fitted on the training samples."""
    from clinfm.concepts import load_encoder
    from clinfm.fuse.notes import chunk_texts, embed_notes, encoder_tokenizer, tokenize_notes

    settings = cohort.settings
    texts = _note_texts(cohort, branch)
    encoder = load_encoder(settings.encoder)
    if settings.note_train_layers:
        tokenizer, limit = encoder_tokenizer(encoder)
        if tokenizer is None:
            raise InputError(f"encoder {encoder.name} has no local model to fine-tune")
        found = chunk_texts(texts, tokenizer, limit, max_chunks=settings.max_chunks)
        cohort.notes = tokenize_notes(tokenizer, found, len(texts), limit, settings.max_chunks)
        cohort.note_dim, has_note, chunks = 0, found.counts > 0, len(found.texts)
    else:
        found = embed_notes(encoder, texts, cache=cache, max_chunks=settings.max_chunks)
        cohort.notes = NoteVectors(found.chunks, found.offsets)
        cohort.note_dim, has_note, chunks = found.chunks.shape[1], found.has_note, len(found.chunks)
    cohort.note_counts = {
        "samples_without_note_text": int((~has_note).sum()),  # after LABTEXT, when asked
        "notes_chunked": int(found.texts_chunked),
        "chunks": chunks,
        "chunks_beyond_max": int(found.chunks_dropped),
        "encoder": encoder.name,
    }


def _note_texts(cohort: Cohort, branch: LabBranch | None) -> list[str]:
    from clinfm.fuse.notes import labs_as_text, with_lab_text

    if not cohort.settings.labs_as_text:
        return cohort.note_texts
    if branch is not None:
        scaler = branch.scaler
    else:
        train_labs = cohort.labs[cohort.rows("train")]
        scaler = fit_value_scaler(train_labs, lab_vocabulary(train_labs))
    lab_text = labs_as_text(cohort.labs, scaler, threshold=cohort.settings.lab_text_threshold)
    return with_lab_text(cohort.note_texts, lab_text)


# ---------------------------------------------------------------------------------------- lab branch


@dataclass
class LabBranch:
    """The lab encoder with the vocabulary and the value scaler its inputs are made with."""

    model: MaskedLabModel
    vocab: Vocabulary
    scaler: ValueScaler
    pretrained: bool
    units: dict[str, str]  # the unit each item's values (and the scaler) are in

    def tokens(self, frame: pl.DataFrame) -> LabTokens:
        return LabTokens(frame, self.vocab, self.scaler)


PRESETS = ("paper", "small")


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose paper or small")


def lab_preset(preset: str) -> LabEncoderConfig:
    """The lab encoder for a preset: paper (128-d, 4 layers) or small (32-d, 2 layers)."""
    _check_preset(preset)
    return LabEncoderConfig.small() if preset == "small" else LabEncoderConfig()


def fusion_preset(preset: str, **changes) -> FusionConfig:
    """The fusion layers for a preset: paper (128-d, as the lab encoder) or small (32-d)."""
    _check_preset(preset)
    return FusionConfig.small(**changes) if preset == "small" else FusionConfig(**changes)


def fresh_lab_branch(
    train_labs: pl.DataFrame, config: LabEncoderConfig, min_subjects: int, units: dict[str, str]
) -> LabBranch:
    """An untrained lab encoder whose vocabulary and scaler come from the training samples."""
    vocab = lab_vocabulary(train_labs, min_subjects)
    model = MaskedLabModel(len(vocab), config)
    return LabBranch(model, vocab, fit_value_scaler(train_labs, vocab), False, _saved_units(units, vocab))


def _saved_units(units: dict[str, str], vocab: Vocabulary) -> dict[str, str]:
    """Units of the vocabulary's items only: a saved model names no rare test."""
    return {item: unit for item, unit in sorted(units.items()) if item in vocab}


def lab_panels(
    data: str | os.PathLike, labs: Sequence[str], splits: Sequence[str], limit: int
) -> pl.DataFrame:
    """Pre-training samples: each distinct (subject, time) with a lab result in ``splits``, at most
    ``limit`` (an even draw over them, seeded)."""
    from clinfm.events.meds import read_splits, scan_events

    subjects = read_splits(data)
    if subjects is None:
        raise InputError("has no metadata/subject_splits.parquet (train / tuning / held_out)", path=data)
    chosen = subjects.filter(pl.col("split").is_in(list(splits))).select("subject_id")
    panels = (
        scan_events(data, columns=["subject_id", "time", "code"])
        .filter(select_events(tuple(labs)) & pl.col("time").is_not_null())
        .join(chosen.lazy(), on="subject_id", how="semi")
        .select("subject_id", prediction_time=pl.col("time"))
        .unique()
        .sort("subject_id", "prediction_time")
        .collect()
    )
    if panels.height > limit:
        panels = panels.sample(limit, seed=0).sort("subject_id", "prediction_time")
    return panels


def pretrain_labs(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    preset: str = "paper",
    labs: Sequence[str] = LAB_PREFIXES,
    window_days: float | None = None,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    max_panels: int = MAX_PANELS,
    mask_ratio: float = LabEncoderConfig.mask_ratio,
    units: dict[str, str] | None = None,
    training: TrainConfig = PRETRAINING,
    overwrite: bool = False,
    resume: bool = True,
) -> dict:
    """Masked lab-test modelling on every lab panel of the training (and, for early stopping, tuning)
    patients; the encoder goes to ``out`` with its vocabulary, value scaler and units (``units``
    fixes some, e.g. a cohort's; the others are the training panels' most frequent)."""
    from clinfm.events.meds import scan_events

    out = check_output(out, overwrite)
    check_saved_min_subjects(min_subjects)  # now, not after training, when the encoder is saved
    config = dataclasses.replace(lab_preset(preset), mask_ratio=mask_ratio)
    window = dt.timedelta(days=window_days) if window_days is not None else None
    recorded = {
        "data": str(data),
        "preset": preset,
        "mask_ratio": mask_ratio,
        "labs": list(labs),
        "window_days": window_days,
        "min_subjects": min_subjects,
        "max_panels": max_panels,
        "training": training.to_dict(),
    }
    events, labs = scan_events(data), tuple(labs)
    train_panels = lab_panels(data, labs, ["train"], max_panels)
    units = training_units(events, train_panels, window, labs) | (units or {})
    frames = {
        split: lab_table(events, panels, window=window, labs=labs, units=units)
        for split, panels in (
            ("train", train_panels),
            ("tuning", lab_panels(data, labs, ["tuning"], max_panels)),
        )
    }
    if not frames["train"].height or not int(frames["train"]["n_labs"].sum()):
        raise InputError("no lab results among the training patients (see --labs)", path=data)
    with work_dir(out, recorded, resume) as work:
        torch.manual_seed(training.seed)
        branch = fresh_lab_branch(frames["train"], config, min_subjects, units)
        val = branch.tokens(frames["tuning"]) if frames["tuning"].height else None
        result = fit(
            branch.model, "pretrain", branch.tokens(frames["train"]), val, training, work, name="labs"
        )
        counts = {
            "train_panels": frames["train"].height,
            "tuning_panels": frames["tuning"].height,
            "lab_items": len(branch.vocab.codes),
            "lab_tokens": int(frames["train"]["n_labs"].sum()),
        }
        if not is_global_zero():
            return counts
        with atomic_directory(out, overwrite=overwrite) as tmp:
            save_lab_branch(tmp, branch, recorded)
            write_run(
                tmp,
                "fuse-pretrain-labs",
                "Lab encoder pre-trained by masked lab-test modelling",
                recorded,
                {"data": counts, "epochs": result.epochs, "best": {result.monitor: result.best_score}},
                resume_note(result),
            )
            copy_logs(work, tmp)
    shutil.rmtree(work, ignore_errors=True)
    return counts


def save_lab_branch(folder: Path, branch: LabBranch, recorded: dict) -> None:
    save_checkpoint(
        folder,
        branch.model,
        {
            "kind": LAB_KIND,
            "encoder": branch.model.config.to_dict(),
            "inputs": recorded,
            "units": branch.units,
        },
        {SCALER_FILE: branch.scaler.to_dict()},
    )
    branch.vocab.save(folder / VOCAB_FILE)


def read_scaler(path: Path) -> ValueScaler:
    from clinfm.fuse.labs import FORMAT, VERSION
    from clinfm.io import read_json_document

    return ValueScaler.from_dict(
        read_json_document(path, format=FORMAT, version=VERSION, what="a lab value scaler"), where=path
    )


def load_lab_branch(folder: str | os.PathLike) -> tuple[LabBranch, dict]:
    """A pre-trained lab encoder (``clinfm fuse pretrain-labs``) and its config.json; every file is
    checked, then every tensor, before the encoder is built."""
    folder = Path(folder)
    where = folder / "config.json"
    config = read_config_of_kind(folder, LAB_KIND, "a lab encoder", "clinfm fuse pretrain-labs")
    check_field(config, "units", UNITS, where)
    encoder = LabEncoderConfig.from_dict(nested(config, "encoder", where), where=where, section="encoder")
    vocab = Vocabulary.load(folder / VOCAB_FILE, of_model=True)
    scaler = read_scaler(folder / SCALER_FILE)
    model = load_weights(folder, lambda: MaskedLabModel(len(vocab), encoder))
    return LabBranch(model, vocab, scaler, True, config["units"]), config


# ---------------------------------------------------------------------------------------- fusion


def datasets(cohort: Cohort, branch: LabBranch | None, config: FusionConfig) -> dict[str, FusionSamples]:
    """Train / tuning / held-out datasets with the modalities the fusion uses."""
    return {split: _one_split(cohort, branch, config, cohort.rows(split)) for split in SPLITS}


def _one_split(
    cohort: Cohort, branch: LabBranch | None, config: FusionConfig, rows: np.ndarray
) -> FusionSamples:
    notes = SampleRows(cohort.notes, rows) if config.uses_notes else None
    labs = branch.tokens(cohort.labs[rows]) if config.uses_labs else None
    return FusionSamples(labs, notes, cohort.targets(rows))


def note_encoder(settings: InputSettings, config: FusionConfig):
    """The note encoder to fine-tune with the fusion model, or None (cached vectors)."""
    if not (config.uses_notes and settings.note_train_layers):
        return None
    from clinfm.fuse.notes import TrainableNoteEncoder

    return TrainableNoteEncoder.from_encoder(settings.encoder, train_layers=settings.note_train_layers)


def build_model(
    settings: InputSettings,
    branch: LabBranch | None,
    config: FusionConfig,
    n_labels: int,
    note_dim: int,
    notes: torch.nn.Module | None = None,
) -> FusionModel:
    """A fusion model; its lab encoder is a copy of the branch's, so fine-tuning one model never
    changes the encoder the next one starts from. ``notes``: the note encoder to fine-tune, if already
    loaded (else it is loaded when the settings ask for one)."""
    notes = notes if notes is not None else note_encoder(settings, config)
    lab_model = clone(branch.model) if branch is not None and config.uses_labs else None
    dim = notes.hidden_size if notes is not None else note_dim
    return FusionModel(lab_model, dim if config.uses_notes else 0, n_labels, config, note_encoder=notes)


def train_fusion(
    cohort: Cohort,
    branch: LabBranch | None,
    config: FusionConfig,
    training: TrainConfig,
    work: Path,
    name: str = "fusion",
) -> tuple[FusionModel, dict]:
    """Fit one fusion model; returns it with its tuning and held-out probabilities."""
    parts = datasets(cohort, branch, config)
    torch.manual_seed(training.seed)
    model = build_model(cohort.settings, branch, config, len(cohort.names), cohort.note_dim)
    tuning = parts["tuning"] if len(parts["tuning"]) else None
    result = fit(model, "multilabel", parts["train"], tuning, training, work, name=name)
    probabilities = {
        split: predict(model, parts[split], "multilabel").numpy() if len(parts[split]) else None
        for split in ("tuning", "held_out")
    }
    return model, {"fit": result, "probabilities": probabilities}


def _groups(cohort: Cohort, rows: np.ndarray) -> np.ndarray:
    return cohort.labels["subject_id"].to_numpy()[rows]


def scores_of(cohort: Cohort, outputs: dict, *, n_bootstrap: int = 1000) -> tuple[np.ndarray, dict]:
    """Thresholds from the tuning split, then the held-out scores."""
    from clinfm.fuse.scores import choose_thresholds, score

    tuning, held_out = cohort.rows("tuning"), cohort.rows("held_out")
    P = outputs["probabilities"]
    thresholds = choose_thresholds(cohort.targets(tuning), P["tuning"], len(cohort.names))
    metrics = score(
        cohort.targets(held_out),
        P["held_out"],
        thresholds,
        cohort.names,
        groups=_groups(cohort, held_out),
        n_bootstrap=n_bootstrap,
    )
    return thresholds, metrics


def input_counts(cohort: Cohort) -> dict:
    """What the samples held, for run.json and the report (counts only, no ids)."""
    per_split = {split: len(cohort.rows(split)) for split in SPLITS}
    return {
        "samples": per_split,
        "samples_without_labs": int((cohort.labs["n_labs"] == 0).sum()),
        "samples_without_notes": cohort.report.samples_without_notes,
        "diseases": cohort.names,
        "positives": {name: int(cohort.labels[name].sum()) for name in cohort.names},
        **cohort.note_counts,
    }


def report_lines(cohort: Cohort) -> list[str]:
    lines = cohort.report.lines()
    counts = cohort.note_counts
    if counts:
        lines.append(
            f"{counts['notes_chunked']:,} samples' notes were longer than the encoder reads at once and "
            f"were embedded in chunks ({counts['chunks']:,} chunks in all; "
            f"{counts['chunks_beyond_max']:,} beyond {cohort.settings.max_chunks} per sample not read)."
        )
    return lines


def save_fusion(
    folder: Path, model: FusionModel, branch: LabBranch | None, cohort: Cohort, thresholds: np.ndarray
) -> None:
    """The fusion model as a checkpoint folder: weights, configs, disease names, thresholds, and the
    lab vocabulary and scaler; no subject ids."""
    files = {SCALER_FILE: branch.scaler.to_dict()} if branch is not None else {}
    save_checkpoint(
        folder,
        model,
        {
            "kind": MODEL_KIND,
            "fusion": model.config.to_dict(),
            "lab_encoder": branch.model.config.to_dict() if branch is not None else None,
            "note_dim": model.note_dim,
            "note_encoder": cohort.note_counts.get("encoder"),
            "diseases": cohort.names,
            "thresholds": [float(t) for t in thresholds],
            "units": branch.units if branch is not None else {},
            "inputs": cohort.settings.to_dict(),
        },
        files,
    )
    if branch is not None:
        branch.vocab.save(folder / VOCAB_FILE)


def load_fusion(folder: str | os.PathLike) -> tuple[FusionModel, LabBranch | None, dict]:
    """A trained fusion model (``clinfm fuse train``'s ``model/``), its lab branch (whose encoder is
    the model's own) and its config.json; every file is checked, then every tensor, before the model
    is built."""
    folder = Path(folder)
    where = folder / "config.json"
    config = read_config_of_kind(folder, MODEL_KIND, "a fusion model", "clinfm fuse train: its model/")
    check_fields(config, FUSION_MODEL_RULES, where, required=tuple(FUSION_MODEL_RULES), ignore_unknown=True)
    if len(config["thresholds"]) != len(config["diseases"]):
        raise InputError(
            f"{len(config['thresholds'])} thresholds for {len(config['diseases'])} diseases: "
            "expected one each",
            path=where,
        )
    fusion = FusionConfig.from_dict(nested(config, "fusion", where), where=where, section="fusion")
    settings = InputSettings.from_dict(nested(config, "inputs", where), where=where, section="inputs")
    lab_values = nested(config, "lab_encoder", where, optional=True)
    if lab_values is not None:
        lab_config = LabEncoderConfig.from_dict(lab_values, where=where, section="lab_encoder")
        vocab, scaler = Vocabulary.load(folder / VOCAB_FILE, of_model=True), read_scaler(folder / SCALER_FILE)

    def branch(lab_model: MaskedLabModel | None = None) -> LabBranch | None:
        if lab_values is None:
            return None
        return LabBranch(
            lab_model or MaskedLabModel(len(vocab), lab_config), vocab, scaler, True, config["units"]
        )

    # A language model to fine-tune comes from disk, not from this config: loaded once, outside the
    # skeleton load_weights builds on the meta device (it would cache a model without weights).
    notes = note_encoder(settings, fusion)

    def build() -> FusionModel:
        return build_model(settings, branch(), fusion, len(config["diseases"]), config["note_dim"], notes)

    model = load_weights(folder, build)
    return model.eval(), branch(model.lab_model), config


def lab_branch_for(
    cohort: Cohort, given: LabBranch | None, preset: str, min_subjects: int, seed: int
) -> LabBranch:
    """The given (pre-trained) lab encoder, else a fresh one over the cohort's training labs, its
    initial weights drawn from ``seed``."""
    if given is not None:
        return given
    torch.manual_seed(seed)
    return fresh_lab_branch(cohort.labs[cohort.rows("train")], lab_preset(preset), min_subjects, cohort.units)


def train(
    data: str | os.PathLike,
    task: str,
    out: str | os.PathLike,
    *,
    labs_model: str | os.PathLike | None = None,
    fusion: FusionConfig | None = None,
    settings: InputSettings | None = None,
    preset: str = "paper",
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    training: TrainConfig = FINE_TUNING,
    cache=True,
    overwrite: bool = False,
    resume: bool = True,
) -> dict:
    """Train one fusion model on the train split; thresholds from tuning; scores on held_out.

    ``out`` gets ``model/`` (the checkpoint), ``metrics.json``, ``diseases/<disease>.parquet`` (held-out
    predictions in the meds-evaluation schema), ``run.json`` and a report.
    """
    out = check_output(out, overwrite)
    check_saved_min_subjects(min_subjects)  # now, not after training, when the model is saved
    fusion = fusion or FusionConfig()
    settings = settings or InputSettings()
    recorded = {
        "data": str(data),
        "task": task,
        "labs_model": str(labs_model) if labs_model else None,
        "fusion": fusion.to_dict(),
        "inputs": settings.to_dict(),
        "preset": preset,
        "min_subjects": min_subjects,
        "training": training.to_dict(),
    }
    given = load_lab_branch(labs_model)[0] if labs_model is not None and fusion.uses_labs else None
    cohort = read_cohort(data, task, settings, units=given.units if given else None)
    cohort.require("train", "held_out")
    branch = None
    if fusion.uses_labs:
        branch = lab_branch_for(cohort, given, preset, min_subjects, training.seed)
    if fusion.uses_notes:
        prepare_notes(cohort, branch, cache=note_cache(data, cache))
    with work_dir(out, recorded, resume) as work:
        model, outputs = train_fusion(cohort, branch, fusion, training, work)
        thresholds, metrics = scores_of(cohort, outputs)
        if not is_global_zero():
            return metrics
        counts = input_counts(cohort)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            save_fusion(tmp / "model", model, branch, cohort, thresholds)
            write_json_atomic(tmp / "metrics.json", {"held_out": metrics, "data": counts})
            held_out = outputs["probabilities"]["held_out"]
            write_disease_predictions(tmp / "diseases", cohort, cohort.rows("held_out"), held_out, thresholds)
            result = outputs["fit"]
            write_run(
                tmp,
                "fuse-train",
                f"MEDFuse, {fusion.fusion} fusion",
                recorded,
                {"data": counts, "epochs": result.epochs, "best": {result.monitor: result.best_score}},
                resume_note(result) + report_lines(cohort),
            )
            copy_logs(work, tmp)
            from clinfm.report.html import write_report

            write_report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def write_disease_predictions(
    folder: Path, cohort: Cohort, rows: np.ndarray, P: np.ndarray, thresholds: Sequence[float]
) -> None:
    """One meds-evaluation prediction file per disease, ``<folder>/<disease>.parquet``: the label, the
    probability and the decision at the disease's tuned threshold (subject ids: it stays with the data)."""
    from clinfm.evaluate.predictions import write_predictions

    samples = cohort.labels[rows]
    for k, name in enumerate(cohort.names):
        write_predictions(
            folder / f"{name}.parquet",
            subject_id=samples["subject_id"].to_numpy(),
            prediction_time=samples["prediction_time"].to_numpy(),
            y=samples[name].to_numpy(),
            p=P[:, k].astype(np.float64),
            threshold=float(thresholds[k]),
        )


def evaluate(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    task: str,
    out: str | os.PathLike,
    *,
    split: str = "held_out",
    cache=True,
    overwrite: bool = False,
) -> dict:
    """Score a trained fusion model on ``split`` of a dataset (its own, or another site's with the same
    task), at the thresholds chosen when it was trained."""
    from clinfm.fuse.scores import score

    out = check_output(out, overwrite)
    model, branch, config = load_fusion(model_dir)
    settings = InputSettings.from_dict(config["inputs"])
    cohort = read_cohort(data, task, settings, units=config.get("units"))
    if set(cohort.names) != set(config["diseases"]):
        raise InputError(
            f"task {task!r} has diseases {cohort.names}, the model predicts {config['diseases']}", path=data
        )
    cohort.names = list(config["diseases"])  # the model's output order
    if model.config.uses_notes:
        prepare_notes(cohort, branch, cache=note_cache(data, cache))
        if cohort.note_counts["encoder"] != config["note_encoder"]:
            raise InputError(
                f"the notes were embedded with {cohort.note_counts['encoder']}, the model was trained on "
                f"{config['note_encoder']}"
            )
    rows = cohort.rows(split) if split != "all" else np.arange(cohort.labels.height)
    if not len(rows):
        raise InputError(f"no samples in the {split} split", path=data)
    parts = _one_split(cohort, branch, model.config, rows)
    P = predict(model, parts, "multilabel").numpy()
    metrics = score(cohort.targets(rows), P, config["thresholds"], cohort.names, groups=_groups(cohort, rows))
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_json_atomic(tmp / "metrics.json", {split: metrics, "data": input_counts(cohort)})
        write_disease_predictions(tmp / "diseases", cohort, rows, P, config["thresholds"])
        recorded = {"model": str(model_dir), "data": str(data), "task": task, "split": split}
        write_run(tmp, "fuse-evaluate", "MEDFuse model evaluated", recorded, {}, report_lines(cohort))
    return metrics
