"""Synthetic patients with persistent ECG traits, for PCLR pre-training and linear-probe tests.

Each :class:`Patient` carries traits that persist across its ECGs (baseline heart rate, QRS width,
a per-lead amplitude profile standing in for the electrical axis, noise level) and four boolean
conditions. :func:`synthetic_ecg` renders one 12-lead ECG with neurokit2's ECGSYN model
(``method="multileads"``), varying heart rate and noise around the patient's traits.

Approximations, stated plainly:

* QRS width is set by stretching the Q, R and S Gaussian widths (``bi``) and the Q/S angular
  positions (``ti``) of ECGSYN by ``qrs_width / 90 ms``; it is not a measured QRS duration and a
  "wide QRS" has no bundle-branch morphology beyond being wider.
* Atrial fibrillation is a large RR variability (``heart_rate_std`` about 25 % of the rate, a
  smooth spectral RR process, not a truly irregularly-irregular one), P waves removed (``ai[0] = 0``)
  and a small 4-8 Hz fibrillatory wave added to every lead.
* neurokit2 rescales every lead to -0.4..1.2 mV; the per-patient lead scales are applied afterwards,
  so absolute amplitudes are synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinfm.ecg.records import LEADS_12, Record
from clinfm.errors import InputError

ECGSYN_TI = (-70.0, -15.0, 0.0, 15.0, 100.0)
ECGSYN_AI = (1.2, -5.0, 30.0, -7.5, 0.75)
ECGSYN_BI = (0.25, 0.1, 0.1, 0.1, 0.4)
NOMINAL_QRS_MS = 90.0
PREVALENCE = {"atrial_fibrillation": 0.12, "bradycardia": 0.15, "tachycardia": 0.12, "wide_qrs": 0.12}
LABELS = ("sex", "age", "af", "bradycardia", "tachycardia", "wide_qrs")


@dataclass(frozen=True)
class Patient:
    """One synthetic patient and the traits shared by all of its ECGs."""

    patient_id: str
    sex: str
    age: float
    heart_rate: float
    qrs_width: float
    lead_scale: tuple[float, ...]
    noise: float
    atrial_fibrillation: bool
    bradycardia: bool
    tachycardia: bool
    wide_qrs: bool

    def labels(self) -> dict[str, float]:
        """Probe labels: sex as 1 for male, age in years, conditions as 0/1."""
        return {
            "sex": float(self.sex == "M"),
            "age": float(self.age),
            "af": float(self.atrial_fibrillation),
            "bradycardia": float(self.bradycardia),
            "tachycardia": float(self.tachycardia),
            "wide_qrs": float(self.wide_qrs),
        }


def _draw_heart_rate(rng: np.random.Generator) -> float:
    """Baseline heart rate: bradycardic, tachycardic or normal with the design prevalences."""
    u = rng.random()
    if u < PREVALENCE["bradycardia"]:
        return float(rng.uniform(42.0, 57.0))
    if u < PREVALENCE["bradycardia"] + PREVALENCE["tachycardia"]:
        return float(rng.uniform(104.0, 130.0))
    return float(np.clip(rng.normal(74.0, 8.0), 63.0, 97.0))


def _draw_patient(index: int, rng: np.random.Generator) -> Patient:
    """One patient; men get slightly wider QRS, amplitude falls weakly with age."""
    male = bool(rng.random() < 0.5)
    age = float(rng.uniform(20.0, 85.0))
    heart_rate = _draw_heart_rate(rng)
    wide = bool(rng.random() < PREVALENCE["wide_qrs"])
    qrs = rng.uniform(125.0, 160.0) if wide else np.clip(rng.normal(88.0 + 6.0 * male, 7.0), 70.0, 114.0)
    amplitude = 1.1 - 0.006 * (age - 50.0) + 0.08 * male + rng.normal(0.0, 0.1)
    profile = np.clip(rng.normal(1.0, 0.3, len(LEADS_12)), 0.3, 2.0) * max(amplitude, 0.4)
    return Patient(
        patient_id=f"P{index:05d}",
        sex="M" if male else "F",
        age=round(age, 1),
        heart_rate=heart_rate,
        qrs_width=float(qrs),
        lead_scale=tuple(float(x) for x in profile),
        noise=float(rng.uniform(0.01, 0.04)),
        atrial_fibrillation=bool(rng.random() < PREVALENCE["atrial_fibrillation"]),
        bradycardia=heart_rate < 60.0,
        tachycardia=heart_rate > 100.0,
        wide_qrs=bool(qrs >= 120.0),
    )


def synthetic_patients(n: int, *, seed: int = 0) -> list[Patient]:
    """``n`` patients with traits drawn deterministically from ``seed``."""
    if n < 0:
        raise InputError(f"number of patients must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    return [_draw_patient(i, rng) for i in range(n)]


def _ecgsyn_shape(patient: Patient) -> dict[str, tuple[float, ...]]:
    """ECGSYN ``ti``/``ai``/``bi`` with the QRS stretched to the patient's width, P removed for AF."""
    k = patient.qrs_width / NOMINAL_QRS_MS
    ti = (ECGSYN_TI[0], ECGSYN_TI[1] * k, 0.0, ECGSYN_TI[3] * k, ECGSYN_TI[4])
    bi = (ECGSYN_BI[0], ECGSYN_BI[1] * k, ECGSYN_BI[2] * k, ECGSYN_BI[3] * k, ECGSYN_BI[4])
    ai = (0.0 if patient.atrial_fibrillation else ECGSYN_AI[0], *ECGSYN_AI[1:])
    return {"ti": ti, "ai": ai, "bi": bi}


