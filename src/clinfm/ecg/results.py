"""What the ECG comparisons report: the methods' names, PCLR's mean relative gain (the paper's
"+51%" form) and the Markdown table of probe points. Light (no torch): the HTML report reads it."""

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
    """PCLR's mean relative gain over each other method across labels and sizes (the paper's "+51%"
    statistic, whose exact metric the paper does not state: here (PCLR - other) / |other| of AUROC or
    R^2, over the points both have), with the number of points averaged."""
    by = {(c["method"], c["label"]): {p["n_train_patients"]: p["value"] for p in c["points"]} for c in curves}
    gains = {}
    for method in sorted({m for m, _ in by if m != reference}):
        ratios = []
        for (m, label), points in by.items():
            if m != method or (reference, label) not in by:
                continue
            for size, value in points.items():
                mine = by[(reference, label)].get(size)
                if value is not None and mine is not None and value != 0:
                    ratios.append((mine - value) / abs(value))
        if ratios:
            gains[method] = {"mean_relative_gain": float(np.mean(ratios)), "points": len(ratios)}
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
