"""Converters on the real shared data, on tiny hand-made tables, and on every kind of bad input."""

from __future__ import annotations

import gzip
import textwrap

import polars as pl
import pytest

import clinfm
from _shared import shared_path
from clinfm.errors import InputError

PATIENTS = (
    "row_id,subject_id,gender,dob,dod\n"
    "1,10,F,2100-01-01 00:00:00,\n"
    "2,11,M,2090-05-05 00:00:00,2150-01-01 00:00:00\n"
)
ADMISSIONS = (
    "row_id,subject_id,hadm_id,admittime,dischtime\n1,10,100,2150-01-01 10:00:00,2150-01-05 12:00:00\n"
)
DIAGNOSES = "row_id,subject_id,hadm_id,seq_num,icd9_code\n1,10,100,1,49390\n2,10,100,2,E9503\n"


def _mimic(tmp_path, **tables: str):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in tables.items():
        (src / f"{name}.csv").write_text(text)
    return src


# ---------------------------------------------------------------------------------------------- MIMIC-III


def test_mimic3_real_demo_converts_and_validates(tmp_path):
    out = clinfm.convert_mimic3(shared_path("ehr", "mimic-iii-demo"), tmp_path / "m3")
    report = clinfm.validate(out)
    assert report.ok, report.errors
    d = clinfm.describe(out)
    vocabularies = {v["vocabulary"]: v["events"] for v in d.vocabularies}
    assert d.subjects == 100
    assert (
        vocabularies["ICD9CM"] == 1761 and vocabularies["ICD9PROC"] == 506
    )  # every DIAGNOSES/PROCEDURES row
    assert vocabularies["VISIT"] == 129 and vocabularies["DRUG"] == 10398
    codes = clinfm.read_codes(out)
    assert codes.filter(pl.col("code") == "ICD9CM/995.91")["description"][0] == "Sepsis"


def test_mimic3_diagnoses_are_timed_at_discharge_and_dotted(tmp_path):
    src = _mimic(tmp_path, PATIENTS=PATIENTS, ADMISSIONS=ADMISSIONS, DIAGNOSES_ICD=DIAGNOSES)
    events = clinfm.scan_events(clinfm.convert_mimic3(src, tmp_path / "out")).collect()
    dx = events.filter(pl.col("code").str.starts_with("ICD9CM/"))
    assert sorted(dx["code"]) == ["ICD9CM/493.90", "ICD9CM/E950.3"]
    assert dx["time"].dt.hour().to_list() == [12, 12] and dx["encounter_id"].to_list() == [100, 100]
    assert set(events["code"]) >= {"GENDER/F", "GENDER/M", "MEDS_BIRTH", "MEDS_DEATH", "VISIT/INPATIENT"}


def test_mimic3_lower_case_names_gzip_and_upper_case_columns(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with gzip.open(src / "patients.csv.gz", "wt") as handle:
        handle.write(PATIENTS.upper().replace("2100-01-01 00:00:00", "2100-01-01"))
    (src / "admissions.csv").write_text(ADMISSIONS.upper())
    (src / "diagnoses_icd.csv").write_text(DIAGNOSES.upper())
    out = clinfm.convert_mimic3(src, tmp_path / "out")
    assert clinfm.describe(out).subjects == 2 and clinfm.validate(out).ok


def test_mimic3_optional_tables_are_skipped_with_a_log(tmp_path, caplog):
    src = _mimic(tmp_path, PATIENTS=PATIENTS, DIAGNOSES_ICD=DIAGNOSES)
    with caplog.at_level("INFO", logger="clinfm"):
        out = clinfm.convert_mimic3(src, tmp_path / "out")
    assert "ADMISSIONS not found" in caplog.text
    assert clinfm.describe(out).events == 5  # gender x2, birth x2, death


@pytest.mark.parametrize(
    "tables, message",
    [
        ({"ADMISSIONS": ADMISSIONS}, "required table PATIENTS not found"),
        ({"PATIENTS": "row_id,subject_id,dob\n1,10,2100-01-01\n"}, "missing column(s) gender"),
        ({"PATIENTS": "row_id,subject_id,gender,dob\n"}, "header but no rows"),
        ({"PATIENTS": ""}, "empty file"),
        (
            {"PATIENTS": PATIENTS.replace("2090-05-05 00:00:00", "05/05/2090")},
            "row 2, column dob: got '05/05/2090'",
        ),
        (
            {"PATIENTS": PATIENTS.replace(",11,", ",eleven,")},
            "row 2, column subject_id: got 'eleven', expected an integer",
        ),
        (
            {"PATIENTS": PATIENTS.replace("2090-05-05 00:00:00", "")},
            "row 2, column dob: empty, expected a value in every row",
        ),
    ],
)
def test_mimic3_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, tables, message):
    src = _mimic(tmp_path, **tables)
    with pytest.raises(InputError) as caught:
        clinfm.convert_mimic3(src, tmp_path / "out")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left behind


# ---------------------------------------------------------------------------------------------- OMOP


