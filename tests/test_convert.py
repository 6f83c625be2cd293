"""Converters on the real shared data, on tiny hand-made tables, and on every kind of bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import re
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
            "row 2, column dob: got '99/99/9999'",
        ),
        (
            {"PATIENTS": PATIENTS.replace(",11,", ",eleven,")},
            "row 2, column subject_id: got 'xxxxxx' (its shape: digits as 9, letters as x), expected an",
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


def test_mimic3_labs_notes_and_cpt_on_hand_made_tables(tmp_path):
    src = _mimic(
        tmp_path,
        PATIENTS=PATIENTS,
        ADMISSIONS=ADMISSIONS,
        D_LABITEMS="row_id,itemid,label,loinc_code\n1,50912,Creatinine,2160-0\n2,51000,Local test,\n",
        LABEVENTS=(
            "row_id,subject_id,hadm_id,itemid,charttime,value,valuenum,valueuom\n"
            "1,10,100,50912,2150-01-02 08:00:00,1.1,1.1,mg/dL\n"
            "2,10,100,51000,2150-01-02 08:00:00,NEG,,\n"
        ),
        NOTEEVENTS=(
            "row_id,subject_id,hadm_id,chartdate,charttime,category,text,iserror\n"
            '1,10,100,2150-01-03,,Discharge summary,"Admitted with wheeze.\nDischarged home.",\n'
            "2,10,100,2150-01-03,2150-01-03 09:30:00,Nursing/other,Wrong patient,1\n"
        ),
        CPTEVENTS=(
            "row_id,subject_id,hadm_id,chartdate,cpt_cd\n"
            "1,10,100,2150-01-02 00:00:00,94640\n2,10,100,,99223\n"
        ),
    )
    events = clinfm.scan_events(clinfm.convert_mimic3(src, tmp_path / "out"), columns=["unit"]).collect()
    by_code = {row["code"]: row for row in events.iter_rows(named=True)}
    assert (
        by_code["LOINC/2160-0"]["numeric_value"] == pytest.approx(1.1)
        and by_code["LOINC/2160-0"]["unit"] == "mg/dL"
    )
    assert by_code["LAB/51000"]["text_value"] == "NEG"  # no LOINC code: the local item id
    note = by_code["NOTE/DISCHARGE_SUMMARY"]
    assert note["text_value"].startswith("Admitted") and str(note["time"]) == "2150-01-03 23:59:59.999999"
    assert "NOTE/NURSING_OTHER" not in by_code  # iserror rows are dropped
    assert str(by_code["CPT4/94640"]["time"]) == "2150-01-02 23:59:59.999999"  # a date: end of its day
    assert str(by_code["CPT4/99223"]["time"]) == "2150-01-05 12:00:00"  # no date: at discharge
    assert str(by_code["MEDS_DEATH"]["time"]) == "2150-01-01 23:59:59.999999"
    codes = clinfm.read_codes(tmp_path / "out")
    assert codes.filter(pl.col("code") == "LOINC/2160-0")["description"][0] == "Creatinine"


def test_mimic3_rows_of_unknown_admissions_are_counted(tmp_path, caplog):
    diagnoses = DIAGNOSES + "3,10,999,1,4019\n"
    src = _mimic(tmp_path, PATIENTS=PATIENTS, ADMISSIONS=ADMISSIONS, DIAGNOSES_ICD=diagnoses)
    with caplog.at_level("WARNING", logger="clinfm"):
        out = clinfm.convert_mimic3(src, tmp_path / "out")
    assert "DIAGNOSES_ICD: 1 row(s) have no time and no discharge time in ADMISSIONS" in caplog.text
    assert not clinfm.scan_events(out).filter(pl.col("code") == "ICD9CM/401.9").collect().height


@pytest.mark.parametrize(
    "value, accepted",
    [("10", True), ("10.0", True), ("10.7", False), ("nan", False), ("inf", False), ("1e30", False)],
)
def test_integer_ids_are_strict(tmp_path, value, accepted):
    src = _mimic(tmp_path, PATIENTS=PATIENTS.replace("\n1,10,F,", f"\n1,{value},F,"))
    if accepted:
        assert clinfm.describe(clinfm.convert_mimic3(src, tmp_path / "out")).subjects == 2
    else:
        shape = {"10.7": "99.9", "nan": "xxx", "inf": "xxx", "1e30": "9x99"}[value]
        with pytest.raises(
            InputError, match=rf"row 1, column subject_id: got '{re.escape(shape)}' \(its shape"
        ):
            clinfm.convert_mimic3(src, tmp_path / "out")


def test_parquet_sources_and_fractional_seconds(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pl.DataFrame(
        {
            "subject_id": [10, 11],
            "gender": ["F", "M"],
            "dob": [dt.datetime(2100, 1, 1), dt.datetime(2090, 5, 5, 6, 30)],
        }
    ).write_parquet(src / "patients.parquet")
    (src / "ADMISSIONS.csv").write_text(
        "subject_id,hadm_id,admittime,dischtime\n10,100,2150-01-01T10:00:00.250Z,2150-01-05 12:00:00.5\n"
    )
    events = clinfm.scan_events(clinfm.convert_mimic3(src, tmp_path / "out")).collect()
    assert events.filter(pl.col("code") == "VISIT/INPATIENT")["time"][0] == dt.datetime(
        2150, 1, 1, 10, 0, 0, 250000
    )
    assert events.filter(pl.col("code") == "MEDS_BIRTH")["time"].max() == dt.datetime(2100, 1, 1)


def test_latin1_bytes_do_not_stop_a_conversion(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PATIENTS.csv").write_bytes(PATIENTS.replace(",F,", ",F\xe9,").encode("latin-1"))
    out = clinfm.convert_mimic3(src, tmp_path / "out")
    assert clinfm.describe(out).subjects == 2


def test_a_table_twice_is_refused(tmp_path):
    src = _mimic(tmp_path, PATIENTS=PATIENTS)
    (src / "patients.csv.gz").write_bytes(b"")
    with pytest.raises(InputError, match="more than once"):
        clinfm.convert_mimic3(src, tmp_path / "out")


@pytest.mark.parametrize(
    "person, message",
    [
        ("person_id,year_of_birth\n1,2001\n", "missing column(s) gender_concept_id"),
        ("person_id,gender_concept_id,year_of_birth\n1,8532,two thousand\n", "row 1, column year_of_birth"),
        ("person_id,gender_concept_id,year_of_birth\n", "header but no rows"),
    ],
)
def test_omop_bad_person(tmp_path, person, message):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PERSON.csv").write_text(person)
    with pytest.raises(InputError, match=re.escape(message)):
        clinfm.convert_omop(src, tmp_path / "out")


def test_omop_bad_date_and_impossible_birth_dates(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PERSON.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n1,8532,2001,2,30\n2,8507,2003,,\n"
    )
    births = clinfm.scan_events(clinfm.convert_omop(src, tmp_path / "a")).filter(
        pl.col("code") == "MEDS_BIRTH"
    )
    assert sorted(births.collect()["time"].to_list()) == [dt.datetime(2001, 1, 1), dt.datetime(2003, 1, 1)]
    (src / "DEATH.csv").write_text("person_id,death_date\n1,31/12/2020\n")
    with pytest.raises(InputError, match=r"DEATH.csv: row 1, column death_date: got '99/99/9999'"):
        clinfm.convert_omop(src, tmp_path / "b")


def test_omop_dates_are_known_at_the_end_of_their_day(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PERSON.csv").write_text("person_id,gender_concept_id,year_of_birth\n1,8532,2001\n")
    (src / "CONDITION_OCCURRENCE.csv").write_text(
        "person_id,condition_concept_id,condition_start_date,condition_start_datetime,condition_source_value\n"
        "1,317009,2010-02-03,2010-02-03 00:00:00,a\n1,317009,2010-02-04,2010-02-04 10:15:00,b\n"
    )
    times = clinfm.scan_events(clinfm.convert_omop(src, tmp_path / "out")).filter(
        pl.col("code") == "OMOP/317009"
    )
    assert times.collect()["time"].to_list() == [
        dt.datetime(2010, 2, 3, 23, 59, 59, 999999),
        dt.datetime(2010, 2, 4, 10, 15),
    ]


def test_one_column_read_as_number_and_as_text(tmp_path):
    mapping = MAPPING.replace("    unit: units\n", "    text_value: result\n    unit: units\n")
    src, mapping_path = _csv_site(tmp_path, mapping)
    (src / "labs.csv").write_text(
        "patient_id,taken_at,test,result,units\n1,2020-05-06,EOS,0.4,x\n1,2020-05-07,EOS,high,x\n"
    )
    events = clinfm.scan_events(clinfm.convert_csv(src, tmp_path / "out", mapping_path)).collect()
    labs = events.filter(pl.col("code") == "LOCAL_LAB/EOS").sort("time")
    assert labs["numeric_value"].to_list()[0] == pytest.approx(0.4) and labs["numeric_value"][1] is None
    assert labs["text_value"].to_list() == ["0.4", "high"]


def test_overwrite_replaces_only_clinfm_outputs_and_only_on_success(tmp_path):
    src = _mimic(tmp_path, PATIENTS=PATIENTS)
    out = clinfm.convert_mimic3(src, tmp_path / "out")
    before = clinfm.scan_events(out).collect()
    (src / "PATIENTS.csv").write_text(PATIENTS.replace("2090-05-05 00:00:00", "bad"))
    with pytest.raises(InputError):
        clinfm.convert_mimic3(src, out, overwrite=True)
    assert clinfm.scan_events(out).collect().equals(before)  # the old output survived the failed run
    (src / "PATIENTS.csv").write_text(PATIENTS.replace("F,", "M,"))
    clinfm.convert_mimic3(src, out, overwrite=True)
    assert "GENDER/F" not in set(clinfm.scan_events(out).collect()["code"])  # the new output replaced it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not a MEDS dataset or clinfm output"):
        clinfm.convert_mimic3(src, mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize(
    "tables, message",
    [
        (
            {"PATIENTS": PATIENTS + "3,10,M,2101-01-01 00:00:00,\n"},
            "row 3, column subject_id: the value of an earlier row again",
        ),
        (
            {
                "PATIENTS": PATIENTS,
                "ADMISSIONS": ADMISSIONS + "2,11,100,2160-01-01 10:00:00,2160-01-02 10:00:00\n",
            },
            "ADMISSIONS.csv: row 2, column hadm_id: the value of an earlier row again; expected each once",
        ),
        ({"PATIENTS": PATIENTS + '3,12,F,"2100-01-01,\n'}, "could not read the file"),
    ],
)
def test_repeated_ids_and_ragged_rows_are_refused(tmp_path, tables, message):
    src = _mimic(tmp_path, **tables)
    with pytest.raises(InputError, match=re.escape(message)):
        clinfm.convert_mimic3(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_truncated_gzip_is_named(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PATIENTS.csv.gz").write_bytes(gzip.compress(PATIENTS.encode())[:40])
    with pytest.raises(InputError, match=re.escape("PATIENTS.csv.gz")):
        clinfm.convert_mimic3(src, tmp_path / "out")


def test_omop_repeated_concepts_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PERSON.csv").write_text("person_id,gender_concept_id,year_of_birth\n1,8532,2001\n")
    (src / "CONCEPT.csv").write_text(
        "concept_id,concept_name,vocabulary_id,concept_code\n1,Asthma,SNOMED,195967001\n1,Asthma,SNOMED,195967001\n"
    )
    with pytest.raises(InputError, match=re.escape("CONCEPT.csv: row 2, column concept_id")):
        clinfm.convert_omop(src, tmp_path / "out")


def test_csv_dates_are_known_at_the_end_of_their_day(tmp_path):
    src, mapping = _csv_site(tmp_path)
    events = clinfm.scan_events(clinfm.convert_csv(src, tmp_path / "out", mapping)).collect()
    dx = events.filter(pl.col("code") == "ICD10CM/J45.909")["time"][0]
    assert dx == dt.datetime(2020, 5, 6, 23, 59, 59, 999999)
    lab = events.filter(pl.col("code") == "LOCAL_LAB/EOS")["time"][0]
    assert lab == dt.datetime(2020, 5, 6, 10, 30)  # a real time of day is kept


@pytest.mark.parametrize(
    "change, message",
    [
        (("code_value: MEDS_BIRTH", "code_value: FOO/bar"), "unknown code vocabulary 'FOO'"),
        (("code_value: MEDS_BIRTH", "code_value: birth"), "unknown code vocabulary ''"),
    ],
)
def test_more_bad_mappings(tmp_path, change, message):
    src, mapping = _csv_site(tmp_path, MAPPING.replace(*change))
    with pytest.raises(InputError, match=message):
        clinfm.convert_csv(src, tmp_path / "out", mapping)


def test_an_empty_table_list_is_refused(tmp_path):
    (tmp_path / "map.yaml").write_text("tables: []\n")
    with pytest.raises(InputError, match="tables: List should have at least 1 item"):
        clinfm.load_mapping(tmp_path / "map.yaml")
