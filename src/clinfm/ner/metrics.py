"""NER scores, three families side by side, over lists of tag sequences (one list of tags per sentence).

* ``paper_scores``: what Belkadi et al. report. sklearn ``precision_recall_fscore_support`` over every
  token (sub-word tokens in the paper) with O included, once with B-X and I-X as distinct labels
  ("bio_strict") and once with them merged into X ("token"). Macro is the unweighted mean over all
  labels including O, weighted is by gold support, micro equals accuracy. These are token scores,
  not entity scores, even where the paper says "span level".
* ``entity_scores``: seqeval strict IOB2 entity scores (the usual NER number): an entity counts only
  if its type and both boundaries match; ill-formed chunks (an I-X with no B-X) are not entities.
* ``partial_scores``: lenient matching: an entity counts if it overlaps one of the same type.

Labels are the sorted union of gold and predicted labels, with zero_division = 0: a label that is
neither in the gold nor predicted has no row and does not enter the macro mean.
"""

from __future__ import annotations

import warnings
from collections import Counter

from sklearn.metrics import precision_recall_fscore_support

from .document import OUTSIDE, split_tag

Tags = list[list[str]]


# ------------------------------------------------------------------------------------------- checks


def check_shapes(gold: Tags, pred: Tags) -> None:
    """ValueError unless gold and pred have the same number of sentences and each the same length."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but predictions have {len(pred)}")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: gold has {len(g)} tags but predictions have {len(p)}")


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities of one sentence as (type, start, end), end exclusive, by the lenient conlleval rule:
    B-X starts an entity, I-X continues an X entity and otherwise starts a new one."""
    found: list[tuple[str, int, int]] = []
    current: tuple[str, int] | None = None  # (type, start) of the entity being read
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        continues = prefix == "I" and current is not None and current[0] == kind
        if current is not None and not continues:
            found.append((current[0], current[1], i))
            current = None
        if prefix != OUTSIDE and not continues:
            current = (kind, i)
    if current is not None:
        found.append((current[0], current[1], len(tags)))
    return found


# ------------------------------------------------------------------------------- the paper's scores


def paper_scores(gold: Tags, pred: Tags) -> dict:
    """The paper's token scores in two views, "bio_strict" and "token" (B/I merged); see module doc."""
    check_shapes(gold, pred)
    y_true = [tag for sentence in gold for tag in sentence]
    y_pred = [tag for sentence in pred for tag in sentence]
    if not y_true:
        raise ValueError("no tokens to score")
    return {
        "bio_strict": token_view(y_true, y_pred),
        "token": token_view([merge_bi(t) for t in y_true], [merge_bi(t) for t in y_pred]),
    }


def merge_bi(tag: str) -> str:
    """B-X and I-X -> X; O stays O."""
    return tag[2:] if tag[:2] in ("B-", "I-") else tag


def token_view(y_true: list[str], y_pred: list[str]) -> dict:
    """sklearn P/R/F1 over flat token labels: macro, weighted, micro (= accuracy), per label."""
    labels = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    per_label = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    without_o = [label for label in labels if label != OUTSIDE]
    return {
        "macro": averaged(y_true, y_pred, labels, "macro"),
        "macro_without_o": mean_of(per_label, without_o),  # the paper's Table IV
        "weighted": averaged(y_true, y_pred, labels, "weighted"),
        "micro": averaged(y_true, y_pred, labels, "micro"),  # every label included, so P = R = F1 = accuracy
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true),
        "per_label": per_label,
    }


def averaged(y_true: list[str], y_pred: list[str], labels: list[str], average: str) -> dict:
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=average, zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def mean_of(per_label: dict, labels: list[str]) -> dict:
    """Unweighted mean of per-label P/R/F1 over ``labels`` (zeros when there are none)."""
    n = max(len(labels), 1)
    return {key: sum(per_label[label][key] for label in labels) / n for key in ("precision", "recall", "f1")}


# --------------------------------------------------------------------------------- entity (seqeval)


