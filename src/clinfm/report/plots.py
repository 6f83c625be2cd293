"""The report's figures, drawn with matplotlib and returned as inline SVG text.

Figures are built on ``matplotlib.figure.Figure`` directly, so no pyplot state or GUI backend is
touched (safe in a headless job or a notebook). Each SVG is cleaned so that several can live in
one HTML page: no XML prolog, no namespace URLs (an HTML parser does not need them, and the page
must contain no web addresses), no ``<g id>`` names that would repeat from figure to figure, and
a per-figure salt for the ids that the SVG does reference.

Every figure tells methods apart by colour and by marker or dash (for greyscale print-outs and
colour-blind readers), names them as readers know them (``display_name``), keeps its legend
outside the axes (so no curve is ever hidden), and is the empty string when it has nothing to
draw, so that ``if svg:`` decides whether a figure goes on the page.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import polars as pl
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

# Okabe & Ito's colour-blind-safe palette without its yellow (too faint on white paper), then five of
# Paul Tol's colours (indigo, wine, olive, green, purple), chosen as the five that stay furthest from
# the first seven and each other: at least 11 CIELAB units apart for normal, deuteranope, protanope
# and tritanope vision (Machado et al. 2009 simulation), against 16 for the seven alone.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#000000",
    "#332288",
    "#882255",
    "#999933",
    "#117733",
    "#AA3377",
)
# Known methods keep one colour in every report, so readers learn "blue is pre-trained".
KNOWN_ORDER = ("pretrained", "cold_start", "logistic_regression", "gradient_boosting", "gru")
# A second cue besides colour, for greyscale print-outs: one marker per palette colour.
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
# Loss curves are not per method, so they use greys: blue there would wrongly suggest "pre-trained".
LOSS_GREYS = ("#222222", "#777777", "#aaaaaa")
# Other groups' methods, drawn faintly behind a small multiple's own methods for reference.
REFERENCE_GREY = "#c8c8c8"
MAX_CURVE_POINTS = 1000  # ROC points kept per method: enough for the eye, keeps the page small
# More CI bands than this in one panel overlap into a smear, so the methods get a panel per group.
MAX_BANDED_METHODS = 4

# Run names end in "-f<share of labels>-s<seed>" (claims recipes, cross-site runs) or in "-s<seed>".
RUN_SUFFIX = re.compile(r"(?:-f(?P<fraction>\d+(?:\.\d+)?(?:e[+-]?\d+)?))?-s(?P<seed>\d+)$")
# Words in ids that readers know as capitals.
ACRONYMS = frozenset(
    {"auroc", "bert", "bilstm", "bio", "clocs", "cnn", "crf", "ecg", "ehr", "gru", "hmm", "icd", "llm", "lr"}
    | {"lstm", "meds", "mi", "mlm", "mlp", "mltm", "ner", "pca", "pclr", "svm", "umls"}
)
SPELLINGS = {"pretrained": "pre-trained", "pretrain": "pre-train", "finetuned": "fine-tuned"}


@dataclass(frozen=True)
class Style:
    """How one method looks in every figure and in the table's swatch."""

    color: str
    linestyle: str | tuple
    marker: str


def method_styles(methods: Sequence[str]) -> dict[str, Style]:
    """One style per method, stable across figures: known methods first, in a fixed order.

    Known methods keep their KNOWN_ORDER slot; the others, sorted, take the slots after those, then
    the slots of known methods absent from this run, so up to len(PALETTE) methods never share a colour.
    """
    known = [m for m in KNOWN_ORDER if m in methods]
    others = sorted({m for m in methods if m not in KNOWN_ORDER})
    absent = [KNOWN_ORDER.index(m) for m in KNOWN_ORDER if m not in methods]
    free = [*range(len(KNOWN_ORDER), len(PALETTE)), *absent]
    free += range(len(PALETTE), len(PALETTE) + len(others))  # past the palette: colours repeat
    slots = {m: KNOWN_ORDER.index(m) for m in known} | dict(zip(others, free, strict=False))
    return {method: _style(slots[method]) for method in [*known, *others]}


