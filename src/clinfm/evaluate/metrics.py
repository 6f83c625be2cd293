"""Metrics with bootstrap confidence intervals, fast enough to run a thousand resamples per table cell.

A bootstrap resample that draws row ``i`` ``c_i`` times is the same data set as the original rows
weighted by the counts ``c``. So every built-in metric takes ``weights``: shape ``(n,)`` for one
weighting or ``(B, n)`` for ``B`` weightings at once, returning a float or a ``(B,)`` array. The
scores are sorted and binned once, and each resample costs a few cumulative sums instead of a sort
and a scikit-learn call. With ``weights=None`` a metric is the ordinary point estimate, and the
values equal scikit-learn's (ties included), which the tests check.

Undefined metrics (AUROC with one class, macro-F1 with no positive labels) are NaN, never an
error: a bootstrap drops such resamples, and a report shows a dash.

Intervals are BCa (bias-corrected and accelerated; Efron 1987), so an estimate always lies inside
its own interval. The plain percentile interval can miss its own estimate when the statistic is
skewed under resampling (ECE is biased upward, AUROC near 1 and F1 are bounded); BCa shifts the
percentiles by the bias correction ``z0 = Phi^-1(share of resampled values below the estimate, ties
counted half)`` and the acceleration ``a`` (the skewness of jackknife values: leave one row or
patient out, or, beyond ``JACKKNIFE_BLOCKS`` of them, leave one of that many random blocks out, which
estimates the same ``a`` at a fixed cost). Where BCa is undefined or would still leave the estimate
outside (the resamples lie almost all on one side of it, ``|z0|`` past about 2), the interval is the
percentile interval widened to reach the estimate. ``Estimate.interval`` names the method used:
``"bca"`` or ``"percentile-widened"``; ``metrics.json`` carries it as ``"interval"``.

Thresholded metrics (F1 of a binary task, micro/macro F1) state their threshold: ``Estimate.threshold``
and ``threshold_source``, written beside the value as ``"threshold"`` and ``"threshold_source"``
(with several runs, ``threshold`` is the runs' mean and ``thresholds`` lists each run's). Recipes
pick a binary model's threshold with :func:`tuned_threshold`: the cut maximising F1 on that model's
tuning-set predictions (:func:`best_f1_threshold`), 0.5 when the tuning set lacks a class, and say
which in ``threshold_source``; 0.5 (``"fixed, not tuned"``) is only the default of the functions here.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from clinfm.errors import InputError

Metric = Callable[..., "float | np.ndarray"]

# Resamples are evaluated in chunks of about this many (resample x row) cells, to bound memory.
_CHUNK_CELLS = 4_000_000
#: The jackknife behind BCa's acceleration leaves out one unit (row or patient) at a time up to this
#: many units, and beyond it one of this many random blocks of units (a delete-a-group jackknife).
JACKKNIFE_BLOCKS = 100
BCA = "bca"
PERCENTILE_WIDENED = "percentile-widened"
DEFAULT_THRESHOLD = 0.5
FIXED_THRESHOLD = "fixed, not tuned"


@dataclass(frozen=True)
class Estimate:
    """A metric's value on the full test set and its bootstrap interval.

    ``interval`` names how the interval was made (``"bca"``, or ``"percentile-widened"`` where BCa
    could not hold the value; None without an interval). A thresholded metric also states its
    ``threshold`` and where it came from (``threshold_source``); ``thresholds`` lists each run's
    when several runs (seeds) had their own, ``threshold`` then being their mean.
    """

    value: float
    low: float
    high: float
    interval: str | None = BCA
    threshold: float | None = None
    threshold_source: str | None = None
    thresholds: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, float | str | list | None]:
        """Plain floats for ``metrics.json``; NaN (undefined) becomes ``None``, which JSON can hold.

        Keys: value, low, high, interval; and threshold, threshold_source (and thresholds, one per
        run) for a thresholded metric.
        """
        out: dict = {name: _json_float(getattr(self, name)) for name in ("value", "low", "high")}
        out["interval"] = self.interval
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
            out["threshold_source"] = self.threshold_source
        if self.thresholds is not None:
            out["thresholds"] = [float(t) for t in self.thresholds]
        return out


def estimate_text(estimate: Mapping | None, digits: int = 3) -> str:
    """An estimate as ``metrics.json`` holds it (value, low, high) for a Markdown table or a console
    line: ``0.812 (0.701-0.903)``; the value alone without an interval; ``—`` when undefined."""
    if not estimate or estimate.get("value") is None:
        return "—"
    value = f"{estimate['value']:.{digits}f}"
    if estimate.get("low") is None or estimate.get("high") is None:
        return value
    return f"{value} ({estimate['low']:.{digits}f}-{estimate['high']:.{digits}f})"


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


# ---------------------------------------------------------------------------------------- validation


def _labels(y: object, name: str = "y") -> np.ndarray:
    """0/1 labels as float64 (so weighted sums are one matrix product); anything else is refused."""
    y = np.asarray(y)
    if y.dtype == bool:
        return y.astype(np.float64)
    if y.size and not np.isin(y, (0, 1)).all():
        raise InputError(f"{name} must hold only 0/1 or booleans; found {np.unique(y)[:5].tolist()}")
    return y.astype(np.float64)


def _scores(p: object, shape: tuple[int, ...], name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != shape:
        raise InputError(f"{name} has shape {p.shape} but the labels have shape {shape}")
    if not np.isfinite(p).all():
        raise InputError(f"{name} holds NaN or infinite scores; every sample needs a finite score")
    return p


def _probabilities(p: np.ndarray) -> np.ndarray:
    if p.size and (p.min() < 0 or p.max() > 1):
        raise InputError("Brier score and calibration need probabilities in [0, 1]; got scores outside it")
    return p


def _weight_matrix(weights: object | None, n: int) -> tuple[np.ndarray, bool]:
    """Weights as a ``(B, n)`` matrix, and whether the caller gave one weighting (return a float)."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[-1] != n or w.ndim not in (1, 2):
        raise InputError(f"weights have shape {w.shape}; expected ({n},) or (resamples, {n})")
    return np.atleast_2d(w), w.ndim == 1


