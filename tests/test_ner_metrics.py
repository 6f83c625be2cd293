"""Each NER metric against small examples worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import warnings

import pytest

from clinfm.ner.metrics import (
    entity_scores,
    format_table,
    ner_scores,
    paper_scores,
    partial_scores,
    spans,
)

approx = pytest.approx

# position:    0         1         2    3        4        5        6
GOLD = [["B-Drug", "I-Drug", "O", "B-ADE", "I-ADE", "I-ADE", "O"]]
PRED = [["B-Drug", "B-Drug", "O", "O", "B-ADE", "I-ADE", "O"]]


def prf(scores: dict) -> tuple[float, float, float]:
    return scores["precision"], scores["recall"], scores["f1"]


def test_bio_strict_per_label_macro_weighted_and_micro():
    view = paper_scores(GOLD, PRED)["bio_strict"]
    per = view["per_label"]
    assert sorted(per) == ["B-ADE", "B-Drug", "I-ADE", "I-Drug", "O"]
    # B-ADE: gold {3}, pred {4}: nothing right -> 0, 0, 0, support 1
    assert (*prf(per["B-ADE"]), per["B-ADE"]["support"]) == (0, 0, 0, 1)
    # B-Drug: gold {0}, pred {0, 1}: P 1/2, R 1/1, F1 2/3
    assert prf(per["B-Drug"]) == approx((1 / 2, 1, 2 / 3))
    # I-ADE: gold {4, 5}, pred {5}: P 1/1, R 1/2, F1 2/3, support 2
    assert prf(per["I-ADE"]) == approx((1, 1 / 2, 2 / 3)) and per["I-ADE"]["support"] == 2
    # I-Drug: gold {1}, never predicted: P 0 (zero_division), R 0, F1 0
    assert prf(per["I-Drug"]) == (0, 0, 0)
    # O: gold {2, 6}, pred {2, 3, 6}: P 2/3, R 1, F1 0.8
    assert prf(per["O"]) == approx((2 / 3, 1, 0.8))
    # macro over all five labels, O included:
    #   P (0 + 1/2 + 1 + 0 + 2/3) / 5 = 13/30; R (0 + 1 + 1/2 + 0 + 1) / 5 = 1/2
    #   F1 (0 + 2/3 + 2/3 + 0 + 0.8) / 5 = 32/75
    assert prf(view["macro"]) == approx((13 / 30, 1 / 2, 32 / 75))
    # without O: P (0 + 1/2 + 1 + 0) / 4 = 3/8; R (0 + 1 + 1/2 + 0) / 4 = 3/8; F1 (4/3) / 4 = 1/3
    assert prf(view["macro_without_o"]) == approx((3 / 8, 3 / 8, 1 / 3))
    # weighted by gold support (1, 1, 2, 1, 2 of 7):
    #   P (1/2 + 2*1 + 2*2/3) / 7 = 23/42; R (1 + 2*1/2 + 2*1) / 7 = 4/7; F1 (2/3 + 2*2/3 + 2*0.8) / 7 = 18/35
    assert prf(view["weighted"]) == approx((23 / 42, 4 / 7, 18 / 35))
    # micro = accuracy: positions 0, 2, 5, 6 right -> 4/7
    assert prf(view["micro"]) == approx((4 / 7, 4 / 7, 4 / 7)) and view["accuracy"] == approx(4 / 7)


def test_token_view_merges_b_and_i_so_a_b_for_i_confusion_is_right():
    view = paper_scores(GOLD, PRED)["token"]
    per = view["per_label"]
    # gold Drug Drug O ADE ADE ADE O
    # pred Drug Drug O O   ADE ADE O: position 1 (B-Drug for I-Drug) is now right
    assert sorted(per) == ["ADE", "Drug", "O"]
    # ADE: gold {3, 4, 5}, pred {4, 5}: P 1, R 2/3, F1 0.8
    assert prf(per["ADE"]) == approx((1, 2 / 3, 0.8)) and per["ADE"]["support"] == 3
    assert prf(per["Drug"]) == approx((1, 1, 1)) and per["Drug"]["support"] == 2
    assert prf(per["O"]) == approx((2 / 3, 1, 0.8))
    # macro with O: P (1 + 1 + 2/3) / 3 = 8/9; R (2/3 + 1 + 1) / 3 = 8/9; F1 (0.8 + 1 + 0.8) / 3 = 13/15
    assert prf(view["macro"]) == approx((8 / 9, 8 / 9, 13 / 15))
    # without O (the paper's Table IV): P 1; R (2/3 + 1) / 2 = 5/6; F1 (0.8 + 1) / 2 = 0.9
    assert prf(view["macro_without_o"]) == approx((1, 5 / 6, 0.9))
    # weighted (supports 3, 2, 2 of 7): P (3 + 2 + 4/3) / 7 = 19/21; R (2 + 2 + 2) / 7 = 6/7
    #   F1 (2.4 + 2 + 1.6) / 7 = 6/7
    assert prf(view["weighted"]) == approx((19 / 21, 6 / 7, 6 / 7))
    assert view["accuracy"] == approx(6 / 7)  # only position 3 (O for ADE) is wrong


def test_a_label_only_predicted_enters_the_macro_mean_and_an_absent_one_does_not():
    view = paper_scores([["O", "O"]], [["O", "B-X"]])["bio_strict"]
    # B-X: never gold, predicted once: P 0, R 0 (zero_division), support 0; O: P 1/1, R 1/2, F1 2/3
    assert view["per_label"]["B-X"] == {"precision": 0, "recall": 0, "f1": 0, "support": 0}
    assert "I-X" not in view["per_label"]
    # macro F1 = (0 + 2/3) / 2 = 1/3; weighted counts only O (support 2 of 2) -> 2/3
    assert view["macro"]["f1"] == approx(1 / 3) and view["weighted"]["f1"] == approx(2 / 3)


# gold entities: Drug [0,2), ADE [3,4) in sentence 0; Reason [0,1) in sentence 1
ENTITY_GOLD = [["B-Drug", "I-Drug", "O", "B-ADE", "O"], ["B-Reason", "O"]]
# predicted:     Drug [0,2) exact, Reason [3,4) wrong type; Reason [0,2) a boundary error
ENTITY_PRED = [["B-Drug", "I-Drug", "O", "B-Reason", "O"], ["B-Reason", "I-Reason"]]


def test_entity_strict_counts_a_boundary_error_as_wrong():
    scores = entity_scores(ENTITY_GOLD, ENTITY_PRED)
    # only Drug matches exactly: P 1/3 predicted, R 1/3 gold, F1 1/3
    assert prf(scores["micro"]) == approx((1 / 3, 1 / 3, 1 / 3))
    per = scores["per_type"]
    assert per["Drug"] == {"precision": 1, "recall": 1, "f1": 1, "support": 1}
    assert per["ADE"] == {"precision": 0, "recall": 0, "f1": 0, "support": 1}
    assert per["Reason"] == {"precision": 0, "recall": 0, "f1": 0, "support": 1}  # 2 predicted, 0 right
    # macro over the 3 types = (1 + 0 + 0) / 3; weighted with supports 1, 1, 1 is the same
    assert prf(scores["macro"]) == approx((1 / 3, 1 / 3, 1 / 3))
    assert prf(scores["weighted"]) == approx((1 / 3, 1 / 3, 1 / 3))


def test_partial_counts_an_overlap_of_the_same_type_as_right():
    scores = partial_scores(ENTITY_GOLD, ENTITY_PRED)
    # predicted Drug overlaps gold Drug, Reason [0,2) overlaps gold Reason [0,1), Reason [3,4) meets only ADE:
    #   P 2/3; gold Drug and Reason are found, ADE is not: R 2/3; F1 2/3
    assert prf(scores["micro"]) == approx((2 / 3, 2 / 3, 2 / 3))
    per = scores["per_type"]
    assert prf(per["Reason"]) == approx((1 / 2, 1, 2 / 3)) and per["Reason"]["support"] == 1
    assert prf(per["ADE"]) == (0, 0, 0) and prf(per["Drug"]) == (1, 1, 1)
    # macro over Drug, ADE, Reason: P (1 + 0 + 1/2) / 3 = 1/2; R (1 + 0 + 1) / 3 = 2/3
    #   F1 (1 + 0 + 2/3) / 3 = 5/9
    assert prf(scores["macro"]) == approx((1 / 2, 2 / 3, 5 / 9))


def test_strict_drops_an_ill_formed_chunk_that_the_lenient_rule_reads():
    gold, pred = [["B-Drug", "I-Drug"]], [["I-Drug", "I-Drug"]]  # no B: not an entity in strict IOB2
    assert prf(entity_scores(gold, pred)["micro"]) == (0, 0, 0)
    assert prf(partial_scores(gold, pred)["micro"]) == (1, 1, 1)  # lenient: Drug [0,2), an exact match even


def test_spans_use_the_lenient_conlleval_rule():
    assert spans(["I-A", "I-A", "I-B", "B-B", "O", "I-A"]) == [
        ("A", 0, 2),
        ("B", 2, 3),
        ("B", 3, 4),
        ("A", 5, 6),
    ]
    assert spans(["B-A", "I-A", "B-A"]) == [("A", 0, 2), ("A", 2, 3)]
    assert spans(["O", "O"]) == []
    with pytest.raises(ValueError, match="IOB2"):
        spans(["O", "E-A"])


def test_no_entities_at_all_gives_zeros_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prf(entity_scores([["O"]], [["O"]])["macro"]) == (0, 0, 0)
    assert prf(partial_scores([["O"]], [["O"]])["micro"]) == (0, 0, 0)


@pytest.mark.parametrize("score", [paper_scores, entity_scores, partial_scores])
def test_mismatched_shapes_are_refused(score):
    with pytest.raises(ValueError, match="sentences"):
        score([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1"):
        score([["O"], ["O", "O"]], [["O"], ["O"]])


def test_ner_scores_puts_the_three_families_together():
    words = ner_scores(ENTITY_GOLD, ENTITY_PRED)
    assert words["paper_unit"] == "word"
    assert words["paper"] == paper_scores(ENTITY_GOLD, ENTITY_PRED)
    assert words["entity"] == entity_scores(ENTITY_GOLD, ENTITY_PRED)
    assert words["partial"] == partial_scores(ENTITY_GOLD, ENTITY_PRED)
    subwords = ner_scores(ENTITY_GOLD, ENTITY_PRED, GOLD, PRED)
    assert subwords["paper_unit"] == "subword" and subwords["paper"] == paper_scores(GOLD, PRED)
    with pytest.raises(ValueError, match="both"):
        ner_scores(ENTITY_GOLD, ENTITY_PRED, GOLD, None)

    table = format_table(subwords)
    assert "subword" in table.splitlines()[0]
    row = next(line for line in table.splitlines() if line.startswith("paper BIO-strict macro"))
    assert row.split()[-3:] == ["0.433", "0.500", "0.427"]  # 13/30, 1/2, 32/75 from above
    assert any(line.startswith("partial (overlap) micro") for line in table.splitlines())
