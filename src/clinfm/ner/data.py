"""Sentences -> sub-word sequences a tagger trains on, SamBD down-sampling, and tokenizers.

The paper's tokenisation: words are split into sub-words with no special tokens (no CLS/SEP), at
most 180 sub-words a sequence; a word's first sub-word carries its tag, and the continuation of a
``B-X`` word is tagged ``I-X`` (other continuations copy the word's tag). Sentences longer than
the limit are cut into several sequences at word boundaries rather than truncated (the paper
truncates), so every word gets a prediction that can go back to brat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clinfm.errors import InputError
from clinfm.ner.document import OUTSIDE, Sentence, counting_units
from clinfm.pretrained import downloads_allowed, offline_huggingface

log = logging.getLogger(__name__)

PAPER_SAMBD_KEEP = 0.08  # an all-O sentence survives when randint(1, 100) > 92
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MIN_PIECE_FREQUENCY = 5  # a learned sub-word must come from pairs seen this often (privacy)


def sambd(sentences: Sequence[Sentence], keep: float = PAPER_SAMBD_KEEP, seed: int = 0) -> list[Sentence]:
    """Sample-based down-sampling: keep every sentence with an entity and each all-O sentence
    with probability ``keep``, seeded. For training and validation only, never the test set."""
    if not 0.0 <= keep <= 1.0:
        raise InputError(f"the SamBD keep probability must be between 0 and 1, not {keep}")
    draws = np.random.default_rng(seed).random(len(sentences))
    return [
        sentence
        for sentence, draw in zip(sentences, draws, strict=True)
        if draw < keep or any(tag != OUTSIDE for tag in sentence.tags or ())
    ]


def label_set(sentences: Sequence[Sentence]) -> tuple[str, ...]:
    """``O`` then ``B-X``, ``I-X`` for every entity type in the sentences, sorted by type."""
    types = sorted({tag[2:] for s in sentences for tag in s.tags or () if tag != OUTSIDE})
    if not types:
        raise InputError("the training data hold no entity: nothing to learn (are the .ann files there?)")
    return (OUTSIDE, *(f"{prefix}-{name}" for name in types for prefix in ("B", "I")))


def train_wordpiece(
    sentences: Sequence[Sentence], vocab_size: int, *, min_frequency: int = MIN_PIECE_FREQUENCY
):
    """A WordPiece tokenizer learned from the training words, for an encoder trained from scratch.

    The paper's scratch model used distilbert-base-cased's vocabulary, which is not available
    offline; pass ``--tokenizer`` with a local copy to use it instead. Cased, as that one is.

    Privacy: each distinct word counts once per document, and pieces are merged only from pairs
    seen ``min_frequency`` times, so a word must occur in that many documents to become a vocabulary
    entry of the saved checkpoint: a name repeated throughout one patient's note does not. (A corpus
    without document boundaries, a CoNLL file, counts per sentence.)
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    wordpiece.train_from_iterator(_distinct_words_per_document(sentences), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _distinct_words_per_document(sentences: Sequence[Sentence]) -> list[str]:
    """Each document's distinct words (as one text), so a word's count is its document frequency."""
    words: dict[str, set[str]] = {}
    for unit, sentence in zip(counting_units(sentences), sentences, strict=True):
        words.setdefault(unit, set()).update(sentence.tokens)
    return [" ".join(sorted(distinct)) for distinct in words.values()]


def load_tokenizer(path: str):
    """A Hugging Face fast tokenizer from a local folder (a checkpoint's or a pre-trained model's)."""
    offline_huggingface()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=not downloads_allowed())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load a tokenizer from {path!r}: {str(error).splitlines()[0]}") from None
    if not tokenizer.is_fast:
        raise InputError(f"the tokenizer at {path!r} is not a fast tokenizer (needed for word alignment)")
    return tokenizer


def subword_tags(word_tags: Sequence[str], word_index: np.ndarray) -> list[str]:
    """Each sub-word's tag: the word's on its first piece; a B-X word's continuations are I-X."""
    tags, previous = [], -1
    for word in word_index:
        tag = word_tags[word]
        tags.append(f"I-{tag[2:]}" if word == previous and tag.startswith("B-") else tag)
        previous = word
    return tags


@dataclass(frozen=True)
class Piece:
    """One model sequence: a run of whole words of one sentence, as sub-word ids."""

    sentence: int  # index into the sentences
    first_word: int  # the sentence's word this piece starts at
    input_ids: np.ndarray  # (length,) sub-word ids
    word_index: np.ndarray  # (length,) each sub-word's word, relative to the sentence