def _finish(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is zero (the metric is undefined there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


# ---------------------------------------------------------------------------------------- binary


def _binary_inputs(
    y: object, p: object, weights: object | None, *, probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Checked labels, scores (probabilities if asked), the weight matrix and whether it is one."""
    y = _labels(y)
    p = _scores(p, y.shape)
    w, single = _weight_matrix(weights, y.size)
    return y, _probabilities(p) if probabilities else p, w, single


def _ranked_counts(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true and false positives at each distinct score threshold, highest score first.

    Tied scores form one threshold, exactly as scikit-learn's ``roc_curve`` treats them; a tie
    group absent from a resample adds a zero step, which changes neither AUROC nor AP.
    """
    order = np.argsort(-p, kind="stable")
    sorted_p = p[order]
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_p)), sorted_p.size - 1]
    w_sorted = w[:, order]
    true_pos = np.cumsum(w_sorted * y[order], axis=1)[:, group_ends]
    all_pos = np.cumsum(w_sorted, axis=1)[:, group_ends]
    return true_pos, all_pos - true_pos


def auroc(y: object, p: object, *, weights: object | None = None) -> float | np.ndarray:
    """Area under the ROC curve (trapezoidal, ties count one half); NaN unless both classes occur."""
    y, p, w, single = _binary_inputs(y, p, weights)
    if y.size == 0:
        return _finish(np.full(len(w), np.nan), single)
    tps, fps = _ranked_counts(y, p, w)
    tps = np.concatenate([np.zeros((len(w), 1)), tps], axis=1)
    fps = np.concatenate([np.zeros((len(w), 1)), fps], axis=1)
    area = (np.diff(fps, axis=1) * (tps[:, 1:] + tps[:, :-1]) / 2).sum(axis=1)
    return _finish(_ratio(area, tps[:, -1] * fps[:, -1]), single)


