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
    DATETIME,
    INTEGER,
    NUMBER,
    TEXT,
    Column,
    SourceTable,
    code_token,
    date_or_time,
    described,
    drop_untimed,
    event_frame,
    needed,
    open_tables,
    staging_area,
)
from clinfm.events.meds import write_dataset
from clinfm.io import check_output
from clinfm.vocab.icd import code_metadata
from clinfm.vocab.systems import CLINFM_CODE_DESCRIPTIONS

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
PERSON_ID = needed(INTEGER, sources=("person_id",))


def _timed(exact: str, date: str) -> dict[str, Column]:
    """A date-time column and its date column: ``time`` (either, in every row) and ``exact``."""
    return {
        "exact": Column(DATETIME, sources=(exact,)),
        "time": Column(DATETIME, required=True, sources=(exact, date)),
    }


#: The event time: the date-time where it has a time of day, else the end of the date.
EVENT_TIME = date_or_time(pl.col("exact"), pl.col("time"))


def _clinical_spec(t: ClinicalTable) -> dict[str, Column]:
    """Every clinical table is read into the same typed columns."""
    optional = {
        "numeric_value": (NUMBER, t.numeric_value),
        "text_value": (TEXT, t.text_value),
        "unit": (TEXT, t.unit),
    }
    return {
        "subject_id": PERSON_ID,
        "concept_id": needed(INTEGER, sources=(t.concept,)),
        **_timed(*t.times),
        "source_value": Column(TEXT, sources=(t.source_value,)),
        "encounter_id": Column(INTEGER, sources=("visit_occurrence_id",)),
        **{name: Column(kind, sources=(source,)) for name, (kind, source) in optional.items() if source},
    }


