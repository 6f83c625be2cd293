"""Code systems: descriptions, ICD-9 <-> ICD-10 GEMs, CCS / CCSR categories, chronic-condition flags,
and the minimum-patient-count policy for vocabularies that models save."""

from clinfm.vocab.icd import (
    categories,
    ccc_flags,
    chronic_flags,
    descriptions,
    gem,
    is_valid_code,
    map_codes,
    parent_codes,
    pediatric_complex_chronic,
)
from clinfm.vocab.systems import KNOWN_VOCABULARIES, vocabulary_of
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, Vocabulary, rare_codes

__all__ = [
    "DEFAULT_MIN_SUBJECTS",
    "KNOWN_VOCABULARIES",
    "Vocabulary",
    "categories",
    "ccc_flags",
    "chronic_flags",
    "descriptions",
    "gem",
    "is_valid_code",
    "map_codes",
    "parent_codes",
    "pediatric_complex_chronic",
    "rare_codes",
    "vocabulary_of",
]
