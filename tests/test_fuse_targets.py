"""Diagnosis-group targets per hospital admission: one sample per stay, nothing from the discharge on."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from _shared import shared_path
from clinfm.errors import InputError
from clinfm.fuse.samples import disease_labels
from clinfm.fuse.targets import TargetReport, diagnosis_group_labels, read_task, slug, write_task

T0 = dt.datetime(2150, 3, 1, 8, 0)
US = dt.timedelta(microseconds=1)
CHF = "ccs_108_congestive_heart_failure_nonhypertensive"
HTN = "ccs_98_essential_hypertension"
DM = "ccs_50_diabetes_mellitus_with_complications"


def _at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """(subject_id, hours, code, hadm_id) rows as MIMIC-IV-style MEDS events."""
    return pl.DataFrame(
        [(s, None if h is None else _at(h), c, a) for s, h, c, a in rows],
        schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String, "hadm_id": pl.Int64},
        orient="row",
    )


def _cohort() -> pl.DataFrame:
    """Subject 1: a 72 h stay coded in ICD-9 and a 10 h stay coded in ICD-10; subject 2: a 48 h
    stay in ICD-10 with an invalid code, and a stay without any diagnosis."""
    return _events(
        [
            (1, None, "GENDER//F", None),
            (1, 0, "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", 10),
            (1, 5, "LAB//50912//mg/dL", 10),
            (1, 72, "HOSPITAL_DISCHARGE//HOME", 10),
            (1, 72, "DIAGNOSIS//ICD//9//4280", 10),  # CHF
            (1, 72, "DIAGNOSIS//ICD//9//4019", 10),  # essential hypertension
            (1, 100, "HOSPITAL_ADMISSION//EU OBSERVATION//EMERGENCY ROOM", 11),
            (1, 110, "HOSPITAL_DISCHARGE//HOME", 11),
            (1, 110, "DIAGNOSIS//ICD//10//I509", 11),  # CHF through the GEM (428.0, 428.9)
            (1, 110, "DIAGNOSIS//ICD//10//E1165", 11),  # diabetes with complications (250.80)
            (2, 0, "HOSPITAL_ADMISSION//URGENT//TRANSFER FROM HOSPITAL", 20),
            (2, 48, "HOSPITAL_DISCHARGE//SKILLED NURSING FACILITY", 20),
            (2, 48, "DIAGNOSIS//ICD//10//I5022", 20),  # CHF
            (2, 48, "DIAGNOSIS//ICD//10//I10", 20),  # essential hypertension
            (2, 48, "DIAGNOSIS//ICD//9//99999", 20),  # no such code: no group
            (2, 48, "DIAGNOSIS//SNOMED//12345", 20),  # not ICD-9/10-CM: not recognised
            (2, 200, "HOSPITAL_ADMISSION//ELECTIVE//PHYSICIAN REFERRAL", 21),
            (2, 230, "HOSPITAL_DISCHARGE//HOME", 21),
        ]
    )


def _rows(labels: pl.DataFrame) -> list[dict]:
    return labels.to_dicts()


def test_one_sample_per_admission_predicted_before_discharge():
    labels, names, report = diagnosis_group_labels(_cohort())
    assert labels.columns == ["subject_id", "prediction_time", *names]
    assert labels["subject_id"].to_list() == [1, 1, 2]
    # 24 h after admission; the 10 h stay is clipped to just before its discharge (= its diagnoses).
    assert labels["prediction_time"].to_list() == [_at(24), _at(110) - US, _at(24)]
    assert report.admissions_clipped == 1
    assert labels.schema["prediction_time"] == pl.Datetime("us")
    assert all(labels.schema[n] == pl.Boolean for n in names)
    assert labels.select(pl.col(names).null_count()).sum_horizontal().item() == 0


def test_hours_are_a_parameter_and_zero_stays_before_discharge():
    labels, _, _ = diagnosis_group_labels(_cohort(), hours_after_admission=0)
    assert labels["prediction_time"].to_list() == [_at(0), _at(100), _at(0)]
    labels, _, report = diagnosis_group_labels(_cohort(), hours_after_admission=60)
    assert labels["prediction_time"].to_list() == [_at(60), _at(110) - US, _at(48) - US]
    assert report.admissions_clipped == 2


def test_icd9_and_icd10_land_in_one_system_and_stays_are_not_mixed():
    labels, names, _ = diagnosis_group_labels(_cohort())
    assert names == [CHF, HTN, DM]  # 3, 2 and 1 admissions
    first, second, third = _rows(labels)
    # CHF coded in ICD-9 (first stay) and ICD-10 (second stay and subject 2) is one group.
    assert [first[CHF], second[CHF], third[CHF]] == [True, True, True]
    # The first stay's hypertension does not leak into the second stay of the same subject.
    assert [first[HTN], second[HTN], third[HTN]] == [True, False, True]
    assert [first[DM], second[DM], third[DM]] == [False, True, False]


def test_gem_alternatives_vote_and_combinations_add_up():
    """I10 -> 401.0 | 401.1 | 401.9: essential hypertension (CCS 98), not also malignant 401.0's CCS 99;
    E11.52 -> 250.70 + 443.81 + 785.4: every part counts."""
    extra = _events(
        [
            (3, 0, "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", 30),
            (3, 50, "HOSPITAL_DISCHARGE//HOME", 30),
            (3, 50, "DIAGNOSIS//ICD//10//E1152", 30),
        ]
    )
    labels, names, report = diagnosis_group_labels(pl.concat([_cohort(), extra]), top=20)
    assert "ccs_99_hypertension_with_complications_and_secondary" not in names
    last = _rows(labels)[-1]
    assert last["subject_id"] == 3
    assert [n for n in names if last[n]] == [
        DM,
        "ccs_117_other_circulatory_disease",
        "ccs_248_gangrene",
    ]
    assert report.codes_in_several_groups == 1


def test_linked_by_discharge_time_without_hadm_id():
    by_key, names, report = diagnosis_group_labels(_cohort())
    by_time, names_by_time, report_by_time = diagnosis_group_labels(_cohort().drop("hadm_id"))
    assert report.admission_key == "hadm_id" and report_by_time.admission_key is None
    assert names_by_time == names
    assert by_time.equals(by_key)
    assert report_by_time.admissions_without_diagnoses == 1


def test_top_min_count_groups_and_exclude():
    _, names, report = diagnosis_group_labels(_cohort(), top=2)
    assert names == [CHF, HTN]
    assert report.groups_seen == 3
    _, names, _ = diagnosis_group_labels(_cohort(), min_count=2)
    assert names == [CHF, HTN]
    _, names, _ = diagnosis_group_labels(_cohort(), exclude=["CCS/108"])
    assert names == [HTN, DM]
    labels, names, report = diagnosis_group_labels(_cohort(), groups=["CCS/50", HTN, "CCS/2"])
    assert names == [DM, HTN, "ccs_2_septicemia_except_in_labor"]
    assert report.positives == {DM: 1, HTN: 2, "ccs_2_septicemia_except_in_labor": 0}
    assert not labels["ccs_2_septicemia_except_in_labor"].any()
    with pytest.raises(InputError, match="unknown diagnosis group"):
        diagnosis_group_labels(_cohort(), groups=["CCS/99999"])
    with pytest.raises(InputError, match="at least 5 admissions"):
        diagnosis_group_labels(_cohort(), min_count=5)


def test_report_counts():
    _, _, report = diagnosis_group_labels(_cohort())
    assert isinstance(report, TargetReport)
    assert report.admissions == 4
    assert report.admissions_without_diagnoses == 1
    assert report.samples == 3
    assert report.unrecognised_diagnoses == 1
    assert report.diagnoses_without_admission == 0
    assert report.diagnosis_events == 7
    assert report.diagnosis_events_without_group == 1
    assert report.share_without_group == pytest.approx(1 / 7)
    assert report.distinct_codes == 7 and report.distinct_codes_without_group == 1
    assert report.codes_mapped_through_gem == 4
    assert report.positives == {CHF: 3, HTN: 2, DM: 1}
    assert report.categories[CHF] == "CCS/108"
    assert report.descriptions[CHF] == "Congestive heart failure; nonhypertensive"
    lines = report.lines()
    assert all(isinstance(line, str) and line.endswith(".") for line in lines)
    assert "1 admissions had no diagnosis code and were dropped." in lines
    assert any("(14.3%) have no CCS group" in line for line in lines)


def test_clinfm_style_codes_with_encounter_id_and_no_discharge_events():
    """clinfm's MIMIC-III converter: VISIT/INPATIENT with encounter_id, dotted ICD9CM/ codes."""
    events = _cohort().filter(~pl.col("code").str.starts_with("HOSPITAL_DISCHARGE"))
    events = events.rename({"hadm_id": "encounter_id"}).with_columns(
        code=pl.col("code")
        .str.replace(r"^HOSPITAL_ADMISSION//.*", "VISIT/INPATIENT")
        .str.replace("DIAGNOSIS//ICD//9//4280", "ICD9CM/428.0", literal=True)
    )
    labels, names, report = diagnosis_group_labels(events)
    expected, expected_names, _ = diagnosis_group_labels(_cohort())
    assert report.admission_key == "encounter_id"
    assert names == expected_names
    assert labels.equals(expected)  # the end of a stay is its first diagnosis when no discharge is recorded


