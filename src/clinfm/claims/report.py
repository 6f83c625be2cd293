"""Claim-PT's part of the run report: fine-tuning, label-efficiency, pre-training and next-visit
runs, and cross-site transfer runs (efficiency runs whose methods are ``<embedding>/<protocol>``,
written by :mod:`clinfm.claims.cross_site`).

Light on purpose (no torch): the report imports it for every run of these kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

from clinfm.evaluate.metrics import metric_info
from clinfm.report import blocks
from clinfm.report.folder import RunFolder, dict_at, efficiency_points

KIND_INTROS = {
    "finetune": "This run fine-tunes models for one prediction task and compares them on held-out "
    "test patients.",
    "efficiency": "This run measures how each method's performance grows with the number of labelled "
    "training patients.",
    "pretrain": "This run pre-trains a model on unlabeled patient histories; pre-training has no prediction "
    "task of its own, so there are no test metrics.",
    "nextvisit": "This run predicts which codes will be recorded at each patient's next visit.",
}
METHOD_LABELS = {
    "pretrained": "Pre-trained transformer",
    "cold_start": "Cold start",
    "logistic_regression": "Logistic regression",
    "gradient_boosting": "Gradient boosting",
    "gru": "GRU over visits",
}
METHOD_DESCRIPTIONS = {
    "pretrained": "A transformer first pre-trained on unlabeled patient histories, then fine-tuned on "
    "this task's labelled training patients.",
    "cold_start": "The same transformer architecture trained only on this task's labelled patients from "
    "random weights; its gap to the pre-trained model is what pre-training adds.",
    "logistic_regression": "Logistic regression on counts of each code recorded before the prediction time.",
    "gradient_boosting": "Gradient-boosted decision trees on counts of each code recorded before the "
    "prediction time.",
    "gru": "A recurrent neural network (GRU) that reads the patient's visits in order, trained from scratch.",
}
blocks.add_method_labels(METHOD_LABELS)


def headline(folder: RunFolder) -> str:
    pretraining = blocks.training_sentence(folder) if folder.kind == "pretrain" else ""
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""), pretraining)


def caveats(folder: RunFolder) -> list[str]:
    own = []
    if folder.metrics is None and folder.kind in ("finetune", "nextvisit"):
        own.append("This run has no metrics.json, so there are no test-set results to show.")
    return blocks.caveats(folder, *own)


def section(folder: RunFolder) -> str:
    styles = blocks.method_styles(folder)
    return blocks.join(
        blocks.methods_section(folder, styles, METHOD_DESCRIPTIONS),
        blocks.metrics_section(folder, styles),
        protocols_section(folder),
        blocks.efficiency_section(folder, styles),
        blocks.predictions_section(folder, styles),
        blocks.training_section(folder),
    )


# ----------------------------------------------------------------------------- transfer across sites


def protocols_section(folder: RunFolder, metric: str = "auroc") -> str:
    """Cross-site runs (methods named ``<embedding>/<protocol>``): embeddings by protocols at all
    the target's labels, and how many target labels each needs to match the best local model."""
    points = efficiency_points(folder.efficiency)
    methods = list(dict_at(folder.run, "methods")) or folder.methods()  # as the run lists them
    fractions = blocks.efficiency_fractions(points)
    if not points or not methods or not all("/" in m for m in methods) or not fractions:
        return ""
    embeddings = list(dict.fromkeys(m.split("/")[0] for m in methods))
    protocols = list(dict.fromkeys(m.split("/")[1] for m in methods))
    top = fractions[-1]
    local = [blocks.estimate_at(points, f"{e}/local", top, metric) for e in embeddings]
    reference = max((e["value"] for e in local if e), default=None)
    rows = []
    for embedding in embeddings:
        cells = []
        for protocol in protocols:
            method = f"{embedding}/{protocol}"
            estimate = blocks.estimate_at(points, method, top, metric)
            reached = _labels_to_reach(points, method, fractions, metric, reference)
            note = f"<br><small>{reached}</small>" if reached else ""
            cells.append(f"<td>{blocks.format_estimate(estimate, blocks.digits(metric))}{note}</td>")
        rows.append(blocks.row(blocks.escape(embedding), "".join(cells)))
    head = "<th>Embedding</th>" + "".join(f"<th>{blocks.escape(p.replace('_', ' '))}</th>" for p in protocols)
    label = blocks.escape(metric_info(metric)["label"])
    caption = f"{label} at the target with all its training labels (CI)."
    if reference is not None:
        caption += (
            " Under each, the fewest target labels at which its point estimate reaches the best local "
            f"model's with all of them ({blocks.number(reference, 3)}); see the intervals."
        )
    return blocks.section("protocols", "Protocols across sites", blocks.table(rows, head, caption))


def _labels_to_reach(
    points: Sequence[dict], method: str, fractions: Sequence[float], metric: str, reference: float | None
) -> str:
    """Escaped HTML: where the method's point estimate first reaches ``reference``."""
    if reference is None:
        return ""
    measured = [e for f in fractions if (e := blocks.estimate_at(points, method, f, metric))]
    for estimate in measured:
        if estimate["value"] >= reference:
            if method.endswith("/shared"):
                return "reaches local with no target label"
            n = estimate.get("n_train")
            return f"reaches local from {blocks.count(n)} labels" if n is not None else "reaches local"
    return "does not reach local" if measured else ""
