"""Synthetic pediatric claims cohorts as a generative process, written as MEDS with built-in tasks.

The story of each child, vectorised over a shard of children with NumPy:

1. sex and age; latent chronic conditions with onset ages, comorbidity (eczema raises later asthma
   risk, ADHD and autism raise anxiety/depression, ...) and a persistent latent *severity*;
2. a diagnosis delay after onset: a condition is coded only once it is *known*;
3. visits: outpatient follow-ups (more for more, and more severe, conditions), acute episodes and
   well-child checks; emergency and inpatient visits for asthma exacerbations, self-harm, diabetic
   ketoacidosis and injuries, at rates that grow with severity; pharmacy refills of maintenance
   drugs;
4. per visit: the visit type, diagnosis codes in the site's coding system and habits, CPT
   procedures, drugs, LOINC lab results shifted by active conditions and severity (also before
   diagnosis), and a short note with symptoms, history, medications and negated findings.

Because severity persists, a child's history (past exacerbations, controller drugs, eosinophils,
visit frequency) carries signal about future outcomes, which is what the tasks ask for. Labels are
computed from the generated visits, strictly after each prediction time.

Sites differ, as institutions do: the coding system, prevalence, visit frequency, age mix, how
often comorbidities are coded, which of a condition's codes clinicians prefer, and note-taking.
A site's character is derived from its name alone; ``seed`` draws its patients.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np

from clinfm.errors import InputError
from clinfm.events.synth import catalog as cat

DAY_US = 86_400_000_000
ICD10_START = dt.date(2015, 10, 1)
MAX_YEARS = 20.0
SITE_NUMBERS = 90_000
C = len(cat.CONDITIONS)
COND = {name: i for i, name in enumerate(cat.CONDITION_NAMES)}

# Visit types and reasons. Reasons 0..C-1 are follow-ups (or refills) of a condition.
OUTPATIENT, EMERGENCY, INPATIENT, PHARMACY = 0, 1, 2, 3
VISIT_TYPE_NAMES = ("OUTPATIENT", "EMERGENCY", "INPATIENT", "PHARMACY")
ACUTE, WELL, ASTHMA_ATTACK, SELF_HARM, DKA = C, C + 1, C + 2, C + 3, C + 4


def stable_hash(text: str) -> int:
    """A hash of a string that is the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SiteProfile:
    """How one institution differs from another. Derived from its name, so the same site is the same
    institution whatever seed or size a cohort is drawn with."""

    name: str
    coding: str
    start: dt.date
    years: float
    visit_rate: float  # outpatient visits per child-year at baseline
    prevalence: np.ndarray  # per-condition multipliers
    age_beta: tuple[float, float]  # age at window start ~ 15 * Beta(a, b)
    comorbidity_coding: float  # chance a known comorbidity is coded at a visit
    note_rate: float  # chance an outpatient visit has a note in the extract
    acute_rate: float  # multiplier on emergency-visit rates
    site_number: int  # 1..SITE_NUMBERS: places the site's subject and encounter ids

    @property
    def start_us(self) -> int:
        """The window's start, in microseconds since the epoch (the unit of MEDS times)."""
        return int(np.datetime64(self.start, "us").astype(np.int64))

    @property
    def subject_offset(self) -> int:
        """Sites get disjoint ranges of 10^8 subject ids (two site names clash with odds 1 in 90,000)."""
        return self.site_number * 100_000_000

    @property
    def encounter_offset(self) -> int:
        return self.site_number * 1_000_000_000_000

    @classmethod
    def from_name(cls, name: str, coding: str, years: float = 4.0) -> SiteProfile:
        if coding not in ("icd9", "icd10"):
            raise InputError(f"coding must be icd9 or icd10, got {coding!r}")
        if not 0 < years <= MAX_YEARS:
            raise InputError(f"years must be in (0, {MAX_YEARS}], got {years}")
        rng = np.random.default_rng(stable_hash(f"site:{name}"))
        return cls(
            name=name,
            coding=coding,
            # ICD-10-CM replaced ICD-9-CM in US claims on 2015-10-01: an ICD-9 window ends before it.
            start=ICD10_START - dt.timedelta(days=round(years * 365.25))
            if coding == "icd9"
            else dt.date(2016, 1, 1),
            years=years,
            visit_rate=float(rng.uniform(2.0, 4.0)),
            prevalence=rng.lognormal(0.0, 0.25, C),
            age_beta=(float(rng.uniform(0.9, 1.6)), float(rng.uniform(0.9, 1.6))),
            comorbidity_coding=float(rng.uniform(0.2, 0.55)),
            note_rate=float(rng.uniform(0.3, 0.7)),
            acute_rate=float(rng.lognormal(0.0, 0.2)),
            site_number=stable_hash(f"ids:{name}") % SITE_NUMBERS + 1,
        )

    def long_tail_weights(self, n: int) -> np.ndarray:
        """Zipf weights over codes ranked by how common they are everywhere, with this site's own
        habits on top (a code common here may be rare elsewhere, as between real institutions)."""
        rng = np.random.default_rng(stable_hash(f"tail:{self.name}:{self.coding}"))
        weights = (1.0 / np.arange(1, n + 1) ** 1.1) * rng.lognormal(0.0, 0.7, n)
        return weights / weights.sum()

    def code_weights(self, key: str, n: int) -> np.ndarray:
        """This site's preference among ``n`` codes for the same thing: its coding habit."""
        rng = np.random.default_rng(stable_hash(f"habit:{self.name}:{self.coding}:{key}"))
        prior = 1.0 / np.arange(1, n + 1)  # the routine code is the most used one everywhere
        weights = 0.5 * prior / prior.sum() + 0.5 * rng.dirichlet(np.full(n, 0.8))
        return weights / weights.sum()


