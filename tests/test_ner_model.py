"""Taggers and their data: the paper's sizes, sub-word labels, long sentences, SamBD, settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfm.errors import InputError
from clinfm.ner.data import SubwordData, label_set, sambd, subword_tags, train_wordpiece
from clinfm.ner.document import Sentence
from clinfm.ner.model import Tagger, TaggerConfig, scratch_encoder_config
from clinfm.ner.recipes import training_settings


def _sentence(tokens: str, tags: str | None = None, document: str = "d") -> Sentence:
    words = tokens.split()
    offsets, position = [], 0
    for word in words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return Sentence(document, tuple(words), tuple(offsets), tuple(tags.split()) if tags else None)


CORPUS = [
    _sentence("Start metoprolol 25 mg PO daily", "O B-Drug B-Strength I-Strength B-Route B-Frequency"),
    _sentence("Stop lisinopril due to angioedema", "O B-Drug O O B-ADE"),
    _sentence("The patient was afebrile overnight", "O O O O O"),
] * 20


def _tagger(labels, head: str, preset: str = "small", vocab_size: int | None = None) -> Tagger:
    from transformers import AutoModel

    encoder = AutoModel.from_config(scratch_encoder_config(preset, vocab_size))
    config = TaggerConfig(
        labels=tuple(labels),
        head=head,
        encoder_config=encoder.config.to_diff_dict(),
        encoder_source="scratch",
    )
    return Tagger(encoder, config)


def test_the_paper_preset_has_the_papers_parameter_counts():
    # Table I: TransformerCRF 65,205,922 and Transformer-Apt 65,205,523 with 19 BIO labels (9 types).
    labels = ["O", *(f"{p}-T{i}" for i in range(9) for p in "BI")]
    assert _tagger(labels, "crf", "paper").num_parameters() == 65_205_922
    assert _tagger(labels, "apt", "paper").num_parameters() == 65_205_523
    encoder = scratch_encoder_config("paper")
    assert (encoder.n_layers, encoder.dim, encoder.n_heads, encoder.vocab_size) == (6, 768, 12, 28996)


def test_paper_training_settings_per_model():
    crf = training_settings("transformer-crf", "paper")
    assert (crf.batch_size, crf.max_epochs, crf.lr) == (8, 4, 1e-4)
    assert (crf.optimizer, crf.weight_decay, crf.schedule, crf.patience) == ("adamw", 0.01, "linear", None)
    bert = training_settings("bert-crf", "paper", {"max_epochs": 5, "lr": None})
    assert (bert.batch_size, bert.max_epochs, bert.lr) == (14, 5, 5e-5)
    with pytest.raises(InputError, match="unknown NER model"):
        training_settings("lstm-crf", "paper")


def test_continuation_of_a_b_word_is_i_and_other_continuations_copy():
    # words: [metoprolol(B-Drug) -> 3 pieces, daily(O) -> 2 pieces, sulfate(I-Drug) -> 2 pieces]
    word_index = np.array([0, 0, 0, 1, 1, 2, 2])
    tags = subword_tags(["B-Drug", "O", "I-Drug"], word_index)
    assert tags == ["B-Drug", "I-Drug", "I-Drug", "O", "O", "I-Drug", "I-Drug"]


def test_subword_data_labels_every_piece_and_cuts_long_sentences_at_word_boundaries():
    tokenizer = train_wordpiece(CORPUS, 200, min_frequency=1)
    labels = label_set(CORPUS)
    assert labels[0] == "O" and "B-Drug" in labels and "I-Drug" in labels
    data = SubwordData(CORPUS[:3], tokenizer, labels, max_length=4)
    # no piece is longer than the limit, and together they cover every sub-word of every sentence
    assert data.lengths.max() <= 4
    whole = SubwordData(CORPUS[:3], tokenizer, labels, max_length=180)
    assert data.lengths.sum() == whole.lengths.sum() and len(whole) == 3
    for piece in data.pieces:  # each piece starts at a word's first sub-word
        assert piece.word_index[0] == 0
    batch = whole.collate([0, 1])
    assert batch["input_ids"].shape == batch["tags"].shape == batch["attention_mask"].shape
    first = whole.tag_ids[0][: len(whole.pieces[0].input_ids)]
    assert labels[first[1]] in ("B-Drug", "I-Drug")  # metoprolol's first or second piece


def test_sambd_keeps_every_sentence_with_an_entity_and_about_8_percent_of_the_rest():
    empty = _sentence("nothing to see here", "O O O O")
    full = _sentence("aspirin daily", "B-Drug B-Frequency")
    sentences = [empty] * 20_000 + [full] * 100
    kept = sambd(sentences, seed=3)
    kept_empty = sum(s is empty for s in kept)
    assert sum(s is full for s in kept) == 100
    # binomial(20000, 0.08): mean 1600, sd 38
    assert abs(kept_empty - 1600) < 4 * 38
    assert len(sambd(sentences, seed=3)) == len(kept)  # seeded
    assert len(sambd(sentences, keep=1.0)) == len(sentences) and len(sambd(sentences, keep=0.0)) == 100
    with pytest.raises(InputError):
        sambd(sentences, keep=1.5)


def test_crf_and_apt_heads_learn_a_tiny_task_and_predict_minus_one_on_padding():
    tokenizer = train_wordpiece(CORPUS, 200, min_frequency=1)
    labels = label_set(CORPUS)
    data = SubwordData(CORPUS[:3], tokenizer, labels, max_length=180)
    batch = data.collate([0, 1, 2])
    for head in ("crf", "apt"):
        torch.manual_seed(0)
        model = _tagger(labels, head, vocab_size=len(tokenizer))
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(300):
            loss, _ = model.loss(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        predicted = model.predict(batch)
        mask = batch["attention_mask"].bool()
        assert (predicted[~mask] == -1).all()
        assert (predicted[mask] == batch["tags"][mask]).float().mean() > 0.95, head


def test_layer_groups_run_from_embeddings_to_the_head():
    model = _tagger(label_set(CORPUS), "crf")
    groups = model.layer_groups()
    assert len(groups) == 2 + 2  # embeddings, 2 layers, head
    assert any(p is model.crf.transitions for p in groups[-1])
    assert sum(p.numel() for g in groups for p in g) == model.num_parameters()


def test_a_word_longer_than_the_limit_keeps_its_first_subwords_and_its_tag():
    tokenizer = train_wordpiece(CORPUS, 200, min_frequency=1)
    labels = label_set(CORPUS)
    long_word = "9.8.7.6.5.4.3.2.1"  # one token of ours, many sub-words
    sentence = _sentence(f"Start {long_word} daily", "O B-Drug B-Frequency")
    data = SubwordData([sentence], tokenizer, labels, max_length=4)
    assert data.cut_subwords > 0
    tags = [labels[i] for piece, ids in zip(data.pieces, data.tag_ids, strict=True) for i in ids]
    assert tags.count("B-Drug") == 1 and tags.count("B-Frequency") == 1  # one first sub-word per word
    assert all(piece.word_index[0] == 0 for piece in data.pieces)


def test_a_name_repeated_in_one_document_stays_out_of_the_learned_vocabulary():
    notes = [_sentence("Mrs Quenvallaby took aspirin daily", document="note_1")] * 8
    others = [_sentence("aspirin daily as needed", document=f"note_{i}") for i in range(2, 12)]
    vocabulary = set(train_wordpiece(notes + others, 500).get_vocab())
    assert "aspirin" in vocabulary  # in 11 documents
    assert not any("Quenva" in piece or "vallab" in piece for piece in vocabulary)  # in one


def test_a_learned_tokenizer_is_kept_in_the_work_folder_and_reused(tmp_path):
    from clinfm.ner.recipes import tokenizer_for

    first = tokenizer_for(
        "transformer-crf", CORPUS, preset="small", encoder=None, tokenizer=None, work=tmp_path
    )
    assert (tmp_path / "tokenizer").is_dir()
    again = tokenizer_for(
        "transformer-crf", CORPUS[:3], preset="small", encoder=None, tokenizer=None, work=tmp_path
    )
    assert again.get_vocab() == first.get_vocab()  # read back, not learned again from other data