def entity_scores(gold: Tags, pred: Tags) -> dict:
    """seqeval strict IOB2 entity P/R/F1: micro, macro and weighted over types, and per type."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    check_shapes(gold, pred)
    for sentence in (*gold, *pred):
        for tag in sentence:
            split_tag(tag)  # seqeval fails with a bare KeyError on a non-IOB2 tag
    with warnings.catch_warnings():  # seqeval warns (mean of empty slice) when there are no entities
        warnings.simplefilter("ignore")
        report = classification_report(
            gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
        )
    averages = {"micro avg": "micro", "macro avg": "macro", "weighted avg": "weighted"}
    scores: dict = {name: prf(report[key]) for key, name in averages.items()}
    scores["per_type"] = {
        kind: {**prf(row), "support": int(row["support"])}
        for kind, row in sorted(report.items())
        if kind not in averages
    }
    return scores


def prf(row: dict) -> dict:
    """seqeval's row as {precision, recall, f1} floats, NaN (no entities at all) read as 0."""
    return {
        name: 0.0 if value != value else float(value)
        for name, value in (
            ("precision", row["precision"]),
            ("recall", row["recall"]),
            ("f1", row["f1-score"]),
        )
    }


# ------------------------------------------------------------------------------- partial (overlap)


def partial_scores(gold: Tags, pred: Tags) -> dict:
    """Lenient entity scores: a predicted entity is right if it shares a token with a gold entity of the
    same type (precision); a gold entity is found if a predicted one of its type overlaps it (recall)."""
    check_shapes(gold, pred)
    counts = {name: Counter() for name in ("gold", "pred", "pred_correct", "gold_found")}
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        gold_spans, pred_spans = spans(gold_tags), spans(pred_tags)
        for kind, start, end in gold_spans:
            counts["gold"][kind] += 1
            counts["gold_found"][kind] += any(overlaps((kind, start, end), p) for p in pred_spans)
        for kind, start, end in pred_spans:
            counts["pred"][kind] += 1
            counts["pred_correct"][kind] += any(overlaps((kind, start, end), g) for g in gold_spans)
    kinds = sorted(set(counts["gold"]) | set(counts["pred"]))
    per_type = {kind: {**partial_prf(counts, [kind]), "support": counts["gold"][kind]} for kind in kinds}
    return {
        "micro": partial_prf(counts, kinds),
        "macro": mean_of(per_type, kinds),
        "per_type": per_type,
    }


def overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    """Same type and at least one shared token ([start, end) intervals)."""
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def partial_prf(counts: dict[str, Counter], kinds: list[str]) -> dict:
    def total(name: str) -> int:
        return sum(counts[name][kind] for kind in kinds)

    precision = total("pred_correct") / total("pred") if total("pred") else 0.0
    recall = total("gold_found") / total("gold") if total("gold") else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --------------------------------------------------------------------------------------- together


def ner_scores(
    gold_words: Tags, pred_words: Tags, gold_subwords: Tags | None = None, pred_subwords: Tags | None = None
) -> dict:
    """All three families: the paper's on sub-words if given (else on words), entity and partial on words."""
    if (gold_subwords is None) != (pred_subwords is None):
        raise ValueError("give both gold and predicted sub-word tags, or neither")
    on_subwords = gold_subwords is not None
    return {
        "paper_unit": "subword" if on_subwords else "word",
        "paper": paper_scores(gold_subwords, pred_subwords)
        if on_subwords
        else paper_scores(gold_words, pred_words),
        "entity": entity_scores(gold_words, pred_words),
        "partial": partial_scores(gold_words, pred_words),
    }


def format_table(scores: dict) -> str:
    """A plain-text P / R / F1 table of ``ner_scores`` output, for the CLI to print."""
    paper, entity, partial = scores["paper"], scores["entity"], scores["partial"]
    rows = [
        ("paper BIO-strict macro", paper["bio_strict"]["macro"]),
        ("paper BIO-strict weighted", paper["bio_strict"]["weighted"]),
        ("paper token macro", paper["token"]["macro"]),
        ("paper token macro without O", paper["token"]["macro_without_o"]),
        ("paper token weighted", paper["token"]["weighted"]),
        ("paper accuracy (micro)", paper["bio_strict"]["micro"]),
        ("entity strict micro", entity["micro"]),
        ("entity strict macro", entity["macro"]),
        ("partial (overlap) micro", partial["micro"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"paper scores on {scores.get('paper_unit', 'word')} tokens with O included; entity scores on words",
        f"{'':<{width}}  {'P':>6}  {'R':>6}  {'F1':>6}",
    ]
    lines += [
        f"{name:<{width}}  {s['precision']:6.3f}  {s['recall']:6.3f}  {s['f1']:6.3f}" for name, s in rows
    ]
    return "\n".join(lines)
