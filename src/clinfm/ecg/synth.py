"""Synthetic patients with persistent ECG traits, for PCLR pre-training and linear-probe tests.

Each :class:`Patient` carries traits that persist across its ECGs (baseline heart rate, QRS width,
frontal QRS axis, an amplitude profile standing in for electrode placement and body habitus,
noise level) and four boolean conditions. :func:`synthetic_ecg` renders one 12-lead ECG from a
rotating cardiac dipole, varying heart rate, axis and noise around the patient's traits.

The model (textbook electrophysiology, our own code):

* Each beat is five Gaussian waves in time (P, Q, R, S, T; the sum-of-Gaussians shape of
  McSharry et al.'s ECGSYN, IEEE TBME 2003), each with a 3-D dipole direction: x to the patient's
  left, y inferior, z anterior. P points down and left, the septal Q right and forward, R along the
  patient's frontal axis and slightly back, S right, up and back, T roughly with R.
* Leads are projections of the dipole: I and II on their frontal-plane directions (0 and 60
  degrees), III, aVR, aVL and aVF from Einthoven's and Goldberger's relations, V1-V6 on
  horizontal-plane directions from right-anterior (V1, 115 degrees) to left-lateral (V6, 0 degrees),
  so the limb leads obey III = II - I (up to noise) and R waves grow across the precordium.
* Rhythm: sinus beats with respiratory sinus arrhythmia and a little jitter (RR variation about 3 %),
  the T wave placed by Bazett's square-root law on the preceding RR. Atrial fibrillation draws each
  RR independently (coefficient of variation about 25 %: irregularly irregular), removes the P wave
  and adds a 4-8 Hz fibrillatory wave.
* Measurement: a slow baseline wander and white noise at the patient's level.

Approximations, stated plainly: a "wide QRS" is the Q, R and S waves stretched by ``qrs_width / 90
ms`` (no bundle-branch morphology beyond being wider); amplitudes are plausible in millivolts but not
fitted to a population; there is no ST segment change, ectopy or conduction block. A 10 s 12-lead ECG
takes about a millisecond to render, so the demo and the tests can afford hundreds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinfm.ecg.records import LEADS_12, Record
from clinfm.errors import InputError

NOMINAL_QRS_MS = 90.0
PR_SECONDS = 0.16  # P peak to R peak
T_PEAK_SECONDS = 0.28  # R peak to T peak at RR = 1 s; scaled by sqrt(RR) (Bazett)
# Wave amplitudes (mV) and the unit dipole directions (x left, y inferior, z anterior) not set by the
# patient: the septal Q points right and forward, the terminal S right, up and back.
Q_DIPOLE = 0.15 * np.array([-0.8, -0.2, 0.6])
S_DIPOLE = 0.45 * np.array([-0.6, -0.5, -0.6])
P_DIPOLE = 0.15 * np.array([0.55, 0.8, 0.2])
F_DIRECTION = np.array([-0.2, 0.6, 0.77])  # AF's f-waves: atrial, seen best in V1 and the inferior leads
PRECORDIAL_DEGREES = {"V1": 115.0, "V2": 95.0, "V3": 75.0, "V4": 55.0, "V5": 30.0, "V6": 0.0}
PRECORDIAL_GAIN = 1.5  # chest electrodes sit closer to the heart than the limbs
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
    axis: float
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
    """One patient; men get slightly wider QRS, amplitude falls weakly with age, the axis turns left
    with age."""
    male = bool(rng.random() < 0.5)
    age = float(rng.uniform(20.0, 85.0))
    heart_rate = _draw_heart_rate(rng)
    wide = bool(rng.random() < PREVALENCE["wide_qrs"])
    qrs = rng.uniform(125.0, 160.0) if wide else np.clip(rng.normal(88.0 + 6.0 * male, 7.0), 70.0, 114.0)
    axis = np.clip(rng.normal(70.0 - 0.5 * (age - 20.0), 20.0), -30.0, 100.0)
    amplitude = 1.1 - 0.006 * (age - 50.0) + 0.08 * male + rng.normal(0.0, 0.1)
    # The limb leads are differences of the same three electrodes, so they share one scale; each chest
    # electrode's placement gives it its own.
    limb = np.full(6, np.clip(rng.normal(1.0, 0.2), 0.5, 1.6))
    chest = np.clip(rng.normal(1.0, 0.3, 6), 0.3, 2.0)
    profile = np.concatenate([limb, chest]) * max(amplitude, 0.4)
    return Patient(
        patient_id=f"P{index:05d}",
        sex="M" if male else "F",
        age=round(age, 1),
        heart_rate=heart_rate,
        qrs_width=float(qrs),
        axis=float(axis),
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


def _lead_matrix() -> np.ndarray:
    """12 x 3 projection from the dipole (x left, y inferior, z anterior) to the leads of LEADS_12."""
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([np.cos(np.radians(60.0)), np.sin(np.radians(60.0)), 0.0])
    limb = {
        "I": lead_i,
        "II": lead_ii,
        "III": lead_ii - lead_i,  # Einthoven
        "aVR": -(lead_i + lead_ii) / 2,  # Goldberger
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }
    chest = {
        name: PRECORDIAL_GAIN * np.array([np.cos(np.radians(deg)), 0.1, np.sin(np.radians(deg))])
        for name, deg in PRECORDIAL_DEGREES.items()
    }
    return np.stack([{**limb, **chest}[lead] for lead in LEADS_12])


LEAD_MATRIX = _lead_matrix()


def _frontal(degrees: float, back: float) -> np.ndarray:
    """A unit dipole at ``degrees`` in the frontal plane (0 = left, 90 = inferior), tilted ``back``."""
    angle = np.radians(degrees)
    vector = np.array([np.cos(angle), np.sin(angle), -back])
    return vector / np.linalg.norm(vector)


def _beat_times(
    seconds: float, heart_rate: float, fibrillating: bool, rng: np.random.Generator
) -> np.ndarray:
    """R-peak times covering ``[-1, seconds + 1]``: sinus with respiratory arrhythmia, or AF."""
    mean_rr = 60.0 / heart_rate
    count = int((seconds + 2.0) / (0.55 * mean_rr)) + 2
    if fibrillating:  # irregularly irregular: independent log-normal RR, CV about 0.25
        rr = mean_rr * rng.lognormal(-0.03, 0.25, count)
    else:
        breath = 2 * np.pi * np.cumsum(np.full(count, mean_rr)) / rng.uniform(3.0, 5.0)
        rr = mean_rr * (
            1.0 + 0.025 * np.sin(breath + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.008, count)
        )
    rr = np.maximum(rr, 0.3)
    times = np.cumsum(rr) - 1.0 - rng.uniform(0.0, mean_rr)
    return times[times < seconds + 1.0]


def _waves(t: np.ndarray, beats: np.ndarray, offsets: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Sum over beats of a unit Gaussian at each beat's ``offsets`` with ``widths`` (seconds)."""
    centres = (beats + offsets)[:, None]
    return np.exp(-0.5 * ((t[None, :] - centres) / widths[:, None]) ** 2).sum(axis=0)


