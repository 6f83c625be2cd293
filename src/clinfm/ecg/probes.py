"""Linear probes on frozen ECG representations at several training-set sizes (PCLR, Diamant et al.).

Patients are split once into train and test. For each size (a number of TRAINING PATIENTS, not
ECGs) and each seed, that many training patients are drawn, a standardised linear model is fit on
all of their ECGs and every test ECG is scored. The seeds' test scores are averaged, and the point
is the metric of that seed-averaged prediction with a 95% bootstrap interval over test patients.

Binary tasks use logistic regression and AUROC; regression tasks use ridge regression and R^2
(``sklearn.metrics.r2_score``; R^2 rather than Pearson r because it also penalises mis-scaled or
offset predictions). A binary draw with one class only is redrawn a few times, then the point is
skipped with a ``"skipped"`` reason. Sizes beyond the number of training patients become "all".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clinfm.ecg.features import impute_median
from clinfm.errors import InputError
from clinfm.evaluate.metrics import auroc, bootstrap

PAPER_SIZES: tuple[int | None, ...] = (10, 25, 50, 100, 250, None)
TASKS = ("binary", "regression")
REDRAWS = 10  # attempts at a binary training draw holding both classes
# (training rows, test rows, seed) -> predictions for the test rows
FitPredict = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def patient_split(
    patient_ids: object, *, test_share: float = 0.25, seed: int = 0, strata: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) row masks; every ECG of a patient falls on one side, same seed same split.

    With ``strata`` (patient -> class, e.g. whether the patient has any positive ECG), each class
    is split in the same proportion, so a rare outcome is not missing from the test set by chance.
    """
    ids = np.asarray(patient_ids).reshape(-1)
    patients = np.unique(ids)
    if len(patients) < 2:
        raise InputError(f"patient_split needs at least 2 patients; got {len(patients)}")
    if not 0 < test_share < 1:
        raise InputError(f"test_share must be between 0 and 1; got {test_share}")
    rng = np.random.default_rng(seed)
    groups = (
        [patients]
        if strata is None
        else [patients[[strata[p] == c for p in patients]] for c in sorted(set(strata.values()))]
    )
    test_patients = []
    for group in groups:
        n_test = min(len(group) - 1, max(1, round(test_share * len(group)))) if len(group) > 1 else 0
        test_patients += list(rng.permutation(group)[:n_test])
    if not test_patients:  # every class a single patient: hold one patient out
        test_patients = [rng.choice(patients)]
    test = np.isin(ids, test_patients)
    return ~test, test