def auprc(y: object, p: object, *, weights: object | None = None) -> float | np.ndarray:
    """Average precision (step-wise area under precision-recall, as scikit-learn); NaN with no positives."""
    y, p, w, single = _binary_inputs(y, p, weights)
    if y.size == 0:
        return _finish(np.full(len(w), np.nan), single)
    tps, fps = _ranked_counts(y, p, w)
    precision = np.nan_to_num(_ratio(tps, tps + fps))
    recall_steps = np.diff(tps, axis=1, prepend=0.0)
    return _finish(_ratio((recall_steps * precision).sum(axis=1), tps[:, -1]), single)


def brier(y: object, p: object, *, weights: object | None = None) -> float | np.ndarray:
    """Mean squared difference between predicted probability and outcome (0 is perfect)."""
    y, p, w, single = _binary_inputs(y, p, weights, probabilities=True)
    return _finish(_ratio(w @ (p - y) ** 2, w.sum(axis=1)), single)


def ece(y: object, p: object, n_bins: int = 10, *, weights: object | None = None) -> float | np.ndarray:
    """Expected calibration error over ``n_bins`` equal-width probability bins.

    Sum over bins of (bin size / n) * |observed rate - mean predicted probability|, which equals
    sum over bins of |sum(y) - sum(p)| / n. A probability of exactly 1 falls in the last bin.
    """
    y, p, w, single = _binary_inputs(y, p, weights, probabilities=True)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    one_hot = np.zeros((y.size, n_bins))
    one_hot[np.arange(y.size), bins] = 1.0
    gap = np.abs(w @ (one_hot * (y - p)[:, None])).sum(axis=1)
    return _finish(_ratio(gap, w.sum(axis=1)), single)


def _f1_from_counts(true_pos: np.ndarray, false_pos: np.ndarray, false_neg: np.ndarray) -> np.ndarray:
    return _ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg)


def f1(y: object, p: object, threshold: float = 0.5, *, weights: object | None = None) -> float | np.ndarray:
    """F1 of the positive class, predicting positive when ``p >= threshold``.

    NaN when there are neither positives nor predicted positives (scikit-learn reports 0 there).
    """
    y, p, w, single = _binary_inputs(y, p, weights)
    predicted = (p >= threshold).astype(np.float64)
    true_pos = w @ (y * predicted)
    return _finish(_f1_from_counts(true_pos, w @ predicted - true_pos, w @ y - true_pos), single)


def best_f1_threshold(y: object, p: object) -> float:
    """The cut that maximises F1 of ``p >= cut`` on ``(y, p)``, placed midway between the score
    just above it and the one just below (ties stay together); 0.5 when ``y`` has no positive."""
    y, p, _, _ = _binary_inputs(y, p, None)
    if not y.any():
        return DEFAULT_THRESHOLD
    order = np.argsort(-p, kind="stable")
    ranked, hits = p[order], y[order]
    true_pos = np.cumsum(hits)
    scores = 2 * true_pos / (np.arange(1, len(p) + 1) + hits.sum())
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # cuts between distinct scores only
    k = last[np.argmax(scores[last])]
    return float((ranked[k] + ranked[k + 1]) / 2) if k + 1 < len(ranked) else float(ranked[k])


def tuned_threshold(y: object | None, p: object | None, where: str = "tuning set") -> tuple[float, str]:
    """A binary model's decision threshold and its source, chosen on its tuning-set predictions.

    The cut maximising F1 there (:func:`best_f1_threshold`), with source ``"<where>, max F1"``; 0.5
    when there are no such predictions or they lack a class, with a source that says so.
    """
    if y is None or p is None or not np.size(y):
        return DEFAULT_THRESHOLD, f"default 0.5: no {where} predictions"
    y = _labels(y)
    if y.all() or not y.any():
        return DEFAULT_THRESHOLD, f"default 0.5: the {where} lacks a class"
    return best_f1_threshold(y, p), f"{where}, max F1"


# ---------------------------------------------------------------------------------------- multi-label


