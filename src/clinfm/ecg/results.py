"""What the ECG comparisons report: the methods' names, PCLR's mean relative gain (the paper's
"+51%" form, AUROC only; R^2 as differences) and the Markdown table of probe points. Light (no
torch): the HTML report reads it."""

from __future__ import annotations

import numpy as np

from clinfm.evaluate.metrics import estimate_text

PRETRAINING_OBJECTIVES = ("pclr", "clocs", "autoencoder")
HANDCRAFTED = "handcrafted"
SCRATCH = "scratch"
METHODS = (*PRETRAINING_OBJECTIVES, SCRATCH, HANDCRAFTED)
METHOD_LABELS = {  # also the report's names for these methods
    "pclr": "PCLR",
    "clocs": "CLOCS-style",
    "autoencoder": "Autoencoder",
    SCRATCH: "Scratch (supervised)",
    HANDCRAFTED: "Hand-crafted features",
}


def relative_gains(curves: list[dict], reference: str = "pclr") -> dict:
    """PCLR against each other method across labels and sizes, over the points both have.

    ``mean_difference``: per metric, the mean of PCLR minus the other (AUROC, or R^2 as a plain
    difference, ΔR^2). ``mean_relative_gain``: the paper's "+51%" statistic (whose exact metric the
    paper does not state), (PCLR - other) / |other| of AUROC only: a ratio of R^2 values near or below
    zero means nothing, so R^2 never becomes a percentage; None without AUROC points. ``points``
    counts every point compared.
    """
    by = {
        (c["method"], c["label"]): {
            p["n_train_patients"]: p for p in c["points"] if p.get("value") is not None
        }
        for c in curves
    }
    gains = {}
    for method in sorted({m for m, _ in by if m != reference}):
        ratios, differences = [], {}
        for (m, label), points in by.items():
            if m != method or (reference, label) not in by:
                continue
            for size, point in points.items():
                mine = by[(reference, label)].get(size)
                if mine is None:
                    continue
                metric = point.get("metric") or mine.get("metric") or "auroc"
                differences.setdefault(metric, []).append(mine["value"] - point["value"])
                if metric == "auroc" and point["value"] != 0:
                    ratios.append((mine["value"] - point["value"]) / abs(point["value"]))
        if differences:
            gains[method] = {
                "mean_relative_gain": float(np.mean(ratios)) if ratios else None,
                "mean_difference": {k: float(np.mean(v)) for k, v in differences.items()},
                "points": sum(len(v) for v in differences.values()),
            }
    return gains


def curves_table(curves: list[dict]) -> str:
    """A Markdown table: one row per label and training size, one column per method."""
    methods = list(dict.fromkeys(c["method"] for c in curves))
    header = "| label | metric | patients | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |"
    lines = [header, "|" + "---|" * (3 + len(methods))]
    for label in dict.fromkeys(c["label"] for c in curves):
        of_label = {
            c["method"]: {p["n_train_patients"]: p for p in c["points"]}
            for c in curves
            if c["label"] == label
        }
        sizes = sorted({size for points in of_label.values() for size in points})
        for size in sizes:
            cells, metric = [], ""
            for method in methods:
                point = of_label.get(method, {}).get(size)
                metric = metric or (point or {}).get("metric", "")
                cells.append(estimate_text(point))
            lines.append(f"| {label} | {metric} | {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
