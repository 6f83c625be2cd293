"""MIMIC-III tables to MEDS, streaming with Polars.

==================  ===================================================================
table               events
==================  ===================================================================
PATIENTS (needed)   ``GENDER/F|M`` (static), ``MEDS_BIRTH`` at dob, ``MEDS_DEATH`` at the end of dod
ADMISSIONS          ``VISIT/INPATIENT`` at admittime, encounter_id = hadm_id
DIAGNOSES_ICD       ``ICD9CM/<dotted>`` at the admission's dischtime (coded at discharge)
PROCEDURES_ICD      ``ICD9PROC/<dotted>`` at dischtime
CPTEVENTS           ``CPT4/<cpt_cd>`` at the end of chartdate, else at dischtime
PRESCRIPTIONS       ``DRUG/<NAME>`` at the end of startdate (a date); numeric_value = dose_val_rx,
                    unit = dose_unit_rx
LABEVENTS           ``LOINC/<code>`` via D_LABITEMS where it has one, else ``LAB/<itemid>``;
                    numeric_value = valuenum, text_value = value when not numeric
NOTEEVENTS          ``NOTE/<CATEGORY>`` with the note as text_value; charttime, else the end
                    of chartdate; rows flagged iserror are left out
==================  ===================================================================

Diagnoses and procedures carry no time of their own in MIMIC-III; stamping them at discharge keeps
them out of any prediction made during the stay, so they cannot leak into an earlier window. For
the same reason an event known only by its date is placed at the end of that day.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

from clinfm.events.convert.tables import (
    DATETIME,
    INTEGER,
    NUMBER,
    TEXT,
    Column,
    SourceTable,
    code_token,
    described,
    drop_untimed,
    end_of_day,
    event_frame,
    needed,
    open_tables,
    staging_area,
)
from clinfm.events.meds import write_dataset
from clinfm.io import check_output
from clinfm.vocab.icd import code_metadata, dot_icd9cm, dot_icd9proc
from clinfm.vocab.systems import CLINFM_CODE_DESCRIPTIONS

log = logging.getLogger("clinfm")

# Only PATIENTS, the one required table, stops a conversion for a missing value; rows of the other
# tables without their time are dropped and counted in the log.
TIME = Column(DATETIME, required=True)
TABLES: dict[str, dict[str, Column]] = {
    "PATIENTS": {
        "subject_id": needed(INTEGER, unique=True),
        "gender": Column(TEXT, required=True),
        "dob": needed(DATETIME),
        "dod": Column(DATETIME),
    },
    "ADMISSIONS": {
        "subject_id": needed(INTEGER),
        "hadm_id": needed(INTEGER, unique=True),
        "admittime": TIME,
        "dischtime": TIME,
    },
    "DIAGNOSES_ICD": {
        "subject_id": needed(INTEGER),
        "hadm_id": needed(INTEGER),
        "icd9_code": Column(TEXT, required=True),
    },
    "PROCEDURES_ICD": {
        "subject_id": needed(INTEGER),
        "hadm_id": needed(INTEGER),
        "icd9_code": Column(TEXT, required=True),
    },
    "CPTEVENTS": {
        "subject_id": needed(INTEGER),
        "hadm_id": needed(INTEGER),
        "cpt_cd": Column(TEXT, required=True),
        "chartdate": Column(DATETIME),
    },
    "PRESCRIPTIONS": {
        "subject_id": needed(INTEGER),
        "hadm_id": Column(INTEGER),
        "startdate": TIME,
        "drug": Column(TEXT, required=True),
        "dose_val_rx": Column(NUMBER),
        "dose_unit_rx": Column(TEXT),
    },
    "LABEVENTS": {
        "subject_id": needed(INTEGER),
        "hadm_id": Column(INTEGER),
        "itemid": needed(INTEGER),
        "charttime": TIME,
        "value": Column(TEXT),
        "valuenum": Column(NUMBER),
        "valueuom": Column(TEXT),
    },
    "D_LABITEMS": {
        "itemid": needed(INTEGER, unique=True),
        "label": Column(TEXT, required=True),
        "loinc_code": Column(TEXT),
    },
    "NOTEEVENTS": {
        "subject_id": needed(INTEGER),
        "hadm_id": Column(INTEGER),
        "chartdate": TIME,
        "charttime": Column(DATETIME),
        "storetime": Column(DATETIME),
        "category": Column(TEXT, required=True),
        "text": Column(TEXT, required=True),
        "iserror": Column(TEXT),
    },
}
col = pl.col


def _patients(t: SourceTable) -> pl.LazyFrame:
    gender = col("gender").str.to_uppercase()
    static = t.frame.filter(gender.is_not_null()).select(
        event_frame(col("subject_id"), pl.lit(None), "GENDER/" + gender)
    )
    birth = t.frame.select(event_frame(col("subject_id"), col("dob"), pl.lit("MEDS_BIRTH")))
    # dod is a date: known by the end of that day, not at its midnight.
    death = t.frame.filter(col("dod").is_not_null()).select(
        event_frame(col("subject_id"), end_of_day(col("dod")), pl.lit("MEDS_DEATH"))
    )
    return pl.concat([static, birth, death])


def _admissions(t: SourceTable) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Visit events, and the hadm_id -> discharge time table that times diagnoses."""
    visits = t.frame.select(
        event_frame(
            col("subject_id"), col("admittime"), pl.lit("VISIT/INPATIENT"), encounter_id=col("hadm_id")
        )
    )
    return visits, t.frame.select("subject_id", encounter_id="hadm_id", discharge="dischtime")


