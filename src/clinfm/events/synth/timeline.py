"""Visits to MEDS events: codes, procedures, drugs, lab results and notes of each visit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from clinfm.events.synth import catalog as cat
from clinfm.events.synth.cohort import (
    ASTHMA_ATTACK,
    COND,
    DAY_US,
    DKA,
    EMERGENCY,
    INPATIENT,
    OUTPATIENT,
    PHARMACY,
    SELF_HARM,
    VISIT_TYPE_NAMES,
    WELL,
    CodeBook,
    Patients,
    SiteProfile,
    Visits,
)
from clinfm.events.synth.notes import write_notes

LAB_INDEX = {test.loinc: i for i, test in enumerate(cat.LAB_TESTS)}
HOUR_US = 3_600_000_000
#: Diagnoses are billed at the end of an encounter, an hour after it starts: a prediction made
#: during the visit (after its labs and notes) does not see them.
BILLING_DELAY_US = HOUR_US


class EventParts:
    """Collects (visit, code, value, unit, delay) arrays and builds one frame at the end."""

    def __init__(self, codebook: CodeBook):
        self.codebook = codebook
        self.visit: list[np.ndarray] = []
        self.code: list[np.ndarray] = []
        self.value: list[np.ndarray] = []
        self.unit: list[np.ndarray] = []  # index into LAB_TESTS units; -1 for none
        self.delay: list[np.ndarray] = []  # microseconds after the visit's start

    def add(self, visit, code, value=None, *, unit=None, delay_us: int = 0) -> None:
        n = len(visit)
        self.visit.append(visit)
        self.code.append(np.broadcast_to(np.asarray(code, dtype=np.int64), visit.shape))
        self.value.append(np.full(n, np.nan, np.float32) if value is None else value.astype(np.float32))
        self.unit.append(np.full(n, -1) if unit is None else unit)
        self.delay.append(np.full(n, delay_us, dtype=np.int64))

    def add_choice(self, rng, visit: np.ndarray, codes: Sequence[str], weights: np.ndarray, **kwargs) -> None:
        """One of ``codes`` per visit, drawn with the site's habit ``weights``."""
        if len(visit):
            self.add(visit, self.codebook.ids(codes)[rng.choice(len(codes), len(visit), p=weights)], **kwargs)

    def frame(self, visit_time, subject_ids, patient_of_visit, encounter_ids) -> pl.DataFrame:
        visit = np.concatenate(self.visit)
        units = pl.Series([t.unit for t in cat.LAB_TESTS] + [None])
        unit = np.concatenate(self.unit)
        return pl.DataFrame(
            {
                "subject_id": subject_ids[patient_of_visit[visit]],
                "time": pl.Series(visit_time[visit] + np.concatenate(self.delay)).cast(pl.Datetime("us")),
                "code": pl.Series(self.codebook.codes).gather(np.concatenate(self.code)),
                "numeric_value": pl.Series(np.concatenate(self.value)).fill_nan(None),
                "text_value": pl.Series([None] * len(visit), dtype=pl.String),
                "encounter_id": encounter_ids[visit],
                "unit": units.gather(np.where(unit < 0, len(cat.LAB_TESTS), unit)),
            }
        )