def _fibrillatory_wave(n: int, sampling_rate: float, rng: np.random.Generator) -> np.ndarray:
    """A small 4-8 Hz wave with wandering amplitude, shared by all leads (AF f-waves)."""
    t = np.arange(n) / sampling_rate
    freq = rng.uniform(4.0, 8.0)
    envelope = 0.05 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return envelope * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))


def synthetic_ecg(
    patient: Patient, *, seconds: float = 10.0, sampling_rate: int = 250, rng: np.random.Generator
) -> np.ndarray:
    """One 12-lead ECG (leads x samples, float32, mV) around the patient's traits."""
    import neurokit2 as nk

    if seconds <= 0 or sampling_rate <= 0:
        raise InputError(f"seconds and sampling_rate must be positive, got {seconds} and {sampling_rate}")
    n = round(seconds * sampling_rate)
    hr = float(patient.heart_rate + rng.uniform(-5.0, 5.0))
    frame = nk.ecg_simulate(
        duration=seconds,
        sampling_rate=sampling_rate,
        noise=patient.noise,
        heart_rate=hr,
        heart_rate_std=0.25 * hr if patient.atrial_fibrillation else 1.0,
        method="multileads",
        random_state=int(rng.integers(2**31 - 1)),
        **_ecgsyn_shape(patient),
    )
    signal = frame[list(LEADS_12)].to_numpy().T[:, :n]
    if signal.shape[1] < n:
        signal = np.pad(signal, ((0, 0), (0, n - signal.shape[1])), mode="edge")
    scale = np.asarray(patient.lead_scale) * (1.0 + rng.normal(0.0, 0.03, len(LEADS_12)))
    signal = signal * scale[:, None]
    if patient.atrial_fibrillation:
        signal = signal + _fibrillatory_wave(n, sampling_rate, rng)[None, :]
    return signal.astype(np.float32)


def _comments(patient: Patient) -> tuple[str, ...]:
    """The patient's labels as ``label=value`` strings."""
    values = {**patient.labels(), "sex": patient.sex}
    return tuple(f"{key}={value}" if key == "sex" else f"{key}={value:g}" for key, value in values.items())


def patient_records(
    patient: Patient,
    ecgs_per_patient: tuple[int, int] = (2, 5),
    *,
    seconds: float = 10.0,
    sampling_rate: int = 250,
    seed: int = 0,
) -> list[Record]:
    """One patient's ECGs, between ``ecgs_per_patient`` of them (inclusive).

    Each patient draws from its own random stream (``seed`` and the patient's number), so patients
    can be rendered in any order or in parallel processes with the same result.
    """
    low, high = ecgs_per_patient
    if low < 1 or high < low:
        raise InputError(
            f"ecgs_per_patient must be (low, high) with 1 <= low <= high, got {ecgs_per_patient}"
        )
    rng = np.random.default_rng([seed, 1, int(patient.patient_id.lstrip("P"))])
    rhythm = "(AFIB" if patient.atrial_fibrillation else "(N"
    return [
        Record(
            record_id=f"{patient.patient_id}_{k}",
            patient_id=patient.patient_id,
            signal=synthetic_ecg(patient, seconds=seconds, sampling_rate=sampling_rate, rng=rng),
            sampling_rate=float(sampling_rate),
            leads=LEADS_12,
            comments=_comments(patient),
            annotations=((0, rhythm),),
        )
        for k in range(int(rng.integers(low, high + 1)))
    ]


def synthetic_records(
    n_patients: int,
    ecgs_per_patient: tuple[int, int] = (2, 5),
    *,
    seconds: float = 10.0,
    sampling_rate: int = 250,
    seed: int = 0,
) -> tuple[list[Record], list[Patient]]:
    """Records for ``n_patients`` patients, each with between ``ecgs_per_patient`` ECGs (inclusive)."""
    patients = synthetic_patients(n_patients, seed=seed)
    records = [
        record
        for patient in patients
        for record in patient_records(
            patient, ecgs_per_patient, seconds=seconds, sampling_rate=sampling_rate, seed=seed
        )
    ]
    return records, patients


def labels_table(patients: list[Patient]) -> dict[str, np.ndarray]:
    """``patient_id`` plus one array per label in :data:`LABELS` (sex: 1 = male), for probes."""
    table: dict[str, np.ndarray] = {"patient_id": np.array([p.patient_id for p in patients], dtype=str)}
    for label in LABELS:
        table[label] = np.array([p.labels()[label] for p in patients], dtype=np.float64)
    return table