def _icd_codes(t: SourceTable, prefix: str, dot) -> pl.LazyFrame:
    """Diagnoses or procedures, untimed: MIMIC-III dates neither."""
    return t.frame.filter(col("icd9_code").is_not_null()).select(
        event_frame(
            col("subject_id"), pl.lit(None), prefix + dot(col("icd9_code")), encounter_id=col("hadm_id")
        )
    )


def _at_discharge(events: pl.LazyFrame, discharge: pl.LazyFrame) -> pl.LazyFrame:
    """Events without a time of their own take their admission's discharge time; those with neither
    (an admission missing from ADMISSIONS) are dropped, and counted in the log by the caller."""
    return (
        events.join(discharge, on=["subject_id", "encounter_id"], how="left")
        .with_columns(time=pl.coalesce("time", "discharge"))
        .drop("discharge")
        .filter(col("time").is_not_null())
    )


def _log_untimed(name: str, events: pl.LazyFrame, discharge: pl.LazyFrame) -> None:
    untimed = events.filter(col("time").is_null()).join(
        discharge.filter(col("discharge").is_not_null()), on=["subject_id", "encounter_id"], how="anti"
    )
    count = untimed.select(pl.len()).collect().item()
    if count:
        log.warning("%s: %d row(s) have no time and no discharge time in ADMISSIONS; skipped", name, count)


def _cpt_events(t: SourceTable) -> pl.LazyFrame:
    # chartdate is a date: known by the end of that day.
    return t.frame.filter(col("cpt_cd").is_not_null()).select(
        event_frame(
            col("subject_id"),
            end_of_day(col("chartdate")),
            "CPT4/" + col("cpt_cd"),
            encounter_id=col("hadm_id"),
        )
    )


def _prescriptions(t: SourceTable) -> pl.LazyFrame:
    drug = col("drug").str.to_uppercase()
    return t.frame.filter(drug.is_not_null()).select(
        event_frame(
            col("subject_id"),
            end_of_day(col("startdate")),  # a date: the order's hour is unknown
            "DRUG/" + drug,
            numeric_value=col("dose_val_rx"),
            encounter_id=col("hadm_id"),
            unit=col("dose_unit_rx"),
        )
    )


def _lab_codes(items: SourceTable | None) -> pl.LazyFrame | None:
    if items is None:
        return None
    loinc = col("loinc_code")
    return items.frame.select(
        "itemid", loinc=pl.when(loinc.is_not_null()).then("LOINC/" + loinc), description="label"
    )


def _labevents(t: SourceTable, lab_codes: pl.LazyFrame | None) -> pl.LazyFrame:
    numeric = col("valuenum")
    events = t.frame.select(
        *event_frame(
            col("subject_id"),
            col("charttime"),
            "LAB/" + col("itemid").cast(pl.String),
            numeric_value=numeric,
            text_value=pl.when(numeric.is_null()).then(col("value")),
            encounter_id=col("hadm_id"),
            unit=col("valueuom"),
        ),
        "itemid",
    )
    if lab_codes is not None:
        events = events.join(lab_codes.select("itemid", "loinc"), on="itemid", how="left").with_columns(
            code=pl.coalesce("loinc", "code")
        )
    return events.drop("itemid", "loinc", strict=False)


