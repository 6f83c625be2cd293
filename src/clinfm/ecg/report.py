"""ECG's part of the run report: does PCLR's representation beat the baselines with few labels?

The headline answers it per label at the smallest and largest number of training patients, with
intervals; a winner is named only where the intervals do not overlap. A binary label whose test set
has too few patients with (or without) it cannot be evaluated: it says so, names no winner and is
not drawn. R^2 gains are shown as differences (ΔR^2), never as percentages. Light (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clinfm.ecg.results import HANDCRAFTED, METHOD_LABELS, METHODS, PRETRAINING_OBJECTIVES, SCRATCH
from clinfm.report import blocks, plots
from clinfm.report.folder import RunFolder, dig

KIND_INTROS = {
    "ecg-compare": "This run compares ECG representations the way PCLR does: each pre-trained encoder is "
    "frozen and a linear model is fit on its output for each label, at several numbers of labelled "
    "training patients, against hand-crafted features and networks trained from scratch on the same "
    "patients.",
    "ecg-probe": "This run fits linear models on frozen ECG representations for each label, at several "
    "numbers of labelled training patients.",
    "ecg-pretrain": "This run pre-trains an ECG encoder without labels; the pre-training has no prediction "
    "task of its own, so there are no test metrics.",
}
REFERENCE = "pclr"
#: The probe figure's small multiples: encoders apart from the baselines, so bands do not smear.
GROUPS = {"Pre-trained encoders": PRETRAINING_OBJECTIVES, "Baselines": (SCRATCH, HANDCRAFTED)}
METRIC_NAMES = {"auroc": "AUROC", "r2": "R\u00b2"}
blocks.add_method_labels(METHOD_LABELS)


# ----------------------------------------------------------------------------- reading the curves


def _curves(folder: RunFolder) -> list[dict]:
    curves = dig(folder.metrics, ("ecg", "probes"))
    return [c for c in curves if isinstance(c, dict)] if isinstance(curves, list) else []


def _order(curves: Sequence[Mapping]) -> list[str]:
    methods = list(dict.fromkeys(c.get("method") for c in curves if c.get("method")))
    return [m for m in METHODS if m in methods] + [m for m in methods if m not in METHODS]


def _labels(curves: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(c.get("label") for c in curves if c.get("label") is not None))


def _points(curves: Sequence[Mapping], label: str) -> dict[str, dict]:
    """method -> {training patients -> point} for one label."""
    return {
        c["method"]: {p.get("n_train_patients"): p for p in c.get("points") or [] if isinstance(p, Mapping)}
        for c in curves
        if c.get("label") == label and c.get("method")
    }


def _metric(curves: Sequence[Mapping], label: str) -> str:
    for points in _points(curves, label).values():
        for point in points.values():
            if point.get("metric"):
                return str(point["metric"])
    return ""


def test_counts(curves: Sequence[Mapping], label: str) -> tuple[int | None, int | None]:
    """A binary label's test patients and those with a positive ECG, as the probes recorded them."""
    for points in _points(curves, label).values():
        for point in points.values():
            if isinstance(point.get("test_positives"), int):
                return point.get("test_patients"), point["test_positives"]
    return None, None


def unevaluable(folder: RunFolder, curves: Sequence[Mapping], label: str) -> str | None:
    """Why a binary label cannot be evaluated (too few test patients with or without it), or None."""
    if _metric(curves, label) != "auroc":
        return None
    n, positives = test_counts(curves, label)
    return blocks.too_few_to_compare(positives, n, folder.min_class_patients)


def _sizes(points: Mapping[str, Mapping]) -> list[int]:
    return sorted({n for by_size in points.values() for n in by_size if isinstance(n, int | float)})


def _estimate(points: Mapping[str, Mapping], method: str, size) -> Mapping | None:
    point = points.get(method, {}).get(size)
    return point if isinstance(point, Mapping) and point.get("value") is not None else None


# ----------------------------------------------------------------------------- headline


def headline(folder: RunFolder) -> str:
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""), answer(folder))


