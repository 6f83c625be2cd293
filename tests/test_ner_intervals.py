"""Bootstrap intervals of the NER scores: the point estimates are the metrics' own, the intervals
cover them, and resampling keeps a document's sentences together."""

from __future__ import annotations

import random

import pytest

from clinfm.ner.intervals import bootstrap_intervals, strict_spans
from clinfm.ner.metrics import entity_scores, paper_scores, partial_scores

TAGS = ["O", "O", "O", "B-Drug", "I-Drug", "B-Dose", "I-Dose", "B-Route"]


def _noisy(n: int, seed: int = 0):
    rng = random.Random(seed)
    gold = [[rng.choice(TAGS) for _ in range(rng.randint(1, 12))] for _ in range(n)]
    pred = [[t if rng.random() < 0.7 else rng.choice(TAGS) for t in s] for s in gold]
    return gold, pred


def test_point_estimates_equal_the_metrics_functions():
    gold, pred = _noisy(300)
    found = bootstrap_intervals(gold, pred, [f"d{i // 3}" for i in range(300)], n_bootstrap=50)
    paper, entity, partial = paper_scores(gold, pred), entity_scores(gold, pred), partial_scores(gold, pred)
    expected = {
        "bio_strict_macro_f1": paper["bio_strict"]["macro"]["f1"],
        "bio_strict_weighted_f1": paper["bio_strict"]["weighted"]["f1"],
        "token_macro_f1": paper["token"]["macro"]["f1"],
        "entity_micro_f1": entity["micro"]["f1"],  # seqeval strict
        "entity_macro_f1": entity["macro"]["f1"],
        "partial_micro_f1": partial["micro"]["f1"],
    }
    for name, value in expected.items():
        assert found[name]["value"] == pytest.approx(value), name
        assert found[name]["low"] <= value <= found[name]["high"], name
    assert found["resampled"] == {"unit": "document", "n": 100, "n_bootstrap": 50, "level": 0.95}


def test_strict_spans_ignore_a_chunk_that_starts_with_i():
    assert strict_spans(["I-Drug", "I-Drug", "O", "B-Drug", "I-Drug", "I-Dose"]) == {("Drug", 3, 5)}


def test_documents_are_resampled_whole_so_copies_do_not_narrow_the_interval():
    gold, pred = _noisy(40, seed=1)
    one = bootstrap_intervals(gold, pred, [str(i) for i in range(40)], n_bootstrap=400)["entity_micro_f1"]
    # each sentence ten times, as ten sentences of its own document: the same evidence
    copies = bootstrap_intervals(gold * 10, pred * 10, [str(i) for i in range(40)] * 10, n_bootstrap=400)
    width = one["high"] - one["low"]
    assert copies["entity_micro_f1"]["high"] - copies["entity_micro_f1"]["low"] == pytest.approx(
        width, rel=0.35
    )
    # treated as independent, the copies would claim an interval about sqrt(10) times narrower
    naive = bootstrap_intervals(gold * 10, pred * 10, [str(i) for i in range(400)], n_bootstrap=400)
    assert naive["entity_micro_f1"]["high"] - naive["entity_micro_f1"]["low"] < width / 2