def ordered_styles(methods: Sequence[str]) -> dict[str, Style]:
    """One style per method in the order given (the first gets the palette's first colour)."""
    return {method: _style(slot) for slot, method in enumerate(methods)}


def _style(slot: int) -> Style:
    """The style in ``slot``. Past the palette, colours repeat with another marker and dash."""
    turn = slot // len(PALETTE)
    return Style(
        PALETTE[slot % len(PALETTE)],
        LINESTYLES[(slot + turn) % len(LINESTYLES)],
        MARKERS[(slot + turn) % len(MARKERS)],
    )


# ----------------------------------------------------------------------------- names


def display_name(method: str, labels: Mapping[str, str] | None = None) -> str:
    """A method's name as readers know it: from ``labels`` when given, else its id in words.

    ``no_mi`` -> "No MI", ``logistic_regression`` -> "Logistic regression", ``pretrained-f1-s0``
    -> "Pre-trained" (a run's share-of-labels and seed suffix is dropped).
    """
    labels = labels or {}
    base = RUN_SUFFIX.sub("", method) or method
    for key in (method, base):
        if key in labels:
            return labels[key]
    words = [_word(word) for word in re.split(r"[_\-\s]+", base) if word]
    if not words:
        return method
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def run_title(name: str, labels: Mapping[str, str] | None = None) -> str:
    """A training run's name in words, without the cohort in front.

    ``cohort-pretrained-f0.25-s1`` -> "Pre-trained, 25% of labels, seed 1".
    """
    labels = labels or {}
    head, bracket, rest = name.partition(" (")  # the report's " (version_N)" for a repeated log folder
    if head in labels:
        return labels[head] + bracket + rest
    match = RUN_SUFFIX.search(head)
    title = display_name(_method_of(head[: match.start()] if match else head, labels), labels)
    if match and match["fraction"]:
        title += f", {100 * float(match['fraction']):g}% of labels"
    if match:
        title += f", seed {match['seed']}"
    return title + bracket + rest


def _method_of(run: str, labels: Mapping[str, str]) -> str:
    """The method a run is named after, without the cohort in front: "cohort-gru" -> "gru"."""
    known = sorted({*labels, *KNOWN_ORDER}, key=len, reverse=True)
    return next((m for m in known if run == m or run.endswith("-" + m)), run)


def _word(word: str) -> str:
    if word.lower() in ACRONYMS:
        return word.upper()
    if word != word.lower() or any(c.isdigit() for c in word):
        return word  # already cased or a code ("BioBERT", "f1"): the author knows best
    return SPELLINGS.get(word, word)