TABLES: dict[str, dict[str, Column]] = {
    "PERSON": {
        "subject_id": needed(INTEGER, sources=("person_id",), unique=True),
        "gender_concept_id": Column(INTEGER, required=True),
        "year_of_birth": needed(INTEGER),
        "month_of_birth": Column(INTEGER),
        "day_of_birth": Column(INTEGER),
        "birth_datetime": Column(DATETIME),
    },
    "DEATH": {"subject_id": PERSON_ID, **_timed("death_datetime", "death_date")},
    "VISIT_OCCURRENCE": {
        "subject_id": PERSON_ID,
        "encounter_id": needed(INTEGER, sources=("visit_occurrence_id",), unique=True),
        "visit_concept_id": Column(INTEGER, required=True),
        **_timed("visit_start_datetime", "visit_start_date"),
    },
    "NOTE": {
        "subject_id": PERSON_ID,
        **_timed("note_datetime", "note_date"),
        "note_class_concept_id": Column(INTEGER),
        "note_text": Column(TEXT, required=True),
        "encounter_id": Column(INTEGER, sources=("visit_occurrence_id",)),
    },
    "CONCEPT": {
        "concept_id": needed(INTEGER, unique=True),
        "concept_name": Column(TEXT, required=True),
        "vocabulary_id": Column(TEXT, required=True),
        "concept_code": Column(TEXT, required=True),
    },
    **{t.name: _clinical_spec(t) for t in CLINICAL_TABLES},
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

col = pl.col


def _concepts(table: SourceTable | None) -> pl.LazyFrame | None:
    if table is None:
        return None
    vocabulary = code_token(col("vocabulary_id"), "OMOP")
    return table.frame.select(
        "concept_id", concept_code=vocabulary + "/" + col("concept_code"), description="concept_name"
    )


def _clinical(t: SourceTable, spec: ClinicalTable) -> pl.LazyFrame:
    """Events coded OMOP/<concept_id> for now (CONCEPT replaces it), or by the source value for concept 0."""
    local = f"LOCAL_{spec.domain}/" + col("source_value")
    code = pl.when(col("concept_id") == 0).then(local).otherwise("OMOP/" + col("concept_id").cast(pl.String))
    optional = {name: col(name) for name in ("numeric_value", "text_value", "unit") if name in t.spec}
    events = t.frame.select(
        *event_frame(col("subject_id"), EVENT_TIME, code, encounter_id=col("encounter_id"), **optional),
        "concept_id",
    )
    unmapped = events.filter(col("code").is_null()).select(pl.len()).collect().item()
    if unmapped:
        log.warning("%s: %d row(s) with concept 0 and no source value; skipped", spec.name, unmapped)
    return drop_untimed(spec.name, events.filter(col("code").is_not_null()))


def _person(t: SourceTable) -> pl.LazyFrame:
    # Month and day are optional in OMOP, and may be out of range: fall back to the year's start.
    parts = [col("year_of_birth"), col("month_of_birth").fill_null(1), col("day_of_birth").fill_null(1)]
    text = pl.format("{}-{}-{}", *parts).str.to_datetime("%Y-%m-%d", strict=False, time_unit="us")
    start_of_year = pl.format("{}-01-01", col("year_of_birth")).str.to_datetime(
        "%Y-%m-%d", strict=False, time_unit="us"
    )
    birth = pl.coalesce(col("birth_datetime"), text, start_of_year)
    gender = col("gender_concept_id").replace_strict(GENDERS, default=None, return_dtype=pl.String)
    static = t.frame.filter(gender.is_not_null()).select(
        event_frame(col("subject_id"), pl.lit(None), "GENDER/" + gender)
    )
    return pl.concat([static, t.frame.select(event_frame(col("subject_id"), birth, pl.lit("MEDS_BIRTH")))])


def _death(t: SourceTable) -> pl.LazyFrame:
    return t.frame.select(event_frame(col("subject_id"), EVENT_TIME, pl.lit("MEDS_DEATH")))


def _visits(t: SourceTable) -> pl.LazyFrame:
    kind = col("visit_concept_id").replace_strict(VISIT_TYPES, default="OTHER", return_dtype=pl.String)
    return t.frame.select(
        event_frame(col("subject_id"), EVENT_TIME, "VISIT/" + kind, encounter_id=col("encounter_id"))
    )


def _notes(t: SourceTable) -> pl.LazyFrame:
    # Typed by its class concept, not its free-text title, which may carry identifying text.
    kind = col("note_class_concept_id").cast(pl.String).fill_null("UNKNOWN")
    return t.frame.select(
        event_frame(
            col("subject_id"),
            EVENT_TIME,
            "NOTE/OMOP_" + kind,
            text_value=col("note_text"),
            encounter_id=col("encounter_id"),
        )
    )


def _code_metadata(concepts: pl.LazyFrame | None):
    """Descriptions from CONCEPT (names, also of note classes), ICD parents from vocab/.

    Only the concepts the data use are read into memory: a full Athena CONCEPT has millions of rows.
    """

    def describe(codes: pl.Series) -> pl.DataFrame:
        icd = code_metadata(codes).select("code", "parent_codes")
        parts = [described(CLINFM_CODE_DESCRIPTIONS)]
        if concepts is not None:
            used = codes.to_frame("code").lazy()
            named = concepts.select(code="concept_code", description="description")
            notes = concepts.select(
                code="NOTE/OMOP_" + col("concept_id").cast(pl.String), description="description"
            )
            parts += pl.collect_all(
                [named.join(used, on="code", how="semi"), notes.join(used, on="code", how="semi")]
            )
        return pl.concat(parts).join(icd, on="code", how="left")

    return describe


def convert_omop(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset_name: str = "OMOP",
    subjects_per_shard: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert OMOP CDM 5.3/5.4 CSV tables in ``src`` to MEDS at ``out``.

    PERSON is required; DEATH, VISIT_OCCURRENCE, CONDITION_OCCURRENCE, DRUG_EXPOSURE,
    PROCEDURE_OCCURRENCE, MEASUREMENT, OBSERVATION and NOTE are converted when present (absence
    logged); CONCEPT, when present, gives codes and descriptions. Returns the output path.
    """
    check_output(out, overwrite)
    with staging_area(out, overwrite) as staging:
        tables = open_tables(src, TABLES, staging, required=("PERSON",))
        concepts = _concepts(tables.get("CONCEPT"))
        if concepts is None:
            log.warning("CONCEPT not found: codes stay as OMOP/<concept_id>, without descriptions")
        parts = [_person(tables["PERSON"])]  # static and birth events: never untimed
        makers = {"DEATH": _death, "VISIT_OCCURRENCE": _visits, "NOTE": _notes}
        parts += [drop_untimed(name, make(tables[name])) for name, make in makers.items() if name in tables]
        clinical = [_clinical(tables[spec.name], spec) for spec in CLINICAL_TABLES if spec.name in tables]
        if clinical:
            coded = pl.concat(clinical)
            if concepts is not None:
                known = col("concept_id") != 0
                coded = coded.join(concepts.select("concept_id", "concept_code"), on="concept_id", how="left")
                coded = coded.with_columns(
                    code=pl.when(known).then(pl.coalesce("concept_code", "code")).otherwise("code")
                )
            parts.append(coded.drop("concept_id", "concept_code", strict=False))
        return write_dataset(
            out,
            pl.concat(parts, how="vertical"),
            dataset_name=dataset_name,
            etl_name="clinfm.convert_omop",
            codes=_code_metadata(concepts),
            subjects=tables["PERSON"].frame.select("subject_id").collect()["subject_id"],
            subjects_per_shard=subjects_per_shard,
            expected_events=sum(table.rows() for name, table in tables.items() if name != "CONCEPT"),
            overwrite=overwrite,
        )
