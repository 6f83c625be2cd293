"""The report's figures, drawn with matplotlib and returned as inline SVG text.

Figures are built on ``matplotlib.figure.Figure`` directly, so no pyplot state or GUI backend is
touched (safe in a headless job or a notebook). Each SVG is cleaned so that several can live in
one HTML page: no XML prolog, no namespace URLs (an HTML parser does not need them, and the page
must contain no web addresses), no ``<g id>`` names that would repeat from figure to figure, and
a per-figure salt for the ids that the SVG does reference.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

# Okabe & Ito's colour-blind-safe palette, without its yellow (too faint on white paper).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
# Known methods keep one colour in every report, so readers learn "blue is pre-trained".
KNOWN_ORDER = ("pretrained", "cold_start", "logistic_regression", "gradient_boosting", "gru")
# A second cue besides colour, for greyscale print-outs.
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# Loss curves are not per method, so they use greys: blue there would wrongly suggest "pre-trained".
LOSS_GREYS = ("#222222", "#777777", "#aaaaaa")
MAX_CURVE_POINTS = 1000  # ROC points kept per method: enough for the eye, keeps the page small


@dataclass(frozen=True)
class Style:
    """How one method looks in every figure and in the table's swatch."""

    color: str
    linestyle: str | tuple
    marker: str


def method_styles(methods: Sequence[str]) -> dict[str, Style]:
    """One style per method, stable across figures: known methods first, in a fixed order."""
    known = [m for m in KNOWN_ORDER if m in methods]
    others = sorted({m for m in methods if m not in KNOWN_ORDER})
    ordered = [*known, *others]
    styles = {}
    for method in ordered:
        slot = KNOWN_ORDER.index(method) if method in KNOWN_ORDER else len(KNOWN_ORDER) + others.index(method)
        turn = slot // len(PALETTE)  # past the palette, colours repeat with another line and marker
        styles[method] = Style(
            PALETTE[slot % len(PALETTE)],
            LINESTYLES[(slot + turn) % len(LINESTYLES)],
            MARKERS[(slot + 2 * turn) % len(MARKERS)],
        )
    return styles


