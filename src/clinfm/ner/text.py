"""From standoff documents to tokenised, BIO-tagged sentences, and back.

Every token keeps its ``[start, end)`` character offsets into the document's text, so a tag predicted
on a token maps back to the exact characters it came from (``to_entities``) and can be written as brat.

Policies (BIO holds one label per token, so some brat annotations cannot be represented exactly;
each case is counted in the ``ReadReport`` passed to :func:`to_sentences`):

- overlapping / nested entities: one wins (``overlap="longest"`` or ``"shortest"``), the others are
  counted as "overlapping entities not labelled";
- discontinuous entities: each fragment becomes its own B-/I- run of the entity's type, counted as
  "discontinuous entities split into fragments";
- an entity boundary inside a token ("25" of "25mg" cannot happen, the tokenizer splits it, but "azith"
  of "azithromycin" can): the whole token is tagged, counted as "entity boundaries inside a token";
- a sentence is never split inside an entity: the sentence spans it crosses are merged;
- a sentence longer than ``MAX_SENTENCE_TOKENS`` (512) tokens is split into pieces at entity
  boundaries, counted as "sentences longer than 512 tokens split into pieces"
  (:func:`clinfm.ner.document.split_long`).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import pairwise

from clinfm.ner.document import OUTSIDE, Document, Entity, ReadReport, Sentence, split_long, split_tag

# Runs of digits (a decimal "2.5" or "1,000" stays whole), runs of letters, or any other single
# non-space character. Letter/digit transitions split ("25mg" -> "25" "mg"), and so do hyphens and
# slashes ("azithromycin-induced" -> "azithromycin" "-" "induced"), as in spaCy / NeuroNER.
TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+|\S")

# Lines end sentences: clinical notes are line-based (lists, headers, vitals). These are the line
# breaks str.splitlines knows, so no line separator hides inside a sentence.
LINE = re.compile(r"[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")

# A candidate sentence end inside a line: a word ending in . ! or ? (maybe followed by closing quotes
# or brackets), then whitespace, then the next character, checked in code (uppercase letter or digit).
# The look-behind anchors a match at a word's start, which keeps the scan linear on long space-free runs.
SENTENCE_END = re.compile(r"(?<!\S)(\S*[.!?][\"')\]]*)\s+(?=\S)")

# Words after which a period does not end a sentence, lowercased. Kept short on purpose: a missed
# split only makes a longer sentence, while a wrong one could cut an entity's context in two.
# "etc." is left out: it more often ends a sentence than not.
ABBREVIATIONS = frozenset(
    {
        *("dr.", "mr.", "mrs.", "ms.", "prof.", "st.", "vs.", "e.g.", "i.e.", "approx.", "no.", "fig."),
        *("p.o.", "b.i.d.", "t.i.d.", "q.i.d.", "q.d.", "q.h.s.", "p.r.n.", "i.v.", "i.m.", "s.c."),
        *("mg.", "ml."),
    }
)

PARTIAL_TOKEN = "entity boundaries inside a token"
OVERLAPPING = "overlapping entities not labelled"
DISCONTINUOUS = "discontinuous entities split into fragments"
NO_TOKEN = "entities covering no token"
EMPTY_DOCUMENT = "empty documents"
MERGED_SENTENCES = "sentence boundaries inside an entity (sentences merged)"


def tokenize(text: str, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """Word tokens of ``text[start:end]`` as ``(token, start, end)`` with offsets into ``text``."""
    end = len(text) if end is None else end
    return [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text, start, end)]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``[start, end)`` of ``text``, stripped of surrounding whitespace.

    A sentence ends at every line break, and inside a line at . ! or ? followed by whitespace and an
    uppercase letter or a digit, unless the word ending there is a known abbreviation (``ABBREVIATIONS``)
    or a list number opening the line ("2. Losartan 50 mg daily" stays one sentence).
    """
    spans = []
    for line in LINE.finditer(text):
        start = line.start()
        for m in SENTENCE_END.finditer(text, line.start(), line.end()):
            following = text[m.end()]
            if not (following.isupper() or following.isdigit()):
                continue
            word = m.group(1).lstrip("\"'([").rstrip("\"')]").lower()
            if word in ABBREVIATIONS or _list_number(text, start, m):
                continue
            spans.append((start, m.end(1)))
            start = m.end()
        spans.append((start, line.end()))
    return [stripped for span in spans if (stripped := _strip(text, *span))]


