"""Evaluation: metrics equal scikit-learn's, intervals behave, prediction files and baselines are exact."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from functools import partial

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from clinfm.errors import InputError
from clinfm.evaluate import (
    BASELINES,
    METRIC_INFO,
    PREDICTION_SCHEMA,
    Estimate,
    auprc,
    auroc,
    binary_metrics,
    binary_metrics_runs,
    bootstrap,
    bootstrap_runs,
    brier,
    code_count_features,
    ece,
    f1,
    f1_macro,
    f1_micro,
    fit_baseline,
    macro_auroc,
    multilabel_metrics,
    read_predictions,
    recall_at_k,
    write_predictions,
)


def _binary_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative scores rounded to tenths, so ties are plentiful."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(np.round(0.35 * y + 0.65 * rng.random(n), 1), 0, 1)
    return y, p


# ---------------------------------------------------------------------------------------- point metrics


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_auprc_equal_scikit_learn_with_ties(seed):
    y, p = _binary_data(200, seed)
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    weights = np.random.default_rng(seed).integers(0, 3, len(y)).astype(float)
    assert auroc(y, p, weights=weights) == pytest.approx(roc_auc_score(y, p, sample_weight=weights))
    assert auprc(y, p, weights=weights) == pytest.approx(average_precision_score(y, p, sample_weight=weights))


def test_brier_ece_and_f1_on_hand_cases():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.6, 0.65])
    assert brier(y, p) == pytest.approx((0.01 + 0.01 + 0.16 + 0.4225) / 4)
    # bins: 0.1 -> [0.1,0.2), 0.6 and 0.65 -> [0.6,0.7), 0.9 -> [0.9,1.0]
    expected_ece = (1 / 4) * 0.1 + (2 / 4) * abs(0.5 - 0.625) + (1 / 4) * 0.1
    assert ece(y, p) == pytest.approx(expected_ece)
    assert ece(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0  # p == 1 lands in the last bin
    assert f1(y, p) == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert f1(y, p, threshold=0.7) == pytest.approx(2 / 3)


def test_undefined_metrics_are_nan_not_errors():
    assert math.isnan(auroc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(auprc([0, 0], [0.2, 0.5]))
    assert math.isnan(f1([0, 0], [0.1, 0.2]))
    assert math.isnan(macro_auroc(np.ones((3, 2)), np.random.default_rng(0).random((3, 2))))


def test_scores_that_are_not_probabilities_are_refused():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        brier([0, 1], [0.5, 1.5])
    with pytest.raises(InputError, match="NaN"):
        auroc([0, 1], [0.5, np.nan])
    with pytest.raises(InputError, match="0/1"):
        auroc([0, 2], [0.5, 0.2])


def test_multilabel_metrics_on_a_hand_case():
    Y = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    S = np.array([[0.9, 0.1, 0.8, 0.0], [0.1, 0.2, 0.7, 0.3], [0.5, 0.6, 0.7, 0.8]])
    # sample 1: top-2 {0, 2}, 1 of 2 true found; sample 2: top-2 {2, 3}, 1 of 1; sample 3 has no labels
    assert recall_at_k(Y, S, 2) == pytest.approx((0.5 + 1.0) / 2)
    assert recall_at_k(Y, S, 1) == pytest.approx((0.5 + 1.0) / 2)
    # predicted at 0.5: (0,0) (0,2) (1,2) (2,0) (2,1) (2,2) (2,3): TP 2, FP 5, FN 1
    assert f1_micro(Y, S) == pytest.approx(4 / (4 + 5 + 1))
    # labels 0,1,2 occur (label 3 never does): F1 = 2/3, 0, 1/2
    assert f1_macro(Y, S) == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    expected_auroc = np.mean([roc_auc_score(Y[:, j], S[:, j]) for j in range(3)])
    assert macro_auroc(Y, S) == pytest.approx(expected_auroc)
    assert set(multilabel_metrics(Y, S, ks=(2, 5), n_bootstrap=20)) == {
        "recall@2",
        "f1_micro",
        "f1_macro",
        "macro_auroc",
    }


# ---------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_the_value_narrows_and_is_reproducible():
    small = bootstrap(auroc, *_binary_data(100), n_bootstrap=300, seed=1)
    large = bootstrap(auroc, *_binary_data(3000), n_bootstrap=300, seed=1)
    for estimate in (small, large):
        assert estimate.low <= estimate.value <= estimate.high
    assert large.high - large.low < (small.high - small.low) / 2
    assert bootstrap(auroc, *_binary_data(100), n_bootstrap=300, seed=1) == small
    assert bootstrap(auroc, *_binary_data(100), n_bootstrap=300, seed=2) != small


def test_bootstrap_weighted_path_equals_plain_resampling():
    """A metric without ``weights`` is resampled row by row; built-ins must agree exactly."""
    y, p = _binary_data(80)
    fast = bootstrap(auroc, y, p, n_bootstrap=50, seed=3)
    slow = bootstrap(lambda y, p: roc_auc_score(y, p), y, p, n_bootstrap=50, seed=3)
    assert fast.low == pytest.approx(slow.low) and fast.high == pytest.approx(slow.high)


def test_bootstrap_runs_of_identical_runs_equals_bootstrap_of_one():
    y, p = _binary_data(150)
    assert bootstrap_runs(auprc, y, [p, p, p], n_bootstrap=200) == bootstrap(auprc, y, p, n_bootstrap=200)
    other = np.clip(p + 0.05, 0, 1)
    averaged = bootstrap_runs(brier, y, [p, other], n_bootstrap=200)
    assert averaged.value == pytest.approx((brier(y, p) + brier(y, other)) / 2)


def test_bootstrap_drops_undefined_resamples_and_gives_nan_when_most_are():
    y = np.array([1] + [0] * 49)
    p = np.linspace(1, 0, 50)
    # the one positive is absent from about 37% of resamples: those are dropped, the rest give bounds
    estimate = bootstrap(auroc, y, p, n_bootstrap=200)
    assert estimate == Estimate(1.0, 1.0, 1.0)
    # drawing the positive at least twice happens in about 26% of resamples: too few, so no interval
    needs_two_positives = lambda y, p: float(y.mean()) if y.sum() >= 2 else math.nan  # noqa: E731
    estimate = bootstrap(needs_two_positives, y, p, n_bootstrap=200)
    assert math.isnan(estimate.low) and math.isnan(estimate.high)
    assert estimate.to_dict() == {"value": None, "low": None, "high": None, "interval": None}
    assert json.dumps(estimate.to_dict()) == '{"value": null, "low": null, "high": null, "interval": null}'


def test_bootstrap_of_a_multilabel_metric_resamples_rows():
    rng = np.random.default_rng(0)
    Y = (rng.random((300, 12)) < 0.2).astype(int)
    S = np.clip(0.4 * Y + 0.6 * rng.random((300, 12)), 0, 1)
    estimate = bootstrap(partial(recall_at_k, k=3), Y, S, n_bootstrap=100)
    assert estimate.low <= estimate.value <= estimate.high


def test_binary_metrics_are_fast_and_described():
    y, p = _binary_data(5000)
    start = time.perf_counter()
    results = binary_metrics(y, p, n_bootstrap=1000)
    assert time.perf_counter() - start < 5
    assert set(results) == {"auroc", "auprc", "brier", "ece", "f1"}
    assert all(isinstance(e, Estimate) and e.low <= e.value <= e.high for e in results.values())
    assert set(results) <= set(METRIC_INFO)
    runs = binary_metrics_runs(y, [p, p], n_bootstrap=100)
    assert runs["auroc"] == binary_metrics(y, p, n_bootstrap=100)["auroc"]
    assert results["auroc"].to_dict()["interval"] in ("bca", "percentile-widened")
    assert results["f1"].to_dict()["threshold"] == 0.5
    assert results["f1"].to_dict()["threshold_source"] == "fixed, not tuned"


def _containment_cases():
    """Small, awkward data sets: tiny positive counts, near-perfect separation, calibration error of
    well-calibrated scores (ECE is biased upward under resampling), F1 at extreme thresholds."""
    rng = np.random.default_rng(2024)
    for case in range(120):
        n = int(rng.integers(8, 80))
        kind = case % 4
        if kind == 0:  # one to three positives
            y = np.zeros(n, dtype=int)
            y[rng.choice(n, int(rng.integers(1, 4)), replace=False)] = 1
        else:
            y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
        if kind == 1:  # AUROC near 1: almost separated
            p = np.clip(0.8 * y + 0.25 * rng.random(n), 0, 1)
        elif kind == 2:  # calibrated: ECE near 0 on the full data
            p = rng.random(n)
            y = (rng.random(n) < p).astype(int)
        else:
            p = np.round(rng.random(n), int(rng.integers(1, 3)))  # heavy ties
        groups = rng.integers(0, max(2, n // 2), n) if case % 3 == 0 else None
        yield case, y, p, groups, float(rng.uniform(0.05, 0.95))


def test_every_estimate_lies_inside_its_interval():
    """The point is within [low, high] for every metric, method and awkward data set (BCa, or the
    percentile interval widened to the point where BCa cannot hold it)."""
    methods = set()
    for case, y, p, groups, threshold in _containment_cases():
        other = np.clip(p + 0.1, 0, 1)
        for estimates in (
            binary_metrics(y, p, threshold=threshold, n_bootstrap=200, seed=case, groups=groups),
            binary_metrics_runs(y, [p, other], threshold=[threshold, 0.5], n_bootstrap=100, seed=case),
        ):
            for name, e in estimates.items():
                if math.isnan(e.value) or math.isnan(e.low):
                    continue
                assert e.low <= e.value <= e.high, (case, name, e)
                methods.add(e.interval)
        Y = np.stack([y, 1 - y, (p > 0.5).astype(int)], axis=1)
        S = np.stack([p, 1 - p, rng_scores(p, case)], axis=1)
        for name, e in multilabel_metrics(Y, S, ks=(1, 2), n_bootstrap=100, seed=case).items():
            if not (math.isnan(e.value) or math.isnan(e.low)):
                assert e.low <= e.value <= e.high, (case, name, e)
    assert methods == {"bca", "percentile-widened"}  # both paths are exercised


def rng_scores(p: np.ndarray, seed: int) -> np.ndarray:
    return np.clip(p + np.random.default_rng(seed).normal(0, 0.2, len(p)), 0, 1)


def test_ece_of_well_calibrated_scores_is_inside_its_interval():
    """The case the percentile interval got wrong (ECE 0.006 shown with an interval of 0.007-0.052):
    resampling inflates ECE, so nearly every resample lies above the estimate. BCa cannot hold it
    there either (|z0| is past 2), so the interval is the percentile one widened down to the value."""
    rng = np.random.default_rng(5)
    p = rng.random(3000)
    y = (rng.random(3000) < p).astype(int)
    low, high = np.quantile(bootstrap_samples(ece, y, p), [0.025, 0.975])
    estimate = bootstrap(ece, y, p, n_bootstrap=500)
    assert estimate.value < low  # the percentile interval misses its own estimate
    assert estimate == Estimate(estimate.value, estimate.value, pytest.approx(high), "percentile-widened")
    assert estimate.to_dict()["interval"] == "percentile-widened"


def bootstrap_samples(metric, y, p, n_bootstrap=500, seed=0):
    from clinfm.evaluate.metrics import _resample_values

    return _resample_values({"m": metric}, np.asarray(y, float), [np.asarray(p, float)], n_bootstrap, seed)[
        "m"
    ]


def test_bca_matches_the_percentile_interval_for_a_symmetric_unbiased_statistic():
    """For a mean (no bias, little skew) BCa and the percentile interval nearly agree."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    p = rng.random(2000)
    estimate = bootstrap(brier, y, p, n_bootstrap=2000)
    low, high = np.quantile(bootstrap_samples(brier, y, p, 2000), [0.025, 0.975])
    assert estimate.interval == "bca"
    assert estimate.low == pytest.approx(low, abs=0.002) and estimate.high == pytest.approx(high, abs=0.002)