def ordered_styles(methods: Sequence[str]) -> dict[str, Style]:
    """One style per method in the order given (the first gets the palette's first colour)."""
    return {
        method: Style(PALETTE[i % len(PALETTE)], LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
        for i, method in enumerate(methods)
    }


def to_svg(fig: Figure, salt: str) -> str:
    """The figure as SVG markup ready to paste into HTML (see the module docstring for why)."""
    buffer = io.StringIO()
    # Text stays text (smaller, selectable) and ids are deterministic per figure.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        metadata = {"Date": None, "Creator": None, "Format": None, "Type": None}
        fig.savefig(buffer, format="svg", metadata=metadata, bbox_inches="tight")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = re.sub(r'<g id="[^"]*"', "<g", svg)
    svg = svg.replace("<svg ", '<svg role="img" ', 1)
    return svg


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _tidy(ax: Axes) -> None:
    """Plain axes for print: no top/right spines, light grid."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


# ----------------------------------------------------------------------------- label efficiency


def efficiency_svg(
    points: Sequence[Mapping],
    metric_names: Sequence[str],
    metric_labels: Mapping[str, str],
    styles: Mapping[str, Style],
    method_labels: Mapping[str, str],
) -> str:
    """One panel per metric: value against labelled training patients, CI band, per-seed dots."""
    columns = min(len(metric_names), 3)
    rows = -(-len(metric_names) // columns)
    fig = _new_figure(4.2 * columns, 3.1 * rows + 0.4)
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    axes = grid[: len(metric_names)]
    for unused in grid[len(metric_names) :]:
        unused.set_visible(False)
    ticks = _fraction_ticks(points)
    for ax, metric in zip(axes, metric_names, strict=True):
        for method, style in styles.items():
            _efficiency_line(ax, points, method, metric, style, method_labels.get(method, method))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([n for n, _ in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([label for _, label in ticks], fontsize=8)
        ax.set_xlabel("labelled training patients (share of training set)")
        ax.set_ylabel(metric_labels.get(metric, metric))
        _tidy(ax)
    _figure_legend(fig, axes)
    return to_svg(fig, "efficiency")


def probe_svg(
    curves: Sequence[Mapping], styles: Mapping[str, Style], method_labels: Mapping[str, str]
) -> str:
    """ECG probes: one panel per label, each method's metric against labelled training patients."""
    labels = list(dict.fromkeys(c["label"] for c in curves))
    columns = min(len(labels), 3)
    rows = -(-len(labels) // columns)
    fig = _new_figure(max(4.2 * columns, 7.0), 3.1 * rows + 0.6)  # wide enough for the legend
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    for unused in grid[len(labels) :]:
        unused.set_visible(False)
    for ax, label in zip(grid, labels, strict=False):
        of_label = [c for c in curves if c["label"] == label]
        points = [
            {"method": c["method"], "n_train": p.get("n_train_patients"), "metrics": {label: p}}
            for c in of_label
            for p in c["points"]
        ]
        for method, style in styles.items():
            _efficiency_line(ax, points, method, label, style, method_labels.get(method, method))
        sizes = sorted({p["n_train"] for p in points if p["n_train"]})
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{n:,}" for n in sizes], fontsize=8)
        ax.set_xlabel("labelled training patients")
        metric = next((p.get("metric") for c in of_label for p in c["points"] if p.get("metric")), "")
        ax.set_ylabel("AUROC" if metric == "auroc" else "R²" if metric == "r2" else metric)
        ax.set_title(label, fontsize=10)
        _tidy(ax)
    _figure_legend(fig, grid[: len(labels)])
    return to_svg(fig, "probes")


def _efficiency_line(
    ax: Axes, points: Sequence[Mapping], method: str, metric: str, style: Style, label: str
) -> None:
    rows = sorted(
        (p for p in points if p.get("method") == method and _estimate(p, metric) is not None),
        key=lambda p: p.get("n_train") or 0,
    )
    if not rows:
        return
    x = np.array([float(p["n_train"]) for p in rows])
    est = [_estimate(p, metric) for p in rows]
    value = np.array([e.get("value") for e in est], dtype=float)
    low = np.array([_or_nan(e.get("low")) for e in est], dtype=float)
    high = np.array([_or_nan(e.get("high")) for e in est], dtype=float)
    ax.plot(x, value, color=style.color, linestyle=style.linestyle, marker=style.marker, ms=4, label=label)
    ax.fill_between(x, low, high, color=style.color, alpha=0.15, linewidth=0)
    for xi, e in zip(x, est, strict=True):
        seeds = [v for v in e.get("per_seed") or [] if v is not None]
        ax.scatter([xi] * len(seeds), seeds, s=9, color=style.color, alpha=0.35, linewidths=0)


def _estimate(point: Mapping, metric: str) -> Mapping | None:
    """A point's estimate for ``metric`` when it has a value and a training size to plot at."""
    est = (point.get("metrics") or {}).get(metric)
    if not isinstance(est, Mapping) or est.get("value") is None or not point.get("n_train"):
        return None
    return est


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _fraction_ticks(points: Sequence[Mapping]) -> list[tuple[float, str]]:
    """A tick per fraction at its (median) training size, labelled "81 (10%)"."""
    sizes: dict[float, list[float]] = {}
    for p in points:
        if p.get("fraction") is not None and p.get("n_train"):
            sizes.setdefault(float(p["fraction"]), []).append(float(p["n_train"]))
    ticks = []
    for fraction in sorted(sizes):
        n = float(np.median(sizes[fraction]))
        ticks.append(
            (n, f"{n:,.0f}\n({fraction:.0%})" if fraction >= 0.01 else f"{n:,.0f}\n({fraction:.1%})")
        )
    return ticks


def _figure_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend below all panels, listing each method once."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncols=min(len(seen), 3),
            frameon=False,
            fontsize=9,
        )


# ----------------------------------------------------------------------------- predictions


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-p, kind="stable")
    y_sorted, p_sorted = y[order].astype(float), p[order]
    # The last index of each run of tied scores: ties move FPR and TPR together, as a diagonal step.
    last_of_tie = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    fpr = np.r_[0.0, fp / max(fp[-1], 1)]
    tpr = np.r_[0.0, tp / max(tp[-1], 1)]
    return fpr, tpr


def auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve, or None when the outcome has a single class."""
    if y.all() or not y.any():
        return None
    fpr, tpr = roc_points(y, p)
    return float(np.trapezoid(tpr, fpr))


def roc_svg(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    styles: Mapping[str, Style],
    method_labels: Mapping[str, str],
) -> str:
    """ROC curves, one per method, AUROC in the legend, chance diagonal for reference."""
    fig = _new_figure(4.4, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    for method, (y, p) in predictions.items():
        area = auroc(y, p)
        if area is None:
            continue
        fpr, tpr = _thin(*roc_points(y, p))
        style = styles[method]
        label = f"{method_labels.get(method, method)} (AUROC {area:.2f})"
        ax.plot(fpr, tpr, color=style.color, linestyle=style.linestyle, linewidth=1.6, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("1 \u2212 specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    _tidy(ax)
    return to_svg(fig, "roc")


def _thin(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_CURVE_POINTS points, ends kept: a 50,000-patient ROC need not weigh megabytes."""
    if len(fpr) <= MAX_CURVE_POINTS:
        return fpr, tpr
    keep = np.unique(np.linspace(0, len(fpr) - 1, MAX_CURVE_POINTS).round().astype(int))
    return fpr[keep], tpr[keep]


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pl.DataFrame:
    """Per equal-width probability bin: mean predicted risk, observed rate, and patient count."""
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)  # p == 1.0 belongs to the last bin
    frame = pl.DataFrame({"bin": bins, "predicted": p, "observed": y.astype(float)})
    return (
        frame.group_by("bin")
        .agg(pl.col("predicted").mean(), pl.col("observed").mean(), pl.len().alias("count"))
        .sort("bin")
    )


def calibration_svg(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    styles: Mapping[str, Style],
    method_labels: Mapping[str, str],
    prevalence: float | None,
) -> str:
    """Reliability diagram: observed rate against mean predicted risk per bin; area = patients."""
    fig = _new_figure(4.4, 4.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="perfect calibration")
    if prevalence is not None:
        ax.axhline(prevalence, color="#bbbbbb", linewidth=0.8, linestyle="--", label="prevalence")
    total = max((len(y) for y, _ in predictions.values()), default=1)
    for method, (y, p) in predictions.items():
        table = calibration_bins(y, p)
        style = styles[method]
        ax.plot(
            table["predicted"],
            table["observed"],
            color=style.color,
            linestyle=style.linestyle,
            linewidth=1.2,
            label=method_labels.get(method, method),
        )
        sizes = 12 + 400 * table["count"].to_numpy() / total
        ax.scatter(
            table["predicted"],
            table["observed"],
            s=sizes,
            color=style.color,
            alpha=0.55,
            marker=style.marker,
            linewidths=0,
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("predicted risk (mean in bin)")
    ax.set_ylabel("observed rate of the outcome")
    # Below the axes: miscalibrated curves can run through any corner of the square.
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    _tidy(ax)
    return to_svg(fig, "calibration")


# ----------------------------------------------------------------------------- training logs


def loss_svg(curves: Sequence[tuple[str, pl.DataFrame]]) -> str:
    """One panel per training log: each loss column against epoch (or step, for one-epoch runs)."""
    columns = min(len(curves), 3)
    rows = -(-len(curves) // columns)
    fig = _new_figure(4.0 * columns, 2.9 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, frame) in zip(axes, curves, strict=False):
        _loss_panel(ax, title, frame)
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    return to_svg(fig, "loss")


def _loss_panel(ax: Axes, title: str, frame: pl.DataFrame) -> None:
    x_name = "epoch" if "epoch" in frame.columns and frame["epoch"].drop_nulls().n_unique() > 1 else "step"
    for index, column in enumerate(loss_columns(frame.columns)):
        points = frame.select(x_name, column).drop_nulls().drop_nans()
        if x_name == "epoch":
            # Step-level losses become one mean per epoch, so train and val share an axis.
            points = points.group_by("epoch").agg(pl.col(column).mean()).sort("epoch")
        label = column.removesuffix("_epoch").removesuffix("_step")
        ax.plot(
            points[x_name],
            points[column],
            color=LOSS_GREYS[index % len(LOSS_GREYS)],
            linestyle=LINESTYLES[index % len(LINESTYLES)],
            marker=".",
            label=label,
        )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_name)
    ax.set_ylabel("loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    _tidy(ax)


def loss_columns(columns: Sequence[str]) -> list[str]:
    """Loss columns worth drawing: ``*loss`` and ``*loss_epoch``; ``*loss_step`` only alone.

    Lightning names a value logged both per step and per epoch ``x_step`` and ``x_epoch``; the
    epoch one is the smoothed summary, so the noisy step series is dropped when both exist.
    """
    chosen = [c for c in columns if c.endswith(("loss", "loss_epoch"))]
    chosen += [
        c for c in columns if c.endswith("loss_step") and c.removesuffix("_step") + "_epoch" not in columns
    ]
    return chosen
