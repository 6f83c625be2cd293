"""The shapes NER works with: documents with standoff entities, and tokenised sentences with BIO tags.

Character offsets always index the document's text (as brat's do), so a prediction on a token goes
back to the exact characters it came from.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

OUTSIDE = "O"

# Tokens a sentence may hold. A text without line breaks or sentence ends, or a CoNLL file without
# blank lines, would otherwise be one sentence of any length, and the feature CRF builds every token's
# features of a sentence at once (one 1,000,000-token sentence took more than 5 GB). Longer sentences
# are split into pieces of at most this many tokens (512, a transformer's usual context), counted.
MAX_SENTENCE_TOKENS = 512
LONG_SENTENCES = f"sentences longer than {MAX_SENTENCE_TOKENS} tokens split into pieces"
SPLIT_ENTITIES = f"entities longer than {MAX_SENTENCE_TOKENS} tokens split with their sentence"


def split_tag(tag: str) -> tuple[str, str]:
    """'B-Drug' -> ('B', 'Drug'), 'O' -> ('O', ''); ValueError for anything that is not IOB2."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    if tag[:2] in ("B-", "I-") and len(tag) > 2:
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not IOB2 (expected 'O', 'B-<type>' or 'I-<type>')")


@dataclass(frozen=True)
class Entity:
    """One annotated mention: a type and one or more character spans (more than one = discontinuous)."""

    type: str
    spans: tuple[tuple[int, int], ...]  # [start, end) offsets into Document.text, in order
    id: str = ""  # brat's "T3"; empty for predictions until written

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]


@dataclass
class Document:
    """A text and its entities; ``name`` is the path below the corpus folder without extension."""

    name: str
    text: str
    entities: list[Entity] = field(default_factory=list)


@dataclass(frozen=True)
class Sentence:
    """Word tokens of one sentence with their character offsets and (when labelled) IOB2 tags."""

    document: str  # Document.name it came from
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]  # [start, end) of each token in the document's text
    tags: tuple[str, ...] | None = None  # "O", "B-Drug", "I-Drug", ...; None when unlabelled

    def __len__(self) -> int:
        return len(self.tokens)


def counting_units(sentences: Sequence[Sentence]) -> list[str]:
    """The unit each sentence counts in when words are counted, or scores resampled, by document:
    its document, or the sentence itself when the corpus has no document boundaries (a CoNLL file
    reads as one pseudo-document)."""
    if len({s.document for s in sentences}) <= 1:
        return [str(index) for index in range(len(sentences))]
    return [s.document for s in sentences]


@dataclass
class ReadReport:
    """What a reader skipped or repaired, counted by kind, with the first few places of each.

    Readers never drop anything silently: each problem is counted here and ``log()`` writes one
    line per kind, so a user sees e.g. "12 malformed .ann lines skipped (first: a.ann line 4)".
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, where: str) -> None:
        self.counts[kind] += 1
        places = self.examples.setdefault(kind, [])
        if len(places) < 3:
            places.append(where)

    def log(self, logger: logging.Logger = log, source: str = "") -> None:
        """One line per kind, prefixed with ``source`` (the corpus read) when given."""
        prefix = f"{source}: " if source else ""
        for kind, count in sorted(self.counts.items()):
            logger.warning("%s%d %s (first: %s)", prefix, count, kind, "; ".join(self.examples[kind]))

    def to_dict(self) -> dict:
        return {kind: {"count": n, "first": self.examples[kind]} for kind, n in sorted(self.counts.items())}


def split_long(sentence: Sentence, report: ReadReport, where: str) -> list[Sentence]:
    """``sentence`` as pieces of at most ``MAX_SENTENCE_TOKENS`` tokens, counted in ``report`` when
    it is longer; each piece keeps its tokens' offsets, so predictions still map back to the text.

    A piece ends before a token that starts an entity or is outside one, stepping back from the limit,
    so no entity is cut; only an entity longer than a whole piece is, and its continuation then
    opens with ``B-`` (counted).
    """
    if len(sentence) <= MAX_SENTENCE_TOKENS:
        return [sentence]
    pieces, begin = [], 0
    while begin < len(sentence):
        end = _piece_end(sentence.tags, begin, len(sentence))
        pieces.append(_piece(sentence, begin, end, report, where))
        begin = end
    report.add(LONG_SENTENCES, f"{where} ({len(sentence)} tokens, {len(pieces)} pieces)")
    return pieces


def _piece_end(tags: tuple[str, ...] | None, begin: int, length: int) -> int:
    """Where the piece starting at ``begin`` ends: at the limit, or before the entity running over it."""
    end = min(begin + MAX_SENTENCE_TOKENS, length)
    if tags is None or end == length:
        return end
    boundary = end
    while boundary > begin and tags[boundary].startswith("I-"):
        boundary -= 1
    return boundary if boundary > begin else end


def _piece(sentence: Sentence, begin: int, end: int, report: ReadReport, where: str) -> Sentence:
    tags = None if sentence.tags is None else list(sentence.tags[begin:end])
    if tags and tags[0].startswith("I-"):  # an entity longer than a piece, cut: its rest is a new one
        tags[0] = "B-" + tags[0][2:]
        report.add(SPLIT_ENTITIES, where)
    return Sentence(
        sentence.document,
        sentence.tokens[begin:end],
        sentence.offsets[begin:end],
        None if tags is None else tuple(tags),
    )
