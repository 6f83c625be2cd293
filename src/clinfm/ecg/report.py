"""ECG's part of the run report: probe curves of frozen representations (PCLR and its rivals) with
their table and PCLR's mean relative gains. Light on purpose (no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clinfm.ecg.results import METHOD_LABELS, METHODS
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
blocks.add_method_labels(METHOD_LABELS)


def headline(folder: RunFolder) -> str:
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""))


def caveats(folder: RunFolder) -> list[str]:
    return blocks.caveats(folder)


def section(folder: RunFolder) -> str:
    return blocks.join(probes_section(folder), blocks.training_section(folder))


def probes_section(folder: RunFolder) -> str:
    """ECG probe curves (one panel per label) and their table, with PCLR's mean relative gains."""
    curves = dig(folder.metrics, ("ecg", "probes"))
    if not isinstance(curves, list) or not curves:
        return ""
    methods = list(dict.fromkeys(c.get("method") for c in curves))
    order = [m for m in METHODS if m in methods] + [m for m in methods if m not in METHODS]
    labels = {m: blocks.method_label(m) for m in order}
    svg = plots.probe_svg(curves, plots.ordered_styles(order), labels)
    content = blocks.join(
        blocks.figure(svg, "Probe curves."), _gains_note(folder), _probes_table(curves, order)
    )
    return blocks.section("ecg", "Representations probed", content)


def _probes_table(curves: Sequence[Mapping], order: Sequence[str]) -> str:
    """One row per label and number of training patients, one column per method."""
    rows = []
    for label in dict.fromkeys(c.get("label") for c in curves):
        by_method = {
            c["method"]: {p.get("n_train_patients"): p for p in c.get("points", [])}
            for c in curves
            if c.get("label") == label
        }
        sizes = sorted({n for points in by_method.values() for n in points if n is not None})
        for size in sizes:
            cells = "".join(
                f"<td>{blocks.format_estimate(by_method.get(m, {}).get(size), 3)}</td>" for m in order
            )
            rows.append(blocks.row(blocks.escape(label), f"<td>{blocks.count(size)}</td>{cells}"))
    head = "<th>Label</th><th>Training patients</th>" + "".join(
        f"<th>{blocks.escape(blocks.method_label(m))}</th>" for m in order
    )
    caption = (
        "Test AUROC (binary labels) or R\u00b2 (numbers) against the number of labelled training patients; "
        "bands and brackets are bootstrap 95% intervals resampling test patients; each point averages the "
        "test predictions of several training draws."
    )
    return blocks.table(rows, head, blocks.escape(caption))


def _gains_note(folder: RunFolder) -> str:
    gains = dig(folder.metrics, ("ecg", "gains")) or {}
    text = "; ".join(
        f"{blocks.escape(blocks.method_label(m))} {g['mean_relative_gain']:+.0%} over {g['points']} points"
        for m, g in gains.items()
        if isinstance(g, Mapping) and g.get("mean_relative_gain") is not None
    )
    if not text:
        return ""
    return (
        f"<p>PCLR's mean relative gain ((PCLR \u2212 other) / |other|, over labels and sizes): {text}. "
        "The paper reports +51% over scratch without naming its metric; read these with the intervals.</p>"
    )
