"""Tests for synthetic patients and ECGs (clinfm.ecg.synth)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clinfm.ecg.records import LEADS_12
from clinfm.ecg.synth import labels_table, synthetic_ecg, synthetic_patients, synthetic_records
from clinfm.errors import InputError


@pytest.fixture(scope="module")
def records():
    return synthetic_records(4, (2, 3), seed=3)


def _rr(signal: np.ndarray) -> np.ndarray:
    import neurokit2 as nk

    _, info = nk.ecg_peaks(signal[1], sampling_rate=250)
    return np.diff(info["ECG_R_Peaks"]) / 250.0


def test_shapes_dtype_units_and_counts(records):
    recs, patients = records
    assert len(patients) == 4
    for rec in recs:
        assert rec.signal.shape == (12, 2500) and rec.signal.dtype == np.float32
        assert np.abs(rec.signal).max() < 10.0
        assert "af=1" in rec.comments or "af=0" in rec.comments
    counts = [sum(r.patient_id == p.patient_id for r in recs) for p in patients]
    assert all(2 <= c <= 3 for c in counts)
    assert {r.record_id for r in recs} >= {f"{patients[0].patient_id}_0", f"{patients[0].patient_id}_1"}


def test_deterministic_by_seed(records):
    again, _ = synthetic_records(4, (2, 3), seed=3)
    assert all(np.array_equal(a.signal, b.signal) for a, b in zip(records[0], again, strict=True))
    other, _ = synthetic_records(1, (1, 1), seed=4)
    assert not np.array_equal(other[0].signal, records[0][0].signal)
    assert synthetic_patients(5, seed=1) == synthetic_patients(5, seed=1)
    assert synthetic_patients(5, seed=1) != synthetic_patients(5, seed=2)


def test_patient_ecgs_differ_but_cluster(records):
    recs, patients = records
    profiles = {
        p.patient_id: [np.abs(r.signal).mean(axis=1) for r in recs if r.patient_id == p.patient_id]
        for p in patients
    }
    first = [r.signal for r in recs if r.patient_id == patients[0].patient_id]
    assert not np.array_equal(first[0], first[1])
    within, between = [], []
    ids = list(profiles)
    for i, a in enumerate(ids):
        within.append(np.linalg.norm(profiles[a][0] - profiles[a][1]))
        between += [np.linalg.norm(profiles[a][0] - profiles[b][0]) for b in ids[i + 1 :]]
    assert np.mean(within) < np.mean(between)


def test_brady_slower_than_tachy_and_af_irregular():
    base = synthetic_patients(1, seed=0)[0]
    rng = np.random.default_rng(0)
    plain = dict(atrial_fibrillation=False, wide_qrs=False, qrs_width=90.0)
    brady = dataclasses.replace(base, heart_rate=50.0, bradycardia=True, tachycardia=False, **plain)
    tachy = dataclasses.replace(base, heart_rate=120.0, bradycardia=False, tachycardia=True, **plain)
    assert np.mean(_rr(synthetic_ecg(brady, rng=rng))) > np.mean(_rr(synthetic_ecg(tachy, rng=rng)))
    normal = dataclasses.replace(base, heart_rate=80.0, **plain)
    af = dataclasses.replace(normal, atrial_fibrillation=True)
    cv = [np.std(rr) / np.mean(rr) for rr in (_rr(synthetic_ecg(p, rng=rng)) for p in (normal, af) * 2)]
    assert np.mean(cv[1::2]) > 2 * np.mean(cv[0::2])


def test_prevalences_and_labels():
    patients = synthetic_patients(400, seed=0)
    table = labels_table(patients)
    for label in ("af", "bradycardia", "tachycardia", "wide_qrs"):
        assert 0.05 < table[label].mean() < 0.25, label
    assert 0.35 < table["sex"].mean() < 0.65
    assert all(p.bradycardia == (p.heart_rate < 60) and p.wide_qrs == (p.qrs_width >= 120) for p in patients)
    male = table["sex"] == 1
    qrs = np.array([p.qrs_width for p in patients])
    assert qrs[male & (table["wide_qrs"] == 0)].mean() > qrs[~male & (table["wide_qrs"] == 0)].mean()
    amp = np.array([np.mean(p.lead_scale) for p in patients])
    assert np.corrcoef(amp, table["age"])[0, 1] < -0.2


def test_bad_input():
    with pytest.raises(InputError):
        synthetic_records(2, (3, 1))
    with pytest.raises(InputError):
        synthetic_patients(-1)


def _sinus(patient):
    return dataclasses.replace(
        patient,
        atrial_fibrillation=False,
        wide_qrs=False,
        qrs_width=90.0,
        bradycardia=False,
        tachycardia=False,
    )


def test_limb_leads_obey_einthoven_and_r_grows_across_the_chest():
    patients = [_sinus(p) for p in synthetic_patients(20, seed=5)]
    rng = np.random.default_rng(0)
    for patient in patients:
        lead = dict(zip(LEADS_12, synthetic_ecg(patient, rng=rng), strict=True))
        residual = lead["III"] - (lead["II"] - lead["I"])
        assert residual.std() < 3 * patient.noise  # three independently noisy leads: sqrt(3) x noise
        aug = lead["aVR"] + lead["aVL"] + lead["aVF"]  # Goldberger: sums to zero
        assert aug.std() < 3 * patient.noise
    r_v1, r_v5 = [], []
    for patient in patients:
        signal = synthetic_ecg(patient, rng=rng)
        r_v1.append(signal[LEADS_12.index("V1")].max())
        r_v5.append(signal[LEADS_12.index("V5")].max())
    assert np.median(r_v5) > 2 * np.median(r_v1)


def test_measured_axis_follows_the_patients_axis():
    from clinfm.ecg.features import FEATURES, ecg_features

    patients = [_sinus(p) for p in synthetic_patients(30, seed=6)]
    rng = np.random.default_rng(0)
    measured = [
        ecg_features(synthetic_ecg(p, rng=rng), 250, LEADS_12)[FEATURES.index("qrs_axis_deg")]
        for p in patients
    ]
    assert np.corrcoef([p.axis for p in patients], measured)[0, 1] > 0.8
    ages = np.array([p.age for p in synthetic_patients(400, seed=0)])
    axes = np.array([p.axis for p in synthetic_patients(400, seed=0)])
    assert np.corrcoef(ages, axes)[0, 1] < -0.3  # the axis turns left with age


def test_write_wfdb_writes_what_wfdb_writes(tmp_path, records):
    """clinfm's own WFDB writer (wfdb.wrsamp's bookkeeping cost more than simulating the ECG) must
    write the same bytes, and read back to the signal in 1 uV steps."""
    import wfdb

    from clinfm.ecg.records import read_wfdb, write_wfdb

    record = records[0][0]
    comments = (f"patient_id: {record.patient_id}", *record.comments)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    write_wfdb(record, ours, comments=comments)
    wfdb.wrsamp(
        record.record_id,
        fs=record.sampling_rate,
        units=["mV"] * 12,
        sig_name=list(record.leads),
        p_signal=record.signal.T.astype(np.float64),
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        comments=list(comments),
        write_dir=str(theirs),
    )
    for suffix in (".hea", ".dat"):
        name = record.record_id + suffix
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), suffix
    back = read_wfdb(ours / record.record_id)
    assert np.abs(back.signal - record.signal).max() <= 0.0005 + 1e-6