def test_acceleration_uses_a_blocked_jackknife_for_many_units():
    from clinfm.evaluate.metrics import JACKKNIFE_BLOCKS, _jackknife_batches

    few = list(_jackknife_batches(30, 0, None))
    assert sum(len(c) for _, c in few) == 30 and all((c.sum(axis=1) == 29).all() for _, c in few)
    many = np.concatenate([c for _, c in _jackknife_batches(5000, 0, None)])
    assert len(many) == JACKKNIFE_BLOCKS and ((1 - many).sum(axis=0) == 1).all()  # each row left out once
    groups = np.repeat(np.arange(40), 3)
    by_patient = np.concatenate([c for _, c in _jackknife_batches(120, 0, groups)])
    assert len(by_patient) == 40 and (by_patient.reshape(40, 40, 3).std(axis=2) == 0).all()


def test_best_f1_threshold_and_its_fallbacks():
    from clinfm.evaluate.metrics import best_f1_threshold, tuned_threshold

    y = np.array([0, 0, 0, 1, 0, 1, 1])
    p = np.array([0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4])
    cut = best_f1_threshold(y, p)
    assert cut == pytest.approx(0.225)  # the top four: F1 6/7, the best of every cut
    assert f1(y, p, threshold=cut) == pytest.approx(max(f1(y, p, threshold=t) for t in p))
    assert tuned_threshold(y, p) == (cut, "tuning set, max F1")
    assert tuned_threshold(np.zeros(4), np.ones(4)) == (0.5, "default 0.5: the tuning set lacks a class")
    assert tuned_threshold(np.ones(4), np.ones(4))[0] == 0.5
    assert tuned_threshold(None, None, "source site's tuning set")[1].endswith(
        "no source site's tuning set predictions"
    )


