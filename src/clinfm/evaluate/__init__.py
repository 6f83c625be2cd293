"""Evaluation shared by every system: metrics with bootstrap CIs, prediction files, count baselines.

Metrics take numpy arrays and return :class:`Estimate` (value, low, high, and the interval method:
BCa); a binary model's F1 threshold is chosen on its tuning set (:func:`tuned_threshold`);
predictions are written in the meds-evaluation schema; baselines are the from-scratch models a
pre-trained one must beat.
"""

from __future__ import annotations

from clinfm.evaluate.baselines import BASELINES, code_count_features, fit_baseline
from clinfm.evaluate.metrics import (
    METRIC_INFO,
    Estimate,
    auprc,
    auroc,
    best_f1_threshold,
    binary_metrics,
    binary_metrics_runs,
    bootstrap,
    bootstrap_runs,
    brier,
    ece,
    f1,
    f1_macro,
    f1_micro,
    macro_auroc,
    metric_info,
    multilabel_metrics,
    multilabel_metrics_runs,
    recall_at_k,
    tuned_threshold,
)
from clinfm.evaluate.predictions import PREDICTION_SCHEMA, read_predictions, write_predictions

__all__ = [
    "BASELINES",
    "METRIC_INFO",
    "PREDICTION_SCHEMA",
    "Estimate",
    "auprc",
    "auroc",
    "best_f1_threshold",
    "binary_metrics",
    "binary_metrics_runs",
    "bootstrap",
    "bootstrap_runs",
    "brier",
    "code_count_features",
    "ece",
    "f1",
    "f1_macro",
    "f1_micro",
    "fit_baseline",
    "macro_auroc",
    "metric_info",
    "multilabel_metrics",
    "multilabel_metrics_runs",
    "read_predictions",
    "recall_at_k",
    "tuned_threshold",
    "write_predictions",
]
