"""MEDS write/read/validate: the contract every model relies on."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

import clinfm
from _shared import shared_path
from clinfm.errors import InputError
from clinfm.events.meds import normalize_events, write_dataset


def _events(subjects=(1, 2, 3)) -> pl.DataFrame:
    rows = []
    for s in subjects:
        rows += [
            (s, None, "GENDER/F", None, None),
            (s, dt.datetime(2010, 1, 1), "MEDS_BIRTH", None, None),
            (s, dt.datetime(2020, 5, 1, 9), "ICD10CM/J45.909", None, None),
            (s, dt.datetime(2020, 5, 1, 9), "LOINC/711-2", 0.4, None),
            (s, dt.datetime(2020, 6, 1), "NOTE/PROGRESS", None, "Wheezing. Denies fever."),
        ]
    return pl.DataFrame(
        rows, schema=["subject_id", "time", "code", "numeric_value", "text_value"], orient="row"
    )


def test_write_then_read_round_trip(tmp_path):
    out = write_dataset(
        tmp_path / "ds",
        _events().reverse(),
        dataset_name="toy",
        codes=pl.DataFrame({"code": ["LOINC/711-2"], "description": ["Eosinophils"]}),
    )
    report = clinfm.validate(out)
    assert report.ok and not report.warnings, report
    back = clinfm.scan_events(out).collect()
    assert back.height == 15
    assert back["subject_id"].to_list() == sorted(back["subject_id"].to_list())
    first = back.filter(pl.col("subject_id") == 1)
    assert first["time"][0] is None  # static events first
    assert first["time"].drop_nulls().is_sorted()
    codes = clinfm.read_codes(out)
    assert set(codes["code"]) == set(back["code"])  # every code of the data is described
    assert codes.filter(pl.col("code") == "LOINC/711-2")["description"][0] == "Eosinophils"
    assert json.loads((out / "metadata" / "dataset.json").read_text())["meds_version"].startswith("0.4")


def test_sharding_keeps_each_subject_whole(tmp_path):
    out = write_dataset(tmp_path / "ds", _events(range(1, 8)), dataset_name="toy", subjects_per_shard=3)
    shards = sorted((out / "data").glob("*.parquet"))
    assert len(shards) == 3
    seen = [set(pl.read_parquet(p)["subject_id"]) for p in shards]
    assert sum(len(s) for s in seen) == 7 and set().union(*seen) == set(range(1, 8))
    assert clinfm.validate(out).ok


def test_existing_output_is_never_overwritten_unasked(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        write_dataset(out, _events(), dataset_name="toy")
    assert (out / "precious.txt").read_text() == "keep me"


def test_failed_write_leaves_no_half_output(tmp_path):
    bad = _events().with_columns(pl.lit(None, pl.String).alias("code"))  # null codes break the MEDS schema
    with pytest.raises(InputError, match="null code"):
        write_dataset(tmp_path / "ds", bad, dataset_name="toy")
    assert list(tmp_path.iterdir()) == []


def test_normalize_requires_core_columns():
    with pytest.raises(InputError, match="code"):
        normalize_events(pl.LazyFrame({"subject_id": [1], "time": [None]}))


def _write_raw_shard(root, frame: pl.DataFrame, name="0.parquet"):
    (root / "data").mkdir(parents=True, exist_ok=True)
    frame.write_parquet(root / "data" / name)


def test_validate_reports_unsorted_times(tmp_path):
    frame = normalize_events(_events().lazy()).collect()
    shuffled = pl.concat([frame.slice(3, 2), frame.slice(0, 3), frame.slice(5)])  # subject 1 out of order
    import meds
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(meds.DataSchema.align(shuffled.to_arrow()), tmp_path / "data" / "0.parquet")
    report = clinfm.validate(tmp_path)
    assert not report.ok
    assert "time goes backwards" in report.errors[0] and "row" in report.errors[0]


def test_validate_reports_schema_breaks(tmp_path):
    frame = _events().with_columns(pl.col("numeric_value").cast(pl.Float64))  # MEDS wants float32
    _write_raw_shard(tmp_path, frame)
    report = clinfm.validate(tmp_path)
    assert not report.ok and "numeric_value" in report.errors[0]


def test_validate_reports_subject_in_two_shards(tmp_path):
    import meds
    import pyarrow.parquet as pq

    frame = normalize_events(_events().lazy()).collect()
    (tmp_path / "data").mkdir()
    pq.write_table(meds.DataSchema.align(frame.slice(0, 2).to_arrow()), tmp_path / "data" / "0.parquet")
    pq.write_table(meds.DataSchema.align(frame.slice(2).to_arrow()), tmp_path / "data" / "1.parquet")
    report = clinfm.validate(tmp_path)
    assert any("more than one shard" in e for e in report.errors)


def test_validate_needs_event_shards(tmp_path):
    with pytest.raises(InputError, match=r"data/\*\*/\*\.parquet"):
        clinfm.validate(tmp_path)


def test_labels_with_nulls_are_refused(tmp_path):
    labels = pl.DataFrame(
        {
            "subject_id": [1, 2],
            "prediction_time": [dt.datetime(2020, 1, 1), None],
            "boolean_value": [True, False],
        }
    )
    with pytest.raises(InputError, match="nulls"):
        clinfm.write_labels(tmp_path / "t.parquet", labels)


def test_reads_meds_0_3_3_with_extra_columns():
    root = shared_path("ehr", "mimic-iv-demo-meds")
    events = clinfm.scan_events(root).collect_schema()
    assert "hadm_id" in events.names() and "unit" in events.names()  # extra columns kept
    description = clinfm.describe(root)
    assert description.subjects == 100 and description.events == 916_166
    assert description.meds_version == "0.3.3"
    assert 0 < description.rare_codes < description.distinct_codes
    task = next(t for t in description.tasks if t.name == "icu_mortality_first_24h")
    assert task.samples == 74 and task.prevalence == pytest.approx(9 / 74)
    labels = clinfm.read_labels(root / "tasks" / "icu_mortality_first_24h.parquet")
    assert labels.columns == [
        "subject_id",
        "prediction_time",
        "boolean_value",
    ]  # all-null value columns dropped
    report = clinfm.validate(root)
    assert report.ok, report.errors


def test_subjects_missing_from_the_given_list_keep_their_events(tmp_path):
    """Shards are ranges of ids: an orphan subject (events but no PATIENTS row) is never dropped."""
    events = _events(range(1, 10))
    out = write_dataset(
        tmp_path / "ds", events, dataset_name="toy", subjects=pl.Series([2, 4, 6, 8]), subjects_per_shard=2
    )
    assert clinfm.scan_events(out).select(pl.len()).collect().item() == events.height
    assert clinfm.validate(out).ok


def test_null_subject_ids_are_refused_in_sharded_writes(tmp_path):
    events = _events(range(1, 6)).with_columns(
        subject_id=pl.when(pl.col("code") == "NOTE/PROGRESS").then(None).otherwise(pl.col("subject_id"))
    )
    with pytest.raises(InputError, match="null subject_id"):
        write_dataset(tmp_path / "ds", events, dataset_name="toy", subjects_per_shard=2)
    assert list(tmp_path.iterdir()) == []


def test_shards_are_sized_by_events_per_subject():
    from clinfm.events.meds import DEFAULT_SUBJECTS_PER_SHARD, TARGET_EVENTS_PER_SHARD, shard_size

    assert shard_size(100_000, 13_000_000) == DEFAULT_SUBJECTS_PER_SHARD  # claims-like: 130 events each
    assert shard_size(100, 916_166) == int(TARGET_EVENTS_PER_SHARD / 9161.66)  # MIMIC-IV-like histories
    assert shard_size(10, 10**12) == 1 and shard_size(5, None) == DEFAULT_SUBJECTS_PER_SHARD


def test_validate_reports_unreadable_files_with_their_path(tmp_path):
    out = write_dataset(tmp_path / "ds", _events(), dataset_name="toy")
    (out / "metadata" / "codes.parquet").write_bytes(b"not parquet")
    (out / "tasks").mkdir()
    (out / "tasks" / "t.parquet").write_bytes(b"PAR1 broken")
    report = clinfm.validate(out)
    unreadable = [e for e in report.errors if "not a readable Parquet file" in e]
    assert {e.split(":")[0] for e in unreadable} == {
        str(out / "metadata" / "codes.parquet"),
        str(out / "tasks" / "t.parquet"),
    }