def _label_matrix(Y: object, S: object) -> tuple[np.ndarray, np.ndarray]:
    Y = _labels(Y, "Y")
    if Y.ndim != 2:
        raise InputError(f"multi-label metrics need an (n samples x L labels) matrix Y; got shape {Y.shape}")
    return Y, _scores(S, Y.shape, "S")


def f1_micro(
    Y: object, S: object, threshold: float = 0.5, *, weights: object | None = None
) -> float | np.ndarray:
    """F1 over all (sample, label) decisions pooled, predicting a label when its score >= ``threshold``."""
    Y, S = _label_matrix(Y, S)
    predicted = (threshold <= S).astype(np.float64)
    w, single = _weight_matrix(weights, len(Y))
    true_pos = w @ (Y * predicted).sum(axis=1)
    false_pos = w @ predicted.sum(axis=1) - true_pos
    false_neg = w @ Y.sum(axis=1) - true_pos
    return _finish(_f1_from_counts(true_pos, false_pos, false_neg), single)


def f1_macro(
    Y: object, S: object, threshold: float = 0.5, *, weights: object | None = None
) -> float | np.ndarray:
    """Unweighted mean of per-label F1 over the labels with at least one positive in ``Y``.

    Labels that never occur are skipped rather than scored 0 (scikit-learn's choice), so a rare
    label absent from a small test set does not drag the mean down; NaN if no label occurs.
    """
    Y, S = _label_matrix(Y, S)
    predicted = (threshold <= S).astype(np.float64)
    w, single = _weight_matrix(weights, len(Y))
    true_pos = w @ (Y * predicted)
    positives = w @ Y
    per_label = _f1_from_counts(true_pos, w @ predicted - true_pos, positives - true_pos)
    present = positives > 0
    total = np.where(present, per_label, 0.0).sum(axis=1)
    return _finish(_ratio(total, present.sum(axis=1).astype(np.float64)), single)