def answer(folder: RunFolder) -> str:
    """Does PCLR beat the other methods with few labels? Per label, at the smallest and largest
    number of training patients, PCLR against the best other method, with intervals."""
    curves = _curves(folder)
    if not curves:
        return ""
    order = _order(curves)
    if REFERENCE not in order or len(order) < 2:
        return ""
    level = blocks.confidence_level(folder)
    sentences = []
    for label in _labels(curves):
        name = blocks.escape(label)
        reason = unevaluable(folder, curves, label)
        if reason:
            sentences.append(f"{name} {blocks.escape(reason)}, so no method is named better for it.")
            continue
        points = _points(curves, label)
        sizes = _sizes(points)
        if not sizes:
            continue
        metric = _metric(curves, label)
        parts = [_at_size(points, size, metric, level) for size in dict.fromkeys((sizes[0], sizes[-1]))]
        parts = [p for p in parts if p]
        if parts:
            sentences.append(
                f"{name} ({METRIC_NAMES.get(metric, blocks.escape(metric))}): " + "; ".join(parts) + "."
            )
    if not sentences:
        return ""
    return "Does PCLR's representation beat the others with few labels? " + " ".join(sentences)


def _at_size(points: Mapping[str, Mapping], size, metric: str, level: str) -> str:
    ours = _estimate(points, REFERENCE, size)
    others = [(m, e) for m in points if m != REFERENCE and (e := _estimate(points, m, size))]
    if ours is None or not others:
        return ""
    best, theirs = max(others, key=lambda item: item[1]["value"])
    rival = blocks.escape(blocks.method_label(best))
    where = f"with {blocks.count(int(size))} training patients"
    ours_text, theirs_text = blocks.ci_phrase(ours, 3, level), blocks.ci_phrase(theirs, 3, level)
    values = f"PCLR {ours_text} against the best other, {rival}, {theirs_text}"
    difference = ours["value"] - theirs["value"]
    delta = f", \u0394R\u00b2 = {difference:+.3f}" if metric == "r2" else ""
    return f"{where}, {values}{delta}: {blocks.verdict(ours, theirs, 'PCLR', rival)}"


# ----------------------------------------------------------------------------- caveats


def caveats(folder: RunFolder) -> list[str]:
    curves = _curves(folder)
    found = []
    for label in _labels(curves):
        reason = unevaluable(folder, curves, label)
        if reason:
            found.append(f"{label} {reason}: no method is compared on it and its curve is not drawn.")
            continue
        n, positives = test_counts(curves, label)
        if isinstance(positives, int) and positives < blocks.FEW_POSITIVES:
            found.append(
                f"{label}: only {positives} of {n} test patients have it, so its intervals are wide."
            )
    seeds = _seeds(curves)
    if curves:
        draws = f" ({seeds} training draw{'s' if seeds != 1 else ''} per point)" if seeds else ""
        found.append(
            "Confidence intervals cover the sampling of test patients, not pre-training or training "
            f"seeds{draws}: each encoder was pre-trained once."
        )
    return blocks.caveats(folder, *found)


def _seeds(curves: Sequence[Mapping]) -> int | None:
    found = {p.get("seeds") for c in curves for p in c.get("points") or [] if isinstance(p, Mapping)}
    found = {s for s in found if isinstance(s, int)}
    return max(found) if found else None


# ----------------------------------------------------------------------------- sections


def section(folder: RunFolder) -> str:
    return blocks.join(probes_section(folder), blocks.training_section(folder))


def probes_section(folder: RunFolder) -> str:
    """ECG probe curves (one panel per label, encoders apart from baselines) and their table, with
    PCLR's mean differences; labels that cannot be evaluated are not drawn."""
    curves = _curves(folder)
    if not curves:
        return ""
    order = _order(curves)
    names = {m: blocks.method_label(m) for m in order}
    drawn = [c for c in curves if not unevaluable(folder, curves, c.get("label"))]
    groups = {title: [m for m in members if m in order] for title, members in GROUPS.items()}
    groups = {title: members for title, members in groups.items() if members}
    svg = plots.probe_svg(drawn, plots.ordered_styles(order), names, groups=groups) if drawn else ""
    caption = "Probe curves: pre-trained encoders in one panel, baselines in another, one row per label."
    content = blocks.join(
        blocks.figure(svg, caption), _gains_note(curves), _probes_table(folder, curves, order)
    )
    return blocks.section("ecg", "Representations probed", content)


