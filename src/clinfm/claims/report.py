"""Claim-PT's part of the run report: fine-tuning, label-efficiency, pre-training and next-visit
runs, and cross-site transfer runs (efficiency runs whose methods are ``<embedding>/<protocol>``,
written by :mod:`clinfm.claims.cross_site`).

Light on purpose (no torch): the report imports it for every run of these kinds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath

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
TRANSFER_INTRO = (
    "This run asks whether a model trained at one site helps at another, and whether it helps more when "
    "the model reads codes as ids or as text embeddings of their descriptions."
)
EMBEDDING_LABELS = {"ids": "Code ids", "text": "Text embeddings"}
PROTOCOL_LABELS = {
    "local": "local",
    "shared": "shared (source model as is)",
    "transfer": "transfer (all layers)",
    "transfer_head": "transfer (head only)",
    "pooled": "pooled (both sites)",
}
#: How the source model reached the target, per protocol, in the headline ("A's model tuned at B").
MOVED = {
    "transfer": "tuned at {target}",
    "transfer_head": "with only its classification head tuned at {target}",
    "shared": "applied as is, with no {target} label",
}
#: A run note that is a warning, not a log: shown among the caveats instead of in Data processing.
CAVEAT_NOTES = ("does not hold",)


def headline(folder: RunFolder) -> str:
    _name_transfer_methods(folder)
    if is_transfer(folder):
        return " ".join(s for s in (TRANSFER_INTRO, *transfer_sentences(folder)) if s)
    pretraining = blocks.training_sentence(folder) if folder.kind == "pretrain" else ""
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""), pretraining)


def caveats(folder: RunFolder) -> list[str]:
    _name_transfer_methods(folder)
    own = []
    if folder.metrics is None and folder.kind in ("finetune", "nextvisit"):
        own.append("This run has no metrics.json, so there are no test-set results to show.")
    own += [note for note in blocks.run_notes(folder) if any(word in note for word in CAVEAT_NOTES)]
    pretrained = "pretrained" in folder.methods() or "fine_tuned" in folder.methods()
    return blocks.caveats(folder, *own, pretrained_once=pretrained)


def section(folder: RunFolder) -> str:
    _name_transfer_methods(folder)
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


def is_transfer(folder: RunFolder) -> bool:
    """A cross-site run: every method is ``<embedding>/<protocol>``."""
    methods = folder.methods()
    return bool(methods) and all("/" in m for m in methods)


def embedding_label(embedding: str, preset: str | None = None) -> str:
    """``ids`` -> "Code ids" (or "One-hot findings" in the paper's preset), ``text`` -> "Text
    embeddings", ``text-<model>`` -> "Text embeddings (<model>)"."""
    if embedding == "ids" and preset == "paper":
        return "One-hot findings"
    if embedding in EMBEDDING_LABELS:
        return EMBEDDING_LABELS[embedding]
    if embedding.startswith("text-"):
        return f"Text embeddings ({embedding.removeprefix('text-')})"
    return blocks.method_label(embedding)


def protocol_label(protocol: str) -> str:
    return PROTOCOL_LABELS.get(protocol, protocol.replace("_", " "))


def transfer_label(method: str, preset: str | None = None) -> str:
    """``text/transfer_head`` -> "Text embeddings, transfer (head only)"."""
    embedding, _, protocol = method.partition("/")
    return f"{embedding_label(embedding, preset)}, {protocol_label(protocol)}"


def _name_transfer_methods(folder: RunFolder) -> None:
    """Register this run's ``<embedding>/<protocol>`` names (and the ``<embedding>-<protocol>`` of
    its training logs) so every block and figure shows them in words."""
    if not is_transfer(folder):
        return
    preset = dict_at(folder.run, "config").get("preset")
    labels = {}
    for method in folder.methods():
        labels[method] = labels[method.replace("/", "-")] = transfer_label(method, preset)
    blocks.add_method_labels(labels)


def _site(folder: RunFolder, which: str) -> str:
    path = dict_at(folder.run, "data").get(which)
    name = PurePath(str(path)).name if path else ""
    return name or ("the source site" if which == "source" else "the target site")


def transfer_sentences(folder: RunFolder) -> list[str]:
    """Escaped HTML: does the source site's model help at the target, reading codes as ids or as text?
    Local against the source model tuned at the target, per embedding, then text against ids."""
    reason = blocks.unevaluable(folder)
    if reason is not None:
        return [
            f"This comparison {blocks.escape(reason)}, so no method is named better and no curve is drawn."
        ]
    methods = {m: s for m, s in dict_at(folder.metrics, "methods").items() if isinstance(s, Mapping)}
    metric = next((k for k in ("auroc", "auprc") if any(k in s for s in methods.values())), None)
    if metric is None:
        return []
    source, target = blocks.escape(_site(folder, "source")), blocks.escape(_site(folder, "target"))
    level, places = blocks.confidence_level(folder), blocks.digits(metric)
    label = blocks.escape(metric_info(metric)["label"])
    n, positives = blocks.test_counts(folder)
    where = f"On {blocks.count(n)} held-out patients at {target}" if n is not None else f"At {target}"
    if positives is not None:
        where += f" ({blocks.count(positives)} with the outcome)"
    n_train = dict_at(folder.run, "data").get("n_train")
    labels = (
        f", with all {blocks.count(n_train)} of its labelled training patients" if n_train is not None else ""
    )
    embeddings = list(dict.fromkeys(m.split("/")[0] for m in methods))
    protocols = [
        p for p in ("transfer", "transfer_head", "shared") if any(m.endswith("/" + p) for m in methods)
    ]
    if not protocols:
        return []
    moved = protocols[0]
    how = MOVED[moved].format(target=target)
    moved_name = f"{source}'s model"

    def score(method: str) -> Mapping | None:
        estimate = methods.get(method, {}).get(metric)
        return estimate if isinstance(estimate, Mapping) and estimate.get("value") is not None else None

    def phrase(estimate: Mapping) -> str:
        return blocks.ci_phrase(estimate, places, level)

    sentences = [f"Does {source}'s model help at {target}? Scored {where[0].lower()}{where[1:]}{labels}:"]
    best: dict[str, Mapping] = {}
    for embedding in embeddings:
        name = blocks.escape(embedding_label(embedding, dict_at(folder.run, "config").get("preset")).lower())
        local, tuned = score(f"{embedding}/local"), score(f"{embedding}/{moved}")
        if tuned is not None:
            best[embedding] = tuned
        if local is None or tuned is None:
            continue
        sentences.append(
            f"with {name}, {target}'s own model (local) reached {label} {phrase(local)} and "
            f"{source}'s model {how} {phrase(tuned)}; "
            f"{blocks.verdict(tuned, local, moved_name, 'the local one')}."
        )
    if len(sentences) == 1:
        return []
    if "ids" in best and len(best) > 1:
        text = next(e for e in best if e != "ids")
        sentences.append(
            f"Reading codes as text embeddings rather than ids, {source}'s model {how} "
            f"reached {phrase(best[text])} against "
            f"{phrase(best['ids'])}; "
            f"{blocks.verdict(best[text], best['ids'], 'text embeddings', 'code ids')}."
        )
    sentences[0] = sentences[0].removesuffix(":") + "."
    return [" ".join(s[:1].upper() + s[1:] for s in sentences)]


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
        name = embedding_label(embedding, dict_at(folder.run, "config").get("preset"))
        rows.append(blocks.row(blocks.escape(name), "".join(cells)))
    head = "<th>Embedding</th>" + "".join(f"<th>{blocks.escape(protocol_label(p))}</th>" for p in protocols)
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