def recall_at_k(Y: object, S: object, k: int, *, weights: object | None = None) -> float | np.ndarray:
    """Recall@k as in Claim-PT's diagnosis prediction: |top-k scored labels ∩ true labels| / |true labels|.

    Computed per sample and averaged over the samples with at least one true label; ties at the
    k-th score are broken by label order. NaN if no sample has a true label.
    """
    Y, S = _label_matrix(Y, S)
    if not 1 <= k <= Y.shape[1]:
        raise InputError(f"recall@k needs 1 <= k <= number of labels ({Y.shape[1]}); got k={k}")
    w, single = _weight_matrix(weights, len(Y))
    top_k = np.argsort(-S, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(Y, top_k, axis=1).sum(axis=1)
    n_true = Y.sum(axis=1)
    has_true = (n_true > 0).astype(np.float64)
    per_sample = np.where(n_true > 0, hits / np.maximum(n_true, 1), 0.0)
    return _finish(_ratio(w @ per_sample, w @ has_true), single)


def macro_auroc(Y: object, S: object, *, weights: object | None = None) -> float | np.ndarray:
    """Unweighted mean of per-label AUROC over the labels with both classes present; NaN if none."""
    Y, S = _label_matrix(Y, S)
    w, single = _weight_matrix(weights, len(Y))
    total = np.zeros(len(w))
    defined = np.zeros(len(w))
    for label in range(Y.shape[1]):
        values = auroc(Y[:, label], S[:, label], weights=w)
        total += np.nan_to_num(values)
        defined += ~np.isnan(values)
    return _finish(_ratio(total, defined), single)


# ---------------------------------------------------------------------------------------- bootstrap


def _takes_weights(metric: Metric) -> bool:
    try:
        return "weights" in inspect.signature(metric).parameters
    except (TypeError, ValueError):
        return False


def _evaluate(metric: Metric, y: np.ndarray, p: np.ndarray, rows: Callable, counts: np.ndarray):
    """The metric on each resample: by count weights when it takes them, else one call per resample
    (``rows()`` lists each resample's row indices)."""
    if _takes_weights(metric):
        return np.asarray(metric(y, p, weights=counts), dtype=np.float64)
    return np.array([metric(y[r], p[r]) for r in rows()], dtype=np.float64)


def _units(n: int, groups: np.ndarray | None) -> tuple[int, np.ndarray]:
    """The units drawn (rows, or groups such as patients) and the unit of each row."""
    return (n, np.arange(n)) if groups is None else (int(groups.max()) + 1, groups)


def _rows_of(counts: np.ndarray) -> Callable[[], list[np.ndarray]]:
    n = counts.shape[1]
    return lambda: [np.repeat(np.arange(n), c.astype(np.int64)) for c in counts]


def _resample_counts(
    rng: np.random.Generator, size: int, n: int, groups: np.ndarray | None
) -> tuple[Callable, np.ndarray]:
    """``size`` resamples as (row lists, made on demand; count weights per row): rows drawn with
    replacement, or with ``groups`` whole groups drawn (every row of a drawn patient comes along)."""
    units, unit_of_row = _units(n, groups)
    drawn = rng.integers(0, units, size=(size, units))
    offsets = (drawn + units * np.arange(size)[:, None]).ravel()
    unit_counts = np.bincount(offsets, minlength=size * units).reshape(size, units)
    counts = unit_counts[:, unit_of_row].astype(np.float64)
    return ((lambda: drawn) if groups is None else _rows_of(counts)), counts


def _bootstrap_batches(n: int, n_bootstrap: int, seed: int, groups: np.ndarray | None):
    """The ``n_bootstrap`` resamples of the test set, in chunks that bound memory."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, chunk):
        yield _resample_counts(rng, min(chunk, n_bootstrap - start), n, groups)


def _jackknife_batches(n: int, seed: int, groups: np.ndarray | None):
    """The jackknife's data sets as 0/1 weights: each leaves out one unit (row or group), or, with
    more than ``JACKKNIFE_BLOCKS`` units, one of that many random blocks of units."""
    units, unit_of_row = _units(n, groups)
    if units <= JACKKNIFE_BLOCKS:
        block_of_unit = np.arange(units)
    else:  # a separate stream, so the bootstrap draws stay those of the seed
        block_of_unit = np.random.default_rng([seed, 1]).permutation(units) % JACKKNIFE_BLOCKS
    block_of_row = block_of_unit[unit_of_row]
    blocks = int(block_of_unit.max()) + 1
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, blocks, chunk):
        left_out = np.arange(start, min(blocks, start + chunk))
        counts = (block_of_row[None, :] != left_out[:, None]).astype(np.float64)
        yield _rows_of(counts), counts


def _metric_for(metric: Metric | tuple[Metric, ...], run: int) -> Metric:
    """A metric set's entry is one metric, or a tuple with one per run (e.g. each seed's threshold)."""
    return metric[run] if isinstance(metric, tuple) else metric


def _values_on(
    metrics: dict[str, Metric | tuple[Metric, ...]], y: np.ndarray, runs: Sequence[np.ndarray], batches
) -> dict[str, np.ndarray]:
    """Each metric, averaged over runs, on every weighting of the test set that ``batches`` yields."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for rows, counts in batches:
        for name, metric in metrics.items():
            per_run = [_evaluate(_metric_for(metric, i), y, p, rows, counts) for i, p in enumerate(runs)]
            values[name].append(np.mean(per_run, axis=0))
    return {name: np.concatenate([np.empty(0), *chunks]) for name, chunks in values.items()}


