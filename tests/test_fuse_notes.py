"""MEDFuse's note branch: chunking without truncation, cached chunk embeddings, lab text, fine-tuning."""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl
import pytest
import torch

from clinfm.concepts import load_encoder
from clinfm.fuse.labs import ValueScaler
from clinfm.fuse.notes import (
    TrainableNoteEncoder,
    chunk_texts,
    embed_notes,
    encoder_tokenizer,
    labs_as_text,
    tokenize_notes,
    with_lab_text,
)

LONG = " ".join(
    f"Patient {i} reports intermittent dyspnoea, haemoptysis and a creatinine of {i}.{i % 7} mg/dL."
    for i in range(60)
)


@pytest.fixture(scope="module")
def minilm():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return load_encoder("default")


class FakeEncoder:
    """A deterministic encoder that counts what it encodes; no tokenizer (chunks by characters)."""

    name = "fake-notes"
    dim = 8

    def __init__(self):
        self.encoded: list[str] = []

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        self.encoded.extend(texts)
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        vectors = np.asarray(rows, np.float32).reshape(len(texts), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_chunks_cover_long_text_within_budget(minilm):
    tokenizer, limit = encoder_tokenizer(minilm)
    assert limit == 256
    chunks = chunk_texts([LONG, "short note", None, "  "], tokenizer, 64)
    assert chunks.counts.tolist()[1:] == [1, 0, 0] and chunks.counts[0] > 3
    assert chunks.empty == 2 and chunks.texts_chunked == 1 and chunks.chunks_dropped == 0
    first = [t for t, o in zip(chunks.texts, chunks.owner, strict=True) if o == 0]
    assert "".join(first) == LONG  # nothing lost, nothing repeated
    for text in chunks.texts:
        assert len(tokenizer(text)["input_ids"]) <= 64  # special tokens included
    assert chunks.offsets.tolist() == [0, len(first), len(first) + 1, len(first) + 1, len(first) + 1]
    capped = chunk_texts([LONG], tokenizer, 64, max_chunks=2)
    assert (
        len(capped.texts) == 2 and capped.chunks_dropped == len(first) - 2 and capped.texts[:2] == first[:2]
    )
    overlapping = chunk_texts([LONG], tokenizer, 64, stride=10)
    assert len(overlapping.texts) > len(first)


def test_character_chunks_without_tokenizer():
    chunks = chunk_texts(["word " * 100, ""], None, 10)  # 40 characters a piece
    assert "".join(chunks.texts) == "word " * 100 and all(len(t) <= 40 for t in chunks.texts)
    assert chunks.empty == 1 and chunks.owner.tolist() == [0] * len(chunks.texts)


def test_embed_notes_cache_and_pooling(tmp_path):
    encoder = FakeEncoder()
    texts = [LONG, None, "short note", LONG]
    first = embed_notes(encoder, texts, cache=tmp_path, max_chunks=2)
    n_encoded = len(encoder.encoded)
    assert n_encoded == 3  # two chunks of the long text (shared by texts 0 and 3) and the short note
    assert first.chunks_dropped == 2 * (len(chunk_texts([LONG], None, 512).texts) - 2)
    again = embed_notes(encoder, texts, cache=tmp_path, max_chunks=2)
    assert len(encoder.encoded) == n_encoded  # everything came from the cache
    np.testing.assert_allclose(again.pooled, first.pooled)
    assert first.has_note.tolist() == [True, False, True, True] and first.empty == 1
    assert first.offsets.tolist() == [0, 2, 2, 3, 5]
    np.testing.assert_array_equal(first.pooled[1], 0.0)
    np.testing.assert_allclose(np.linalg.norm(first.pooled[first.has_note], axis=1), 1.0, rtol=1e-5)
    mean = first.chunks[0:2].mean(0)
    np.testing.assert_allclose(first.pooled[0], mean / np.linalg.norm(mean), rtol=1e-5)
    np.testing.assert_allclose(first.pooled[2], first.chunks[2], rtol=1e-6)
    np.testing.assert_array_equal(first.first_chunk()[3], first.chunks[3])


def test_embed_notes_with_minilm(minilm):
    notes = embed_notes(minilm, [LONG, ""], cache=False, max_tokens=64)
    assert notes.has_note.tolist() == [True, False] and notes.counts[0] > 3 and notes.texts_chunked == 1
    assert notes.pooled.shape == (2, minilm.dim)


def test_labs_as_text():
    frame = pl.DataFrame(
        {
            "item": [["GLU", "HGB", "NA"], ["HGB"], [], ["XYZ"]],
            "value": [[310.0, 8.1, 140.0], [14.0], [], [99.0]],
            "unit": [["mg/dL", "g/dL", None], ["g/dL"], [], [None]],
        },
        schema={"item": pl.List(pl.String), "value": pl.List(pl.Float32), "unit": pl.List(pl.String)},
    )
    scaler = ValueScaler(
        mean={"GLU": 100.0, "HGB": 14.0, "NA": 120.0}, std={"GLU": 30.0, "HGB": 1.5, "NA": 5.0}
    )
    texts = labs_as_text(frame, scaler, descriptions={"HGB": "Hemoglobin"})
    assert texts == [
        "Abnormal labs: GLU 310 mg/dL (high); NA 140 (high); Hemoglobin 8.1 g/dL (low).",  # by |z|
        "",
        "",
        "",  # XYZ has no statistics: skipped
    ]
    assert labs_as_text(frame, scaler, max_items=1)[0] == "Abnormal labs: GLU 310 mg/dL (high)."
    assert labs_as_text(frame, scaler, threshold=5.0)[0] == "Abnormal labs: GLU 310 mg/dL (high)."
    assert with_lab_text(["note", None, "", "x"], texts) == [f"note\n\n{texts[0]}", "", "", "x"]
    assert with_lab_text([None], ["Abnormal labs: A 1 (high)."]) == ["Abnormal labs: A 1 (high)."]


def test_trainable_encoder_trains_top_layers_only(minilm):
    module = TrainableNoteEncoder.from_encoder(minilm, train_layers=2)
    groups = module.layer_groups()
    assert len(groups) == 7  # embeddings and MiniLM-L6's six layers
    chunks = chunk_texts([LONG[:600], "Chest pain at rest.", None], module.tokenizer, 48)
    tokens = tokenize_notes(module.tokenizer, chunks, max_tokens=48, max_chunks=3)
    batch = tokens.collate([0, 1, 2])
    assert batch["note_chunk_mask"].sum(1).tolist() == [3, 1, 0]
    assert batch["note_ids"].shape[:2] == (3, 3) and batch["note_ids"].shape[2] <= 48
    out = module(**batch)
    assert out.shape == (3, module.hidden_size) and torch.all(out[2] == 0)
    out.sum().backward()
    for index, group in enumerate(groups):
        grads = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in group.parameters()]
        assert all(grads) if index >= 5 else not any(grads), index
    # the shared encoder (which names the embedding cache) is untouched
    assert all(p.grad is None for p in minilm.model.parameters())
    TrainableNoteEncoder.from_encoder(minilm, train_layers=0)
    with pytest.raises(Exception, match="train_layers"):
        module.set_train_layers(7)
