"""Built-in prediction tasks of the synthetic cohorts, as MEDS label frames.

Every label looks strictly forward: a prediction is made at the end of a visit's day, the outcome
counts only events on later days, and samples whose follow-up runs past the data window are left
out rather than labelled negative. Cohorts are defined by what is on record at prediction time;
nothing after it (death included) decides whether a sample exists.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from clinfm.events.synth import catalog as cat
from clinfm.events.synth.cohort import (
    ASTHMA_ATTACK,
    COND,
    DAY_US,
    OUTPATIENT,
    PHARMACY,
    SELF_HARM,
    Patients,
    Visits,
)
from clinfm.events.synth.timeline import BILLING_DELAY_US

_BIG = 1 << 20  # day offsets within a patient key; far above any window length in days

ASTHMA_TASK = "asthma_exacerbation_180d"
SELF_HARM_TASK = "self_harm_365d"
NEXT_VISIT_TASK = "next_visit_categories"
DISEASES_TASK = "diseases"
DIAGNOSIS_PREDICTION_DELAY_US = BILLING_DELAY_US // 2  # after the visit's labs and note, before its billing


def _one_per_patient(rng: np.random.Generator, rows: np.ndarray, v: Visits) -> np.ndarray:
    """A random one of each patient's candidate visits."""
    order = np.lexsort((rng.random(len(rows)), v.patient[rows]))
    rows = rows[order]
    _, first = np.unique(v.patient[rows], return_index=True)
    return rows[first]


def _outcome_after(v: Visits, rows: np.ndarray, outcome: np.ndarray, horizon: int) -> np.ndarray:
    """Whether an outcome visit falls on a day in (day, day + horizon] of the same patient."""
    keys = np.sort(v.patient[outcome] * _BIG + v.day[outcome])
    start = v.patient[rows] * _BIG + v.day[rows]
    return np.searchsorted(keys, start + horizon, "right") > np.searchsorted(keys, start + 1, "left")


def _labels(subject_ids, start_us, v: Visits, rows: np.ndarray, **values) -> pl.DataFrame:
    end_of_day = start_us + (v.day[rows] + 1) * DAY_US - 1
    return pl.DataFrame(
        {
            "subject_id": subject_ids[v.patient[rows]],
            "prediction_time": pl.Series(end_of_day).cast(pl.Datetime("us")),
            **values,
        }
    )


def _first_coded_day(
    events: pl.DataFrame, codes: list[str], subject_ids: np.ndarray, start_us: int
) -> np.ndarray:
    """Per patient of the shard, the first day any of ``codes`` appears in the events (inf if never)."""
    first = (
        events.filter(pl.col("code").is_in(codes))
        .group_by("subject_id")
        .agg(pl.col("time").min().dt.epoch("us"))
    )
    days = np.full(len(subject_ids), np.inf)
    days[first["subject_id"].to_numpy() - subject_ids[0]] = (first["time"].to_numpy() - start_us) // DAY_US
    return days


def _cohort_outcome(
    rng, p, v, window, cohort_day, outcome_reason, horizon, subject_ids, start_us, min_age=0.0
):
    """In a cohort (coded by an outpatient visit's day), an outcome visit in the next ``horizon`` days."""
    observed = v.day + horizon < window  # administrative censoring only: known at prediction time
    old_enough = (v.day - p.birth_day[v.patient]) >= min_age * 365.25
    eligible = (v.kind == OUTPATIENT) & (cohort_day[v.patient] <= v.day) & observed & old_enough
    rows = _one_per_patient(rng, np.flatnonzero(eligible), v)
    positive = _outcome_after(v, rows, np.flatnonzero(v.reason == outcome_reason), horizon)
    return _labels(subject_ids, start_us, v, rows, boolean_value=positive)


