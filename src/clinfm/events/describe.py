"""A dataset at a glance: subjects, events, codes by vocabulary, time span, splits, label prevalence."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from clinfm.events.meds import read_dataset_metadata, read_labels, read_splits, scan_events, task_files
from clinfm.vocab.systems import vocabulary_of
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, subject_counts_query


@dataclass
class TaskSummary:
    name: str
    samples: int
    subjects: int
    kind: str
    prevalence: float | None  # share of positive labels for a boolean task
    classes: int | None  # distinct values for a categorical or integer task


@dataclass
class DatasetDescription:
    name: str | None
    meds_version: str | None
    subjects: int
    events: int
    distinct_codes: int
    rare_codes: int  # codes of fewer than DEFAULT_MIN_SUBJECTS subjects: kept out of saved vocabularies
    first_time: str | None
    last_time: str | None
    events_per_subject_median: float
    events_with_numeric_value: int
    events_with_text_value: int
    vocabularies: list[dict]  # vocabulary, codes, events
    splits: dict[str, int]
    tasks: list[TaskSummary]

    def to_dict(self) -> dict:
        return asdict(self)


def _describe_task(name: str, path: Path) -> TaskSummary:
    labels = read_labels(path)
    summary = {"name": name, "samples": labels.height, "subjects": labels["subject_id"].n_unique()}
    if "boolean_value" in labels.columns:
        return TaskSummary(**summary, kind="binary", prevalence=labels["boolean_value"].mean(), classes=None)
    for column, kind in (("categorical_value", "categorical"), ("integer_value", "integer")):
        if column in labels.columns:
            return TaskSummary(**summary, kind=kind, prevalence=None, classes=labels[column].n_unique())
    return TaskSummary(
        **summary,
        kind="regression" if "float_value" in labels.columns else "none",
        prevalence=None,
        classes=None,
    )


def describe(root: str | os.PathLike) -> DatasetDescription:
    """Describe a MEDS dataset: its event queries run together on the streaming engine."""
    events = scan_events(root, columns=[])
    totals = events.select(
        subjects=pl.col("subject_id").n_unique(),
        events=pl.len(),
        distinct_codes=pl.col("code").n_unique(),
        first_time=pl.col("time").min(),
        last_time=pl.col("time").max(),
        numeric=pl.col("numeric_value").is_not_null().sum(),
        text=pl.col("text_value").is_not_null().sum(),
    )
    per_subject = events.group_by("subject_id").len().select(pl.col("len").median())
    rare = subject_counts_query(events).filter(pl.col("n_subjects") < DEFAULT_MIN_SUBJECTS).select(pl.len())
    vocabularies = (
        events.group_by(vocabulary=vocabulary_of(pl.col("code")).fill_null("(none)"))
        .agg(codes=pl.col("code").n_unique(), events=pl.len())
        .sort("events", descending=True)
    )
    queries = [totals, per_subject, rare, vocabularies]
    totals, per_subject, rare, vocabularies = pl.collect_all(queries, engine="streaming")
    row = totals.row(0, named=True)
    splits = read_splits(root)
    metadata = read_dataset_metadata(root)
    return DatasetDescription(
        name=metadata.get("dataset_name"),
        meds_version=metadata.get("meds_version"),
        subjects=row["subjects"],
        events=row["events"],
        distinct_codes=row["distinct_codes"],
        rare_codes=rare.item(),
        first_time=str(row["first_time"]) if row["first_time"] is not None else None,
        last_time=str(row["last_time"]) if row["last_time"] is not None else None,
        events_per_subject_median=float(per_subject.item() or 0),
        events_with_numeric_value=row["numeric"],
        events_with_text_value=row["text"],
        vocabularies=vocabularies.to_dicts(),
        splits=dict(splits.group_by("split").len().sort("split").iter_rows()) if splits is not None else {},
        tasks=[_describe_task(name, path) for name, path in task_files(root).items()],
    )