def _dipole(patient: Patient, t: np.ndarray, heart_rate: float, rng: np.random.Generator) -> np.ndarray:
    """The heart's electrical dipole over time (3 x samples, mV) for one ECG of ``patient``."""
    beats = _beat_times(float(t[-1]), heart_rate, patient.atrial_fibrillation, rng)
    previous_rr = np.diff(beats, prepend=beats[0] - 60.0 / heart_rate)
    stretch = patient.qrs_width / NOMINAL_QRS_MS
    ones = np.ones(len(beats))
    axis = patient.axis + rng.normal(0.0, 4.0)  # breathing and electrode placement move it a little
    # R as two overlapping halves turning from the septum's forward direction to the left ventricle's
    # backward one: a real QRS loop rotates, so the leads never all peak at the same instant.
    early_r, late_r = 0.75 * _frontal(axis + 20.0, back=-0.1), 0.75 * _frontal(axis - 20.0, back=0.6)
    t_dipole = 0.35 * _frontal(axis - 15.0 + rng.normal(0.0, 5.0), back=-0.3)
    qrs = {
        "Q": (Q_DIPOLE, -0.025 * stretch, 0.010 * stretch),
        "early R": (early_r, -0.007 * stretch, 0.009 * stretch),
        "late R": (late_r, 0.007 * stretch, 0.009 * stretch),
        "S": (S_DIPOLE, 0.028 * stretch, 0.011 * stretch),
    }
    dipole = np.zeros((3, len(t)))
    for vector, offset, width in qrs.values():
        dipole += vector[:, None] * _waves(t, beats, offset * ones, width * ones)[None, :]
    root_rr = np.sqrt(np.clip(previous_rr, 0.3, 2.0))
    dipole += t_dipole[:, None] * _waves(t, beats, T_PEAK_SECONDS * root_rr, 0.05 * root_rr)[None, :]
    if not patient.atrial_fibrillation:
        dipole += P_DIPOLE[:, None] * _waves(t, beats, -PR_SECONDS * ones, 0.022 * ones)[None, :]
    return dipole


def _fibrillatory_wave(n: int, sampling_rate: float, rng: np.random.Generator) -> np.ndarray:
    """AF's f-waves: a small 4-8 Hz wave with wandering amplitude (mV, along F_DIRECTION)."""
    t = np.arange(n) / sampling_rate
    freq = rng.uniform(4.0, 8.0)
    envelope = 0.05 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return envelope * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))


def _baseline_wander(n: int, sampling_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Slow (0.1-0.4 Hz) drift of up to about 0.1 mV on each axis, seen by the leads as the heart is."""
    t = np.arange(n) / sampling_rate
    amplitude = rng.uniform(0.0, 0.1, (3, 1))
    phase = rng.uniform(0, 2 * np.pi, (3, 1))
    return amplitude * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t[None, :] + phase)


def synthetic_ecg(
    patient: Patient, *, seconds: float = 10.0, sampling_rate: int = 250, rng: np.random.Generator
) -> np.ndarray:
    """One 12-lead ECG (leads x samples, float32, mV) around the patient's traits."""
    if seconds <= 0 or sampling_rate <= 0:
        raise InputError(f"seconds and sampling_rate must be positive, got {seconds} and {sampling_rate}")
    n = round(seconds * sampling_rate)
    t = np.arange(n) / sampling_rate
    heart_rate = float(patient.heart_rate + rng.uniform(-5.0, 5.0))
    dipole = _dipole(patient, t, heart_rate, rng) + _baseline_wander(n, sampling_rate, rng)
    if patient.atrial_fibrillation:
        dipole += F_DIRECTION[:, None] * _fibrillatory_wave(n, sampling_rate, rng)[None, :]
    signal = LEAD_MATRIX @ dipole
    jitter = rng.normal(0.0, 0.03, 7)  # one for the limb leads, one per chest lead
    scale = np.asarray(patient.lead_scale) * (1.0 + np.concatenate([np.full(6, jitter[0]), jitter[1:]]))
    signal = signal * scale[:, None] + rng.normal(0.0, patient.noise, signal.shape)
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
