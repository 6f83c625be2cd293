"""Short templated clinical notes: reason for the visit, history, symptoms, negations, medications.

Notes carry signal a code list does not: symptoms of conditions not yet diagnosed, and findings
the child does *not* have ("Denies wheezing."), which is what negation-aware text models need.
Sentences are assembled column-wise with Polars; Python only formats the (at most 2^10) distinct
history and medication phrases.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from clinfm.events.synth import catalog as cat
from clinfm.events.synth.cohort import ACUTE, ASTHMA_ATTACK, DKA, SELF_HARM, WELL, C, Patients, Visits

# Notes document what is known incompletely, as real ones do: each known condition is listed in the
# history, and each maintenance drug in the medications, of only some notes. So a note's words reveal
# some diagnoses, and labs and symptoms must carry the rest.
NAMED_FOLLOW_UP = 0.5
DOCUMENTED_HISTORY = 0.4
DOCUMENTED_MEDICATION = 0.5

_SETTINGS = np.array(["clinic", "the emergency department", "the hospital", "the pharmacy"], dtype=object)
_SPECIAL_REASONS = {
    WELL: ("a well-child check", ("no complaints",)),
    ASTHMA_ATTACK: ("an asthma exacerbation", ("wheezing", "shortness of breath", "cough")),
    SELF_HARM: ("intentional self-harm", ("low mood", "hopelessness")),
    DKA: ("diabetic ketoacidosis", ("vomiting", "abdominal pain", "polyuria")),
}


def _reason_text(rng: np.random.Generator, v: Visits) -> tuple[np.ndarray, np.ndarray]:
    """(phrase for the reason, a symptom of it) per visit."""
    phrases = [f"follow-up of {c.title}" for c in cat.CONDITIONS]
    symptoms = [c.symptoms for c in cat.CONDITIONS]
    for e in cat.EPISODES:
        phrases.append(e.symptoms[0])
        symptoms.append(e.symptoms)
    for phrase, found in _SPECIAL_REASONS.values():
        phrases.append(phrase)
        symptoms.append(found)
    # Map each visit to a row of the tables above.
    key = np.where(v.reason < C, v.reason, 0)
    key = np.where(v.reason == ACUTE, C + v.episode, key)
    for offset, reason in enumerate(_SPECIAL_REASONS, start=C + len(cat.EPISODES)):
        key = np.where(v.reason == reason, offset, key)
    table_phrases = np.array(phrases, dtype=object)
    width = max(len(s) for s in symptoms)
    table_symptoms = np.array([[s[i % len(s)] for i in range(width)] for s in symptoms], dtype=object)
    pick = rng.integers(0, width, len(key))
    # Half of the follow-up notes do not name the condition followed up.
    unnamed = (v.reason < C) & (rng.random(len(key)) < 1 - NAMED_FOLLOW_UP)
    return np.where(unnamed, "a follow-up visit", table_phrases[key]), table_symptoms[key, pick]


def _mask_phrases(masks: np.ndarray, template, empty: str) -> np.ndarray:
    """Format a phrase once per distinct condition bitmask, then gather it for every note."""
    unique, inverse = np.unique(masks, return_inverse=True)
    phrases = []
    for mask in unique:
        chosen = [c for i, c in enumerate(cat.CONDITIONS) if mask >> i & 1]
        phrases.append(template(chosen) if chosen else empty)
    return np.array(phrases, dtype=object)[inverse]


def _documented(rng: np.random.Generator, n: int, chance: float) -> np.ndarray:
    """A bitmask per note of the conditions its author happened to document."""
    return (rng.random((n, C)) < chance) @ (1 << np.arange(C))


def _history(chosen) -> str:
    return "History of " + ", ".join(c.title for c in chosen) + "."


def _medications(chosen) -> str:
    names = [cat.DRUGS[c.drugs[0]] for c in chosen if c.drugs]
    return "Medications: " + ", ".join(names) + "." if names else ""


def write_notes(rng: np.random.Generator, p: Patients, v: Visits) -> pl.Series:
    """One note per visit in ``v``."""
    n = len(v.day)
    age = ((v.day - p.birth_day[v.patient]) / 365.25).astype(int)
    child = np.where(p.male[v.patient], "boy", "girl")
    bits = 1 << np.arange(C)
    known = (p.known_day[v.patient] <= v.day[:, None]) @ bits
    active = p.onset_day[v.patient] <= v.day[:, None]
    phrase, symptom = _reason_text(rng, v)

    # A symptom of a random active condition, diagnosed or not, is often mentioned.
    other = rng.integers(0, C, n)
    cardinal = np.array([c.symptoms[-1] for c in cat.CONDITIONS], dtype=object)
    noted = active[np.arange(n), other] & (rng.random(n) < 0.6)
    extra = np.where(noted, "Parent also reports " + cardinal[other].astype(str) + ".", "")
    # A finding of a condition the child does not have is often denied.
    absent = rng.integers(0, C, n)
    first = np.array([c.symptoms[0] for c in cat.CONDITIONS], dtype=object)
    denied = ~active[np.arange(n), absent] & (rng.random(n) < 0.7)
    negation = np.where(denied, "Denies " + first[absent].astype(str) + ".", "")
    finding = rng.integers(0, len(cat.NEGATABLE_FINDINGS), n)
    # Never deny what the child has: a general finding is left out if an active condition has it.
    conflicts = np.array(
        [
            [
                f in c.symptoms or (f == "suicidal ideation" and c.name == "anxiety_depression")
                for c in cat.CONDITIONS
            ]
            for f in cat.NEGATABLE_FINDINGS
        ]
    )
    clash = (conflicts[finding] & active).any(axis=1)
    findings = np.array(cat.NEGATABLE_FINDINGS, dtype=object)
    general = np.where(clash, "", "No " + findings[finding].astype(str) + ".")

    frame = pl.DataFrame(
        {
            "opening": age.astype(str).astype(object)
            + "-year-old "
            + child
            + " seen in "
            + _SETTINGS[v.kind]
            + " for "
            + phrase
            + ".",
            "symptoms": "Reports " + symptom.astype(str) + ".",
            "extra": extra,
            "history": _mask_phrases(known & _documented(rng, n, DOCUMENTED_HISTORY), _history, ""),
            "negation": negation,
            "general": general,
            "medications": _mask_phrases(
                known & _documented(rng, n, DOCUMENTED_MEDICATION), _medications, ""
            ),
        },
        schema=dict.fromkeys(
            ["opening", "symptoms", "extra", "history", "negation", "general", "medications"], pl.String
        ),
    )
    text = frame.select(pl.concat_str(pl.all(), separator=" ").str.replace_all(r"\s+", " ").str.strip_chars())
    return text.to_series().rename("text_value")
