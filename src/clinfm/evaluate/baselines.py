"""Task-specific baselines on per-patient code counts, the comparison Claim-PT reports against.

A pre-trained model earns its keep only if it beats a model trained from scratch on the same
labels. The standard such baseline counts each code in a patient's visible history and fits
logistic regression or gradient boosting on the counts.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler

from clinfm.errors import InputError
from clinfm.events.labels import events_as_of

BASELINES = ("logistic_regression", "gradient_boosting")

# Inverse regularisation strengths tried by the internal cross-validation of logistic regression.
_C_GRID = (0.01, 0.1, 1.0, 10.0)
_MAX_FOLDS = 5


def _sample_code_counts(events: pl.LazyFrame | pl.DataFrame, labels: pl.DataFrame) -> pl.LazyFrame:
    """(sample_id, code, count) for every code a sample can see at its prediction time."""
    visible = events_as_of(
        events.lazy().select("subject_id", "time", pl.col("code").cast(pl.String)),
        labels.lazy().select("subject_id", "prediction_time"),
    )
    return (
        visible.filter(pl.col("code").is_not_null())
        .group_by("sample_id", "code")
        .agg(pl.len().alias("count"))
    )


def _most_common_codes(counts: pl.DataFrame, max_features: int) -> list[str]:
    """The codes seen by the most samples; ties broken by code so the choice is reproducible."""
    return (
        counts.group_by("code")
        .agg(pl.len().alias("samples"))
        .sort(["samples", "code"], descending=[True, False])
        .head(max_features)["code"]
        .to_list()
    )


def code_count_features(
    events: pl.LazyFrame | pl.DataFrame,
    labels: pl.DataFrame,
    *,
    codes: list[str] | None = None,
    max_features: int = 2000,
) -> tuple[sp.csr_matrix, list[str]]:
    """A (labels x codes) sparse matrix: how often each code occurs in the history each label may see.

    Only events at or before the label's ``prediction_time`` count (static events, with no time,
    always do), so no feature leaks the outcome. Rows follow the label order; labels with no visible
    event are all-zero rows. With ``codes=None`` the ``max_features`` codes present in the most
    samples become the columns; pass the codes chosen on the training labels when building test
    features so both share columns (codes unseen at test time are zero columns). Raw counts are
    returned; :func:`fit_baseline` does the scaling.
    """
    for column in ("subject_id", "prediction_time"):
        if column not in labels.columns:
            raise InputError(f"labels lack the {column} column; expected the MEDS label schema")
    if codes is not None and len(set(codes)) != len(codes):
        raise InputError("codes must not repeat: each code is one feature column")
    if max_features < 1:
        raise InputError(f"max_features must be at least 1; got {max_features}")
    counts = _sample_code_counts(events, labels).collect()
    if codes is None:
        codes = _most_common_codes(counts, max_features)
    columns = pl.DataFrame(
        {"code": codes, "column": np.arange(len(codes))}, schema_overrides={"code": pl.String}
    )
    cells = counts.join(columns, on="code", how="inner")
    matrix = sp.csr_matrix(
        (
            cells["count"].to_numpy().astype(np.float64),
            (cells["sample_id"].to_numpy(), cells["column"].to_numpy()),
        ),
        shape=(labels.height, len(codes)),
    )
    return matrix, list(codes)


def _log1p(X):
    """log(1 + count): a code seen 50 times is stronger evidence than once, but not 50 times stronger."""
    return X.log1p() if sp.issparse(X) else np.log1p(X)


def _dense(X):
    return X.toarray().astype(np.float32) if sp.issparse(X) else np.asarray(X, dtype=np.float32)


def _logistic_regression(X, y: np.ndarray, seed: int) -> Pipeline:
    """L2 logistic regression on log counts scaled to [0, 1]; C by stratified CV when folds allow it.

    CV needs at least two positives (and negatives) in every fold for AUROC to mean anything; with
    fewer, the usual default C=1 is used rather than a choice driven by noise.
    """
    pipeline = make_pipeline(
        FunctionTransformer(_log1p, accept_sparse=True),
        MaxAbsScaler(),
        LogisticRegression(C=1.0, l1_ratio=0.0, max_iter=5000, random_state=seed),
    )
    folds = min(_MAX_FOLDS, int(np.bincount(y).min()) // 2)
    if folds < 2:
        return pipeline.fit(X, y)
    search = GridSearchCV(
        pipeline,
        {"logisticregression__C": list(_C_GRID)},
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
    )
    return search.fit(X, y).best_estimator_


def _gradient_boosting(X, y: np.ndarray, seed: int) -> Pipeline:
    """Histogram gradient boosting on dense counts (the feature cap keeps them small).

    Leaves need at most 20 samples, fewer for tiny training sets (label-efficiency curves go down to
    a few dozen labels, where 20-sample leaves would forbid any split). Early stopping holds out 10%
    only once the training set is large enough (10,000, scikit-learn's own cut-off) to spare it.
    """
    n = X.shape[0]
    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=min(20, max(2, n // 10)),
        l2_regularization=1.0,
        early_stopping=n >= 10_000,
        random_state=seed,
    )
    return make_pipeline(FunctionTransformer(_dense, accept_sparse=True), model).fit(X, y)


def fit_baseline(name: str, X, y, *, seed: int) -> ClassifierMixin:
    """Fit baseline ``name`` (one of :data:`BASELINES`) on count features; use ``predict_proba``."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    y = np.asarray(y)
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.ndim != 1 or len(y) != X.shape[0]:
        raise InputError(f"{X.shape[0]} feature rows but labels of shape {y.shape}; give one label per row")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"baseline labels must be 0/1 or booleans; found {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise InputError(
            f"training labels have only one class ({int(classes[0]) if len(classes) else 'none'} in all "
            f"{len(y)} rows); a classifier needs positives and negatives"
        )
    fit = _logistic_regression if name == "logistic_regression" else _gradient_boosting
    return fit(X, y, seed)