def _resample_values(
    metrics: dict[str, Metric | tuple[Metric, ...]],
    y: np.ndarray,
    runs: Sequence[np.ndarray],
    n_bootstrap: int,
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each metric, averaged over runs, on the same ``n_bootstrap`` resamples of the test set."""
    return _values_on(metrics, y, runs, _bootstrap_batches(len(y), n_bootstrap, seed, groups))


def _acceleration(jackknife: np.ndarray) -> float:
    """BCa's acceleration: the skewness of the jackknife values, sum(d^3) / (6 sum(d^2)^1.5)."""
    values = jackknife[~np.isnan(jackknife)]
    if len(values) < 2:
        return 0.0
    d = values.mean() - values
    spread = float((d**2).sum())
    return float((d**3).sum()) / (6 * spread**1.5) if spread > 0 else 0.0


_NORMAL = NormalDist()


def _interval(point: float, samples: np.ndarray, confidence: float, jackknife: np.ndarray) -> Estimate:
    """BCa interval over the defined resamples, always holding ``point`` (else the percentile interval
    widened to reach it); NaN bounds when fewer than half of the resamples are defined."""
    valid = samples[~np.isnan(samples)]
    if math.isnan(point) or len(valid) < max(1, len(samples) / 2):
        return Estimate(point, math.nan, math.nan, None)
    alpha = (1 - confidence) / 2
    below = (np.count_nonzero(valid < point) + 0.5 * np.count_nonzero(valid == point)) / len(valid)
    if 0 < below < 1:
        z0 = _NORMAL.inv_cdf(below)
        a = _acceleration(jackknife)
        levels = []
        for z in (_NORMAL.inv_cdf(alpha), _NORMAL.inv_cdf(1 - alpha)):
            shrink = 1 - a * (z0 + z)
            levels.append(_NORMAL.cdf(z0 + (z0 + z) / shrink) if shrink > 0 else math.nan)
        if not any(math.isnan(level) for level in levels) and levels[0] <= levels[1]:
            low, high = np.quantile(valid, levels)
            if low <= point <= high:
                return Estimate(point, float(low), float(high), BCA)
    low, high = np.quantile(valid, [alpha, 1 - alpha])
    return Estimate(point, float(min(low, point)), float(max(high, point)), PERCENTILE_WIDENED)


def _check_runs(y: object, runs: Sequence[object]) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(y)
    if not len(runs):
        raise InputError("no runs given: pass at least one array of predictions")
    runs = [np.asarray(p) for p in runs]
    for i, p in enumerate(runs):
        if p.shape != y.shape:
            raise InputError(f"run {i} has predictions of shape {p.shape}; the labels have shape {y.shape}")
    if y.ndim not in (1, 2) or len(y) == 0:
        raise InputError(f"labels must be a non-empty vector or (n x L) matrix; got shape {y.shape}")
    return y, runs


def _bootstrap_many(
    metrics: dict[str, Metric | tuple[Metric, ...]],
    y: object,
    runs: Sequence[object],
    *,
    n_bootstrap: int,
    confidence: float,
    seed: int,
    groups: object | None = None,
) -> dict[str, Estimate]:
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1; got {confidence}")
    y, runs = _check_runs(y, runs)
    if groups is not None:  # e.g. subject ids: resample patients, not their label rows
        groups = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        if len(groups) != len(y):
            raise InputError(f"groups has {len(groups)} values for {len(y)} samples")
    for name, metric in metrics.items():
        if isinstance(metric, tuple) and len(metric) != len(runs):
            raise InputError(f"{name}: {len(metric)} thresholds for {len(runs)} runs; give one per run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN runs are NaN, as intended
        points = {
            name: float(np.mean([_metric_for(metric, i)(y, p) for i, p in enumerate(runs)]))
            for name, metric in metrics.items()
        }
        samples = _resample_values(metrics, y, runs, n_bootstrap, seed, groups)
        jackknife = _values_on(metrics, y, runs, _jackknife_batches(len(y), seed, groups))
    return {name: _interval(points[name], samples[name], confidence, jackknife[name]) for name in metrics}


def bootstrap(
    metric: Metric,
    y: object,
    p: object,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: object | None = None,
) -> Estimate:
    """``metric`` on the full data with a BCa bootstrap interval over resampled rows (module docs).

    Works for binary ``(y, p)`` vectors and multi-label ``(Y, S)`` matrices alike (rows are the
    samples). ``groups`` (e.g. subject ids) resamples whole groups instead of rows, so a patient
    with several label rows is drawn, or left out, with all of them. Resamples where the metric is
    undefined are dropped; with fewer than half defined the bounds are NaN. Any ``metric(y, p)``
    works; one that accepts ``weights`` (all built-ins, and ``functools.partial`` of them) is
    evaluated on all resamples at once.
    """
    return bootstrap_runs(
        metric, y, [p], n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, groups=groups
    )


def bootstrap_runs(
    metric: Metric,
    y: object,
    runs: Sequence[object],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: object | None = None,
) -> Estimate:
    """The metric averaged over several runs (e.g. seeds) scored on the SAME test set, with its CI.

    Each resample applies the same rows to every run and averages the metric across runs, so the
    interval reflects test-set sampling of the seed-averaged model, which is what a label-efficiency
    curve plots. The point value is the mean over runs on the full data; BCa's jackknife averages
    over runs the same way.
    """
    estimates = _bootstrap_many(
        {"metric": metric}, y, runs, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, groups=groups
    )
    return estimates["metric"]


# ---------------------------------------------------------------------------------------- metric sets


def _run_thresholds(threshold: float | Sequence[float], n_runs: int) -> tuple[float, ...]:
    """One threshold per run: a single number applies to every run."""
    if np.ndim(threshold) == 0:
        return (float(threshold),) * n_runs
    thresholds = tuple(float(t) for t in threshold)
    if len(thresholds) != n_runs:
        raise InputError(f"{len(thresholds)} thresholds for {n_runs} runs; give one per run, or one number")
    return thresholds


def _with_threshold(
    estimate: Estimate, thresholds: tuple[float, ...], source: str | None, per_run: bool
) -> Estimate:
    return replace(
        estimate,
        threshold=float(np.mean(thresholds)),
        threshold_source=source or FIXED_THRESHOLD,
        thresholds=thresholds if per_run else None,
    )


def _binary_f1(threshold: float) -> Metric:
    return lambda y, p, *, weights=None: f1(y, p, threshold=threshold, weights=weights)


def _binary_set(thresholds: tuple[float, ...]) -> dict[str, Metric | tuple[Metric, ...]]:
    return {
        "auroc": auroc,
        "auprc": auprc,
        "brier": brier,
        "ece": ece,
        "f1": tuple(_binary_f1(t) for t in thresholds),
    }


def binary_metrics(
    y: object,
    p: object,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    threshold_source: str | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: object | None = None,
) -> dict[str, Estimate]:
    """AUROC, AUPRC, Brier, ECE and F1 with bootstrap CIs, all computed on the same resamples.

    F1 predicts positive at ``p >= threshold`` and states it with ``threshold_source`` (say where the
    threshold came from, e.g. :func:`tuned_threshold`'s source; the default reads "fixed, not tuned").
    """
    return binary_metrics_runs(
        y,
        [p],
        threshold=threshold,
        threshold_source=threshold_source,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )


def binary_metrics_runs(
    y: object,
    runs: Sequence[object],
    *,
    threshold: float | Sequence[float] = DEFAULT_THRESHOLD,
    threshold_source: str | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: object | None = None,
) -> dict[str, Estimate]:
    """:func:`binary_metrics` of the run-averaged model, as :func:`bootstrap_runs` defines it.

    ``threshold`` is one number, or one per run (each seed's model tuned its own): F1 is then the
    mean over runs of each run's F1 at its own threshold, and the estimate lists them.
    """
    thresholds = _run_thresholds(threshold, len(runs))
    estimates = _bootstrap_many(
        _binary_set(thresholds),
        y,
        runs,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )
    per_run = np.ndim(threshold) > 0 and len(runs) > 1
    estimates["f1"] = _with_threshold(estimates["f1"], thresholds, threshold_source, per_run)
    return estimates


def _multilabel_set(n_labels: int, ks: Sequence[int], threshold: float) -> dict[str, Metric]:
    def recall(k: int) -> Metric:
        return lambda Y, S, *, weights=None: recall_at_k(Y, S, k, weights=weights)

    def thresholded(metric: Metric) -> Metric:
        return lambda Y, S, *, weights=None: metric(Y, S, threshold=threshold, weights=weights)

    metrics: dict[str, Metric] = {f"recall@{k}": recall(k) for k in ks if k <= n_labels}
    metrics["f1_micro"] = thresholded(f1_micro)
    metrics["f1_macro"] = thresholded(f1_macro)
    metrics["macro_auroc"] = macro_auroc
    return metrics


def multilabel_metrics(
    Y: object,
    S: object,
    *,
    ks: Sequence[int] = (5, 10, 30),
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: object | None = None,
) -> dict[str, Estimate]:
    """Recall@k (for each k no larger than the label count), micro/macro F1 and macro AUROC, with CIs."""
    return multilabel_metrics_runs(
        Y,
        [S],
        ks=ks,
        threshold=threshold,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        groups=groups,
    )


def multilabel_metrics_runs(
    Y: object,
    runs: Sequence[object],
    *,
    ks: Sequence[int] = (5, 10, 30),
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: object | None = None,
) -> dict[str, Estimate]:
    """:func:`multilabel_metrics` of the run-averaged model, as :func:`bootstrap_runs` defines it."""
    n_labels = np.shape(Y)[1] if np.ndim(Y) == 2 else 0
    metrics = _multilabel_set(n_labels, ks, threshold)
    estimates = _bootstrap_many(
        metrics, Y, runs, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed, groups=groups
    )
    for name in ("f1_micro", "f1_macro"):
        estimates[name] = _with_threshold(estimates[name], (float(threshold),), None, False)
    return estimates


# ---------------------------------------------------------------------------------------- descriptions

METRIC_INFO: dict[str, dict] = {
    "auroc": {
        "label": "AUROC",
        "higher_is_better": True,
        "description": "How often the model ranks a random patient who has the outcome above one who does "
        "not (0.5 is chance, 1 is perfect).",
    },
    "auprc": {
        "label": "AUPRC",
        "higher_is_better": True,
        "description": "How precise the model's alerts are across all alert thresholds; chance level "
        "equals the outcome's prevalence, so it matters most for rare outcomes.",
    },
    "brier": {
        "label": "Brier score",
        "higher_is_better": False,
        "description": "The average squared gap between the predicted risk and what happened (0 is perfect).",
    },
    "ece": {
        "label": "ECE",
        "higher_is_better": False,
        "description": "How far predicted risks are from observed rates in groups of similar risk; "
        "0 means a predicted 20% risk comes true about 20% of the time.",
    },
    "f1": {
        "label": "F1",
        "higher_is_better": True,
        "description": "The balance of sensitivity and positive predictive value when patients above the "
        "risk threshold are flagged.",
    },
    "f1_micro": {
        "label": "Micro-F1",
        "higher_is_better": True,
        "description": "F1 over all patient-diagnosis decisions pooled, so common diagnoses weigh most.",
    },
    "f1_macro": {
        "label": "Macro-F1",
        "higher_is_better": True,
        "description": "F1 averaged over diagnoses that occur in the test set, so rare diagnoses count "
        "as much as common ones.",
    },
    "macro_auroc": {
        "label": "Macro-AUROC",
        "higher_is_better": True,
        "description": "AUROC averaged over diagnoses that have both patients with and without them.",
    },
}


def metric_info(key: str) -> dict:
    """The description of a metric key, including any ``recall@k``; unknown keys get a plain label."""
    if key in METRIC_INFO:
        return METRIC_INFO[key]
    if key.startswith("recall@") and key[len("recall@") :].isdigit():
        k = key[len("recall@") :]
        return {
            "label": f"Recall@{k}",
            "higher_is_better": True,
            "description": f"The share of the next visit's diagnosis categories found among the "
            f"model's top {k} guesses, averaged over patients.",
        }
    return {"label": key, "higher_is_better": True, "description": ""}


METRIC_INFO.update({f"recall@{k}": metric_info(f"recall@{k}") for k in (5, 10, 20, 30)})
