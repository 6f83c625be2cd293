"""Synthetic medication documents: determinism, exact offsets, all types, unlabelled share,
held-out drugs, ambiguity between Reason and ADE, and the brat corpus they are written as."""

from __future__ import annotations

from collections import defaultdict

import pytest

from clinfm.errors import InputError
from clinfm.ner import synth
from clinfm.ner.document import ReadReport
from clinfm.ner.synth import ENTITY_TYPES, HELD_OUT_DRUGS, TRAIN_DRUGS, synthetic_corpus, synthetic_documents

# What each entity's text must be drawn from (compared case-folded: a sentence may capitalise it).
VOCABULARY = {
    "Drug": synth.DRUGS,
    "Strength": synth.STRENGTHS,
    "Dosage": synth.DOSAGES,
    "Form": synth.FORMS + tuple(form for pair in synth.COUNTED_FORMS for form in pair),
    "Route": synth.ROUTES,
    "Frequency": synth.FREQUENCIES,
    "Duration": synth.DURATIONS,
    "Reason": synth.REASONS,
    "ADE": synth.ADES,
}


@pytest.fixture(scope="module")
def documents():
    return synthetic_documents(500, seed=0)


def _texts(documents, kind):
    return {d.text[e.start : e.end].casefold() for d in documents for e in d.entities if e.type == kind}


def test_same_seed_same_documents_other_seed_other_documents():
    assert synthetic_documents(50, seed=4) == synthetic_documents(50, seed=4)
    assert synthetic_documents(50, seed=4) != synthetic_documents(50, seed=5)


def test_names_are_numbered_from_one(documents):
    assert [d.name for d in documents[:3]] == ["synth_00001", "synth_00002", "synth_00003"]
    assert len({d.name for d in documents}) == len(documents)


def test_every_entity_covers_exactly_a_phrase_of_its_type(documents):
    vocabulary = {kind: {phrase.casefold() for phrase in phrases} for kind, phrases in VOCABULARY.items()}
    for document in documents:
        ids = [entity.id for entity in document.entities]
        assert ids == [f"T{i}" for i in range(1, len(ids) + 1)]
        previous_end = 0
        for entity in document.entities:
            ((start, end),) = entity.spans
            phrase = document.text[start:end]
            assert phrase.casefold() in vocabulary[entity.type], (document.name, entity, phrase)
            assert start >= previous_end and "\n" not in phrase  # in order, no overlap, within a line
            previous_end = end


def test_all_types_appear(documents):
    assert {e.type for d in documents for e in d.entities} == set(ENTITY_TYPES)


@pytest.mark.parametrize("share", [0.6, 0.3])
def test_share_of_sentences_without_entities_is_as_requested(share):
    documents = synthetic_documents(500, seed=1, unlabeled_share=share)
    empty = total = 0
    for document in documents:
        line_start = 0
        for line in document.text.split("\n"):  # one sentence per line
            line_end = line_start + len(line)
            empty += not any(line_start <= e.start < line_end for e in document.entities)
            total += 1
            line_start = line_end + 1
    assert abs(empty / total - share) < 0.05


def test_held_out_drugs_are_disjoint_from_training_drugs(documents):
    assert not {d.casefold() for d in HELD_OUT_DRUGS} & {d.casefold() for d in TRAIN_DRUGS}
    held_out = _texts(synthetic_documents(300, seed=0, held_out_drugs=True), "Drug")
    assert held_out <= {d.casefold() for d in HELD_OUT_DRUGS}
    assert held_out and not held_out & _texts(documents, "Drug")


def test_the_same_words_are_a_reason_in_one_sentence_and_an_ade_in_another(documents):
    types_of = defaultdict(set)
    for document in documents:
        for entity in document.entities:
            types_of[document.text[entity.start : entity.end].casefold()].add(entity.type)
    assert sum(types == {"Reason", "ADE"} for types in types_of.values()) >= 5


def test_entities_fall_on_token_boundaries(documents):
    # The tokenizer the models use must be able to tag every synthetic entity exactly.
    from clinfm.ner.text import to_sentences

    report = ReadReport()
    sentences = [s for d in documents for s in to_sentences(d, report=report)]
    assert not report.counts, report.to_dict()
    assert {tag[2:] for s in sentences for tag in s.tags if tag != "O"} == set(ENTITY_TYPES)


def test_corpus_is_written_as_brat_with_held_out_drugs_in_half_of_test(tmp_path):
    from clinfm.ner.brat import read_brat

    out = synthetic_corpus(tmp_path / "corpus", train=40, dev=10, test=20, seed=3)
    splits = {split: read_brat(out / split) for split in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [40, 10, 20]
    test = splits["test"]
    assert [d.name for d in test] == [f"synth_{i:05d}" for i in range(1, 21)]
    held_out = {d.casefold() for d in HELD_OUT_DRUGS}
    assert not _texts(test[:10], "Drug") & held_out and _texts(test[10:], "Drug") <= held_out
    # Offsets survive the round trip through .ann files.
    again = synthetic_corpus(tmp_path / "again", train=40, dev=10, test=20, seed=3)
    assert read_brat(again / "train") == splits["train"]
    with pytest.raises(InputError):
        synthetic_corpus(out, train=40, dev=10, test=20, seed=3)