class CodeBook:
    """Interns code strings so events are built as integer arrays and turned into strings once."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self._index: dict[str, int] = {}

    def id(self, code: str) -> int:
        if code not in self._index:
            self._index[code] = len(self.codes)
            self.codes.append(code)
        return self._index[code]

    def ids(self, codes) -> np.ndarray:
        return np.array([self.id(code) for code in codes], dtype=np.int64)


def _choose(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of a non-negative weight matrix, with probability proportional to weight."""
    cumulative = np.cumsum(weights, axis=1)
    threshold = rng.random(len(weights)) * cumulative[:, -1]
    return np.minimum((cumulative <= threshold[:, None]).sum(axis=1), weights.shape[1] - 1)


@dataclass
class Patients:
    n: int
    male: np.ndarray
    birth_day: np.ndarray  # days relative to the window start (negative: born before it)
    has: np.ndarray  # (n, C) bool
    onset_day: np.ndarray  # (n, C); inf where absent
    known_day: np.ndarray  # (n, C); day the condition is diagnosed; inf where absent
    severity: np.ndarray  # (n, C)
    death_day: np.ndarray  # inf for the living


def draw_patients(rng: np.random.Generator, site: SiteProfile, n: int, window: float) -> Patients:
    male = rng.random(n) < 0.51
    age0 = 15.0 * rng.beta(*site.age_beta, n)
    birth_day = -age0 * 365.25
    has = np.zeros((n, C), dtype=bool)
    onset_day = np.full((n, C), np.inf)
    for index, condition in enumerate(cat.CONDITIONS):
        risk = np.full(n, condition.prevalence * site.prevalence[index])
        risk *= np.where(male, 2 * condition.male_ratio, 2.0) / (1 + condition.male_ratio)
        for other, ratio in condition.risk_from.items():
            risk *= np.where(has[:, COND[other]], ratio, 1.0)
        mean, sd = condition.onset_age
        onset = birth_day + np.clip(rng.normal(mean, sd, n), 0.1, 17.9) * 365.25
        has[:, index] = (rng.random(n) < np.minimum(risk, 0.9)) & (onset < window)
        onset_day[:, index] = np.where(has[:, index], onset, np.inf)
    severity = rng.lognormal(0.0, 0.5, (n, C))
    known_day = onset_day + rng.exponential(120.0, (n, C))
    severe = (has * severity)[:, [COND["type1_diabetes"], COND["epilepsy"]]].sum(axis=1)
    dies = rng.random(n) < 0.0005 + 0.004 * severe
    death_day = np.where(dies, rng.uniform(0, window, n), np.inf)
    return Patients(n, male, birth_day, has, onset_day, known_day, severity, death_day)


@dataclass
class Visits:
    patient: np.ndarray
    day: np.ndarray  # int days from window start
    kind: np.ndarray  # OUTPATIENT / EMERGENCY / INPATIENT / PHARMACY
    reason: np.ndarray  # condition index, ACUTE, WELL, ASTHMA_ATTACK, SELF_HARM, DKA
    episode: np.ndarray  # index into EPISODES for ACUTE visits, else -1
    minute: np.ndarray  # start within the day, in minutes

    def take(self, keep: np.ndarray) -> Visits:
        fields = ("patient", "day", "kind", "reason", "episode", "minute")
        return Visits(*(getattr(self, f)[keep] for f in fields))


def _events_over_span(rng, rate_per_year, start, end, patients_index):
    """Poisson events at a per-patient rate over [start, end) days; returns (patient, day)."""
    span = np.clip(end - start, 0, None)
    counts = rng.poisson(rate_per_year * span / 365.25)
    patient = np.repeat(patients_index, counts)
    day = np.repeat(start, counts) + rng.random(counts.sum()) * np.repeat(span, counts)
    return patient, day