def test_per_run_thresholds_are_applied_and_stated():
    y, p = _binary_data(300)
    q = np.clip(p * 0.8, 0, 1)
    runs = binary_metrics_runs(
        y, [p, q], threshold=[0.6, 0.3], threshold_source="tuning set, max F1", n_bootstrap=50
    )
    assert runs["f1"].value == pytest.approx((f1(y, p, threshold=0.6) + f1(y, q, threshold=0.3)) / 2)
    record = runs["f1"].to_dict()
    assert record["threshold"] == pytest.approx(0.45) and record["thresholds"] == [0.6, 0.3]
    assert record["threshold_source"] == "tuning set, max F1"
    assert "threshold" not in runs["auroc"].to_dict()
    with pytest.raises(InputError, match="one per run"):
        binary_metrics_runs(y, [p, q], threshold=[0.5], n_bootstrap=10)


# ---------------------------------------------------------------------------------------- predictions


def test_predictions_round_trip_with_exact_arrow_types(tmp_path):
    path = tmp_path / "run" / "predictions.parquet"
    times = pl.Series([dt.datetime(2020, 1, 1), dt.datetime(2021, 6, 1, 8, 30)])  # Polars: datetime[us]
    write_predictions(
        path, subject_id=np.array([7, 9], dtype=np.int32), prediction_time=times, y=[1, 0], p=[0.8, 0.3]
    )
    assert pq.read_schema(path).remove_metadata() == PREDICTION_SCHEMA
    assert list(tmp_path.joinpath("run").iterdir()) == [path]  # no temporary file left behind
    frame = read_predictions(path)
    assert frame["subject_id"].to_list() == [7, 9]
    assert frame["prediction_time"].to_list() == times.to_list()
    assert frame["boolean_value"].to_list() == [True, False]
    assert frame["predicted_boolean_value"].to_list() == [True, False]
    assert frame["predicted_boolean_probability"].to_list() == [0.8, 0.3]


