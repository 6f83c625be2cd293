"""OMOP CDM 5.3 / 5.4 tables (CSV, comma or tab separated) to MEDS, streaming with Polars.

Each clinical row becomes one event whose code is the concept's own vocabulary code from CONCEPT
(``SNOMED/195662009``, ``RXNORM/308182``, ``LOINC/29463-7``) with its name as description. Without
CONCEPT, or for a concept CONCEPT lacks, the code is ``OMOP/<concept_id>``. Concept 0 ("no
matching concept") falls back to the source value as a site-local code, ``LOCAL_<DOMAIN>/<value>``,
so unmapped data are kept rather than collapsed into one meaningless code.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
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
from clinfm.vocab.icd import code_metadata

log = logging.getLogger("clinfm")


@dataclass(frozen=True)
class ClinicalTable:
    """Where one OMOP clinical table keeps its concept, time, value and source columns."""

    name: str
    domain: str
    concept: str
    times: tuple[str, ...]
    source_value: str
    numeric_value: str | None = None
    text_value: str | None = None
    unit: str | None = None


CLINICAL_TABLES = (
    ClinicalTable(
        "CONDITION_OCCURRENCE",
        "CONDITION",
        "condition_concept_id",
        ("condition_start_datetime", "condition_start_date"),
        "condition_source_value",
    ),
    ClinicalTable(
        "DRUG_EXPOSURE",
        "DRUG",
        "drug_concept_id",
        ("drug_exposure_start_datetime", "drug_exposure_start_date"),
        "drug_source_value",
        numeric_value="quantity",
    ),
    ClinicalTable(
        "PROCEDURE_OCCURRENCE",
        "PROCEDURE",
        "procedure_concept_id",
        ("procedure_datetime", "procedure_date"),
        "procedure_source_value",
    ),
    ClinicalTable(
        "MEASUREMENT",
        "MEASUREMENT",
        "measurement_concept_id",
        ("measurement_datetime", "measurement_date"),
        "measurement_source_value",
        numeric_value="value_as_number",
        text_value="value_source_value",
        unit="unit_source_value",
    ),
    ClinicalTable(
        "OBSERVATION",
        "OBSERVATION",
        "observation_concept_id",
        ("observation_datetime", "observation_date"),
        "observation_source_value",
        numeric_value="value_as_number",
        text_value="value_as_string",
        unit="unit_source_value",
    ),
)
TABLES = {
    "PERSON": ["person_id", "gender_concept_id", "year_of_birth"],
    "DEATH": ["person_id", "death_date"],
    "VISIT_OCCURRENCE": ["person_id", "visit_occurrence_id", "visit_concept_id", "visit_start_date"],
    "NOTE": ["person_id", "note_date", "note_text"],
    "CONCEPT": ["concept_id", "concept_name", "vocabulary_id", "concept_code"],
    **{t.name: ["person_id", t.concept, t.times[-1]] for t in CLINICAL_TABLES},
}
#: OMOP standard visit concepts -> clinfm visit types (Claim-PT needs inpatient / outpatient / pharmacy).
VISIT_TYPES = {
    9201: "INPATIENT",
    262: "INPATIENT",
    8717: "INPATIENT",
    9203: "EMERGENCY",
    9202: "OUTPATIENT",
    581477: "OUTPATIENT",
    38004207: "OUTPATIENT",
    5083: "OUTPATIENT",
    581458: "PHARMACY",
}
GENDERS = {8507: "M", 8532: "F"}
FIXED_DESCRIPTIONS = {
    "GENDER/F": "Female",
    "GENDER/M": "Male",
    "MEDS_BIRTH": "Birth",
    "MEDS_DEATH": "Death",
    "VISIT/INPATIENT": "Inpatient visit",
    "VISIT/EMERGENCY": "Emergency room visit",
    "VISIT/OUTPATIENT": "Outpatient visit",
    "VISIT/PHARMACY": "Pharmacy visit",
    "VISIT/OTHER": "Other visit",
}


def _concepts(table: SourceTable | None) -> pl.LazyFrame | None:
    if table is None:
        return None
    vocabulary = table.col("vocabulary_id").str.to_uppercase().str.replace_all(r"[^A-Z0-9]+", "_")
    return table.frame.select(
        table.integer("concept_id", required=True).alias("concept_id"),
        (vocabulary + pl.lit("/") + table.col("concept_code")).alias("concept_code"),
        table.col("concept_name").alias("description"),
    )


def _code_of(concept_id: pl.Expr, source_value: pl.Expr, domain: str) -> tuple[pl.Expr, pl.Expr]:
    """(the code before CONCEPT is joined in, the concept id to join on)."""
    local = pl.lit(f"LOCAL_{domain}/") + source_value
    fallback = pl.when(concept_id == 0).then(local).otherwise(pl.lit("OMOP/") + concept_id.cast(pl.String))
    return fallback, concept_id


def _clinical(t: SourceTable, spec: ClinicalTable) -> pl.LazyFrame:
    concept_id = t.integer(spec.concept, required=True)
    code, join_id = _code_of(concept_id, t.col(spec.source_value), spec.domain)
    return t.frame.select(
        *event_frame(
            t.integer("person_id", required=True),
            t.datetime(*spec.times, required=True),
            code,
            numeric_value=t.number(spec.numeric_value) if spec.numeric_value else None,
            text_value=t.col(spec.text_value) if spec.text_value else None,
            encounter_id=t.integer("visit_occurrence_id"),
            unit=t.col(spec.unit) if spec.unit else None,
        ),
        join_id.alias("concept_id"),
    ).filter(pl.col("code").is_not_null())


def _person(t: SourceTable) -> pl.LazyFrame:
    person = t.integer("person_id", required=True)
    year = t.integer("year_of_birth", required=True)
    born_on = pl.date(year, t.integer("month_of_birth").fill_null(1), t.integer("day_of_birth").fill_null(1))
    birth = pl.coalesce(t.datetime("birth_datetime"), born_on.cast(pl.Datetime("us")))
    gender = t.integer("gender_concept_id").replace_strict(GENDERS, default=None, return_dtype=pl.String)
    static = t.frame.filter(gender.is_not_null()).select(
        event_frame(person, pl.lit(None), pl.lit("GENDER/") + gender)
    )
    return pl.concat([static, t.frame.select(event_frame(person, birth, pl.lit("MEDS_BIRTH")))])


def _death(t: SourceTable) -> pl.LazyFrame:
    time = t.datetime("death_datetime", "death_date", required=True)
    return t.frame.select(event_frame(t.integer("person_id", required=True), time, pl.lit("MEDS_DEATH")))


def _visits(t: SourceTable) -> pl.LazyFrame:
    kind = t.integer("visit_concept_id").replace_strict(VISIT_TYPES, default="OTHER", return_dtype=pl.String)
    return t.frame.select(
        event_frame(
            t.integer("person_id", required=True),
            t.datetime("visit_start_datetime", "visit_start_date", required=True),
            pl.lit("VISIT/") + kind,
            encounter_id=t.integer("visit_occurrence_id", required=True),
        )
    )


def _notes(t: SourceTable) -> pl.LazyFrame:
    # A note dated without a time is known by the end of its day, not at its midnight.
    time = pl.coalesce(t.datetime("note_datetime"), end_of_day(t.datetime("note_date", required=True)))
    title = t.col("note_title").str.to_uppercase().str.replace_all(r"[^A-Z0-9]+", "_").fill_null("NOTE")
    return t.frame.select(
        event_frame(
            t.integer("person_id", required=True),
            time,
            pl.lit("NOTE/") + title,
            text_value=t.col("note_text"),
            encounter_id=t.integer("visit_occurrence_id"),
        )
    )


def _code_metadata(concepts: pl.LazyFrame | None):
    """Descriptions from CONCEPT (names) and, for ICD codes, parents from vocab/."""
    named = None if concepts is None else concepts.select(code="concept_code", description="description").collect()

    def describe(codes: pl.Series) -> pl.DataFrame:
        icd = code_metadata(codes).select("code", "parent_codes")
        names = described(FIXED_DESCRIPTIONS) if named is None else pl.concat([described(FIXED_DESCRIPTIONS), named])
        return names.join(codes.to_frame("code"), on="code", how="semi").join(icd, on="code", how="left")

    return describe


def convert_omop(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset_name: str = "OMOP",
    subjects_per_shard: int = 10_000,
    overwrite: bool = False,
) -> Path:
    """Convert OMOP CDM 5.3/5.4 CSV tables in ``src`` to MEDS at ``out``.

    PERSON is required; DEATH, VISIT_OCCURRENCE, CONDITION_OCCURRENCE, DRUG_EXPOSURE,
    PROCEDURE_OCCURRENCE, MEASUREMENT, OBSERVATION and NOTE are converted when present (absence
    logged); CONCEPT, when present, gives codes and descriptions. Returns the output path.
    """
    tables = open_tables(src, TABLES, required=("PERSON",))
    concepts = _concepts(tables.get("CONCEPT"))
    if concepts is None:
        log.warning("CONCEPT not found: codes stay as OMOP/<concept_id>, without descriptions")
    parts = [_person(tables["PERSON"])]
    if "DEATH" in tables:
        parts.append(_death(tables["DEATH"]))
    if "VISIT_OCCURRENCE" in tables:
        parts.append(_visits(tables["VISIT_OCCURRENCE"]))
    if "NOTE" in tables:
        parts.append(_notes(tables["NOTE"]))
    clinical = [_clinical(tables[spec.name], spec) for spec in CLINICAL_TABLES if spec.name in tables]
    if clinical:
        coded = pl.concat(clinical)
        if concepts is not None:
            coded = coded.join(
                concepts.select("concept_id", "concept_code"), on="concept_id", how="left"
            ).with_columns(
                code=pl.when(pl.col("concept_id") != 0)
                .then(pl.coalesce("concept_code", "code"))
                .otherwise("code")
            )
        parts.append(coded.drop("concept_id", "concept_code", strict=False))
    run_probes(list(tables.values()))
    return write_dataset(
        out,
        pl.concat(parts, how="vertical"),
        dataset_name=dataset_name,
        etl_name="clinfm.convert_omop",
        codes=_code_metadata(concepts),
        subjects=subject_ids(tables["PERSON"], "person_id"),
        subjects_per_shard=subjects_per_shard,
        overwrite=overwrite,
    )
