"""MEDFuse inputs from MEDS: labs and notes per sample, never anything after prediction time."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

import clinfm
from clinfm.errors import InputError
from clinfm.fuse.samples import (
    MEDFUSE_SECTIONS,
    SampleReport,
    assemble,
    disease_labels,
    lab_table,
    note_table,
)

T0 = dt.datetime(2020, 1, 1)


def _at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """(subject_id, hours or None, code, numeric_value, text_value, unit) rows as MEDS events."""
    return pl.DataFrame(
        [(s, None if h is None else _at(h), c, v, t, u) for s, h, c, v, t, u in rows],
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "numeric_value": pl.Float32,
            "text_value": pl.String,
            "unit": pl.String,
        },
        orient="row",
    )


def _labels(rows: list[tuple[int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"subject_id": [s for s, _ in rows], "prediction_time": [_at(h) for _, h in rows]},
        schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")},
    )


def _labs_of(table: pl.DataFrame, sample: int) -> dict[str, float]:
    row = table.filter(pl.col("sample_id") == sample).row(0, named=True)
    return dict(zip(row["item"], row["value"], strict=True))


def test_nothing_after_prediction_time_enters():
    """Two samples of one subject: each sees its past (an event at exactly its time too), never later."""
    events = _events(
        [
            (1, None, "GENDER/F", None, None, None),
            (1, 0, "LOINC/718-7", 11.0, None, "g/dL"),
            (1, 0, "NOTE/PROGRESS", None, "first note", None),
            (1, 10, "LOINC/718-7", 12.0, None, "g/dL"),  # exactly the first prediction time
            (1, 10, "NOTE/ED", None, "second note", None),
            (1, 15, "LOINC/2345-7", 90.0, None, "mg/dL"),
            (1, 15, "LOINC/718-7", 13.0, None, "g/dL"),
            (1, 15, "NOTE/DISCHARGE", None, "third note", None),
            (1, 30, "LOINC/718-7", 99.0, None, "g/dL"),  # after both samples
            (1, 30, "NOTE/PROGRESS", None, "future note", None),
        ]
    )
    labels = _labels([(1, 10), (1, 20)])
    labs = lab_table(events, labels)
    assert labs["sample_id"].to_list() == [0, 1]
    assert _labs_of(labs, 0) == {"LOINC/718-7": 12.0}
    assert _labs_of(labs, 1) == {"LOINC/2345-7": 90.0, "LOINC/718-7": 13.0}
    assert labs["age"][1].to_list() == [dt.timedelta(hours=5), dt.timedelta(hours=5)]
    for times, cutoff in zip(labs["time"], labels["prediction_time"], strict=True):
        assert max(times) <= cutoff
    notes = note_table(events, labels)
    assert notes["text"].to_list() == ["first note\n\nsecond note", "first note\n\nsecond note\n\nthird note"]
    assert notes["n_notes"].to_list() == [2, 3]
    assert "future" not in "".join(notes["text"])


def test_most_recent_value_per_item_wins_and_the_window_excludes_older_values():
    events = _events(
        [
            (1, 0, "LOINC/718-7", 10.0, None, "g/dL"),
            (1, 5, "LOINC/718-7", 11.0, None, "g/dL"),
            (1, 5, "LOINC/718-7", 11.5, None, "g/dL"),  # same time: the later row of the file wins
            (1, 1, "LOINC/2345-7", 80.0, None, "mg/dL"),
            (1, 8, "LAB/50912", 1.1, None, None),
            (1, 9, "DRUG/ASPIRIN", 81.0, None, "mg"),  # not a lab
        ]
    )
    labels = _labels([(1, 10)])
    assert _labs_of(lab_table(events, labels), 0) == {
        "LAB/50912": pytest.approx(1.1),
        "LOINC/2345-7": 80.0,
        "LOINC/718-7": 11.5,
    }
    recent = lab_table(events, labels, window=dt.timedelta(hours=5))  # from hour 5 on, inclusive
    assert _labs_of(recent, 0) == {"LAB/50912": pytest.approx(1.1), "LOINC/718-7": 11.5}
    only = lab_table(events, labels, labs=pl.col("code") == "LOINC/2345-7")  # a predicate selects too
    assert _labs_of(only, 0) == {"LOINC/2345-7": 80.0}


def test_non_numeric_values_are_dropped_and_counted_without_hiding_older_numbers():
    events = _events(
        [
            (1, 0, "LOINC/1988-5", 2.0, None, "mg/L"),
            (1, 1, "LOINC/1988-5", None, "<0.5", "mg/L"),  # not a number: the older 2.0 stays
            (1, 2, "LOINC/5802-4", None, "Positive", None),
            (1, 3, "LOINC/5802-4", None, None, None),  # no value at all
            (1, 4, "LOINC/718-7", None, " 12.5 ", "g/dL"),  # a number written as text
            (1, 4, "LOINC/2345-7", float("nan"), None, "mg/dL"),
        ]
    )
    labels = _labels([(1, 10), (1, 11)])  # two samples see the same events: counted once
    report = SampleReport()
    table = lab_table(events, labels, report=report)
    assert _labs_of(table, 0) == {"LOINC/1988-5": 2.0, "LOINC/718-7": 12.5}
    assert report.non_numeric_labs_dropped == 2
    assert report.empty_labs_dropped == 2  # the NaN counts as no value
    assert report.labs_parsed_from_text == 1
    assert report.lab_values_used == 2
    strict = lab_table(events, labels, parse_text=False)
    assert _labs_of(strict, 0) == {"LOINC/1988-5": 2.0}


def test_unit_conflicts_keep_the_most_frequent_unit_and_are_counted():
    events = _events(
        [
            (1, 0, "LOINC/2345-7", 90.0, None, "mg/dL"),
            (1, 1, "LOINC/2345-7", 95.0, None, "mg/dL"),
            (1, 2, "LOINC/2345-7", 5.1, None, "mmol/L"),  # the most recent, but in the minority unit
            (1, 3, "LOINC/2345-7", 97.0, None, None),  # unknown unit: kept
            (2, 0, "LAB//50912//mg/dL", 1.0, None, None),  # MEDS_transforms: the unit in the code
            (2, 1, "LAB//50912//umol/L", 88.0, None, None),
            (2, 2, "LAB//50912//mg/dL", 1.2, None, None),
            (2, 3, "LAB//51000//UNK", 7.0, None, None),
        ]
    )
    labels = _labels([(1, 2.5), (2, 10), (1, 3.5)])
    report = SampleReport()
    table = lab_table(events, labels, report=report)
    assert _labs_of(table, 0) == {"LOINC/2345-7": 95.0}
    assert table.row(0, named=True)["unit"] == ["mg/dL"]
    assert _labs_of(table, 1) == {"LAB//50912": pytest.approx(1.2), "LAB//51000": 7.0}
    assert table.row(1, named=True)["unit"] == ["mg/dL", None]  # UNK is no unit
    assert _labs_of(table, 2) == {"LOINC/2345-7": 97.0}
    assert table.row(2, named=True)["unit"] == [None]
    assert report.unit_conflicts == {
        "LOINC/2345-7": {"mg/dL": 2, "mmol/L": 1},
        "LAB//50912": {"mg/dL": 2, "umol/L": 1},
    }
    assert report.kept_units == {"LOINC/2345-7": "mg/dL", "LAB//50912": "mg/dL"}
    assert report.unit_conflict_labs_dropped == 2
    assert any("LAB//50912 has units mg/dL (2), umol/L (1)" in line for line in report.lines())
    fixed = lab_table(events, labels[:1], units={"LOINC/2345-7": "mmol/L"})  # e.g. from training data
    assert _labs_of(fixed, 0) == {"LOINC/2345-7": pytest.approx(5.1)}


def test_section_filtering_keeps_the_named_sections_and_counts_notes_without_headings():
    discharge = (
        "Name: ___\n"
        "CHIEF COMPLAINT: cough\n"
        "History of Present Illness:\n  Three days of fever.\n"
        "Social History: lives with parents\n"
        "past medical history:\nasthma\n"
        "Medications on Admission:\nalbuterol\n"
        "Discharge Diagnosis: pneumonia"
    )
    events = _events(
        [
            (1, 0, "NOTE/DISCHARGE", None, discharge, None),
            (1, 1, "NOTE/PROGRESS", None, "8-year-old boy seen for cough. Medications: albuterol.", None),
            (1, 2, "NOTE/RADIOLOGY", None, "FINDINGS: clear lungs\nIMPRESSION: normal", None),
        ]
    )
    report = SampleReport()
    notes = note_table(events, _labels([(1, 5)]), sections=MEDFUSE_SECTIONS, report=report)
    text = notes["text"][0]
    assert text == (
        "CHIEF COMPLAINT: cough\n"
        "History of Present Illness:\n  Three days of fever.\n"
        "past medical history:\nasthma\n"
        "Medications on Admission:\nalbuterol"
        "\n\n8-year-old boy seen for cough. Medications: albuterol."
    )
    assert "Social" not in text and "pneumonia" not in text and "FINDINGS" not in text
    assert notes["n_notes"][0] == 3
    assert report.notes_without_headings == 1  # the progress note: "Medications:" is mid-line
    assert report.notes_without_named_sections == 1  # the radiology report
    whole = note_table(events, _labels([(1, 5)]))
    assert "pneumonia" in whole["text"][0] and "IMPRESSION" in whole["text"][0]


def test_samples_without_labs_or_notes_are_kept_empty_and_counted():
    events = _events(
        [
            (1, 0, "LOINC/718-7", 12.0, None, "g/dL"),
            (1, 0, "NOTE/PROGRESS", None, "seen", None),
            (2, 0, "VISIT/OUTPATIENT", None, None, None),
            (2, 5, "NOTE/PROGRESS", None, "after the prediction", None),
        ]
    )
    labels = _labels([(1, 1), (2, 1), (3, 1), (1, -1)])  # subject 3 has no events; the last is too early
    inputs = assemble(events, labels)
    assert inputs.labs["n_labs"].to_list() == [1, 0, 0, 0]
    assert inputs.labs["item"].to_list() == [["LOINC/718-7"], [], [], []]
    assert inputs.notes["text"].to_list() == ["seen", "", "", ""]
    assert inputs.notes["n_notes"].to_list() == [1, 0, 0, 0]
    assert inputs.labs["subject_id"].to_list() == inputs.notes["subject_id"].to_list() == [1, 2, 3, 1]
    report = inputs.report
    assert (report.samples, report.samples_without_labs, report.samples_without_notes) == (4, 3, 3)
    lines = report.lines()
    assert "3 samples have no lab result before prediction time." in lines
    assert "3 samples have no note before prediction time." in lines
    exploded = inputs.labs.explode(["item", "value", "unit", "time", "age"])  # the long form
    assert exploded["sample_id"].to_list() == [0]


def test_bad_arguments_are_input_errors():
    events = _events([(1, 0, "LOINC/718-7", 12.0, None, "g/dL")])
    with pytest.raises(InputError, match="sample_id"):
        lab_table(events, _labels([(1, 1)]).with_row_index("sample_id"))
    with pytest.raises(InputError, match="negative"):
        lab_table(events, _labels([(1, 1)]), window=dt.timedelta(hours=-1))
    with pytest.raises(InputError, match="prediction_time"):
        note_table(events, pl.DataFrame({"subject_id": [1]}))


def test_synthetic_cohort_ten_disease_task(tmp_path):
    root = clinfm.synthesize(tmp_path / "site", patients=150, seed=3)
    labels, diseases = disease_labels(root)
    assert len(diseases) == 10 and labels.columns == ["subject_id", "prediction_time", *diseases]
    events = clinfm.scan_events(root)
    inputs = assemble(events, labels, sections=MEDFUSE_SECTIONS)
    assert inputs.labs.height == inputs.notes.height == labels.height
    report = inputs.report
    assert report.non_numeric_labs_dropped == 0 and report.unit_conflicts == {}
    assert report.samples_without_labs < labels.height and report.samples_without_notes < labels.height
    assert report.notes_without_headings == report.notes_used  # synthetic notes have no headings
    # Every value used is one the subject had at or before the prediction time.
    long = inputs.labs.explode(["item", "value", "time"]).drop_nulls("item")
    assert (long["time"] <= long["prediction_time"]).all()
    seen = events.filter(pl.col("code").str.starts_with("LOINC/")).select(
        "subject_id", "time", item="code", value="numeric_value"
    )
    matched = long.lazy().join(seen, on=["subject_id", "time", "item", "value"], how="semi").collect()
    assert matched.height == long.height


@pytest.mark.shared_data
def test_mimic_iv_demo_labs_assemble_in_seconds():
    from _shared import shared_path

    root = shared_path("ehr", "mimic-iv-demo-meds")
    events = clinfm.scan_events(root)
    # One sample per subject at its last event: every one of the ~776,000 lab rows is visible.
    labels = (
        events.group_by("subject_id").agg(prediction_time=pl.col("time").max()).sort("subject_id").collect()
    )
    report = SampleReport()
    start = time.perf_counter()
    table = lab_table(events, labels, report=report)
    seconds = time.perf_counter() - start
    print(f"MIMIC-IV demo: labs of {labels.height} samples in {seconds:.2f} s")
    print("\n".join(report.lines()))
    assert table.height == labels.height == 100
    seen = (
        report.lab_values_used
        + report.non_numeric_labs_dropped
        + report.empty_labs_dropped
        + report.unit_conflict_labs_dropped
    )
    assert seen == 776_411
    assert "LAB//51249" in report.unit_conflicts  # MCHC in g/dL and in %
    assert seconds < 30