def draw_visits(rng: np.random.Generator, site: SiteProfile, p: Patients, window: float) -> Visits:
    everyone = np.arange(p.n)
    zeros = np.zeros(p.n)
    burden = (p.has * p.severity * [c.followup_rate for c in cat.CONDITIONS]).sum(axis=1)
    infant = (p.birth_day > -3 * 365.25).astype(float)
    parts = []  # (patient, day, kind, reason, episode)

    # Outpatient: follow-ups of known conditions, acute episodes, well-child checks.
    patient, day = _events_over_span(
        rng, site.visit_rate * (1.0 + 0.6 * burden + infant), zeros, np.full(p.n, window), everyone
    )
    known = p.known_day[patient] <= day[:, None]
    weights = np.column_stack(
        [
            known * p.severity[patient] * [c.followup_rate for c in cat.CONDITIONS],
            np.full(len(patient), 1.2),
            0.35 + 0.8 * ((day - p.birth_day[patient]) < 3 * 365.25),
        ]
    )
    reason = _choose(rng, weights)
    parts.append((patient, day, OUTPATIENT, reason))

    # Emergency and inpatient visits.
    asthma, anxiety, diabetes = COND["asthma"], COND["anxiety_depression"], COND["type1_diabetes"]
    for condition, reason, rate in (
        (asthma, ASTHMA_ATTACK, 0.35 * p.severity[:, asthma] ** 1.5),
        (anxiety, SELF_HARM, 0.05 * p.severity[:, anxiety] ** 2),
        (diabetes, DKA, 0.08 * p.severity[:, diabetes] ** 2),
    ):
        who = everyone[p.has[:, condition]]
        patient, day = _events_over_span(
            rng,
            rate[who] * site.acute_rate,
            np.maximum(p.onset_day[who, condition], 0),
            np.full(len(who), window),
            who,
        )
        if reason == SELF_HARM:  # self-harm is an adolescent outcome here
            adolescent = day - p.birth_day[patient] >= 10 * 365.25
            patient, day = patient[adolescent], day[adolescent]
        parts.append(
            (
                patient,
                day,
                np.where(rng.random(len(patient)) < 0.25, INPATIENT, EMERGENCY),
                np.full(len(patient), reason),
            )
        )
    patient, day = _events_over_span(
        rng, np.full(p.n, 0.12 * site.acute_rate), zeros, np.full(p.n, window), everyone
    )
    parts.append(
        (
            patient,
            day,
            np.where(rng.random(len(patient)) < 0.08, INPATIENT, EMERGENCY),
            np.full(len(patient), ACUTE),
        )
    )

    # Pharmacy refills of maintenance drugs, from diagnosis on, at the child's own adherence.
    adherence = rng.beta(4.0, 2.0, p.n)
    for index, condition in enumerate(cat.CONDITIONS):
        if condition.drugs:
            who = everyone[p.has[:, index] & (p.known_day[:, index] < window)]
            patient, day = _events_over_span(
                rng,
                adherence[who] * 12.0,
                np.maximum(p.known_day[who, index], 0),
                np.full(len(who), window),
                who,
            )
            parts.append((patient, day, PHARMACY, np.full(len(patient), index)))

    patient = np.concatenate([part[0] for part in parts])
    day = np.concatenate([part[1] for part in parts]).astype(np.int64)
    kind = np.concatenate([np.broadcast_to(part[2], len(part[0])) for part in parts]).astype(np.int8)
    reason = np.concatenate([np.broadcast_to(part[3], len(part[0])) for part in parts]).astype(np.int64)
    episode_weights = np.array([e.weight for e in cat.EPISODES])
    episode = np.where(
        reason == ACUTE,
        rng.choice(len(cat.EPISODES), len(reason), p=episode_weights / episode_weights.sum()),
        -1,
    )
    visits = Visits(patient, day, kind, reason, episode, _start_minutes(rng, kind))
    alive = visits.day < p.death_day[visits.patient]
    visits = visits.take(alive)
    order = np.lexsort((visits.minute, visits.day, visits.patient))  # a child's visits in time order
    return visits.take(order)


def _start_minutes(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Office hours for outpatient visits, shop hours for pharmacies, any hour but the last for
    acute care (so a visit and its billing, an hour later, end on its day)."""
    n = len(kind)
    hours = np.select(
        [kind == OUTPATIENT, kind == PHARMACY],
        [rng.uniform(8, 17, n), rng.uniform(9, 20, n)],
        rng.uniform(0, 22.5, n),
    )
    return (hours * 60).astype(np.int64)