def test_prediction_times_in_nanoseconds_are_stored_as_microseconds(tmp_path):
    times = np.array(["2020-01-01T00:00:00", "2020-01-02T00:00:00"], dtype="datetime64[ns]")
    path = write_predictions(
        tmp_path / "p.parquet", subject_id=[1, 2], prediction_time=times, y=[0, 1], p=[0, 1]
    )
    assert pq.read_schema(path).field("prediction_time").type == pa.timestamp("us")


@pytest.mark.parametrize(
    ("p", "match"),
    [([0.5, 1.2], r"\[0, 1\]"), ([0.5, np.nan], r"\[0, 1\]"), ([0.5], "differ in length")],
)
def test_bad_predictions_raise_and_write_nothing(tmp_path, p, match):
    path = tmp_path / "p.parquet"
    with pytest.raises(InputError, match=match):
        write_predictions(
            path, subject_id=[1, 2], prediction_time=[dt.datetime(2020, 1, 1)] * 2, y=[0, 1], p=p
        )
    assert not path.exists()


def test_reading_a_file_without_the_schema_says_what_is_missing(tmp_path):
    path = tmp_path / "other.parquet"
    pl.DataFrame({"subject_id": [1]}).write_parquet(path)
    with pytest.raises(InputError, match="prediction_time"):
        read_predictions(path)


