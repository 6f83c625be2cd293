"""Labels meet events: exactly the events a model may see for each prediction."""

from __future__ import annotations

import polars as pl

from clinfm.errors import InputError


def events_as_of(events: pl.LazyFrame | pl.DataFrame, labels: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """The events at or before each label's ``prediction_time``, one copy per label.

    Adds ``sample_id`` (the label's row number) and ``prediction_time`` to every event row; static
    events (null time) belong to every sample of their subject. An event at exactly
    ``prediction_time`` is included, as the MEDS label schema says; anything later never is.
    Labels without any visible event keep no rows here: join back on ``sample_id`` to find them.
    A subject's history is repeated for each of its labels, so memory grows with events x labels
    per subject: select the columns and codes a model needs before collecting the result.
    """
    labels = labels.lazy()
    if "sample_id" in labels.collect_schema().names():
        raise InputError(
            "labels already have a sample_id column; drop or rename it: events_as_of numbers the labels"
        )
    samples = labels.with_row_index("sample_id").select("sample_id", "subject_id", "prediction_time")
    return (
        events.lazy()
        .join(samples, on="subject_id", how="inner", maintain_order="left")  # ties keep the file's order
        .filter(pl.col("time").is_null() | (pl.col("time") <= pl.col("prediction_time")))
        .sort(["sample_id", "time"], nulls_last=False, maintain_order=True)
    )


def check_labels(
    events: pl.LazyFrame, labels: pl.DataFrame, *, path: object = None, value: str | None = "boolean_value"
) -> None:
    """Refuse labels a model cannot be trained or judged on, naming the first offending row.

    Every subject must be in the data, no prediction may precede the subject's birth, and the label
    value (``boolean_value`` for binary tasks) must be present on every row. Rows are numbered from 1;
    messages name rows, never subject ids or dates.
    """
    if labels.height == 0:
        raise InputError("the label file has no rows: the cohort is empty", path=path)
    if value and (value not in labels.columns or labels[value].null_count() == labels.height):
        raise InputError(f"no {value} in the labels: a binary task needs one per row", path=path)
    rows = labels.with_row_index("row", offset=1).select(
        "row", "subject_id", "prediction_time", *([value] if value else [])
    )
    if value and labels[value].null_count():
        row = rows.filter(pl.col(value).is_null())["row"][0]
        raise InputError(f"row {row}: {value} is empty", path=path)
    births = (
        events.lazy()
        .filter(pl.col("code") == "MEDS_BIRTH")
        .group_by("subject_id")
        .agg(birth=pl.col("time").min())
    )
    present = events.lazy().select("subject_id").unique()
    checked = (
        rows.lazy()
        .join(present.with_columns(present=pl.lit(True)), on="subject_id", how="left")
        .join(births, on="subject_id", how="left")
        .collect()
    )
    checked = checked.sort("row")  # the first offending row is named
    missing = checked.filter(pl.col("present").is_null())
    if missing.height:
        first = missing.row(0, named=True)
        raise InputError(
            f"row {first['row']}: its subject_id is not in the dataset "
            f"({missing.height} of {labels.height} label rows name absent subjects)",
            path=path,
        )
    early = checked.filter(pl.col("prediction_time") < pl.col("birth"))
    if early.height:
        first = early.row(0, named=True)
        raise InputError(
            f"row {first['row']}: prediction_time is before the subject's birth "
            f"({early.height} of {labels.height} label rows)",
            path=path,
        )
