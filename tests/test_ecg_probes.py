"""Linear probes on frozen ECG features: patient-level splits, sizes in patients, metrics and CIs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from clinfm.ecg.probes import PAPER_SIZES, patient_split, probe_curve, r2
from clinfm.errors import InputError


def _synthetic(task: str, n_patients: int = 600, per_patient: int = 3, d: int = 32, seed: int = 0):
    """ECG features whose label is a linear function of the features plus noise."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_patients), per_patient)
    x = rng.normal(size=(len(ids), d))
    signal = x @ rng.normal(size=d) / np.sqrt(d)
    if task == "binary":
        return x, (signal + 0.3 * rng.normal(size=len(ids)) > 0).astype(int), ids
    return x, signal + 0.3 * rng.normal(size=len(ids)), ids


def test_patient_split_keeps_patients_whole_and_is_deterministic():
    ids = np.repeat(np.arange(40), 3)
    train, test = patient_split(ids, seed=1)
    assert not set(ids[train]) & set(ids[test]) and (train ^ test).all()
    assert len(set(ids[test])) == 10
    again = patient_split(ids, seed=1)
    assert (again[0] == train).all() and (again[1] == test).all()


def test_binary_curve_rises_with_patients_and_ci_contains_value():
    x, y, ids = _synthetic("binary")
    points = probe_curve(x, y, ids, n_bootstrap=200)
    assert [p["size"] for p in points] == [10, 25, 50, 100, 250, "all"]
    assert [p["n_train_patients"] for p in points][:5] == [10, 25, 50, 100, 250]
    assert points[-1]["n_train_patients"] == 450 and points[-1]["n_train_ecgs"] == 1350
    assert points[0]["n_train_ecgs"] == 30 and points[0]["seeds"] == 3
    assert points[-1]["value"] > 0.8 and points[-1]["value"] >= points[0]["value"]
    for p in points:
        assert p["metric"] == "auroc" and p["low"] <= p["value"] <= p["high"]


def test_regression_curve_reports_r2():
    x, y, ids = _synthetic("regression")
    points = probe_curve(x, y, ids, task="regression", sizes=(25, None), n_bootstrap=200)
    assert points[-1]["metric"] == "r2" and points[-1]["value"] > 0.5
    assert all(p["low"] <= p["value"] <= p["high"] for p in points)


def test_weighted_r2_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=50), rng.normal(size=50)
    assert r2(y, p) == pytest.approx(r2_score(y, p))
    assert r2(y, p, weights=np.ones(50)) == pytest.approx(r2_score(y, p))
    counts = rng.integers(0, 3, size=50)
    assert r2(y, p, weights=counts[None, :])[0] == pytest.approx(r2_score(y, p, sample_weight=counts))


def test_sizes_larger_than_available_are_clipped_and_deduplicated():
    x, y, ids = _synthetic("binary", n_patients=40)
    points = probe_curve(x, y, ids, sizes=(10, 500, None), n_bootstrap=50)
    assert [p["size"] for p in points] == [10, "all"]
    assert [p["n_train_patients"] for p in points] == [10, 30]


def test_one_class_draw_is_redrawn_or_skipped():
    x, y, ids = _synthetic("binary", n_patients=100, per_patient=1)
    y = np.zeros_like(y)
    y[np.isin(ids, [0, 1])] = 1  # two positive patients, one each side of the stratified split
    points = probe_curve(x, y, ids, sizes=(2, None), seeds=(0,), n_bootstrap=20)
    assert "no draw of 2 training patients" in points[0]["skipped"] and points[0]["value"] is None
    assert "skipped" not in points[-1]


def test_splits_and_folds_are_stratified_so_a_rare_class_reaches_the_test_set():
    x, y, ids = _synthetic("binary", n_patients=40, per_patient=2)
    y = np.isin(ids, [3, 17, 29]).astype(float)  # three positive patients of forty
    for seed in range(5):
        _, test = patient_split(ids, seed=seed, strata={p: int(p in (3, 17, 29)) for p in np.unique(ids)})
        assert y[test].any() and not y[test].all()
        points = probe_curve(x, y, ids, sizes=(None,), seeds=(0,), folds=3, n_bootstrap=20, seed=seed)
        assert points[0]["value"] is not None


def test_all_with_folds_trains_on_every_training_patient_of_each_fold():
    _, y, ids = _synthetic("regression", n_patients=10, per_patient=1)
    seen = []

    def fit_predict(train_rows, test_rows, seed):
        seen.append(len(train_rows))
        return np.zeros(len(test_rows))

    probe_curve(None, y, ids, task="regression", sizes=(None,), seeds=(0,), folds=3, fit_predict=fit_predict)
    assert sorted(seen) == [6, 7, 7]  # folds of 4, 3, 3 patients held out


def test_a_test_set_of_one_class_is_a_skipped_point_with_its_reason():
    x, y, ids = _synthetic("binary", n_patients=10, per_patient=1)
    y = (ids == 0).astype(float)  # one positive patient: it is in training or in test, not both
    points = probe_curve(x, y, ids, sizes=(None,), seeds=(0,), n_bootstrap=20)
    assert points[0]["value"] is None and points[0]["skipped"]


def test_bad_inputs_raise_input_error():
    x, y, ids = _synthetic("binary", n_patients=20)
    with pytest.raises(InputError):
        probe_curve(x, y[:-1], ids)
    with pytest.raises(InputError):
        probe_curve(x, y, np.zeros(len(ids)))
    with pytest.raises(InputError):
        patient_split([7, 7, 7])
    with pytest.raises(InputError):
        probe_curve(x, y, ids, task="survival")
    assert PAPER_SIZES[-1] is None