def _diseases(p, v, subject_ids, visit_time) -> dict[str, pl.DataFrame]:
    """Which of the ten conditions a child has (diagnosed or not) at its first medical visit in the
    data, like a hospital's admission: the MEDFuse setting.

    Predicted half an hour into the visit: its labs and note are visible, the diagnoses it will
    bill an hour in are not, and no earlier medical visit in the data names them.
    """
    medical = np.flatnonzero(v.kind != PHARMACY)
    _, first = np.unique(v.patient[medical], return_index=True)  # visits are in time order
    rows = medical[first]
    active = p.onset_day[v.patient[rows]] <= v.day[rows][:, None]
    samples = pl.DataFrame(
        {
            "subject_id": subject_ids[v.patient[rows]],
            "prediction_time": pl.Series(visit_time[rows] + DIAGNOSIS_PREDICTION_DELAY_US).cast(
                pl.Datetime("us")
            ),
        }
    )
    return {
        f"{DISEASES_TASK}/{c.name}": samples.with_columns(boolean_value=pl.Series(active[:, i]))
        for i, c in enumerate(cat.CONDITIONS)
    }


def _next_visit(rng, v: Visits, events: pl.DataFrame, encounter_ids, subject_ids, start_us, coding: str):
    """Diagnosis categories (CCS for ICD-9-CM, CCSR for ICD-10-CM) of the next visit on a later day."""
    from clinfm.vocab.icd import categories

    medical = np.flatnonzero(v.kind != PHARMACY)
    keys = v.patient[medical] * _BIG + v.day[medical]
    following = np.searchsorted(keys, keys + 1, "left")  # first medical visit on a later day
    has_next = following < len(medical)
    has_next[has_next] &= v.patient[medical[following[has_next]]] == v.patient[medical[has_next]]
    rows = _one_per_patient(rng, medical[has_next], v)
    position = np.searchsorted(medical, rows)
    nexts = medical[following[position]]
    scheme = categories("CCS" if coding == "icd9" else "CCSR").select("code", "category")
    wanted = pl.DataFrame({"encounter_id": encounter_ids[nexts], "sample": np.arange(len(rows))})
    found = (
        events.join(wanted, on="encounter_id")
        .join(scheme, on="code")
        .group_by("sample")
        .agg(pl.col("category").unique().sort().str.join(" ").alias("categorical_value"))
    )
    labels = _labels(subject_ids, start_us, v, rows).with_row_index("sample")
    return labels.join(found, on="sample", how="inner").sort("sample").drop("sample")


def build_tasks(
    rng,
    p: Patients,
    v: Visits,
    events: pl.DataFrame,
    *,
    window: float,
    coding: str,
    subject_ids: np.ndarray,
    encounter_ids: np.ndarray,
    start_us: int,
    visit_time: np.ndarray,
) -> dict[str, pl.DataFrame]:
    # Cohorts are defined as a claims analyst would: by a diagnosis code on record, not the latent truth.
    asthma_codes = cat.diagnosis_codes(
        cat.CONDITIONS[COND["asthma"]].icd9 + cat.ASTHMA_EXACERBATION_ICD9, coding
    )
    anxiety_codes = cat.diagnosis_codes(cat.CONDITIONS[COND["anxiety_depression"]].icd9, coding)
    asthma_day = _first_coded_day(events, list(asthma_codes), subject_ids, start_us)
    anxiety_day = _first_coded_day(events, list(anxiety_codes), subject_ids, start_us)
    tasks = {
        ASTHMA_TASK: _cohort_outcome(
            rng, p, v, window, asthma_day, ASTHMA_ATTACK, 180, subject_ids, start_us
        ),
        SELF_HARM_TASK: _cohort_outcome(
            rng, p, v, window, anxiety_day, SELF_HARM, 365, subject_ids, start_us, min_age=10.0
        ),
        NEXT_VISIT_TASK: _next_visit(rng, v, events, encounter_ids, subject_ids, start_us, coding),
    }
    tasks.update(_diseases(p, v, subject_ids, visit_time))
    return tasks
