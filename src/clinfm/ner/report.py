"""NER's part of the run report: taggers compared on the paper's sub-word scores and on entity-level
strict and partial F1, with size and speed, then entity F1 per type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clinfm.report import blocks
from clinfm.report.folder import RunFolder, dig

KIND_INTROS = {
    "ner-compare": "This run trains named-entity taggers on the same annotations (with and without SamBD "
    "down-sampling, where asked) and scores each on the same test documents.",
}
#: (label, path into a model's scores, path to its bootstrap interval) of the table's score columns:
#: the paper's sub-word scores first, then entity-level ones.
COLUMNS = (
    ("BIO-strict macro F1", ("paper", "bio_strict", "macro", "f1"), ("intervals", "bio_strict_macro_f1")),
    (
        "BIO-strict weighted F1",
        ("paper", "bio_strict", "weighted", "f1"),
        ("intervals", "bio_strict_weighted_f1"),
    ),
    ("Token macro F1", ("paper", "token", "macro", "f1"), ("intervals", "token_macro_f1")),
    ("Token macro F1 without O", ("paper", "token", "macro_without_o", "f1"), None),
    ("Entity strict F1 (micro)", ("entity", "micro", "f1"), ("intervals", "entity_micro_f1")),
    ("Entity strict F1 (macro)", ("entity", "macro", "f1"), ("intervals", "entity_macro_f1")),
    ("Partial-match F1 (micro)", ("partial", "micro", "f1"), ("intervals", "partial_micro_f1")),
)
PAPER_COLUMNS = 4  # the first four are the paper's, on sub-words (or words for models without them)
CAPTION = (
    "The paper's scores are scikit-learn's over sub-word tokens with O included (BIO-strict: B and I "
    "distinct; token: merged); entity scores are seqeval strict over words; partial counts a predicted "
    "entity right when it overlaps a gold one of its type. Models without sub-words are scored on words. "
    "In brackets: bootstrap 95% intervals, resampling test documents."
)


def headline(folder: RunFolder) -> str:
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""))


def caveats(folder: RunFolder) -> list[str]:
    return blocks.caveats(folder)


def section(folder: RunFolder) -> str:
    return blocks.join(taggers_section(folder), blocks.training_section(folder))


def taggers_section(folder: RunFolder) -> str:
    """Per model, the paper's sub-word scores (O included) beside entity-level strict and partial F1,
    with size and speed; then entity F1 per type."""
    models = dig(folder.metrics, ("ner", "models"))
    if not isinstance(models, list) or not models:
        return ""
    head = (
        "<th>Model</th><th>Parameters</th><th>Training sentences</th><th>Training s</th>"
        "<th>Tagged sentences/s</th>" + "".join(f"<th>{blocks.escape(label)}</th>" for label, _, _ in COLUMNS)
    )
    scores_table = blocks.table([_model_row(model) for model in models], head, blocks.escape(CAPTION))
    return blocks.section("ner", "Taggers compared", blocks.join(scores_table, _types_table(models)))


def _model_row(model: Mapping) -> str:
    scores = model.get("scores") or {}
    unit = "" if scores.get("paper_unit") == "subword" else " <small>(words)</small>"
    cells = "".join(
        f"<td>{_score(scores, path, interval)}{unit if i < PAPER_COLUMNS else ''}</td>"
        for i, (_, path, interval) in enumerate(COLUMNS)
    )
    size_and_speed = (
        f"<td>{blocks.count(model.get('parameters'))}</td><td>{blocks.count(model.get('train_sentences'))}</td>"
        f"<td>{blocks.number(model.get('train_seconds'), 0)}</td>"
        f"<td>{blocks.number(scores.get('sentences_per_second'), 0)}</td>"
    )
    return blocks.row(blocks.escape(model.get("label")), size_and_speed + cells)


def _score(scores: Mapping, path: Sequence[str], interval: Sequence[str] | None) -> str:
    """The score with its interval where one was computed, else the bare score."""
    estimate = dig(scores, interval) if interval else None
    if isinstance(estimate, Mapping):
        return blocks.format_estimate(estimate, 3)
    return blocks.number(dig(scores, path), 3)


def _types_table(models: Sequence[Mapping]) -> str:
    per_model = {model.get("label"): dig(model, ("scores", "entity", "per_type")) or {} for model in models}
    types = sorted({t for scores in per_model.values() for t in scores})
    if not types:
        return ""
    rows = []
    for label, scores in per_model.items():
        cells = "".join(f"<td>{blocks.number(dig(scores, (t, 'f1')), 3)}</td>" for t in types)
        rows.append(blocks.row(blocks.escape(label), cells))
    head = "<th>Model</th>" + "".join(f"<th>{blocks.escape(t)}</th>" for t in types)
    return blocks.table(rows, head, "Entity-level strict F1 per type.")
