"""Bootstrap confidence intervals for the headline NER scores, resampling documents.

Every score here is a function of per-sentence counts (true positives, false positives, false
negatives per label; entity matches per type), so a bootstrap replicate is a weighted sum of counts:
documents are drawn with replacement (sentences of one document stay together, as they are not
independent), and each replicate's scores come from its summed counts. The point estimates equal
``clinfm.ner.metrics``'s (tested); the intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clinfm.ner.document import split_tag
from clinfm.ner.metrics import merge_bi, overlaps, spans

Tags = Sequence[Sequence[str]]


# ------------------------------------------------------------------------------- counts per sentence


def token_counts(gold: Tags, pred: Tags, *, merged: bool = False) -> tuple[list[str], np.ndarray]:
    """(labels, counts[sentence, label, (tp, fp, fn)]) over tokens, O included (the paper's view)."""
    if merged:
        gold = [[merge_bi(t) for t in s] for s in gold]
        pred = [[merge_bi(t) for t in s] for s in pred]
    labels = sorted({t for s in gold for t in s} | {t for s in pred for t in s})
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(gold), len(labels), 3), dtype=np.int64)
    for row, (g, p) in enumerate(zip(gold, pred, strict=True)):
        for true, guess in zip(g, p, strict=True):
            if true == guess:
                counts[row, index[true], 0] += 1
            else:
                counts[row, index[guess], 1] += 1
                counts[row, index[true], 2] += 1
    return labels, counts


def strict_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities as seqeval's strict IOB2 mode reads them: B-X then I-X*, nothing else."""
    found, current = set(), None
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = split_tag(tag)
        if current is not None and not (prefix == "I" and kind == current[0]):
            found.add((current[0], current[1], i))
            current = None
        if prefix == "B":
            current = (kind, i)
    return found


def entity_counts(gold: Tags, pred: Tags) -> tuple[list[str], np.ndarray]:
    """(types, counts[sentence, type, (tp, fp, fn)]) of exact entity matches."""
    pairs = [(strict_spans(g), strict_spans(p)) for g, p in zip(gold, pred, strict=True)]
    types = sorted({e[0] for g, p in pairs for e in (*g, *p)})
    index = {kind: i for i, kind in enumerate(types)}
    counts = np.zeros((len(pairs), len(types), 3), dtype=np.int64)
    for row, (g, p) in enumerate(pairs):
        for kind, *_ in g & p:
            counts[row, index[kind], 0] += 1
        for kind, *_ in p - g:
            counts[row, index[kind], 1] += 1
        for kind, *_ in g - p:
            counts[row, index[kind], 2] += 1
    return types, counts


def partial_counts(gold: Tags, pred: Tags) -> tuple[list[str], np.ndarray]:
    """(types, counts[sentence, type, (pred_correct, pred, gold_found, gold)]) by overlap."""
    pairs = [(spans(list(g)), spans(list(p))) for g, p in zip(gold, pred, strict=True)]
    types = sorted({e[0] for g, p in pairs for e in (*g, *p)})
    index = {kind: i for i, kind in enumerate(types)}
    counts = np.zeros((len(pairs), len(types), 4), dtype=np.int64)
    for row, (g, p) in enumerate(pairs):
        for entity in p:
            counts[row, index[entity[0]], 0] += any(overlaps(entity, other) for other in g)
            counts[row, index[entity[0]], 1] += 1
        for entity in g:
            counts[row, index[entity[0]], 2] += any(overlaps(entity, other) for other in p)
            counts[row, index[entity[0]], 3] += 1
    return types, counts


# ------------------------------------------------------------------------------ scores from counts


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=float), where=denominator > 0)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2 * precision * recall, precision + recall)


def per_label_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    return _f1(_ratio(tp, tp + fp), _ratio(tp, tp + fn))


def macro_f1(totals: np.ndarray) -> np.ndarray:
    """Mean F1 over the labels present (gold or predicted) in each replicate; totals[..., label, 3]."""
    tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
    present = (tp + fp + fn) > 0
    return (per_label_f1(tp, fp, fn) * present).sum(-1) / np.maximum(present.sum(-1), 1)


def weighted_f1(totals: np.ndarray) -> np.ndarray:
    tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
    support = tp + fn
    return _ratio((per_label_f1(tp, fp, fn) * support).sum(-1), support.sum(-1))


def micro_f1(totals: np.ndarray) -> np.ndarray:
    tp, fp, fn = (totals[..., k].sum(-1) for k in range(3))
    return _ratio(2 * tp, 2 * tp + fp + fn)


def partial_micro_f1(totals: np.ndarray) -> np.ndarray:
    precision = _ratio(totals[..., 0].sum(-1), totals[..., 1].sum(-1))
    recall = _ratio(totals[..., 2].sum(-1), totals[..., 3].sum(-1))
    return _f1(precision, recall)


# ---------------------------------------------------------------------------------------- bootstrap


def _by_group(counts: np.ndarray, groups: Sequence[str], order: dict[str, int]) -> np.ndarray:
    summed = np.zeros((len(order), *counts.shape[1:]), dtype=np.int64)
    np.add.at(summed, np.array([order[g] for g in groups], dtype=np.int64), counts)
    return summed


def bootstrap_intervals(
    gold_words: Tags,
    pred_words: Tags,
    word_groups: Sequence[str],
    *,
    gold_subwords: Tags | None = None,
    pred_subwords: Tags | None = None,
    subword_groups: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """Point estimate and percentile interval of each headline score, resampling ``*_groups``
    (documents) with replacement. The paper's scores use sub-words when they are given."""
    paper_gold, paper_pred, paper_groups = (
        (gold_subwords, pred_subwords, subword_groups)
        if gold_subwords is not None
        else (gold_words, pred_words, word_groups)
    )
    order = {g: i for i, g in enumerate(dict.fromkeys([*word_groups, *paper_groups]))}
    bio = _by_group(token_counts(paper_gold, paper_pred)[1], paper_groups, order)
    token = _by_group(token_counts(paper_gold, paper_pred, merged=True)[1], paper_groups, order)
    entity = _by_group(entity_counts(gold_words, pred_words)[1], word_groups, order)
    partial = _by_group(partial_counts(gold_words, pred_words)[1], word_groups, order)
    scores = {
        "bio_strict_macro_f1": (bio, macro_f1),
        "bio_strict_weighted_f1": (bio, weighted_f1),
        "token_macro_f1": (token, macro_f1),
        "entity_micro_f1": (entity, micro_f1),
        "entity_macro_f1": (entity, macro_f1),
        "partial_micro_f1": (partial, partial_micro_f1),
    }
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(order), np.full(len(order), 1 / len(order)), size=n_bootstrap)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, (counts, score) in scores.items():
        value = float(score(counts.sum(0)))
        replicates = score(np.einsum("bg,g...->b...", draws, counts))
        low, high = np.percentile(replicates, [tail, 100 - tail])
        out[name] = {"value": value, "low": float(low), "high": float(high)}
    out["resampled"] = {"unit": "document", "n": len(order), "n_bootstrap": n_bootstrap, "level": level}
    return out
