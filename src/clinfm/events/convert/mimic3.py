"""MIMIC-III tables to MEDS, streaming with Polars.

==================  ===================================================================
table               events
==================  ===================================================================
PATIENTS (needed)   ``GENDER/F|M`` (static), ``MEDS_BIRTH`` at dob, ``MEDS_DEATH`` at dod
ADMISSIONS          ``VISIT/INPATIENT`` at admittime, encounter_id = hadm_id
DIAGNOSES_ICD       ``ICD9CM/<dotted>`` at the admission's dischtime (coded at discharge)
PROCEDURES_ICD      ``ICD9PROC/<dotted>`` at dischtime
CPTEVENTS           ``CPT4/<cpt_cd>`` at chartdate, else at dischtime
PRESCRIPTIONS       ``DRUG/<NAME>`` at startdate; numeric_value = dose_val_rx, unit = dose_unit_rx
LABEVENTS           ``LOINC/<code>`` via D_LABITEMS where it has one, else ``LAB/<itemid>``;
                    numeric_value = valuenum, text_value = value when not numeric
NOTEEVENTS          ``NOTE/<CATEGORY>`` with the note as text_value; charttime, else the end
                    of chartdate; rows flagged iserror are left out
==================  ===================================================================

Diagnoses and procedures carry no time of their own in MIMIC-III; stamping them at discharge keeps
them out of any prediction made during the stay, so they cannot leak into an earlier window.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

from clinfm.events.convert.tables import (
    SourceTable,
    described,
    end_of_day,
    event_frame,
    open_tables,
    run_probes,
    subject_ids,
)
from clinfm.events.meds import write_dataset
from clinfm.vocab.icd import code_metadata, dot_icd9cm, dot_icd9proc

log = logging.getLogger("clinfm")

TABLES = {
    "PATIENTS": ["subject_id", "gender", "dob"],
    "ADMISSIONS": ["subject_id", "hadm_id", "admittime", "dischtime"],
    "DIAGNOSES_ICD": ["subject_id", "hadm_id", "icd9_code"],
    "PROCEDURES_ICD": ["subject_id", "hadm_id", "icd9_code"],
    "CPTEVENTS": ["subject_id", "hadm_id", "cpt_cd"],
    "PRESCRIPTIONS": ["subject_id", "startdate", "drug"],
    "LABEVENTS": ["subject_id", "itemid", "charttime"],
    "D_LABITEMS": ["itemid", "label"],
    "NOTEEVENTS": ["subject_id", "chartdate", "category", "text"],
}
FIXED_DESCRIPTIONS = {
    "GENDER/F": "Female",
    "GENDER/M": "Male",
    "MEDS_BIRTH": "Birth",
    "MEDS_DEATH": "Death",
    "VISIT/INPATIENT": "Hospital admission",
}


def _patients(t: SourceTable) -> pl.LazyFrame:
    subject = t.integer("subject_id", required=True)
    gender = t.col("gender").str.to_uppercase()
    static = t.frame.filter(gender.is_not_null()).select(
        event_frame(subject, pl.lit(None), pl.lit("GENDER/") + gender)
    )
    birth = t.frame.select(event_frame(subject, t.datetime("dob", required=True), pl.lit("MEDS_BIRTH")))
    dod = t.datetime("dod")
    death = t.frame.filter(dod.is_not_null()).select(event_frame(subject, dod, pl.lit("MEDS_DEATH")))
    return pl.concat([static, birth, death])


def _admissions(t: SourceTable) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Visit events, and the hadm_id -> discharge time table that times diagnoses."""
    hadm = t.integer("hadm_id", required=True)
    visits = t.frame.select(
        event_frame(
            t.integer("subject_id", required=True),
            t.datetime("admittime", required=True),
            pl.lit("VISIT/INPATIENT"),
            encounter_id=hadm,
        )
    )
    discharge = t.frame.select(
        hadm.alias("encounter_id"), t.datetime("dischtime", required=True).alias("time")
    )
    return visits, discharge


def _coded_at_discharge(t: SourceTable, discharge: pl.LazyFrame, prefix: str, dot) -> pl.LazyFrame:
    code = t.col("icd9_code")
    events = t.frame.filter(code.is_not_null()).select(
        event_frame(
            t.integer("subject_id", required=True),
            pl.lit(None),
            pl.lit(prefix) + dot(code),
            encounter_id=t.integer("hadm_id", required=True),
        )
    )
    return (
        events.drop("time")
        .join(discharge, on="encounter_id", how="inner")
        .select("subject_id", "time", "code", "numeric_value", "text_value", "encounter_id", "unit")
    )


def _cpt_events(t: SourceTable, discharge: pl.LazyFrame) -> pl.LazyFrame:
    code = t.col("cpt_cd")
    events = t.frame.filter(code.is_not_null()).select(
        event_frame(
            t.integer("subject_id", required=True),
            t.datetime("chartdate"),
            pl.lit("CPT4/") + code,
            encounter_id=t.integer("hadm_id", required=True),
        )
    )
    return (
        events.join(discharge.rename({"time": "dischtime"}), on="encounter_id", how="left")
        .with_columns(time=pl.coalesce("time", "dischtime"))
        .filter(pl.col("time").is_not_null())
        .drop("dischtime")
    )


def _prescriptions(t: SourceTable) -> pl.LazyFrame:
    drug = t.col("drug").str.to_uppercase()
    return t.frame.filter(drug.is_not_null()).select(
        event_frame(
            t.integer("subject_id", required=True),
            t.datetime("startdate", required=True),
            pl.lit("DRUG/") + drug,
            numeric_value=t.number("dose_val_rx"),
            encounter_id=t.integer("hadm_id"),
            unit=t.col("dose_unit_rx"),
        )
    )


