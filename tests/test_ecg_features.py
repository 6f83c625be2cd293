"""Hand-crafted ECG features on synthetic patients with known traits, flat input, missing leads."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import shared_path
from clinfm.ecg.features import FEATURES, ecg_features, feature_matrix, impute_median
from clinfm.ecg.records import LEADS_12, read_wfdb, windows
from clinfm.ecg.synth import Patient, synthetic_ecg, synthetic_patients

FS = 250


def _first(patients: list[Patient], **traits: bool) -> Patient:
    """The first patient with exactly these conditions (unnamed ones False)."""
    conditions = ("atrial_fibrillation", "bradycardia", "tachycardia", "wide_qrs")
    wanted = {name: traits.get(name, False) for name in conditions}
    return next(p for p in patients if all(getattr(p, k) == v for k, v in wanted.items()))


@pytest.fixture(scope="module")
def measured() -> dict[str, tuple[Patient, dict[str, float], np.ndarray]]:
    """One 10 s, 250 Hz ECG per kind of patient: the patient, its features by name, the signal."""
    patients = synthetic_patients(60, seed=0)
    chosen = {
        "sinus": _first(patients),
        "brady": _first(patients, bradycardia=True),
        "tachy": _first(patients, tachycardia=True),
        "af": _first(patients, atrial_fibrillation=True),
        "wide": _first(patients, wide_qrs=True),
    }
    out = {}
    for i, (kind, patient) in enumerate(chosen.items()):
        signal = synthetic_ecg(patient, sampling_rate=FS, rng=np.random.default_rng(i))
        features = dict(zip(FEATURES, ecg_features(signal, FS, LEADS_12), strict=True))
        out[kind] = (patient, features, signal)
    return out


def test_feature_names():
    assert len(FEATURES) == len(set(FEATURES)) == 7 + 8 + 24
    assert FEATURES[0] == "heart_rate_bpm" and "r_amp_V6_mv" in FEATURES and "s_amp_aVF_mv" in FEATURES


def test_heart_rate_matches_trait(measured):
    for kind in ("sinus", "brady", "tachy", "wide"):
        patient, features, _ = measured[kind]
        # synthetic_ecg draws each ECG's rate within 5 bpm of the trait: 10 % or 6 bpm of slack
        tolerance = max(0.1 * patient.heart_rate, 6.0)
        assert features["heart_rate_bpm"] == pytest.approx(patient.heart_rate, abs=tolerance), kind
        assert features["rr_mean_ms"] == pytest.approx(60000 / features["heart_rate_bpm"])
        assert features["n_beats"] >= 6
    assert measured["brady"][1]["heart_rate_bpm"] < 60 < 100 < measured["tachy"][1]["heart_rate_bpm"]


def test_atrial_fibrillation_is_irregular(measured):
    af, sinus = measured["af"][1], measured["sinus"][1]
    assert af["rr_cv"] > 0.1 and sinus["rr_cv"] < 0.05
    assert af["rr_cv"] > 3 * sinus["rr_cv"]
    assert af["rmssd_ms"] > 3 * sinus["rmssd_ms"] and af["pnn50_pct"] > sinus["pnn50_pct"]


def test_wide_qrs_measured_wider(measured):
    wide, sinus = measured["wide"], measured["sinus"]
    assert wide[0].qrs_width > 120 and sinus[0].qrs_width < 110
    assert wide[1]["qrs_duration_ms"] > sinus[1]["qrs_duration_ms"] + 25
    assert 50 < sinus[1]["qrs_duration_ms"] < 120


def test_intervals_and_amplitudes_are_plausible(measured):
    features = measured["sinus"][1]
    assert 80 < features["pr_interval_ms"] < 300
    assert 250 < features["qt_interval_ms"] < 500
    assert features["qtc_bazett_ms"] == pytest.approx(
        features["qt_interval_ms"] / np.sqrt(features["rr_mean_ms"] / 1000)
    )
    assert 0 <= features["p_wave_rate"] <= 1 and 0 <= features["t_wave_rate"] <= 1
    assert -180 <= features["qrs_axis_deg"] <= 180
    for lead in LEADS_12:
        assert features[f"r_amp_{lead}_mv"] >= 0 >= features[f"s_amp_{lead}_mv"]


@pytest.mark.parametrize(
    "signal",
    [np.zeros((12, 2500)), np.ones((12, 2500)), np.full((12, 2500), np.nan), np.zeros((12, 10))],
    ids=["flat", "constant", "nan", "short"],
)
def test_unmeasurable_ecg_gives_nans(signal):
    features = ecg_features(signal, FS, LEADS_12)
    assert features.shape == (len(FEATURES),) and features.dtype == np.float64
    assert features[FEATURES.index("n_beats")] == 0
    assert np.isnan(np.delete(features, FEATURES.index("n_beats"))).all()


def test_noise_does_not_raise():
    noise = np.random.default_rng(0).normal(0.0, 0.5, (12, 2500))
    assert ecg_features(noise, FS, LEADS_12).shape == (len(FEATURES),)


def test_missing_leads_are_nan(measured):
    patient, _, twelve = measured["sinus"]
    two = dict(zip(FEATURES, ecg_features(twelve[[0, 1]], FS, ("I", "II")), strict=True))
    assert two["heart_rate_bpm"] == pytest.approx(patient.heart_rate, rel=0.1)
    assert np.isfinite(two["r_amp_I_mv"]) and np.isnan(two["r_amp_V1_mv"]) and np.isnan(two["qrs_axis_deg"])
    with pytest.raises(ValueError, match="2 leads"):
        ecg_features(twelve, FS, ("I", "II"))


def test_feature_matrix_reports_progress():
    signals = np.zeros((3, 2, 1000))
    calls = []
    matrix = feature_matrix(
        signals, FS, ("I", "II"), progress=lambda done, total: calls.append((done, total))
    )
    assert matrix.shape == (3, len(FEATURES))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_impute_median():
    train = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, np.nan], [np.nan, np.nan, 7.0]])
    test = np.array([[np.nan, np.nan, np.nan]])
    train_filled, test_filled = impute_median(train, test)
    np.testing.assert_array_equal(train_filled, [[1, 0, 5], [3, 0, 6], [2, 0, 7]])
    np.testing.assert_array_equal(test_filled, [[2, 0, 6]])
    assert np.isnan(train).sum() == 5  # inputs untouched


@pytest.mark.shared_data
def test_real_cpsc2021_window():
    record = read_wfdb(shared_path("ecg", "cpsc2021", "data_101_6.hea"))
    _, window = windows(record)[0]
    features = dict(zip(FEATURES, ecg_features(window, record.sampling_rate, record.leads), strict=True))
    assert 40 < features["heart_rate_bpm"] < 160
    assert 60 <= features["qrs_duration_ms"] <= 120
    assert features["r_amp_I_mv"] > 0.2 and np.isnan(features["r_amp_V1_mv"])