def _diagnoses(rng, site: SiteProfile, p: Patients, v: Visits, parts: EventParts) -> None:
    medical = v.kind != PHARMACY
    index = np.arange(len(v.day))

    def code(key: str, icd9: tuple[str, ...], rows: np.ndarray) -> None:
        codes = cat.diagnosis_codes(icd9, site.coding)
        parts.add_choice(rng, rows, codes, site.code_weights(key, len(codes)), delay_us=BILLING_DELAY_US)

    for i, condition in enumerate(cat.CONDITIONS):
        code(condition.name, condition.icd9, index[medical & (v.reason == i)])
        # Comorbidities already known are coded at some visits, by the site's habit.
        known = (p.known_day[v.patient, i] <= v.day) & medical & (v.reason != i)
        code(
            condition.name, condition.icd9, index[known & (rng.random(len(v.day)) < site.comorbidity_coding)]
        )
    for e, episode in enumerate(cat.EPISODES):
        code(episode.name, episode.icd9, index[v.episode == e])
    code("well_child", cat.WELL_CHILD_ICD9, index[v.reason == WELL])
    code("asthma_exacerbation", cat.ASTHMA_EXACERBATION_ICD9, index[v.reason == ASTHMA_ATTACK])
    code("dka", cat.DKA_ICD9, index[v.reason == DKA])
    self_harm = index[v.reason == SELF_HARM]
    code("self_harm", cat.SELF_HARM_ICD9, self_harm)
    anxiety = cat.CONDITIONS[COND["anxiety_depression"]]
    code(anxiety.name, anxiety.icd9, self_harm)
    # Suicidal ideation is documented more often the more severe the depression: a warning sign.
    severity = p.severity[v.patient, COND["anxiety_depression"]]
    ideation = (p.known_day[v.patient, COND["anxiety_depression"]] <= v.day) & (v.kind == OUTPATIENT)
    ideation &= rng.random(len(v.day)) < 0.05 * severity**2
    code("suicidal_ideation", cat.SUICIDAL_IDEATION_ICD9, index[ideation])


def _incidental(rng, site: SiteProfile, v: Visits, parts: EventParts) -> None:
    """A passing diagnosis at some medical visits, drawn from the long tail of real codes."""
    codes = cat.incidental_codes(site.coding)
    rows = np.flatnonzero((v.kind != PHARMACY) & (rng.random(len(v.day)) < cat.INCIDENTAL_RATE))
    parts.add_choice(rng, rows, codes, site.long_tail_weights(len(codes)), delay_us=BILLING_DELAY_US)


def _procedures(rng, p: Patients, v: Visits, parts: EventParts) -> None:
    book = parts.codebook
    cpt = {code: book.id(f"CPT4/{code}") for code in cat.PROCEDURES}
    index = np.arange(len(v.day))
    age = (v.day - p.birth_day[v.patient]) / 365.25
    office = (v.kind == OUTPATIENT) & (v.reason != WELL)
    parts.add(index[office], np.where(rng.random(office.sum()) < 0.35, cpt["99214"], cpt["99213"]))
    well = index[v.reason == WELL]
    preventive = np.array([cpt["99391"], cpt["99392"], cpt["99393"], cpt["99394"]])
    parts.add(well, preventive[np.digitize(age[well], [1, 5, 12])])
    parts.add(well[rng.random(len(well)) < 0.6], cpt["90471"])
    emergency = index[v.kind == EMERGENCY]
    urgent = np.isin(v.reason[emergency], [ASTHMA_ATTACK, SELF_HARM, DKA])
    parts.add(emergency, np.where(urgent | (rng.random(len(emergency)) < 0.3), cpt["99284"], cpt["99283"]))
    parts.add(index[v.kind == INPATIENT], cpt["99222"])
    parts.add(index[v.reason == ASTHMA_ATTACK], cpt["94640"])
    for name, orders in cat.CONDITION_PROCEDURES.items():
        followup = index[(v.reason == COND[name]) & (v.kind == OUTPATIENT)]
        for code, chance in orders:
            parts.add(followup[rng.random(len(followup)) < chance], cpt[code])
    for e, episode in enumerate(cat.EPISODES):
        if episode.procedure:
            rows = index[v.episode == e]
            parts.add(rows[rng.random(len(rows)) < 0.7], cpt[episode.procedure])