def test_omop_real_extract_converts_and_validates(tmp_path):
    out = clinfm.convert_omop(shared_path("ehr", "omop-synthea27nj"), tmp_path / "omop")
    report = clinfm.validate(out)
    assert report.ok and not report.warnings, (report.errors, report.warnings)
    d = clinfm.describe(out)
    vocabularies = {v["vocabulary"]: v["events"] for v in d.vocabularies}
    assert d.subjects == 28
    assert vocabularies["SNOMED"] > 0 and vocabularies["LOINC"] > 0 and vocabularies["RXNORM"] == 883
    assert vocabularies["VISIT"] == 1791 and vocabularies["MEDS"] == 28 + 3  # births + deaths
    codes = clinfm.read_codes(out)
    assert codes["description"].null_count() == 0


def test_omop_without_concept_keeps_concept_ids(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PERSON.csv").write_text("person_id,gender_concept_id,year_of_birth\n1,8532,2001\n")
    (src / "CONDITION_OCCURRENCE.csv").write_text(
        "person_id\tcondition_concept_id\tcondition_start_date\tcondition_source_value\n1\t317009\t2010-02-03\tJ45\n1\t0\t2011-02-03\tLOCALX\n"
    )
    events = clinfm.scan_events(clinfm.convert_omop(src, tmp_path / "out")).collect()
    assert set(events["code"]) == {"GENDER/F", "MEDS_BIRTH", "OMOP/317009", "LOCAL_CONDITION/LOCALX"}


def test_omop_requires_person(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "DEATH.csv").write_text("person_id,death_date\n1,2020-01-01\n")
    with pytest.raises(InputError, match="required table PERSON"):
        clinfm.convert_omop(src, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- CSV mapping

MAPPING = """
dataset_name: my_clinic
tables:
  - file: patients.csv
    subject_id: patient_id
    time: birth_date
    time_format: "%m/%d/%Y"
    code_value: MEDS_BIRTH
  - file: dx.csv
    subject_id: patient_id
    time: visit_date
    time_format: "%m/%d/%Y"
    code: dx_code
    code_prefix: ICD10CM
    encounter_id: visit_id
  - file: labs.csv
    subject_id: patient_id
    time: taken_at
    code: test
    code_prefix: LOCAL_LAB
    numeric_value: result
    unit: units
"""


def _csv_site(tmp_path, mapping=MAPPING):
    src = tmp_path / "src"
    src.mkdir()
    (src / "patients.csv").write_text("patient_id,birth_date\n1,03/04/2012\n2,12/31/2015\n")
    (src / "dx.csv").write_text(
        "patient_id,visit_date,dx_code,visit_id\n1,05/06/2020,J45909,7\n2,01/02/2021,J45.20,8\n"
    )
    (src / "labs.csv").write_text(
        "patient_id,taken_at,test,result,units\n1,2020-05-06 10:30:00,EOS,0.4,10*3/uL\n"
    )
    (tmp_path / "map.yaml").write_text(textwrap.dedent(mapping))
    return src, tmp_path / "map.yaml"


def test_csv_mapping_converts_a_site_extract(tmp_path):
    src, mapping = _csv_site(tmp_path)
    out = clinfm.convert_csv(src, tmp_path / "out", mapping)
    events = clinfm.scan_events(out, columns=["unit", "encounter_id"]).collect()
    assert sorted(events["code"]) == [
        "ICD10CM/J45.20",
        "ICD10CM/J45.909",
        "LOCAL_LAB/EOS",
        "MEDS_BIRTH",
        "MEDS_BIRTH",
    ]
    lab = events.filter(pl.col("code") == "LOCAL_LAB/EOS")
    assert lab["numeric_value"][0] == pytest.approx(0.4) and lab["unit"][0] == "10*3/uL"
    assert clinfm.read_dataset_metadata(out)["dataset_name"] == "my_clinic"
    assert clinfm.validate(out).ok


@pytest.mark.parametrize(
    "change, message",
    [
        (("code_prefix: ICD10CM", "code_prefix: ICD10"), "unknown code vocabulary 'ICD10'"),
        (("    code_prefix: LOCAL_LAB\n", ""), "'code' needs a 'code_prefix'"),
        (
            ("subject_id: patient_id\n    time: visit_date", "subject: patient_id\n    time: visit_date"),
            "tables.1",
        ),
        (("file: labs.csv", "file: nowhere.csv"), "file named in the mapping not found"),
        (("code: dx_code", "code: diagnosis"), "missing column(s) diagnosis"),
        (
            ('time_format: "%m/%d/%Y"\n    code: dx', 'time_format: "%Y-%m-%d"\n    code: dx'),
            "row 1, column visit_date",
        ),
        (("tables:", "tables: ["), "not valid YAML"),
    ],
)
def test_csv_mapping_bad_input(tmp_path, change, message):
    src, mapping = _csv_site(tmp_path, MAPPING.replace(*change))
    with pytest.raises(InputError) as caught:
        clinfm.convert_csv(src, tmp_path / "out", mapping)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()