def r2(y: object, p: object, *, weights: object | None = None) -> float | np.ndarray:
    """R^2 (sklearn's ``r2_score``); with ``(B, n)`` count weights, one value per bootstrap resample."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if weights is None:
        return float(r2_score(y, p)) if len(y) > 1 else float("nan")
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    total = w.sum(axis=1, keepdims=True)
    mean = (w @ y)[:, None] / total
    ss_tot = (w * (y[None, :] - mean) ** 2).sum(axis=1)
    ss_res = w @ (y - p) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)
    return float(out[0]) if np.ndim(weights) == 1 else out


def _check_inputs(features: object, labels: object, patient_ids: object, task: str):
    """Features (n x d, or None when a custom ``fit_predict`` reads its own inputs), labels (n,) and
    patient ids (n,) as arrays, or one InputError."""
    y = np.asarray(labels).reshape(-1)
    ids = np.asarray(patient_ids).reshape(-1)
    x = None if features is None else np.asarray(features, dtype=np.float64)
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}; got {task!r}")
    shape = (len(y), 1) if x is None else x.shape
    if len(shape) != 2 or not (shape[0] == len(y) == len(ids)):
        raise InputError(
            f"need features (n x d), labels (n,), patient ids (n,); got {shape}, {y.shape}, {ids.shape}"
        )
    if x is not None and not np.isfinite(x).all():
        raise InputError("features hold NaN or infinite values")
    if task == "binary" and not np.isin(y, (0, 1)).all():
        raise InputError(f"binary labels must be 0/1; found {np.unique(y)[:5].tolist()}")
    return x, y.astype(np.float64), ids


def _sizes(sizes: Sequence[int | None], n_patients: int) -> list[int]:
    """Requested sizes clipped to the available training patients, deduplicated, ascending."""
    out = set()
    for size in sizes:
        if size is not None and (int(size) != size or size < 1):
            raise InputError(f"sizes must be positive integers or None (all); got {size!r}")
        out.add(n_patients if size is None else min(int(size), n_patients))
    return sorted(out)


def _draw(rng, train_patients, size, y_of_patient, binary: bool) -> np.ndarray | None:
    """``size`` training patients; for binary tasks, None unless some draw holds both classes."""
    for _ in range(REDRAWS if binary and size < len(train_patients) else 1):
        chosen = rng.choice(len(train_patients), size=size, replace=False)
        if not binary or len(np.unique(np.concatenate([y_of_patient[i] for i in chosen]))) == 2:
            return train_patients[chosen]
    return None


def linear_probe(x: np.ndarray, y: np.ndarray, binary: bool, *, impute_missing: bool = False) -> FitPredict:
    """Standardised logistic (probability of 1) or ridge regression on the rows' features.

    ``impute_missing`` fills NaN (a feature an ECG did not allow measuring) with the training rows'
    column median, so nothing about the test rows leaks into the fit.
    """

    def fit_predict(train_rows: np.ndarray, test_rows: np.ndarray, seed: int) -> np.ndarray:
        x_train, x_test = x[train_rows], x[test_rows]
        if impute_missing:
            x_train, x_test = impute_median(x_train, x_test)
        if binary:
            model = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
            )
            return model.fit(x_train, y[train_rows]).predict_proba(x_test)[:, 1]
        return make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_train, y[train_rows]).predict(x_test)

    return fit_predict


@dataclass(frozen=True)
class _Split:
    """One evaluation split: the training patients to draw from and the test rows."""

    train_patients: np.ndarray
    rows_of: dict
    labels_of: list
    test_rows: np.ndarray


def _splits(
    ids: np.ndarray, y: np.ndarray, binary: bool, test_share: float, folds: int | None, seed: int
) -> list[_Split]:
    """One train/test split of patients, or ``folds`` folds each holding a share of the patients
    out; for binary labels both are stratified by whether a patient has a positive ECG."""
    patients, patient_of_row = np.unique(ids, return_inverse=True)
    # every patient's rows in one pass (not a scan of all rows per patient)
    by_patient = np.argsort(patient_of_row, kind="stable")
    rows_of_all = dict(
        zip(patients, np.split(by_patient, np.cumsum(np.bincount(patient_of_row))[:-1]), strict=True)
    )
    strata = None
    if binary:
        positive = np.zeros(len(patients), dtype=int)
        np.maximum.at(positive, patient_of_row, y.astype(int))
        strata = dict(zip(patients, positive.tolist(), strict=True))
    if folds is None:
        tests = [np.flatnonzero(patient_split(ids, test_share=test_share, seed=seed, strata=strata)[1])]
    else:
        if not 2 <= folds <= len(patients):
            raise InputError(
                f"folds must be between 2 and the number of patients ({len(patients)}); got {folds}"
            )
        order = np.random.default_rng(seed).permutation(patients)
        if strata is not None:  # classes one after the other, then dealt round the folds
            order = order[np.argsort([strata[p] for p in order], kind="stable")]
        tests = [np.flatnonzero(np.isin(ids, order[k::folds])) for k in range(folds)]
    splits = []
    for test_rows in tests:
        train_patients = np.setdiff1d(patients, np.unique(ids[test_rows]))
        rows_of = {p: rows_of_all[p] for p in train_patients}
        splits.append(_Split(train_patients, rows_of, [y[rows_of[p]] for p in train_patients], test_rows))
    return splits


def probe_curve(
    features: object,
    labels: object,
    patient_ids: object,
    *,
    task: str = "binary",
    sizes: Sequence[int | None] = PAPER_SIZES,
    seeds: Sequence[int] = (0, 1, 2),
    test_share: float = 0.25,
    folds: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    fit_predict: FitPredict | None = None,
) -> list[dict]:
    """One dict per training size: size, n_train_patients, n_train_ecgs, metric, value, low, high, seeds.

    Patients are split once into train and test (``test_share``), or into ``folds`` folds that each
    serve as the test set once (leave-patients-out, for cohorts of a few patients), with the test
    predictions of all folds pooled into one score. ``fit_predict(train_rows, test_rows, seed)``
    replaces the linear probe (e.g. a network trained from scratch; ``features`` may then be None).
    A point whose draws never hold both classes has ``value``/``low``/``high`` None and a
    ``skipped`` reason; ``n_train_ecgs`` is averaged over the seeds' (and folds') draws.
    """
    x, y, ids = _check_inputs(features, labels, patient_ids, task)
    if not len(seeds):
        raise InputError("seeds is empty; give at least one seed")
    binary = task == "binary"
    if fit_predict is None:
        if x is None:
            raise InputError("give features, or a fit_predict that reads its own inputs")
        fit_predict = linear_probe(x, y, binary)
    splits = _splits(ids, y, binary, test_share, folds, seed)
    available = min(len(split.train_patients) for split in splits)
    points = []
    for size in _sizes(sizes, available):
        everyone = size == available  # "all": every training patient of each split (folds differ by one)
        point = {"size": "all" if everyone else size, "n_train_patients": size}
        points.append(
            point | _point(y, ids, splits, size, everyone, binary, seeds, n_bootstrap, seed, fit_predict)
        )
    return points


def _point(y, ids, splits, size, everyone, binary, seeds, n_bootstrap, seed, fit_predict) -> dict:
    """Seed-averaged test predictions at one size and their metric with a patient-bootstrap CI."""
    name = "auroc" if binary else "r2"
    test_rows = np.concatenate([split.test_rows for split in splits])
    counts = _test_counts(y[test_rows], ids[test_rows], binary)
    if binary and len(np.unique(y[test_rows])) < 2:
        return _skipped(name, seeds, "the test patients' ECGs hold one class only") | counts
    predictions, n_ecgs = [], []
    for s in seeds:
        pooled = []
        for fold, split in enumerate(splits):
            rng = np.random.default_rng([seed, size, s] + ([fold] if len(splits) > 1 else []))
            n = len(split.train_patients) if everyone else size
            chosen = _draw(rng, split.train_patients, n, split.labels_of, binary)
            if chosen is None:
                tries = 1 if n == len(split.train_patients) else REDRAWS
                return _skipped(
                    name,
                    seeds,
                    f"no draw of {n} training patients held both classes ({tries} tries, seed {s})",
                )
            rows = np.concatenate([split.rows_of[p] for p in chosen])
            n_ecgs.append(len(rows))
            pooled.append(fit_predict(rows, split.test_rows, s))
        predictions.append(np.concatenate(pooled))
    estimate = bootstrap(
        auroc if binary else r2,
        y[test_rows],
        np.mean(predictions, axis=0),
        n_bootstrap=n_bootstrap,
        seed=seed,
        groups=ids[test_rows],
    )
    n_train_ecgs = n_ecgs[0] if len(set(n_ecgs)) == 1 else float(np.mean(n_ecgs))
    return {"n_train_ecgs": n_train_ecgs, "metric": name, **estimate.to_dict(), "seeds": len(seeds), **counts}


def _test_counts(y: np.ndarray, ids: np.ndarray, binary: bool) -> dict:
    """Test patients, and for a binary label those with a positive ECG (the report needs enough of
    both before it compares methods)."""
    counts = {"test_patients": len(np.unique(ids))}
    if binary:
        counts["test_positives"] = len(np.unique(ids[np.asarray(y) > 0]))
    return counts


def _skipped(metric: str, seeds, reason: str) -> dict:
    return {
        "n_train_ecgs": None,
        "metric": metric,
        "value": None,
        "low": None,
        "high": None,
        "seeds": len(seeds),
        "skipped": reason,
    }