def _list_number(text: str, start: int, end_mark: re.Match) -> bool:
    """Whether the sentence so far is only a number, as in a numbered list's "2."."""
    return text[start : end_mark.end(1)].strip().rstrip(".").isdigit()


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``[start, end)`` without leading or trailing whitespace; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def to_sentences(
    document: Document,
    *,
    types: Iterable[str] | None = None,
    overlap: str = "longest",
    report: ReadReport | None = None,
) -> list[Sentence]:
    """Split ``document`` into tokenised sentences with IOB2 tags from its entities.

    ``types`` keeps only entities of these types (None keeps all). ``overlap`` chooses which of two
    entities sharing a token is labelled: "longest" (most characters; ties: earlier start, then file
    order) or "shortest" (the innermost). What cannot be represented is counted in ``report``; without
    one it is not counted anywhere, so readers of a corpus should pass one and ``log()`` it.
    """
    if overlap not in ("longest", "shortest"):
        raise ValueError(f"overlap must be 'longest' or 'shortest', not {overlap!r}")
    report = ReadReport() if report is None else report
    tokens = tokenize(document.text)
    if not tokens:
        report.add(EMPTY_DOCUMENT, document.name)
        return []
    starts = [start for _, start, _ in tokens]
    ends = [end for _, _, end in tokens]

    wanted = None if types is None else set(types)
    entities = [e for e in document.entities if wanted is None or e.type in wanted]
    runs = _labelled_runs(document.name, entities, starts, ends, overlap, report)

    tags = [OUTSIDE] * len(tokens)
    for label, first, last in runs:
        tags[first] = f"B-{label}"
        tags[first + 1 : last] = [f"I-{label}"] * (last - first - 1)

    sentences = []
    for first, last in _sentence_token_ranges(document, starts, runs, report):
        sentence = Sentence(
            document=document.name,
            tokens=tuple(token for token, _, _ in tokens[first:last]),
            offsets=tuple(zip(starts[first:last], ends[first:last], strict=True)),
            tags=tuple(tags[first:last]),
        )
        sentences += split_long(sentence, report, f"{document.name}: character {starts[first]}")
    return sentences


def _labelled_runs(
    name: str,
    entities: Sequence[Entity],
    starts: list[int],
    ends: list[int],
    overlap: str,
    report: ReadReport,
) -> list[tuple[str, int, int]]:
    """The ``(type, first token, last token + 1)`` runs to tag, one per fragment of each kept entity.

    Entities are ranked by the overlap policy and taken greedily: one that shares a token with an
    entity already taken is counted and left out.
    """
    fragments = []  # per entity: its token runs, fragments touching the same tokens merged
    for entity in entities:
        fragments.append(_token_runs(name, entity, starts, ends, report))

    def length(index: int) -> int:
        return sum(end - start for start, end in entities[index].spans)

    sign = -1 if overlap == "longest" else 1
    ranked = sorted(range(len(entities)), key=lambda i: (sign * length(i), min(entities[i].spans), i))

    taken = bytearray(len(starts))  # 1 where a token already belongs to a labelled entity
    runs = []
    for index in ranked:
        entity, token_runs = entities[index], fragments[index]
        if not token_runs:
            continue
        if any(taken.find(1, first, last) != -1 for first, last in token_runs):
            report.add(OVERLAPPING, _where(name, entity))
            continue
        if len(token_runs) > 1:
            report.add(DISCONTINUOUS, _where(name, entity))
        for first, last in token_runs:
            taken[first:last] = b"\x01" * (last - first)
            runs.append((entity.type, first, last))
    return sorted(runs, key=lambda run: run[1])


