"""NER's part of the run report: which tagger reaches what entity-level F1 on the test documents,
with and without SamBD, and whether the intervals overlap; then the taggers on the paper's sub-word
scores and on entity-level strict and partial F1, with size and speed, and entity F1 per type.

Taggers are shown by display name ("TransformerCRF + SamBD"), never by their ids; a winner is named
only where the intervals do not overlap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from clinfm.report import blocks
from clinfm.report.folder import RunFolder, dict_at, dig

KIND_INTROS = {
    "ner-compare": "This run trains named-entity taggers on the same annotations (with and without SamBD "
    "down-sampling, where asked) and scores each on the same test documents.",
}
#: Tagger id -> display name; "<id>+sambd" adds " + SamBD".
TAGGER_NAMES = {
    "transformer-crf": "TransformerCRF",
    "transformer-apt": "TransformerAPT",
    "bert-crf": "BERT-CRF",
    "bert-apt": "BERT-APT",
    "feature-crf": "Feature CRF",
}
SAMBD = "+sambd"
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
HEADLINE = ("entity", "micro", "f1"), ("intervals", "entity_micro_f1")
PAPER_COLUMNS = 4  # the first four are the paper's, on sub-words (or words for models without them)
FEW_TEST_ENTITIES = 100  # below this, entity-level F1 intervals are wide
CAPTION = (
    "The paper's scores are scikit-learn's over sub-word tokens with O included (BIO-strict: B and I "
    "distinct; token: merged); entity scores are seqeval strict over words; partial counts a predicted "
    "entity right when it overlaps a gold one of its type. Models without sub-words are scored on words. "
    "In brackets: bootstrap 95% intervals, resampling test documents."
)
blocks.add_method_labels(
    {**TAGGER_NAMES, **{f"{key}{SAMBD}": f"{name} + SamBD" for key, name in TAGGER_NAMES.items()}}
)


def tagger_name(label: object) -> str:
    """A tagger's display name: "transformer-crf+sambd" -> "TransformerCRF + SamBD"."""
    text = str(label)
    base, sambd = (text[: -len(SAMBD)], True) if text.endswith(SAMBD) else (text, False)
    name = TAGGER_NAMES.get(base) or blocks.method_label(base)
    return f"{name} + SamBD" if sambd else name


def _models(folder: RunFolder) -> list[dict]:
    models = dig(folder.metrics, ("ner", "models"))
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def entity_f1(model: Mapping) -> Mapping | None:
    """Entity-level strict micro F1 with its interval (or the bare score), None when absent."""
    scores = model.get("scores") or {}
    estimate = dig(scores, HEADLINE[1])
    if isinstance(estimate, Mapping) and estimate.get("value") is not None:
        return estimate
    value = dig(scores, HEADLINE[0])
    return {"value": value} if isinstance(value, int | float) else None


# ----------------------------------------------------------------------------- headline


def headline(folder: RunFolder) -> str:
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""), answer(folder))


def answer(folder: RunFolder) -> str:
    """Which tagger reaches what entity-level F1 (CI), the runner-up, and SamBD's effect per tagger."""
    scored = [(m, e) for m in _models(folder) if (e := entity_f1(m))]
    if not scored:
        return ""
    level = blocks.confidence_level(folder)
    ranked = sorted(scored, key=lambda item: -item[1]["value"])
    best, estimate = ranked[0]
    name = blocks.escape(tagger_name(best.get("label")))
    test = dig(folder.metrics, ("ner", "test")) or {}
    where = "On the test documents"
    if isinstance(test.get("sentences"), int):
        entities = _entity_count(test)
        extra = f", {blocks.count(entities)} entities" if entities is not None else ""
        where += f" ({blocks.count(test['sentences'])} sentences{extra})"
    sentences = [
        f"{where}, {name} reached the highest entity-level strict F1, {blocks.ci_phrase(estimate, 3, level)}."
    ]
    if len(ranked) > 1:
        runner, theirs = ranked[1]
        other = blocks.escape(tagger_name(runner.get("label")))
        sentences.append(
            f"The runner-up, {other}, reached {blocks.ci_phrase(theirs, 3, level)}; "
            f"{blocks.verdict(estimate, theirs, name, other)}."
        )
    sentences += _sambd_sentences(scored, level)
    return " ".join(sentences)


def _entity_count(test: Mapping) -> int | None:
    entities = test.get("entities")
    if isinstance(entities, Mapping):
        values = [v for v in entities.values() if isinstance(v, int)]
        return sum(values) if values else None
    return entities if isinstance(entities, int) else None


def _sambd_sentences(scored: Sequence[tuple[Mapping, Mapping]], level: str) -> list[str]:
    """Each tagger trained both ways: without and with SamBD, and whether the intervals overlap."""
    by_label = {str(m.get("label")): e for m, e in scored}
    sentences = []
    for label, without in by_label.items():
        with_ = by_label.get(f"{label}{SAMBD}")
        if label.endswith(SAMBD) or with_ is None:
            continue
        name = blocks.escape(tagger_name(label))
        overlapping = blocks.intervals_overlap(with_, without)
        if overlapping is None:
            verdict = "no intervals, so no difference is claimed"
        elif overlapping:
            verdict = "the intervals overlap, so SamBD made no clear difference"
        else:
            verdict = (
                "SamBD "
                + ("helped" if with_["value"] > without["value"] else "hurt")
                + (" (the intervals do not overlap)")
            )
        sentences.append(
            f"{name} without SamBD reached {blocks.ci_phrase(without, 3, level)} and with it "
            f"{blocks.ci_phrase(with_, 3, level)}: {verdict}."
        )
    return sentences