def _names(method_labels: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> dict[str, str]:
    """The display names a figure was given, by either keyword (``labels`` wins)."""
    return {**(method_labels or {}), **(labels or {})}


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


def _legend_below(
    fig: FigureBase,
    axes: Sequence[Axes],
    columns: int,
    extra: Sequence[tuple[Artist, str]] = (),
    rows: int = 0,
) -> None:
    """One legend under the panels, each curve once: outside the axes, so it never covers a curve.

    ``rows`` pads the legend with blank entries, so side-by-side legends take the same height and
    the panels above them line up.
    """
    seen: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    entries = [*((label, handle) for label, handle in seen.items()), *((label, h) for h, label in extra)]
    if not entries:
        return
    blank = Line2D([], [], linestyle="none")
    entries += [(" ", blank)] * (rows * columns - len(entries))
    fig.legend(
        [handle for _, handle in entries],
        [label for label, _ in entries],
        loc="outside lower center",
        ncols=max(min(len(entries), columns), 1),
        frameon=False,
        fontsize=8,
    )


def _legend_columns(width: float, labels: Sequence[str]) -> int:
    """As many legend columns as fit the figure's width (about 0.065 inch per character at 8 points)."""
    longest = max((len(label) for label in labels), default=1)
    return max(1, int(width // (0.065 * longest + 0.6)))


# ----------------------------------------------------------------------------- label efficiency


@dataclass(frozen=True)
class _Facet:
    """One panel's content: a metric (efficiency) or an ECG label (probes) against training size."""

    points: Sequence[Mapping]  # {"method", "n_train", "metrics": {metric: estimate}}
    metric: str
    ylabel: str
    title: str
    ticks: list[tuple[float, str]]
    xlabel: str


def efficiency_svg(
    points: Sequence[Mapping],
    metric_names: Sequence[str],
    metric_labels: Mapping[str, str],
    styles: Mapping[str, Style],
    method_labels: Mapping[str, str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    small_multiples: bool | None = None,
) -> str:
    """One panel per metric: value against labelled training patients, CI band, per-seed dots.

    With more than MAX_BANDED_METHODS methods (or given ``groups``; ``small_multiples`` forces the
    choice) each metric gets one panel per group of methods instead; see ``method_groups``.
    """
    ticks = _fraction_ticks(points)
    xlabel = "labelled training patients (share of training set)"
    facets = [
        _Facet(points, metric, ylabel=metric_labels.get(metric, metric), title="", ticks=ticks, xlabel=xlabel)
        for metric in metric_names
    ]
    return _curves_svg(facets, styles, _names(method_labels, labels), groups, small_multiples, "efficiency")


def probe_svg(
    curves: Sequence[Mapping],
    styles: Mapping[str, Style],
    method_labels: Mapping[str, str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    small_multiples: bool | None = None,
) -> str:
    """ECG probes: one panel per label, each method's metric against labelled training patients.

    Many methods are split into groups as in ``efficiency_svg``: then each label is a row of panels.
    """
    facets = [_probe_facet(curves, label) for label in dict.fromkeys(c["label"] for c in curves)]
    return _curves_svg(facets, styles, _names(method_labels, labels), groups, small_multiples, "probes")


def _probe_facet(curves: Sequence[Mapping], label: str) -> _Facet:
    of_label = [c for c in curves if c["label"] == label]
    points = [
        {"method": c["method"], "n_train": p.get("n_train_patients"), "metrics": {label: p}}
        for c in of_label
        for p in c["points"]
    ]
    sizes = sorted({float(p["n_train"]) for p in points if p["n_train"]})
    metric = next((p.get("metric") for c in of_label for p in c["points"] if p.get("metric")), "")
    ylabel = "AUROC" if metric == "auroc" else "R²" if metric == "r2" else metric
    ticks = [(n, f"{n:,.0f}") for n in sizes]
    return _Facet(points, label, ylabel, title=label, ticks=ticks, xlabel="labelled training patients")


def method_groups(
    methods: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    small_multiples: bool | None = None,
) -> list[tuple[str, list[str]]]:
    """The methods of each panel, with the panel's title ("" for none).

    The caller's ``groups`` (methods it leaves out share a last panel, "Other methods"); else, when
    there are more than MAX_BANDED_METHODS methods or ``small_multiples`` asks, untitled runs of at
    most MAX_BANDED_METHODS in the order given; else one panel with every method.
    """
    methods = list(methods)
    if small_multiples is False or not methods:
        return [("", methods)]
    if groups:
        named = [(title, [m for m in members if m in methods]) for title, members in groups.items()]
        grouped = {m for _, members in named for m in members}
        named.append(("Other methods", [m for m in methods if m not in grouped]))
        return [(title, members) for title, members in named if members]
    if small_multiples is None and len(methods) <= MAX_BANDED_METHODS:
        return [("", methods)]
    count = -(-len(methods) // MAX_BANDED_METHODS)
    return [("", methods[i * len(methods) // count : (i + 1) * len(methods) // count]) for i in range(count)]


def _curves_svg(
    facets: Sequence[_Facet],
    styles: Mapping[str, Style],
    names: Mapping[str, str],
    groups: Mapping[str, Sequence[str]] | None,
    small_multiples: bool | None,
    salt: str,
) -> str:
    """Efficiency-style curves, one panel per facet, or per facet and method group; "" with no data."""
    facets = [f for f in facets if any(_series(f, m)[0].size for m in styles)]
    drawn = {m: s for m, s in styles.items() if any(_series(f, m)[0].size for f in facets)}
    if not drawn:
        return ""
    panels = method_groups(list(drawn), groups, small_multiples)
    if len(panels) == 1:
        fig = _panel_per_facet(facets, drawn, names)
    else:
        fig = _panel_per_group(facets, drawn, names, panels)
    return to_svg(fig, salt)


def _panel_per_facet(
    facets: Sequence[_Facet], styles: Mapping[str, Style], names: Mapping[str, str]
) -> Figure:
    """Every method in each facet's panel, facets three to a row."""
    columns = min(len(facets), 3)
    rows = -(-len(facets) // columns)
    width = max(4.2 * columns, 5.0)
    fig = _new_figure(width, 3.1 * rows + 0.3 * (1 + len(styles) // 3))
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    for unused in grid[len(facets) :]:
        unused.set_visible(False)
    for ax, facet in zip(grid, facets, strict=False):
        for method, style in styles.items():
            _efficiency_line(ax, facet, method, style, display_name(method, names))
        _facet_axes(ax, facet)
    legend = [display_name(m, names) for m in styles]
    _legend_below(fig, grid[: len(facets)], _legend_columns(width, legend))
    return fig


def _panel_per_group(
    facets: Sequence[_Facet],
    styles: Mapping[str, Style],
    names: Mapping[str, str],
    panels: Sequence[tuple[str, Sequence[str]]],
) -> Figure:
    """Small multiples: a column per method group (its own legend below it), a row per facet.

    Panels in a row share the y-axis, and each shows the other groups' methods faintly in grey
    (no bands) so a group can be read against the rest without the bands smearing together.
    """
    fig = _new_figure(3.5 * len(panels), 2.7 * len(facets) + 1.0)
    columns = fig.subfigures(1, len(panels), squeeze=False)[0]
    tallest = max(len(members) for _, members in panels) + 1  # + the grey reference entry
    reference = (Line2D([], [], color=REFERENCE_GREY, linewidth=1.0), "other panels' methods")
    row_leaders: list[Axes] = []
    for index, (column, (title, members)) in enumerate(zip(columns, panels, strict=True)):
        axes = column.subplots(len(facets), 1, squeeze=False)[:, 0]
        for row, (ax, facet) in enumerate(zip(axes, facets, strict=True)):
            if index == 0:
                row_leaders.append(ax)
            else:
                ax.sharey(row_leaders[row])  # one y-scale per row, so panels compare at a glance
                ax.tick_params(labelleft=False)
            for method, style in styles.items():
                if method in members:
                    _efficiency_line(ax, facet, method, style, display_name(method, names))
                else:
                    _reference_line(ax, facet, method)
            _facet_axes(ax, facet, ylabel=index == 0)
        if title:
            column.suptitle(title, fontsize=10)
        _legend_below(column, axes, 1, extra=[reference], rows=tallest)
    return fig


def _facet_axes(ax: Axes, facet: _Facet, ylabel: bool = True) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([n for n, _ in facet.ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([label for _, label in facet.ticks], fontsize=8)
    ax.set_xlabel(facet.xlabel, fontsize=9)
    if ylabel:
        ax.set_ylabel(facet.ylabel)
    if facet.title:
        ax.set_title(facet.title, fontsize=10)
    _tidy(ax)


def _efficiency_line(ax: Axes, facet: _Facet, method: str, style: Style, label: str) -> None:
    x, estimates = _series(facet, method)
    if not x.size:
        return
    value = np.array([e["value"] for e in estimates], dtype=float)
    low = np.array([_or_nan(e.get("low")) for e in estimates], dtype=float)
    high = np.array([_or_nan(e.get("high")) for e in estimates], dtype=float)
    ax.plot(x, value, color=style.color, linestyle=style.linestyle, marker=style.marker, ms=4, label=label)
    ax.fill_between(x, low, high, color=style.color, alpha=0.15, linewidth=0)
    for xi, e in zip(x, estimates, strict=True):
        seeds = [v for v in e.get("per_seed") or [] if _finite(v)]
        ax.scatter([xi] * len(seeds), seeds, s=9, color=style.color, alpha=0.35, linewidths=0)


def _reference_line(ax: Axes, facet: _Facet, method: str) -> None:
    x, estimates = _series(facet, method)
    if x.size:
        ax.plot(x, [e["value"] for e in estimates], color=REFERENCE_GREY, linewidth=1.0, zorder=1)


def _series(facet: _Facet, method: str) -> tuple[np.ndarray, list[Mapping]]:
    """The method's training sizes (ascending) and estimates, where both can be drawn."""
    rows = sorted(
        (p for p in facet.points if p.get("method") == method and _estimate(p, facet.metric) is not None),
        key=lambda p: float(p["n_train"]),
    )
    return np.array([float(p["n_train"]) for p in rows]), [_estimate(p, facet.metric) for p in rows]


def _estimate(point: Mapping, metric: str) -> Mapping | None:
    """A point's estimate for ``metric`` when it has a finite value and a training size to plot at."""
    est = (point.get("metrics") or {}).get(metric)
    if not isinstance(est, Mapping) or not _finite(est.get("value")) or not _finite(point.get("n_train")):
        return None
    return est if float(point["n_train"]) > 0 else None  # a log axis has no place for 0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(value)


def _or_nan(value: float | None) -> float:
    return float(value) if _finite(value) else float("nan")


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
    method_labels: Mapping[str, str] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> str:
    """ROC curves, one per method, AUROC in the legend, chance diagonal; "" when no method has both
    outcomes in its test predictions."""
    curves = {m: yp for m, yp in _finite_predictions(predictions).items() if _both_classes(yp[0])}
    if not curves:
        return ""
    names = _names(method_labels, labels)
    fig = _new_figure(4.4, 4.2 + 0.17 * len(curves))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    for index, (method, (y, p)) in enumerate(curves.items()):
        fpr, tpr = _thin(*roc_points(y, p))
        style = styles[method]
        label = f"{display_name(method, names)} (AUROC {auroc(y, p):.2f})"
        # Markers a tenth of the curve apart, offset per method so that they do not pile up.
        spacing = ((index % 5) * 0.02, 0.1)
        ax.plot(
            fpr,
            tpr,
            color=style.color,
            linestyle=style.linestyle,
            linewidth=1.6,
            label=label,
            marker=style.marker,
            ms=4,
            markevery=spacing,
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("1 \u2212 specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    _legend_below(fig, [ax], 1)
    _tidy(ax)
    return to_svg(fig, "roc")


def _finite_predictions(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each method's outcomes and risks without patients lacking a risk (NaN); methods with none left out."""
    kept = {}
    for method, (y, p) in predictions.items():
        y, p = np.asarray(y), np.asarray(p, dtype=float)
        finite = np.isfinite(p)
        if finite.any():
            kept[method] = (y[finite], p[finite])
    return kept


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any()) and not bool(y.all())


def _thin(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_CURVE_POINTS points, ends kept: a 50,000-patient ROC need not weigh megabytes."""
    if len(fpr) <= MAX_CURVE_POINTS:
        return fpr, tpr
    keep = np.unique(np.linspace(0, len(fpr) - 1, MAX_CURVE_POINTS).round().astype(int))
    return fpr[keep], tpr[keep]


def calibration_svg(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    styles: Mapping[str, Style],
    method_labels: Mapping[str, str] | None = None,
    prevalence: float | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Reliability diagram: observed rate against mean predicted risk per bin; area = patients.

    "" when no method has both outcomes: with one, every bin's observed rate is 0 (or 1) and the
    figure would only restate that.
    """
    curves = {m: yp for m, yp in _finite_predictions(predictions).items() if _both_classes(yp[0])}
    if not curves:
        return ""
    names = _names(method_labels, labels)
    fig = _new_figure(4.4, 4.2 + 0.1 * len(curves))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="perfect calibration")
    if prevalence is not None and _finite(prevalence):
        ax.axhline(prevalence, color="#bbbbbb", linewidth=0.8, linestyle="--", label="prevalence")
    total = max(len(y) for y, _ in curves.values())
    for method, (y, p) in curves.items():
        _calibration_curve(ax, calibration_bins(y, p), styles[method], display_name(method, names), total)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("predicted risk (mean in bin)")
    ax.set_ylabel("observed rate of the outcome")
    # Below the axes: miscalibrated curves can run through any corner of the square.
    _legend_below(fig, [ax], 2)
    _tidy(ax)
    return to_svg(fig, "calibration")


def _calibration_curve(ax: Axes, table: pl.DataFrame, style: Style, label: str, total: int) -> None:
    predicted, observed = table["predicted"], table["observed"]
    ax.plot(
        predicted,
        observed,
        color=style.color,
        linestyle=style.linestyle,
        linewidth=1.2,
        label=label,
        marker=style.marker,
        ms=4,
    )
    sizes = 12 + 400 * table["count"].to_numpy() / total  # area = patients in the bin
    ax.scatter(predicted, observed, s=sizes, color=style.color, alpha=0.4, marker=style.marker, linewidths=0)


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pl.DataFrame:
    """Per equal-width probability bin: mean predicted risk, observed rate, and patient count."""
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)  # p == 1.0 belongs to the last bin
    frame = pl.DataFrame({"bin": bins, "predicted": p, "observed": y.astype(float)})
    return (
        frame.group_by("bin")
        .agg(pl.col("predicted").mean(), pl.col("observed").mean(), pl.len().alias("count"))
        .sort("bin")
    )


# ----------------------------------------------------------------------------- training logs


def loss_svg(curves: Sequence[tuple[str, pl.DataFrame]], *, labels: Mapping[str, str] | None = None) -> str:
    """One panel per training log: each loss column against epoch (or step, for one-epoch runs).

    Panel titles are the runs' names in words (``run_title``, with ``labels`` for the methods);
    logs with no finite loss get no panel, and with none at all the figure is "".
    """
    panels = [(title, found) for title, frame in curves if (found := _loss_series(frame))]
    if not panels:
        return ""
    names = list(dict.fromkeys(name for _, (_, series) in panels for name in series))
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig = _new_figure(4.0 * columns, 2.9 * rows + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, (x_name, series)) in zip(axes, panels, strict=False):
        _loss_panel(ax, run_title(title, labels), x_name, series, names)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    _legend_below(fig, axes[: len(panels)], min(len(names), 4))
    return to_svg(fig, "loss")


def _loss_series(frame: pl.DataFrame) -> tuple[str, dict[str, pl.DataFrame]] | None:
    """The x-axis ("epoch", or "step" for one-epoch runs) and each loss's finite points against it."""
    epochs = frame["epoch"].drop_nulls().n_unique() if "epoch" in frame.columns else 0
    x_name = "epoch" if epochs > 1 or "step" not in frame.columns else "step"
    if x_name not in frame.columns:
        return None
    series = {}
    for column in loss_columns(frame.columns):
        points = frame.select(pl.col(x_name), pl.col(column).cast(pl.Float64)).drop_nulls()
        points = points.filter(pl.col(column).is_finite())
        if x_name == "epoch":
            # Step-level losses become one mean per epoch, so train and val share an axis.
            points = points.group_by("epoch").agg(pl.col(column).mean()).sort("epoch")
        if points.height:
            series[column.removesuffix("_epoch").removesuffix("_step").replace("_", " ")] = points
    return (x_name, series) if series else None


def _loss_panel(
    ax: Axes, title: str, x_name: str, series: Mapping[str, pl.DataFrame], names: Sequence[str]
) -> None:
    for name, points in series.items():
        index = names.index(name)  # one look per loss name across panels, so one legend serves all
        ax.plot(
            points[:, 0],
            points[:, 1],
            color=LOSS_GREYS[index % len(LOSS_GREYS)],
            linestyle=LINESTYLES[index % len(LINESTYLES)],
            marker=".",
            label=name,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs (or steps), never 2.5
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_name)
    ax.set_ylabel("loss")
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