def _drugs(rng, p: Patients, v: Visits, parts: EventParts) -> None:
    book = parts.codebook
    index = np.arange(len(v.day))
    for i, condition in enumerate(cat.CONDITIONS):
        fills = index[(v.kind == PHARMACY) & (v.reason == i)]
        if not condition.drugs:
            continue
        parts.add(fills, book.id(f"RXNORM/{condition.drugs[0]}"))
        if len(condition.drugs) > 1:  # a second maintenance drug for the more severe
            parts.add(fills[p.severity[v.patient[fills], i] > 1.0], book.id(f"RXNORM/{condition.drugs[1]}"))
    for name, rescue in cat.RESCUE_DRUGS.items():
        followup = index[(v.reason == COND[name]) & (v.kind == OUTPATIENT)]
        parts.add(followup[rng.random(len(followup)) < 0.5], book.id(f"RXNORM/{rescue[0]}"))
    attacks = index[v.reason == ASTHMA_ATTACK]
    for drug in cat.RESCUE_DRUGS["asthma"]:
        parts.add(attacks, book.id(f"RXNORM/{drug}"))
    for e, episode in enumerate(cat.EPISODES):
        rows = index[v.episode == e]
        if episode.drugs:
            chosen = rows[rng.random(len(rows)) < 0.6]
            parts.add(
                chosen,
                book.ids([f"RXNORM/{d}" for d in episode.drugs])[
                    rng.integers(0, len(episode.drugs), len(chosen))
                ],
            )


def _lab_orders(v: Visits) -> dict[str, np.ndarray]:
    """Which visits order which panel: by reason, infections, well-child checks, and any visit."""
    medical = v.kind != PHARMACY
    infection = np.isin(v.episode, [e for e, ep in enumerate(cat.EPISODES) if ep.infection])
    orders = {name: medical & (v.reason == COND[name]) for name in cat.LAB_ORDERS if name in COND}
    orders["type1_diabetes"] |= v.reason == DKA
    orders["asthma"] |= v.reason == ASTHMA_ATTACK
    orders["infection"] = infection
    orders["well_child"] = v.reason == WELL
    orders["any"] = medical
    return orders


def _labs(rng, p: Patients, v: Visits, parts: EventParts) -> None:
    """Lab results, drawn at the visit: shifted by the child's active conditions and severity."""
    rows, tests = [], []
    for panel, wanted in _lab_orders(v).items():
        for loinc, chance in cat.LAB_ORDERS[panel]:
            chosen = np.flatnonzero(wanted & (rng.random(len(v.day)) < chance))
            rows.append(chosen)
            tests.append(np.full(len(chosen), LAB_INDEX[loinc]))
    rows, tests = np.concatenate(rows), np.concatenate(tests)
    rows, first = np.unique(
        rows * len(cat.LAB_TESTS) + tests, return_index=True
    )  # one result per test per visit
    tests = tests[first]
    rows = rows // len(cat.LAB_TESTS)
    patient, day = v.patient[rows], v.day[rows]
    mean = np.array([t.mean for t in cat.LAB_TESTS])[tests]
    sd = np.array([t.sd for t in cat.LAB_TESTS])[tests]
    slope = np.array([t.age_slope for t in cat.LAB_TESTS])[tests]
    low = np.array([t.low for t in cat.LAB_TESTS])[tests]
    shifts = np.array([[t.shifts.get(c.name, 0.0) for c in cat.CONDITIONS] for t in cat.LAB_TESTS])
    infection_shift = np.array([t.shifts.get("infection", 0.0) for t in cat.LAB_TESTS])
    # Active conditions shift results from onset, before any diagnosis: labs can reveal them.
    active = p.onset_day[patient] <= day[:, None]
    shift = (active * p.severity[patient] * shifts[tests]).sum(axis=1)
    infected = np.isin(v.episode[rows], [e for e, ep in enumerate(cat.EPISODES) if ep.infection])
    age = (day - p.birth_day[patient]) / 365.25
    value = mean + slope * np.maximum(age - 5, 0) + shift + infection_shift[tests] * infected
    value = np.maximum(value + rng.normal(0, 1, len(rows)) * sd, low)
    codes = parts.codebook.ids([f"LOINC/{t.loinc}" for t in cat.LAB_TESTS])
    parts.add(rows, codes[tests], np.round(value, 2), unit=tests)