# ----------------------------------------------------------------------------- caveats


def caveats(folder: RunFolder) -> list[str]:
    """Test size, entity types absent from the test set and what the intervals cover."""
    found = []
    test = dig(folder.metrics, ("ner", "test")) or {}
    entities = _entity_count(test) if isinstance(test, Mapping) else None
    if isinstance(entities, int) and entities < FEW_TEST_ENTITIES:
        found.append(f"The test documents hold only {entities} entities: intervals are wide.")
    per_type = test.get("entities") if isinstance(test, Mapping) else None
    trained = {t for m in _models(folder) for t in dig(m, ("scores", "entity", "per_type")) or {}}
    if isinstance(per_type, Mapping):
        absent = sorted(t for t in trained if not per_type.get(t))
        if absent:
            found.append(
                f"No test entity of type {', '.join(absent)}: their per-type F1 cannot be evaluated."
            )
    if _models(folder):
        found.append(
            "Confidence intervals cover the sampling of test documents, not training seeds "
            "(each tagger was trained once, with one seed)."
        )
    return blocks.caveats(folder, *found)


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
    return blocks.row(blocks.escape(tagger_name(model.get("label"))), size_and_speed + cells)


def _score(scores: Mapping, path: Sequence[str], interval: Sequence[str] | None) -> str:
    """The score with its interval where one was computed, else the bare score."""
    estimate = dig(scores, interval) if interval else None
    if isinstance(estimate, Mapping):
        return blocks.format_estimate(estimate, 3)
    return blocks.number(dig(scores, path), 3)


def _types_table(models: Sequence[Mapping]) -> str:
    per_model = {
        tagger_name(model.get("label")): dig(model, ("scores", "entity", "per_type")) or {}
        for model in models
    }
    types = sorted({t for scores in per_model.values() for t in scores})
    if not types:
        return ""
    rows = []
    for label, scores in per_model.items():
        cells = "".join(f"<td>{blocks.number(dig(scores, (t, 'f1')), 3)}</td>" for t in types)
        rows.append(blocks.row(blocks.escape(label), cells))
    head = "<th>Model</th>" + "".join(f"<th>{blocks.escape(t)}</th>" for t in types)
    return blocks.table(rows, head, "Entity-level strict F1 per type.")


# ----------------------------------------------------------------------------- processing


def processing(folder: RunFolder) -> str:
    """The test documents as read (sentences, entities, what was skipped or repaired) and SamBD's
    down-sampling per tagger, from each kept tagger's own run.json."""
    items = []
    test = dig(folder.metrics, ("ner", "test"))
    if isinstance(test, Mapping):
        if isinstance(test.get("sentences"), int):
            items.append(
                f"Test sentences scored: {blocks.count(test['sentences'])} "
                f"({blocks.count(test.get('sentences_without_entity'))} without any entity)."
            )
        entities = test.get("entities")
        if isinstance(entities, Mapping) and entities:
            items.append(
                "Test entities per type: "
                + ", ".join(f"{blocks.escape(t)} {blocks.count(n)}" for t, n in entities.items())
                + "."
            )
        repaired = dict_at(test, "skipped_or_repaired")
        if repaired:
            items.append(
                "Skipped or repaired while reading the test documents: "
                + ", ".join(
                    f"{blocks.escape(k.replace('_', ' '))} {blocks.count(n)}" for k, n in repaired.items()
                )
                + "."
            )
    for model in _models(folder):
        label = str(model.get("label"))
        if not label.endswith(SAMBD):
            continue
        train = dig(_model_run(folder, label), ("config", "data", "train"))
        if isinstance(train, Mapping) and isinstance(train.get("sentences_read"), int):
            items.append(
                f"SamBD for {blocks.escape(tagger_name(label))}: {blocks.count(train.get('sentences'))} of "
                f"{blocks.count(train['sentences_read'])} training sentences kept "
                "(sentences without any entity down-sampled)."
            )
        elif isinstance(model.get("train_sentences"), int):
            items.append(
                f"SamBD for {blocks.escape(tagger_name(label))}: trained on "
                f"{blocks.count(model['train_sentences'])} sentences after down-sampling."
            )
    if not items:
        return ""
    content = "<ul>\n" + "\n".join(f"<li>{item}</li>" for item in items) + "\n</ul>"
    return blocks.section("ner-data", "Test documents and SamBD", content, level=3)


def _model_run(folder: RunFolder, label: str) -> dict:
    """A kept tagger's run.json (``models/<label>/run.json``), or nothing when absent or unreadable."""
    if "/" in label or "\\" in label or label.startswith("."):
        return {}
    path = folder.path / "models" / label / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}