# ---------------------------------------------------------------------------------------- baselines

T = dt.datetime(2020, 1, 1, 12)
DAY = dt.timedelta(days=1)


def _tiny_events() -> tuple[pl.LazyFrame, pl.DataFrame]:
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 1, 1, 1, 2, 2],
            "time": [None, T - DAY * 2, T - DAY, T, T + DAY, T - DAY, T + DAY],
            "code": ["GENDER/F", "A", "A", "B", "LATE", "A", "LATE"],
        }
    ).lazy()
    labels = pl.DataFrame(
        {
            "subject_id": [2, 1, 3, 1],
            "prediction_time": [T, T, T, T - dt.timedelta(days=1, hours=12)],
            "boolean_value": [False, True, False, True],
        }
    )
    return events, labels


def test_code_counts_see_only_the_past_and_keep_label_order():
    events, labels = _tiny_events()
    X, codes = code_count_features(events, labels)
    assert "LATE" not in codes
    dense = dict(zip(codes, X.toarray().T, strict=True))
    assert dense["A"].tolist() == [
        1,
        2,
        0,
        1,
    ]  # subject 2, subject 1, subject 3 (no events), subject 1 earlier
    assert dense["B"].tolist() == [0, 1, 0, 0]  # B at exactly prediction_time counts
    assert dense["GENDER/F"].tolist() == [0, 1, 0, 1]  # static events always count
    assert codes[0] == "A"  # seen by the most samples


def test_code_counts_use_given_codes_in_order_and_respect_the_cap():
    events, labels = _tiny_events()
    X, codes = code_count_features(events, labels, codes=["B", "NEVER", "A"])
    assert codes == ["B", "NEVER", "A"] and X.shape == (4, 3)
    assert X.toarray().tolist() == [[0, 0, 1], [1, 0, 2], [0, 0, 0], [0, 0, 1]]
    X, codes = code_count_features(events, labels, max_features=1)
    assert codes == ["A"] and X.shape == (4, 1)


def _separable(n: int, seed: int) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """Cases carry code SIGNAL a few times; everyone carries noise codes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rows = []
    for subject, label in enumerate(y):
        codes = [f"NOISE{j}" for j in rng.integers(0, 20, 6)]
        codes += ["SIGNAL"] * int(label * rng.integers(1, 4)) + ["COMMON"] * int(rng.integers(0, 3))
        rows += [(subject, T - dt.timedelta(days=1), code) for code in codes]
    events = pl.DataFrame(rows, schema=["subject_id", "time", "code"], orient="row").lazy()
    labels = pl.DataFrame({"subject_id": np.arange(n), "prediction_time": [T] * n, "boolean_value": y == 1})
    return events, labels


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_learn_a_separable_task(name):
    train_events, train_labels = _separable(200, seed=0)
    test_events, test_labels = _separable(200, seed=1)
    X_train, codes = code_count_features(train_events, train_labels)
    X_test, _ = code_count_features(test_events, test_labels, codes=codes)
    model = fit_baseline(name, X_train, train_labels["boolean_value"].to_numpy(), seed=0)
    scores = model.predict_proba(X_test)[:, 1]
    assert auroc(test_labels["boolean_value"].to_numpy(), scores) > 0.9


def test_baselines_refuse_single_class_and_unknown_names():
    X = np.ones((5, 2))
    with pytest.raises(InputError, match="only one class"):
        fit_baseline("logistic_regression", X, np.zeros(5), seed=0)
    with pytest.raises(InputError, match="unknown baseline"):
        fit_baseline("svm", X, np.array([0, 1, 0, 1, 0]), seed=0)


def test_bootstrap_by_groups_draws_whole_patients():
    from clinfm.evaluate.metrics import auroc, bootstrap

    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 40), 5)  # 40 patients, 5 identical label rows each
    p = np.clip(y * 0.2 + np.repeat(rng.random(40), 5) * 0.8, 0, 1)
    rows = bootstrap(auroc, y, p, seed=1)
    patients = bootstrap(auroc, y, p, seed=1, groups=np.repeat(np.arange(40), 5))
    assert patients.value == rows.value
    assert (patients.high - patients.low) > 1.5 * (rows.high - rows.low)  # five copies are not five patients
