"""Patient-level splits and the as-of join: no leakage across splits or across time."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import clinfm
from clinfm.errors import InputError


def test_splits_are_deterministic_patient_level_and_stable():
    ids = list(range(1000, 6000))
    first = clinfm.assign_splits(ids)
    assert first["subject_id"].is_unique().all()  # one split per subject
    assert first.equals(clinfm.assign_splits(list(reversed(ids))))  # order does not matter
    shares = first["split"].value_counts(normalize=True).sort("split")
    assert shares["proportion"].to_list() == pytest.approx(
        [0.1, 0.8, 0.1], abs=0.02
    )  # held_out, train, tuning
    grown = clinfm.assign_splits(ids + list(range(9000, 9500)))
    assert grown.join(first, on="subject_id").filter(pl.col("split") != pl.col("split_right")).is_empty()
    assert not first.equals(clinfm.assign_splits(ids, seed=1))


def test_split_fractions_are_checked():
    with pytest.raises(InputError, match="sum to 1"):
        clinfm.assign_splits([1, 2], {"train": 0.9, "held_out": 0.2})


def test_dataset_splits_put_no_patient_in_two_splits(site_icd9):
    splits = clinfm.read_splits(site_icd9)
    assert splits["subject_id"].is_unique().all()
    subjects = clinfm.scan_events(site_icd9).select(pl.col("subject_id").unique()).collect()
    assert set(splits["subject_id"]) == set(subjects["subject_id"])
    assert set(splits["split"]) == {"train", "tuning", "held_out"}


def test_as_of_join_boundaries():
    t = dt.datetime(2020, 1, 1, 12)
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 1, 1, 2],
            "time": [None, t - dt.timedelta(days=1), t, t + dt.timedelta(microseconds=1), t],
            "code": ["GENDER/F", "A", "B", "LATE", "OTHER"],
        }
    )
    labels = pl.DataFrame(
        {
            "subject_id": [1, 1],
            "prediction_time": [t, t - dt.timedelta(hours=1)],
            "boolean_value": [True, False],
        }
    )
    visible = clinfm.events_as_of(events, labels).collect()
    by_sample = visible.group_by("sample_id").agg("code").sort("sample_id")["code"].to_list()
    assert by_sample == [["GENDER/F", "A", "B"], ["GENDER/F", "A"]]