def _lab_codes(items: SourceTable | None) -> pl.LazyFrame | None:
    if items is None:
        return None
    loinc = items.col("loinc_code")
    return items.frame.select(
        items.integer("itemid", required=True).alias("itemid"),
        pl.when(loinc.is_not_null()).then(pl.lit("LOINC/") + loinc).alias("loinc"),
        items.col("label").alias("description"),
    )


def _labevents(t: SourceTable, lab_codes: pl.LazyFrame | None) -> pl.LazyFrame:
    numeric = t.number("valuenum")
    itemid = t.integer("itemid", required=True)
    events = t.frame.select(
        *event_frame(
            t.integer("subject_id", required=True),
            t.datetime("charttime", required=True),
            pl.lit("LAB/") + itemid.cast(pl.String),
            numeric_value=numeric,
            text_value=pl.when(numeric.is_null()).then(t.col("value")),
            encounter_id=t.integer("hadm_id"),
            unit=t.col("valueuom"),
        ),
        itemid.alias("itemid"),
    )
    if lab_codes is not None:
        events = events.join(lab_codes.select("itemid", "loinc"), on="itemid", how="left").with_columns(
            code=pl.coalesce("loinc", "code")
        )
    return events.drop("itemid", "loinc", strict=False)


def _notes(t: SourceTable) -> pl.LazyFrame:
    error = t.col("iserror").fill_null("0")
    category = t.col("category").str.to_uppercase().str.replace_all(r"[^A-Z0-9]+", "_")
    time = pl.coalesce(t.datetime("charttime"), end_of_day(t.datetime("chartdate", required=True)))
    return t.frame.filter(error != "1").select(
        event_frame(
            t.integer("subject_id", required=True),
            time,
            pl.lit("NOTE/") + category.fill_null("OTHER"),
            text_value=t.col("text"),
            encounter_id=t.integer("hadm_id"),
        )
    )


def _code_metadata(lab_codes: pl.LazyFrame | None):
    """Descriptions of the codes used: ICD from vocab/, drugs by their own name, labs from D_LABITEMS."""
    labs = None
    if lab_codes is not None:
        labs = lab_codes.select(
            code=pl.coalesce("loinc", pl.lit("LAB/") + pl.col("itemid").cast(pl.String)), description="description"
        ).unique("code", keep="first").collect()

    def describe(codes: pl.Series) -> pl.DataFrame:
        drugs = codes.filter(codes.str.starts_with("DRUG/")).to_frame("code")
        drugs = drugs.with_columns(description=pl.col("code").str.slice(5).str.to_titlecase())
        parts = [described(FIXED_DESCRIPTIONS), code_metadata(codes), drugs, labs]
        return pl.concat([p for p in parts if p is not None], how="diagonal_relaxed")

    return describe


def convert_mimic3(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset_name: str = "MIMIC-III",
    subjects_per_shard: int = 10_000,
    overwrite: bool = False,
) -> Path:
    """Convert MIMIC-III CSV tables (``.csv`` or ``.csv.gz``, upper- or lower-case) in ``src`` to MEDS.

    PATIENTS is required; ADMISSIONS, DIAGNOSES_ICD, PROCEDURES_ICD, CPTEVENTS, PRESCRIPTIONS, LABEVENTS
    (with D_LABITEMS for LOINC codes) and NOTEEVENTS are converted when present, and their absence is
    logged. Diagnoses and procedures need ADMISSIONS for their times. Returns the output path.
    Procedure descriptions of CPT codes are not in the package's vocabularies and stay empty.
    """
    tables = open_tables(src, TABLES, required=("PATIENTS",))
    parts = [_patients(tables["PATIENTS"])]
    lab_codes = _lab_codes(tables.get("D_LABITEMS"))
    if "ADMISSIONS" in tables:
        visits, discharge = _admissions(tables["ADMISSIONS"])
        parts.append(visits)
        for name, prefix, dot in (
            ("DIAGNOSES_ICD", "ICD9CM/", dot_icd9cm),
            ("PROCEDURES_ICD", "ICD9PROC/", dot_icd9proc),
        ):
            if name in tables:
                parts.append(_coded_at_discharge(tables[name], discharge, prefix, dot))
        if "CPTEVENTS" in tables:
            parts.append(_cpt_events(tables["CPTEVENTS"], discharge))
    else:
        skipped = [n for n in ("DIAGNOSES_ICD", "PROCEDURES_ICD", "CPTEVENTS") if n in tables]
        if skipped:
            log.warning(
                "ADMISSIONS not found: %s have no time without it and are skipped", ", ".join(skipped)
            )
    if "PRESCRIPTIONS" in tables:
        parts.append(_prescriptions(tables["PRESCRIPTIONS"]))
    if "LABEVENTS" in tables:
        parts.append(_labevents(tables["LABEVENTS"], lab_codes))
    if "NOTEEVENTS" in tables:
        parts.append(_notes(tables["NOTEEVENTS"]))
    run_probes(list(tables.values()))
    events = pl.concat(parts, how="vertical")
    return write_dataset(
        out,
        events,
        dataset_name=dataset_name,
        etl_name="clinfm.convert_mimic3",
        codes=_code_metadata(lab_codes),
        subjects=subject_ids(tables["PATIENTS"], "subject_id"),
        subjects_per_shard=subjects_per_shard,
        overwrite=overwrite,
    )