def _token_runs(
    name: str, entity: Entity, starts: list[int], ends: list[int], report: ReadReport
) -> list[tuple[int, int]]:
    """Token index ranges ``[first, last)`` that the entity's fragments touch, in order, merged when
    two fragments touch the same token (BIO cannot tell them apart)."""
    runs: list[tuple[int, int]] = []
    partial = False
    for start, end in sorted(entity.spans):
        first = bisect_right(ends, start)  # first token ending after the fragment starts
        last = bisect_left(starts, end)  # tokens before this one start before the fragment ends
        if first >= last:
            continue
        partial = partial or starts[first] < start or ends[last - 1] > end
        if runs and first < runs[-1][1]:
            runs[-1] = (runs[-1][0], max(last, runs[-1][1]))
        else:
            runs.append((first, last))
    if not runs:
        report.add(NO_TOKEN, _where(name, entity))
    if partial:
        report.add(PARTIAL_TOKEN, _where(name, entity))
    return runs


def _sentence_token_ranges(
    document: Document, starts: list[int], runs: list[tuple[str, int, int]], report: ReadReport
) -> list[tuple[int, int]]:
    """Token index ranges of the sentences, with sentences an entity run crosses merged into one."""
    # Sentence spans cover every non-space character, so each token lies in exactly one sentence.
    firsts = [bisect_left(starts, start) for start, _ in split_sentences(document.text)]
    joined = [False] * len(firsts)  # joined[k]: sentence k continues sentence k - 1
    for _, first, last in runs:
        opening = bisect_right(firsts, first) - 1
        closing = bisect_right(firsts, last - 1) - 1
        for k in range(opening + 1, closing + 1):
            if not joined[k]:
                joined[k] = True
                report.add(MERGED_SENTENCES, f"{document.name}: character {starts[firsts[k]]}")
    bounds = [first for k, first in enumerate(firsts) if not joined[k]] + [len(starts)]
    return list(pairwise(bounds))


def _where(name: str, entity: Entity) -> str:
    return f"{name}:{entity.id}" if entity.id else f"{name}: characters {entity.start}-{entity.end}"


def to_entities(offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[Entity]:
    """Entities from IOB2 ``tags`` over tokens with character ``offsets``: each spans its first token's
    start to its last token's end. Lenient like conlleval: an I-X that does not continue an X run
    starts a new entity."""
    if len(offsets) != len(tags):
        raise ValueError(f"{len(offsets)} tokens but {len(tags)} tags")
    entities = []
    label, first = None, 0  # the open entity's type and first token, if any
    for index, tag in enumerate((*tags, OUTSIDE)):  # the sentinel closes a run at the end
        prefix, kind = split_tag(tag)
        if label is not None and (prefix != "I" or kind != label):
            entities.append(Entity(label, ((offsets[first][0], offsets[index - 1][1]),)))
            label = None
        if prefix in ("B", "I") and label is None:
            label, first = kind, index
    return entities


def entities_from_sentences(
    document_name: str,
    text: str,
    sentences: Sequence[Sentence],
    tags_per_sentence: Sequence[Sequence[str]],
) -> Document:
    """A document with the entities that ``tags_per_sentence`` (e.g. predictions) mark on ``sentences``."""
    if len(sentences) != len(tags_per_sentence):
        raise ValueError(f"{len(sentences)} sentences but {len(tags_per_sentence)} tag sequences")
    entities = []
    for sentence, tags in zip(sentences, tags_per_sentence, strict=True):
        if sentence.document != document_name:
            raise ValueError(f"a sentence of {sentence.document!r} given for {document_name!r}")
        entities.extend(to_entities(sentence.offsets, tags))
    return Document(name=document_name, text=text, entities=entities)


def iob2(tags: Sequence[str]) -> tuple[list[str], int]:
    """Tags repaired to IOB2 (an I-X not continuing an X run becomes B-X, as IOB1 writes them) and
    how many were changed."""
    repaired, changed = [], 0
    previous = None  # type of the run the previous tag belongs to
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and kind != previous:
            tag, changed = f"B-{kind}", changed + 1
        repaired.append(tag)
        previous = kind
    return repaired, changed