def test_overlapping_admissions_with_one_prediction_time_are_merged():
    extra = _events(
        [
            (1, 0, "HOSPITAL_ADMISSION//DIRECT//CLINIC REFERRAL", 12),
            (1, 30, "HOSPITAL_DISCHARGE//HOME", 12),
            (1, 30, "DIAGNOSIS//ICD//9//25080", 12),
        ]
    )
    labels, _, report = diagnosis_group_labels(pl.concat([_cohort(), extra]))
    assert report.admissions == 5 and report.admissions_merged == 1 and report.samples == 3
    first = _rows(labels)[0]
    assert first["prediction_time"] == _at(24)
    assert first[CHF] and first[HTN] and first[DM]


def test_ccsr_scheme_maps_icd9_forward():
    labels, names, report = diagnosis_group_labels(_cohort(), scheme="ccsr")
    assert report.scheme == "ccsr"
    assert all(n.startswith("ccsr_") for n in names)
    heart_failure = "ccsr_cir019"
    assert heart_failure in names
    assert labels[heart_failure].to_list() == [True, True, True]


def test_bad_input_is_one_clear_line():
    with pytest.raises(InputError, match="no hospital admissions found"):
        diagnosis_group_labels(_cohort().filter(~pl.col("code").str.starts_with("HOSPITAL_ADMISSION")))
    with pytest.raises(InputError, match="no diagnosis codes found"):
        diagnosis_group_labels(_cohort().filter(~pl.col("code").str.starts_with("DIAGNOSIS//ICD")))
    with pytest.raises(InputError, match="unknown grouping scheme"):
        diagnosis_group_labels(_cohort(), scheme="icd")
    with pytest.raises(InputError, match="hours_after_admission"):
        diagnosis_group_labels(_cohort(), hours_after_admission=-1)
    with pytest.raises(InputError, match="top"):
        diagnosis_group_labels(_cohort(), top=0)
    with pytest.raises(InputError, match="lack the column"):
        diagnosis_group_labels(_cohort().drop("time"))
    no_link = _cohort().drop("hadm_id").filter(~pl.col("code").str.starts_with("HOSPITAL_DISCHARGE"))
    with pytest.raises(InputError, match="cannot be linked"):
        diagnosis_group_labels(no_link)
    for err in (InputError("x"),):
        assert "\n" not in str(err)