class SubwordData(torch.utils.data.Dataset):
    """Tokenised sentences for the training engine (``lengths``, ``collate``) and for tagging.

    ``labels`` maps the tags to class ids; gold tags of types the model does not know become
    ``O`` for the loss (counted) but stay as they are for scoring.
    """

    def __init__(self, sentences: Sequence[Sentence], tokenizer, labels: Sequence[str], max_length: int):
        self.sentences = list(sentences)
        self.labels = tuple(labels)
        self._label_ids = {label: i for i, label in enumerate(self.labels)}
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.dropped_words = 0  # words the tokenizer turns into nothing (e.g. control characters)
        self.unknown_tags = 0  # gold tags of a type outside ``labels``
        self.cut_subwords = 0  # sub-words past the limit within one over-long word
        self.pieces = self._encode(tokenizer)
        self.lengths = np.array([len(piece.input_ids) for piece in self.pieces], dtype=np.int64)
        self.tag_ids = [self._tag_ids(piece) for piece in self.pieces] if self._labelled else None

    @property
    def _labelled(self) -> bool:
        return bool(self.sentences) and all(s.tags is not None for s in self.sentences)

    def _encode(self, tokenizer) -> list[Piece]:
        pieces: list[Piece] = []
        batch = 1024  # sentences per tokenizer call: fast, and memory stays flat on big corpora
        for start in range(0, len(self.sentences), batch):
            chunk = [list(s.tokens) for s in self.sentences[start : start + batch]]
            encoded = tokenizer(chunk, is_split_into_words=True, add_special_tokens=False)
            for offset, words in enumerate(chunk):
                ids = np.asarray(encoded["input_ids"][offset], dtype=np.int64)
                word_index = np.asarray(
                    [-1 if w is None else w for w in encoded.word_ids(offset)], dtype=np.int64
                )
                self.dropped_words += len(words) - len(np.unique(word_index[word_index >= 0]))
                pieces.extend(self._cut(start + offset, ids, word_index))
        return pieces

    def _cut(self, sentence: int, ids: np.ndarray, word_index: np.ndarray) -> list[Piece]:
        """Pieces of at most ``max_length`` sub-words that end at word boundaries (a single word
        longer than that keeps its first ``max_length`` sub-words, counted)."""
        ids, word_index = self._shorten_long_words(ids, word_index)
        pieces, begin = [], 0
        while begin < len(ids):
            end = min(begin + self.max_length, len(ids))
            if end < len(ids) and word_index[end] == word_index[end - 1]:
                boundary = end - 1  # step back to the start of the word that would be split
                while boundary > begin and word_index[boundary] == word_index[boundary - 1]:
                    boundary -= 1
                end = boundary  # > begin: no word is longer than the limit (_shorten_long_words)
            first = int(word_index[begin])
            pieces.append(Piece(sentence, first, ids[begin:end], word_index[begin:end] - first))
            begin = end
        return pieces

    def _shorten_long_words(self, ids: np.ndarray, word_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drop the sub-words of a word past its first ``max_length``: every word then fits in one
        piece, and its first sub-word (which carries its tag) is the piece's own."""
        starts = np.r_[0, np.flatnonzero(word_index[1:] != word_index[:-1]) + 1]
        position = np.arange(len(ids)) - np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
        keep = position < self.max_length
        self.cut_subwords += int((~keep).sum())
        return ids[keep], word_index[keep]

    def _tag_ids(self, piece: Piece) -> np.ndarray:
        tags = self.gold_subword_tags(piece)
        self.unknown_tags += sum(tag not in self._label_ids for tag in tags)
        return np.asarray([self._label_ids.get(tag, 0) for tag in tags], dtype=np.int64)

    def gold_subword_tags(self, piece: Piece) -> list[str]:
        return subword_tags(self.sentences[piece.sentence].tags[piece.first_word :], piece.word_index)

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        width = int(max(self.lengths[i] for i in indices))
        input_ids = np.full((len(indices), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(indices), width), dtype=np.int64)
        tags = np.zeros((len(indices), width), dtype=np.int64)
        for row, i in enumerate(indices):
            n = self.lengths[i]
            input_ids[row, :n] = self.pieces[i].input_ids
            attention[row, :n] = 1
            if self.tag_ids is not None:
                tags[row, :n] = self.tag_ids[i]
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention)}
        if self.tag_ids is not None:
            batch["tags"] = torch.from_numpy(tags)
        batch["index"] = torch.as_tensor(list(indices), dtype=torch.int64)
        return batch