def _probes_table(folder: RunFolder, curves: Sequence[Mapping], order: Sequence[str]) -> str:
    """One row per label and number of training patients, one column per method; a label that
    cannot be evaluated has one row saying so."""
    rows = []
    for label in _labels(curves):
        name = blocks.escape(label)
        reason = unevaluable(folder, curves, label)
        if reason:
            rows.append(
                blocks.row(name, f"<td>—</td><td colspan='{len(order)}'>{blocks.escape(reason)}</td>")
            )
            continue
        points = _points(curves, label)
        for size in _sizes(points):
            cells = "".join(
                f"<td>{blocks.format_estimate(points.get(m, {}).get(size), 3)}</td>" for m in order
            )
            rows.append(blocks.row(name, f"<td>{blocks.count(size)}</td>{cells}"))
    head = "<th>Label</th><th>Training patients</th>" + "".join(
        f"<th>{blocks.escape(blocks.method_label(m))}</th>" for m in order
    )
    caption = (
        "Test AUROC (binary labels) or R\u00b2 (numbers) against the number of labelled training patients; "
        "bands and brackets are bootstrap 95% intervals resampling test patients; each point averages the "
        "test predictions of several training draws."
    )
    return blocks.table(rows, head, blocks.escape(caption))


def _gains_note(curves: Sequence[Mapping]) -> str:
    """PCLR minus each other method, averaged over labels and sizes: AUROC differences and ΔR^2,
    never a percentage of R^2 (near or below zero, a ratio of R^2 means nothing)."""
    differences: dict[str, dict[str, list[float]]] = {}
    for label in _labels(curves):
        points = _points(curves, label)
        metric = _metric(curves, label) or "auroc"
        for size in _sizes(points):
            ours = _estimate(points, REFERENCE, size)
            for method in points:
                theirs = _estimate(points, method, size)
                if method != REFERENCE and ours and theirs:
                    differences.setdefault(metric, {}).setdefault(method, []).append(
                        ours["value"] - theirs["value"]
                    )
    parts = []
    for metric, by_method in differences.items():
        symbol = "\u0394R\u00b2" if metric == "r2" else f"\u0394{METRIC_NAMES.get(metric, metric)}"
        text = ", ".join(
            f"{blocks.escape(blocks.method_label(m))} {symbol} = {sum(d) / len(d):+.3f} over {len(d)} points"
            for m, d in by_method.items()
        )
        parts.append(f"{blocks.escape(METRIC_NAMES.get(metric, metric))}: {text}")
    if not parts:
        return ""
    return (
        "<p>PCLR minus each other method, averaged over labels and numbers of training patients "
        f"(positive: PCLR higher). {'; '.join(parts)}. Differences, not percentages: a relative gain of "
        "R\u00b2 values near or below zero would mean nothing. Read these with the intervals.</p>"
    )


# ----------------------------------------------------------------------------- processing


def processing(folder: RunFolder) -> str:
    """What the probes recorded of the data: windows and patients per label, windows without the
    label, and the test patients with it."""
    curves = _curves(folder)
    rows = []
    for label in _labels(curves):
        curve = next(c for c in curves if c.get("label") == label)
        n, positives = test_counts(curves, label)
        cells = "".join(
            f"<td>{blocks.count(value) if value is not None else '—'}</td>"
            for value in (
                curve.get("windows"),
                curve.get("patients"),
                curve.get("windows_without_label"),
                curve.get("positives"),
                n,
                positives,
            )
        )
        rows.append(blocks.row(blocks.escape(label), cells))
    if not rows:
        return ""
    head = (
        "<th>Label</th><th>Windows used</th><th>Patients</th><th>Windows without the label (dropped)</th>"
        "<th>Positive windows</th><th>Test patients</th><th>Test patients with it</th>"
    )
    table = blocks.table(rows, head, "ECG windows prepared and used per label.")
    return blocks.section("ecg-data", "ECG windows per label", table, level=3)
