"""MEDFuse's note branch: chunked note embeddings, lab results as text, an optional trainable encoder.

* **Chunks, never silent truncation.** A sentence encoder reads a fixed number of tokens (256 for
  the default all-MiniLM-L6-v2, special tokens included) and drops the rest without a word; a
  clinical note is often longer (the mtsamples transcriptions have a median of ~2,700 characters,
  ~600 tokens). :func:`chunk_texts` cuts each text into consecutive pieces that fit the budget, by
  tokenising with character offsets and cutting the *original string* at token (preferably word)
  boundaries, so every chunk is real text that any encoder can read and the chunks of a text
  concatenate back to it. Chunks past ``max_chunks`` are dropped and counted, never silently. An
  encoder without a tokenizer (an OpenAI-compatible endpoint) is chunked by characters.
* **Chunk mean pooling.** :func:`embed_notes` embeds every chunk through the embedding cache
  (:func:`clinfm.concepts.cache.embed_texts`, so a rerun encodes nothing already seen) and pools a
  text's chunk vectors by their mean, **renormalised to unit length**: the encoders return unit
  vectors and a dot product is a cosine everywhere else in clinfm; the mean of several unit
  vectors is shorter the more they disagree, and that length would otherwise leak the number and
  diversity of chunks into every downstream distance. A sample without notes gets the zero vector
  (``has_note`` says which); the per-chunk vectors are kept too (``chunks`` and ``offsets``) for a
  fusion model that attends over chunks.
* **Lab results as text** (MEDFuse's "LABTEXT"): the paper turns lab results into a short
  summary next to the note. :func:`labs_as_text` writes, per sample, the item, value and unit of
  the *abnormal* results only (``|z| >= threshold`` by the training :class:`ValueScaler`, with
  the direction), most abnormal first, so a sample with abnormal labs but no note still has text.
* **Fine-tuning** (:class:`TrainableNoteEncoder`): the Hugging Face model behind an encoder,
  copied (so the shared encoder, and the cache keyed by its name, stay untouched), mean-pooling
  token states per chunk and averaging a sample's chunks; only the top ``train_layers`` layers
  train. :func:`tokenize_notes` keeps token ids flat and pads per batch in ``collate``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from clinfm.concepts.cache import EmbeddingCache, embed_texts
from clinfm.concepts.encoders import TextEncoder, normalise
from clinfm.errors import InputError
from clinfm.fuse.labs import ValueScaler

log = logging.getLogger(__name__)

#: Token budget for an encoder whose limit is unknown (e.g. an embeddings endpoint).
DEFAULT_MAX_TOKENS = 512
#: Characters per token assumed when chunking without a tokenizer.
CHARS_PER_TOKEN = 4
_TOKENIZE_BATCH = 256


# ------------------------------------------------------------------------------------------ chunking


@dataclass
class Chunks:
    """The chunks of a list of texts: ``texts[k]`` is a piece of text ``owner[k]``, in order."""

    texts: list[str]
    owner: np.ndarray  # int64 [n_chunks]: the source text of each chunk, non-decreasing
    n_texts: int
    texts_chunked: int = 0  # texts that needed more than one chunk
    chunks_dropped: int = 0  # chunks beyond max_chunks
    empty: int = 0  # None or blank texts: no chunk

    @property
    def counts(self) -> np.ndarray:
        """Chunks per text (int64 [n_texts])."""
        return np.bincount(self.owner, minlength=self.n_texts).astype(np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """int64 [n_texts + 1]: text i's chunks are ``texts[offsets[i]:offsets[i+1]]``."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)


def encoder_tokenizer(encoder: object) -> tuple[object | None, int]:
    """(the encoder's fast tokenizer or None, its token limit including special tokens)."""
    model = getattr(encoder, "model", None)
    tokenizer = getattr(model, "tokenizer", None)  # sentence-transformers
    if tokenizer is not None:
        limit = getattr(model, "max_seq_length", None) or getattr(tokenizer, "model_max_length", None)
        return tokenizer, int(limit or DEFAULT_MAX_TOKENS)
    tokenizer = getattr(encoder, "tokenizer", None)  # HFEncoder
    if tokenizer is not None:
        limit = getattr(encoder, "max_length", None) or getattr(tokenizer, "model_max_length", None)
        return tokenizer, int(limit or DEFAULT_MAX_TOKENS)
    return None, DEFAULT_MAX_TOKENS


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _token_spans(n: int, word_start: np.ndarray, budget: int, stride: int) -> list[tuple[int, int]]:
    """(first, end) token ranges of at most ``budget`` tokens, ending at a word boundary when one fits."""
    spans, first = [], 0
    while first < n:
        end = min(first + budget, n)
        if end < n:
            inside = np.flatnonzero(word_start[first + 1 : end + 1]) + first + 1
            if len(inside):
                end = int(inside[-1])  # a word starts at token `end`: cut just before it
        spans.append((first, end))
        if end >= n:
            break
        first = max(end - stride, first + 1)
    return spans