def _notes(t: SourceTable) -> pl.LazyFrame:
    category = code_token(col("category"), "OTHER")
    # A note exists once stored: storetime, else charttime, else the end of its chart date.
    time = pl.coalesce(col("storetime"), col("charttime"), end_of_day(col("chartdate")))
    return t.frame.filter(col("iserror").fill_null("0") != "1").select(
        event_frame(
            col("subject_id"), time, "NOTE/" + category, text_value=col("text"), encounter_id=col("hadm_id")
        )
    )


def _code_metadata(lab_codes: pl.LazyFrame | None):
    """Descriptions of the codes used: ICD from vocab/, drugs by their own name, labs from D_LABITEMS."""
    labs = None
    if lab_codes is not None:
        labs = (
            lab_codes.select(
                code=pl.coalesce("loinc", "LAB/" + col("itemid").cast(pl.String)), description="description"
            )
            .unique("code", keep="first")
            .collect()
        )

    def describe(codes: pl.Series) -> pl.DataFrame:
        drugs = codes.filter(codes.str.starts_with("DRUG/")).to_frame("code")
        drugs = drugs.with_columns(description=col("code").str.slice(5).str.to_titlecase())
        parts = [described(CLINFM_CODE_DESCRIPTIONS), code_metadata(codes), drugs, labs]
        return pl.concat([p for p in parts if p is not None], how="diagonal_relaxed")

    return describe


def convert_mimic3(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset_name: str = "MIMIC-III",
    subjects_per_shard: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert MIMIC-III CSV tables (``.csv`` or ``.csv.gz``, upper- or lower-case) in ``src`` to MEDS.

    PATIENTS is required; ADMISSIONS, DIAGNOSES_ICD, PROCEDURES_ICD, CPTEVENTS, PRESCRIPTIONS, LABEVENTS
    (with D_LABITEMS for LOINC codes) and NOTEEVENTS are converted when present, and their absence is
    logged. Diagnoses and procedures need ADMISSIONS for their times. Returns the output path.
    Procedure descriptions of CPT codes are not in the package's vocabularies and stay empty.
    """
    check_output(out, overwrite)
    with staging_area(out, overwrite) as staging:
        tables = open_tables(src, TABLES, staging, required=("PATIENTS",))
        parts = [_patients(tables["PATIENTS"])]
        lab_codes = _lab_codes(tables.get("D_LABITEMS"))
        if "ADMISSIONS" in tables:
            visits, discharge = _admissions(tables["ADMISSIONS"])
            parts.append(drop_untimed("ADMISSIONS", visits))
            coded = {
                "DIAGNOSES_ICD": lambda t: _icd_codes(t, "ICD9CM/", dot_icd9cm),
                "PROCEDURES_ICD": lambda t: _icd_codes(t, "ICD9PROC/", dot_icd9proc),
                "CPTEVENTS": _cpt_events,
            }
            for name, make in coded.items():
                if name in tables:
                    events = make(tables[name])
                    _log_untimed(name, events, discharge)
                    parts.append(_at_discharge(events, discharge))
        else:
            skipped = [n for n in ("DIAGNOSES_ICD", "PROCEDURES_ICD", "CPTEVENTS") if n in tables]
            if skipped:
                log.warning(
                    "ADMISSIONS not found: %s have no time without it and are skipped", ", ".join(skipped)
                )
        if "PRESCRIPTIONS" in tables:
            parts.append(drop_untimed("PRESCRIPTIONS", _prescriptions(tables["PRESCRIPTIONS"])))
        if "LABEVENTS" in tables:
            parts.append(drop_untimed("LABEVENTS", _labevents(tables["LABEVENTS"], lab_codes)))
        if "NOTEEVENTS" in tables:
            parts.append(drop_untimed("NOTEEVENTS", _notes(tables["NOTEEVENTS"])))
        return write_dataset(
            out,
            pl.concat(parts, how="vertical"),
            dataset_name=dataset_name,
            etl_name="clinfm.convert_mimic3",
            codes=_code_metadata(lab_codes),
            subjects=tables["PATIENTS"].frame.select("subject_id").collect()["subject_id"],
            subjects_per_shard=subjects_per_shard,
            expected_events=sum(table.rows() for table in tables.values()),
            overwrite=overwrite,
        )
