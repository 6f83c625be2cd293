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
        .join(samples, on="subject_id", how="inner")
        .filter(pl.col("time").is_null() | (pl.col("time") <= pl.col("prediction_time")))
        .sort(["sample_id", "time"], nulls_last=False, maintain_order=True)
    )
