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