def visit_times(site: SiteProfile, v: Visits) -> np.ndarray:
    """Start of each visit in microseconds since the epoch."""
    return site.start_us + v.day * DAY_US + v.minute * 60_000_000


def visit_events(
    rng: np.random.Generator,
    site: SiteProfile,
    p: Patients,
    v: Visits,
    visit_time: np.ndarray,
    codebook: CodeBook,
    subject_ids: np.ndarray,
    encounter_ids: np.ndarray,
) -> pl.DataFrame:
    """All events of a shard's visits, plus each child's static and birth/death events."""
    parts = EventParts(codebook)
    kinds = codebook.ids([f"VISIT/{name}" for name in VISIT_TYPE_NAMES])
    parts.add(np.arange(len(v.day)), kinds[v.kind])
    _diagnoses(rng, site, p, v, parts)
    _incidental(rng, site, v, parts)
    _procedures(rng, p, v, parts)
    _drugs(rng, p, v, parts)
    _labs(rng, p, v, parts)
    events = parts.frame(visit_time, subject_ids, v.patient, encounter_ids)
    notes = _notes(rng, site, p, v, visit_time, subject_ids, encounter_ids)
    return pl.concat([_static_events(p, site.start_us, subject_ids), events, notes], how="vertical")


def _notes(rng, site, p, v, visit_time, subject_ids, encounter_ids) -> pl.DataFrame:
    chance = np.select([v.kind == OUTPATIENT, v.kind == PHARMACY], [site.note_rate, 0.0], 0.95)
    rows = np.flatnonzero(rng.random(len(v.day)) < chance)
    note_type = np.array(["NOTE/PROGRESS", "NOTE/ED", "NOTE/DISCHARGE", ""], dtype=object)[v.kind[rows]]
    return pl.DataFrame(
        {
            "subject_id": subject_ids[v.patient[rows]],
            "time": pl.Series(visit_time[rows]).cast(pl.Datetime("us")),
            "code": pl.Series(note_type, dtype=pl.String),
            "numeric_value": pl.Series([None] * len(rows), dtype=pl.Float32),
            "text_value": write_notes(rng, p, v.take(rows)),
            "encounter_id": encounter_ids[rows],
            "unit": pl.Series([None] * len(rows), dtype=pl.String),
        }
    )


def _static_events(p: Patients, start_us: int, subject_ids: np.ndarray) -> pl.DataFrame:
    birth = start_us + np.floor(p.birth_day).astype(np.int64) * DAY_US
    dead = np.isfinite(p.death_day)
    # Death at the end of its day: visits of that day (kept when they start before it) precede it.
    death = start_us + (np.floor(np.where(dead, p.death_day, 0)).astype(np.int64) + 1) * DAY_US - 1
    codes = np.concatenate(
        [
            np.where(p.male, "GENDER/M", "GENDER/F"),
            np.full(p.n, "MEDS_BIRTH"),
            np.full(int(dead.sum()), "MEDS_DEATH"),
        ]
    )
    return pl.DataFrame(
        {
            "subject_id": np.concatenate([subject_ids, subject_ids, subject_ids[dead]]),
            "time": pl.Series(np.concatenate([np.full(p.n, 0), birth, death[dead]])).cast(pl.Datetime("us")),
            "code": pl.Series(codes, dtype=pl.String),
        }
    ).with_columns(
        time=pl.when(pl.col("code").str.starts_with("GENDER/")).then(None).otherwise(pl.col("time")),
        numeric_value=pl.lit(None, pl.Float32),
        text_value=pl.lit(None, pl.String),
        encounter_id=pl.lit(None, pl.Int64),
        unit=pl.lit(None, pl.String),
    )
