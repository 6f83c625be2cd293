"""Code strings say their vocabulary: ``ICD9CM/493.90``, ``ICD10CM/J45.909``, ``RXNORM/435``.

This module is the one registry of vocabulary prefixes clinfm writes and recognises.
"""

from __future__ import annotations

import polars as pl

#: Vocabulary prefix -> what it holds. Prefixes are upper case, as OMOP's vocabulary_id upper-cased.
KNOWN_VOCABULARIES: dict[str, str] = {
    "ICD9CM": "ICD-9-CM diagnoses",
    "ICD10CM": "ICD-10-CM diagnoses",
    "ICD9PROC": "ICD-9-CM procedures (volume 3)",
    "ICD10PCS": "ICD-10-PCS procedures",
    "CPT4": "CPT-4 procedures",
    "HCPCS": "HCPCS procedures and supplies",
    "RXNORM": "RxNorm drugs",
    "RXNORM_EXTENSION": "RxNorm Extension drugs",
    "NDC": "National Drug Codes",
    "ATC": "ATC drug classes",
    "DRUG": "drug names as written by the source (generic or brand)",
    "LOINC": "LOINC laboratory tests and observations",
    "LAB": "a source's local laboratory item ids",
    "SNOMED": "SNOMED CT concepts",
    "CVX": "vaccines",
    "UCUM": "units",
    "CCS": "AHRQ CCS diagnosis categories (ICD-9-CM)",
    "CCSR": "AHRQ CCSR diagnosis categories (ICD-10-CM)",
    "OMOP": "OMOP concept ids without a vocabulary code",
    "VISIT": "encounter starts, by type (INPATIENT, OUTPATIENT, EMERGENCY, PHARMACY)",
    "NOTE": "clinical notes, by note type; the text is in text_value",
    "GENDER": "administrative sex (static)",
    "RACE": "race (static)",
    "ETHNICITY": "ethnicity (static)",
    "MEDS": "MEDS reserved codes (MEDS_BIRTH, MEDS_DEATH)",
}

#: Descriptions of the codes clinfm writes itself, whatever the source.
CLINFM_CODE_DESCRIPTIONS: dict[str, str] = {
    "GENDER/F": "Female",
    "GENDER/M": "Male",
    "MEDS_BIRTH": "Birth",
    "MEDS_DEATH": "Death",
    "VISIT/INPATIENT": "Inpatient stay",
    "VISIT/EMERGENCY": "Emergency department visit",
    "VISIT/OUTPATIENT": "Outpatient visit",
    "VISIT/PHARMACY": "Pharmacy claim",
    "VISIT/OTHER": "Other visit",
    "NOTE/PROGRESS": "Progress note",
    "NOTE/ED": "Emergency department note",
    "NOTE/DISCHARGE": "Discharge summary",
}

#: Prefixes users may invent for their own site's codes, e.g. ``LOCAL_LAB/12345``.
LOCAL_PREFIX = "LOCAL"


def vocabulary_of(code: pl.Expr) -> pl.Expr:
    """The vocabulary part of a code: the text before the first ``/``; ``MEDS`` for MEDS_* codes.

    Works on MEDS_transforms-style codes too (``LAB//51087//UNK`` -> ``LAB``). A code without a
    ``/`` after a name of letters, digits and underscores has no vocabulary and gives null.
    """
    prefix = code.str.extract(r"^([A-Za-z][A-Za-z0-9_]*)/", 1)  # "BMI (kg/m2)" has no vocabulary
    return pl.when(code.str.starts_with("MEDS_")).then(pl.lit("MEDS")).otherwise(prefix)


def is_known_vocabulary(prefix: str) -> bool:
    """True for a registered prefix or a site-local one (``LOCAL`` or ``LOCAL_*``)."""
    prefix = prefix.upper()
    return prefix in KNOWN_VOCABULARIES or prefix == LOCAL_PREFIX or prefix.startswith(LOCAL_PREFIX + "_")


def check_vocabulary(prefix: str, *, where: str) -> str:
    """Return the upper-cased prefix, or raise a one-line InputError naming ``where`` it came from."""
    from clinfm.errors import InputError

    if not prefix or not is_known_vocabulary(prefix):
        known = ", ".join(sorted(KNOWN_VOCABULARIES))
        raise InputError(
            f"unknown code vocabulary {prefix!r}; expected one of {known}, "
            f"or {LOCAL_PREFIX}_<NAME> for a site's own codes",
            path=where,
        )
    return prefix.upper()