def test_slug():
    assert slug("CCS/108 Congestive heart failure; nonhypertensive") == CHF
    assert slug("  Ménière's  disease!! ") == "m_ni_re_s_disease"
    assert len(slug("word " * 40)) <= 64


def test_write_task_reads_back_equal(tmp_path):
    labels, names, report = diagnosis_group_labels(_cohort())
    folder = write_task(
        tmp_path / "tasks" / "ccs", labels, names, report.descriptions, categories=report.categories
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(f"{n}.parquet" for n in names), "groups.json"]
    )
    back, back_names, descriptions = read_task(folder)
    assert back_names == names
    assert back.equals(labels)
    assert descriptions == report.descriptions
    # The samples module's reader sees the same task (its names sorted).
    via_samples, sorted_names = disease_labels(tmp_path, "ccs")
    assert sorted_names == sorted(names)
    assert via_samples.select(labels.columns).equals(labels)
    # A folder anywhere else reads the same.
    elsewhere = write_task(tmp_path / "other", labels, names, report.descriptions)
    back, back_names, _ = read_task(elsewhere)
    assert back.equals(labels) and back_names == names
    one = pl.read_parquet(folder / f"{CHF}.parquet")
    assert one.columns == ["subject_id", "prediction_time", "boolean_value"]


def test_write_task_is_atomic_and_refuses_to_overwrite(tmp_path):
    labels, names, report = diagnosis_group_labels(_cohort())
    folder = tmp_path / "task"
    folder.mkdir()  # an empty folder may be filled
    write_task(folder, labels, names, report.descriptions)
    with pytest.raises(InputError, match="already exists"):
        write_task(folder, labels, names[:1], report.descriptions)
    write_task(folder, labels, names[:1], report.descriptions, overwrite=True)
    assert read_task(folder)[1] == names[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task"]  # no temporary folders left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a task folder"):
        write_task(mine, labels, names, report.descriptions, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="no description"):
        write_task(tmp_path / "x", labels, names, {})
    with pytest.raises(InputError, match="file-safe"):
        write_task(tmp_path / "x", labels.rename({CHF: "A/B"}), ["A/B"], {"A/B": "x"})
    assert not (tmp_path / "x").exists()


def test_mimic_iv_demo():
    root = shared_path("ehr", "mimic-iv-demo-meds")
    events = pl.scan_parquet(root / "data" / "*" / "*.parquet")
    labels, names, report = diagnosis_group_labels(events)
    assert report.admission_key == "hadm_id"
    assert 250 <= report.admissions <= 300
    assert labels.height == report.samples >= 250
    assert len(names) == 10
    assert all(n >= 5 for n in report.positives.values())
    assert report.share_without_group < 0.05
    # Never at or after the discharge, where the diagnoses are stamped.
    discharges = (
        events.filter(pl.col("code").str.starts_with("HOSPITAL_DISCHARGE//"))
        .select("subject_id", "time")
        .collect()
    )
    stays = labels.join_asof(
        discharges.sort("time"),
        left_on="prediction_time",
        right_on="time",
        by="subject_id",
        strategy="forward",
        check_sortedness=False,
    )
    assert (stays["prediction_time"] < stays["time"]).all()
