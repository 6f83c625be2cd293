"""A clinfm MEDS dataset as MIMIC-III-shaped CSV tables, so tools that read MIMIC-III read it too.

MIMIC-III holds ICD-9 codes and hospital admissions only, so this writes ICD-9-CM datasets:
every medical encounter becomes an ADMISSIONS row (outpatient visits as ELECTIVE, emergency ones
as EMERGENCY, inpatient stays as URGENT; MIMIC-III itself knows only admissions, so its converter
reads them all back as VISIT/INPATIENT), diagnoses go
to DIAGNOSES_ICD (undotted, as MIMIC stores them), CPT procedures to CPTEVENTS, drugs to
PRESCRIPTIONS by generic name, labs to LABEVENTS with a D_LABITEMS that carries the LOINC codes,
and notes to NOTEEVENTS.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from clinfm.errors import InputError
from clinfm.events.meds import read_codes, scan_events
from clinfm.io import atomic_directory

_FORMAT = "%Y-%m-%d %H:%M:%S"
_ADMISSION_TYPES = {"OUTPATIENT": "ELECTIVE", "EMERGENCY": "EMERGENCY", "INPATIENT": "URGENT"}


def _write(frame: pl.DataFrame, path: Path) -> None:
    frame.with_row_index("row_id", offset=1).write_csv(path, datetime_format=_FORMAT)


def _events_with(events: pl.LazyFrame, prefix: str) -> pl.LazyFrame:
    return events.filter(pl.col("code").str.starts_with(prefix)).with_columns(
        value=pl.col("code").str.slice(len(prefix))
    )


def _patients(events: pl.LazyFrame) -> pl.DataFrame:
    gender = _events_with(events, "GENDER/").select("subject_id", gender="value")
    dob = events.filter(pl.col("code") == "MEDS_BIRTH").select("subject_id", dob="time")
    dod = events.filter(pl.col("code") == "MEDS_DEATH").select("subject_id", dod="time")
    return (
        gender.join(dob, on="subject_id", how="full", coalesce=True)
        .join(dod, on="subject_id", how="left")
        .with_columns(
            dod_hosp=pl.col("dod"),
            dod_ssn=pl.lit(None),
            expire_flag=pl.col("dod").is_not_null().cast(pl.Int8),
        )
        .sort("subject_id")
        .collect()
    )


def export_mimic3(root: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write MIMIC-III-shaped CSVs of the MEDS dataset at ``root`` into a new folder ``out``."""
    events = scan_events(root, columns=["encounter_id", "unit"])
    if events.filter(pl.col("code").str.starts_with("ICD10CM/")).head(1).collect().height:
        raise InputError(
            "MIMIC-III tables hold ICD-9 codes only; synthesize this site with --coding icd9", path=root
        )
    with atomic_directory(out, overwrite=overwrite) as tmp:
        _write_tables(events, read_codes(root).select("code", "description"), tmp)
    return Path(out)


def _write_tables(events: pl.LazyFrame, descriptions: pl.DataFrame, out: Path) -> None:
    _write(_patients(events), out / "PATIENTS.csv")

    visits = _events_with(events, "VISIT/").filter(pl.col("value") != "PHARMACY")
    stays = (
        events.filter(pl.col("encounter_id").is_not_null())
        .group_by("encounter_id")
        .agg(dischtime=pl.col("time").max())
    )
    admissions = visits.join(stays, on="encounter_id").select(
        "subject_id",
        hadm_id="encounter_id",
        admittime="time",
        dischtime="dischtime",
        admission_type=pl.col("value").replace_strict(_ADMISSION_TYPES, default="URGENT"),
    )
    _write(admissions.sort("hadm_id").collect(), out / "ADMISSIONS.csv")

    hadm = pl.col("encounter_id").alias("hadm_id")
    diagnoses = _events_with(events, "ICD9CM/").select(
        "subject_id",
        hadm,
        seq_num=pl.int_range(1, pl.len() + 1).over("encounter_id"),
        icd9_code=pl.col("value").str.replace(".", "", literal=True),
    )
    _write(diagnoses.collect(), out / "DIAGNOSES_ICD.csv")
    procedures = (
        _events_with(events, "CPT4/")
        .join(descriptions.lazy(), on="code", how="left")
        .select(
            "subject_id",
            hadm,
            chartdate=pl.col("time").dt.truncate("1d"),
            cpt_cd="value",
            description="description",
        )
    )
    _write(procedures.collect(), out / "CPTEVENTS.csv")
    drugs = (
        _events_with(events, "RXNORM/")
        .join(descriptions.lazy(), on="code", how="left")
        .select(
            "subject_id",
            hadm,
            startdate=pl.col("time").dt.truncate("1d"),  # MIMIC-III keeps dates here
            drug_type=pl.lit("MAIN"),
            drug=pl.col("description").fill_null(pl.col("code")),
            drug_name_generic=pl.col("description"),
        )
    )
    _write(drugs.collect(), out / "PRESCRIPTIONS.csv")
    _write_labs(events, descriptions, out)
    notes = _events_with(events, "NOTE/").select(
        "subject_id",
        hadm,
        chartdate=pl.col("time").dt.date(),
        charttime="time",
        category="value",
        iserror=pl.lit(None, pl.Int8),
        text="text_value",
    )
    _write(notes.collect(), out / "NOTEEVENTS.csv")


def _write_labs(events: pl.LazyFrame, descriptions: pl.DataFrame, out: Path) -> None:
    labs = _events_with(events, "LOINC/")
    items = (
        labs.select(loinc_code=pl.col("value").unique().sort())
        .with_columns(itemid=pl.int_range(50_000, 50_000 + pl.len()))
        .collect()
        .join(
            descriptions.filter(pl.col("code").str.starts_with("LOINC/")).with_columns(
                loinc_code=pl.col("code").str.strip_prefix("LOINC/")
            ),
            on="loinc_code",
            how="left",
        )
        .select(
            "itemid",
            label=pl.col("description").fill_null(pl.col("loinc_code")),
            fluid=pl.lit("Blood"),
            category=pl.lit("Chemistry"),
            loinc_code="loinc_code",
        )
    )
    _write(items, out / "D_LABITEMS.csv")
    rows = labs.join(
        items.lazy().select("itemid", "loinc_code"), left_on="value", right_on="loinc_code"
    ).select(
        "subject_id",
        pl.col("encounter_id").alias("hadm_id"),
        "itemid",
        charttime="time",
        value=pl.col("numeric_value").cast(pl.String),
        valuenum="numeric_value",
        valueuom="unit",
    )
    _write(rows.collect(), out / "LABEVENTS.csv")