def _char_chunks(text: str, max_chars: int) -> list[str]:
    """Consecutive pieces of at most ``max_chars`` characters, cut after whitespace where possible."""
    pieces, start = [], 0
    while start < len(text):
        end = min(start + max_chars, len(text))
        if end < len(text):
            space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if space > start + max_chars // 2:
                end = space + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def chunk_texts(
    texts: Sequence[str | None],
    tokenizer: object | None,
    max_tokens: int,
    *,
    stride: int = 0,
    max_chunks: int | None = None,
    max_chars: int | None = None,
) -> Chunks:
    """Split each text into pieces the encoder reads whole (see the module docstring).

    A piece holds at most ``max_tokens - tokenizer.num_special_tokens_to_add()`` tokens; cuts fall
    before a token that starts a word unless a single word is longer than the budget. ``stride``
    tokens of overlap between consecutive pieces (0: the pieces concatenate to the text exactly,
    whitespace between pieces staying with the earlier one). Without a tokenizer (or with a slow
    one, which has no offsets), pieces of at most ``max_chars`` characters (``4 * max_tokens``).
    Only the first ``max_chunks`` pieces of a text are kept; the rest are counted as dropped.
    """
    if max_chunks is not None and max_chunks < 1:
        raise InputError(f"max_chunks must be at least 1, got {max_chunks}")
    if tokenizer is not None and not getattr(tokenizer, "is_fast", False):
        log.warning("tokenizer %s has no character offsets; chunking by characters", type(tokenizer).__name__)
        tokenizer = None
    budget = max_tokens - (tokenizer.num_special_tokens_to_add(pair=False) if tokenizer is not None else 0)
    if tokenizer is not None and budget < 1:
        raise InputError(f"max_tokens {max_tokens} leaves no room next to the special tokens")
    if not 0 <= stride < max(budget, 1):
        raise InputError(f"stride must be between 0 and {budget - 1}, got {stride}")
    texts = list(texts)
    filled = [i for i, text in enumerate(texts) if not _blank(text)]
    pieces: dict[int, list[str]] = {}
    if tokenizer is None:
        limit = max_chars or CHARS_PER_TOKEN * max_tokens
        for i in filled:
            pieces[i] = _char_chunks(texts[i], limit)
    for at in range(0, len(filled) if tokenizer is not None else 0, _TOKENIZE_BATCH):
        rows = filled[at : at + _TOKENIZE_BATCH]
        batch = tokenizer(
            [texts[i] for i in rows], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        for j, i in enumerate(rows):
            text, offsets = texts[i], batch["offset_mapping"][j]
            n = len(offsets)
            if n == 0:  # only characters the tokenizer ignores: the text is one piece
                pieces[i] = [text]
                continue
            starts = np.fromiter((s for s, _ in offsets), np.int64, n)
            words = np.fromiter((-1 if w is None else w for w in batch.word_ids(j)), np.int64, n)
            word_start = np.ones(n + 1, bool)  # index n: the end of the text is always a boundary
            word_start[1:n] = (words[1:] != words[:-1]) | (words[1:] < 0)
            cuts = [
                (0 if first == 0 else int(starts[first]), len(text) if end == n else int(starts[end]))
                for first, end in _token_spans(n, word_start, budget, stride)
            ]
            pieces[i] = [text[a:b] for a, b in cuts]
    chunks, owner, chunked, dropped = [], [], 0, 0
    for i in filled:
        parts = pieces[i]
        chunked += len(parts) > 1
        if max_chunks is not None and len(parts) > max_chunks:
            dropped += len(parts) - max_chunks
            parts = parts[:max_chunks]
        chunks.extend(parts)
        owner.extend([i] * len(parts))
    return Chunks(chunks, np.asarray(owner, np.int64), len(texts), chunked, dropped, len(texts) - len(filled))


# ------------------------------------------------------------------------------------------ embedding


@dataclass
class NoteEmbeddings:
    """Per text: its chunk vectors (rows ``offsets[i]:offsets[i+1]`` of ``chunks``) and their pooled mean."""

    chunks: np.ndarray  # float32 [n_chunks, dim], unit rows
    offsets: np.ndarray  # int64 [n_texts + 1]
    pooled: np.ndarray  # float32 [n_texts, dim]: mean of the chunk vectors, renormalised; 0 without notes
    has_note: np.ndarray  # bool [n_texts]
    texts_chunked: int = 0
    chunks_dropped: int = 0
    empty: int = 0

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def first_chunk(self) -> np.ndarray:
        """float32 [n_texts, dim]: each text's first chunk vector, i.e. what truncation would give."""
        out = np.zeros_like(self.pooled)
        out[self.has_note] = self.chunks[self.offsets[:-1][self.has_note]]
        return out


def embed_notes(
    encoder: TextEncoder,
    texts: Sequence[str | None],
    *,
    cache: EmbeddingCache | str | os.PathLike | bool = True,
    max_chunks: int | None = None,
    batch_size: int = 32,
    stride: int = 0,
    max_tokens: int | None = None,
) -> NoteEmbeddings:
    """Chunk, embed every chunk through the cache, and pool per text (see the module docstring).

    ``max_tokens`` overrides the encoder's own limit (it can only make chunks shorter than the
    encoder reads); ``cache`` is passed to :func:`clinfm.concepts.cache.embed_texts`.
    """
    tokenizer, limit = encoder_tokenizer(encoder)
    if max_tokens is not None:
        limit = min(limit, max_tokens) if tokenizer is not None else max_tokens
    chunks = chunk_texts(texts, tokenizer, limit, stride=stride, max_chunks=max_chunks)
    if chunks.texts:
        vectors = embed_texts(
            encoder, chunks.texts, cache=cache, batch_size=batch_size, description="embedding note chunks"
        )
    else:
        vectors = np.zeros((0, encoder.dim), np.float32)
    offsets = chunks.offsets
    has_note = np.diff(offsets) > 0
    pooled = np.zeros((chunks.n_texts, vectors.shape[1]), np.float32)
    if has_note.any():
        # Empty texts own no rows, so the starts of the others split the rows into their segments.
        pooled[has_note] = np.add.reduceat(vectors, offsets[:-1][has_note], axis=0)
    return NoteEmbeddings(
        vectors.astype(np.float32),
        offsets,
        normalise(pooled),
        has_note,
        chunks.texts_chunked,
        chunks.chunks_dropped,
        chunks.empty,
    )


# ------------------------------------------------------------------------------------------ lab text


def labs_as_text(
    lab_frame: pl.DataFrame,
    scaler: ValueScaler,
    *,
    threshold: float = 2.0,
    descriptions: dict[str, str] | None = None,
    max_items: int | None = None,
) -> list[str]:
    """Per sample (row of a ``lab_table``), a sentence of its abnormal results; ``""`` if none.

    A result is abnormal when ``|value - mean| / std >= threshold`` with the training statistics of
    ``scaler``; items without statistics are skipped. Each reads ``<name> <value> <unit> (low|high)``
    with the name from ``descriptions`` (code -> description) else the code; the most abnormal come
    first and ``max_items`` keeps that many.
    """
    missing = {"item", "value"} - set(lab_frame.columns)
    if missing:
        raise InputError(f"expected a lab_table frame; it lacks {', '.join(sorted(missing))}")
    has_unit = "unit" in lab_frame.columns
    stats = pl.DataFrame(
        {"item": list(scaler.mean), "mean": list(scaler.mean.values()), "std": list(scaler.std.values())},
        schema={"item": pl.String, "mean": pl.Float64, "std": pl.Float64},
    )
    names = pl.DataFrame(
        {"item": list(descriptions or {}), "name": list((descriptions or {}).values())},
        schema={"item": pl.String, "name": pl.String},
    )
    long = (
        lab_frame.select(
            pl.int_range(pl.len()).alias("_row"), "item", "value", *(["unit"] if has_unit else [])
        )
        .filter(pl.col("item").list.len() > 0)
        .explode(["item", "value", "unit"] if has_unit else ["item", "value"])
        .with_columns(*([] if has_unit else [pl.lit(None, pl.String).alias("unit")]))
        .join(stats, on="item", how="inner")
        .with_columns(z=(pl.col("value").cast(pl.Float64) - pl.col("mean")) / pl.col("std"))
        .filter(pl.col("z").abs() >= threshold)
        .join(names.unique("item"), on="item", how="left")
        .sort(["_row", pl.col("z").abs(), "item"], descending=[False, True, False])
    )
    if max_items is not None:
        long = long.group_by("_row", maintain_order=True).head(max_items)
    value = pl.col("value").cast(pl.Float32).cast(pl.String).str.replace(r"\.0$", "")
    unit_text = pl.when(pl.col("unit").str.strip_chars().str.len_chars() > 0).then(" " + pl.col("unit"))
    piece = pl.concat_str(
        pl.coalesce("name", "item"),
        pl.lit(" "),
        value,
        unit_text.otherwise(pl.lit("")),
        pl.when(pl.col("z") > 0).then(pl.lit(" (high)")).otherwise(pl.lit(" (low)")),
    )
    sentences = long.group_by("_row", maintain_order=True).agg(
        text=pl.lit("Abnormal labs: ") + piece.str.join("; ") + pl.lit(".")
    )
    out = [""] * lab_frame.height
    for row, text in sentences.iter_rows():
        out[row] = text
    return out


def with_lab_text(note_texts: Sequence[str | None], lab_texts: Sequence[str]) -> list[str]:
    """Each note followed by its lab sentence (a blank line between); either alone when the other is empty."""
    if len(note_texts) != len(lab_texts):
        raise InputError(f"{len(note_texts)} note texts but {len(lab_texts)} lab texts")
    return [
        "\n\n".join(part for part in (note or "", lab or "") if part.strip())
        for note, lab in zip(note_texts, lab_texts, strict=True)
    ]


# ------------------------------------------------------------------------------------------ fine-tuning


class NoteTokens(torch.utils.data.Dataset):
    """Token ids of every chunk, flat; ``collate`` pads a batch to its own longest chunk and count."""

    def __init__(self, ids: np.ndarray, token_offsets: np.ndarray, chunk_offsets: np.ndarray, pad_id: int):
        self.ids, self.token_offsets, self.chunk_offsets, self.pad_id = (
            ids,
            token_offsets,
            chunk_offsets,
            pad_id,
        )

    def __len__(self) -> int:
        return len(self.chunk_offsets) - 1

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """``note_ids`` and ``note_attention`` (B x C x T), ``note_chunk_mask`` (B x C bool)."""
        spans = [range(self.chunk_offsets[i], self.chunk_offsets[i + 1]) for i in indices]
        width = max(1, max((len(s) for s in spans), default=0))
        lengths = np.diff(self.token_offsets)
        length = max(1, max((int(lengths[k]) for s in spans for k in s), default=0))
        ids = np.full((len(indices), width, length), self.pad_id, np.int64)
        attention = np.zeros((len(indices), width, length), np.int64)
        mask = np.zeros((len(indices), width), bool)
        for row, span in enumerate(spans):
            for col, k in enumerate(span):
                a, b = self.token_offsets[k], self.token_offsets[k + 1]
                ids[row, col, : b - a] = self.ids[a:b]
                attention[row, col, : b - a] = 1
                mask[row, col] = True
        return {
            "note_ids": torch.from_numpy(ids),
            "note_attention": torch.from_numpy(attention),
            "note_chunk_mask": torch.from_numpy(mask),
        }


def tokenize_notes(
    tokenizer: object,
    chunks: Chunks,
    n_texts: int | None = None,
    max_tokens: int = 256,
    max_chunks: int | None = None,
) -> NoteTokens:
    """The chunks' token ids (special tokens added, at most ``max_tokens``), first ``max_chunks`` per text."""
    n_texts = chunks.n_texts if n_texts is None else n_texts
    keep = np.ones(len(chunks.texts), bool)
    if max_chunks is not None:
        rank = np.arange(len(chunks.texts)) - chunks.offsets[chunks.owner]
        keep = rank < max_chunks
    kept = [text for text, k in zip(chunks.texts, keep, strict=True) if k]
    encoded = (
        tokenizer(kept, truncation=True, max_length=max_tokens, verbose=False)["input_ids"] if kept else []
    )
    lengths = np.fromiter((len(x) for x in encoded), np.int64, len(encoded))
    ids = np.fromiter((t for x in encoded for t in x), np.int64, int(lengths.sum()))
    counts = np.bincount(chunks.owner[keep], minlength=n_texts)
    return NoteTokens(
        ids,
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        int(tokenizer.pad_token_id or 0),
    )


def _layers(model: nn.Module) -> list[nn.Module]:
    for path in ("encoder.layer", "encoder.layers", "transformer.layer", "layers"):
        found = model
        for part in path.split("."):
            found = getattr(found, part, None)
        if isinstance(found, nn.ModuleList):
            return list(found)
    raise InputError(f"cannot find the transformer layers of a {type(model).__name__}")


class TrainableNoteEncoder(nn.Module):
    """A Hugging Face encoder over note chunks: token mean per chunk, chunk mean per sample (B x hidden).

    ``train_layers``: only the top k transformer layers train (0: all frozen); the embeddings and
    lower layers stay fixed. :meth:`layer_groups` lists [embeddings, layer 1, ..., layer L] for a
    caller that decays learning rates by depth.
    """

    def __init__(
        self, model: nn.Module, tokenizer: object = None, *, max_tokens: int = 256, train_layers: int = 2
    ):
        super().__init__()
        self.model, self.tokenizer, self.max_tokens = model, tokenizer, max_tokens
        self.set_train_layers(train_layers)

    @classmethod
    def from_encoder(
        cls, encoder: TextEncoder | str = "default", *, train_layers: int = 2
    ) -> TrainableNoteEncoder:
        """From a clinfm encoder (or a spec for ``load_encoder``, or a local model folder); weights copied."""
        if isinstance(encoder, str):
            if os.path.isdir(encoder):
                from transformers import AutoModel, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(encoder, local_files_only=True)
                model = AutoModel.from_pretrained(encoder, local_files_only=True)
                limit = min(int(getattr(tokenizer, "model_max_length", 512)), 512)
                return cls(model, tokenizer, max_tokens=limit, train_layers=train_layers)
            from clinfm.concepts import load_encoder

            encoder = load_encoder(encoder)
        tokenizer, limit = encoder_tokenizer(encoder)
        inner = getattr(encoder, "model", None)
        if tokenizer is None or inner is None:
            raise InputError(f"encoder {getattr(encoder, 'name', encoder)!r} has no local model to fine-tune")
        model = inner[0].auto_model if hasattr(inner, "tokenizer") else inner  # sentence-transformers or HF
        # A copy: the encoder object is shared (and names the embedding cache), it must not change.
        return cls(copy.deepcopy(model).train(), tokenizer, max_tokens=limit, train_layers=train_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def layer_groups(self) -> list[nn.Module]:
        embeddings = getattr(self.model, "embeddings", None)
        if embeddings is None:
            raise InputError(f"cannot find the embeddings of a {type(self.model).__name__}")
        return [embeddings, *_layers(self.model)]

    def set_train_layers(self, k: int) -> None:
        groups = self.layer_groups()
        if not 0 <= k <= len(groups) - 1:
            raise InputError(f"train_layers must be between 0 and {len(groups) - 1}, got {k}")
        self.model.requires_grad_(False)
        for group in groups[len(groups) - k :] if k else []:
            group.requires_grad_(True)
        self.train_layers = k

    def forward(
        self, note_ids: torch.Tensor, note_attention: torch.Tensor, note_chunk_mask: torch.Tensor
    ) -> torch.Tensor:
        batch, width, _ = note_ids.shape
        out = torch.zeros(batch * width, self.hidden_size, device=note_ids.device)
        flat = note_chunk_mask.reshape(-1)
        if flat.any():
            attention = note_attention.reshape(batch * width, -1)[flat]
            length = int(attention.sum(1).max())
            ids, attention = note_ids.reshape(batch * width, -1)[flat][:, :length], attention[:, :length]
            hidden = self.model(input_ids=ids, attention_mask=attention).last_hidden_state
            weight = attention.unsqueeze(-1).to(hidden.dtype)
            out = out.to(hidden.dtype).index_put(
                (flat.nonzero().squeeze(1),), (hidden * weight).sum(1) / weight.sum(1).clamp(min=1)
            )
        chunks = out.reshape(batch, width, -1)
        mask = note_chunk_mask.unsqueeze(-1).to(chunks.dtype)
        return (chunks * mask).sum(1) / mask.sum(1).clamp(min=1)
