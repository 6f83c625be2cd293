"""CoNLL-style token-per-line files (e.g. NCBI-disease's ``train.tsv``): ``token<TAB>tag`` lines, a
blank line between sentences.

Such files keep no original text, so the reader makes one up: each sentence is its tokens joined by
single spaces, sentences joined by "\\n", and the whole file is one pseudo document named after the
file's stem ("train" for train.tsv). Token offsets index that text, which :func:`synthesized_text`
rebuilds, so CoNLL sentences flow through the same offset-based code as brat documents. A sentence
longer than 512 tokens is read as pieces (:func:`clinfm.ner.document.split_long`, counted); the
rebuilt text then holds a "\\n" where the file's sentence held a space, at the same offset.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from clinfm.errors import InputError
from clinfm.ner.document import ReadReport, Sentence, split_long
from clinfm.ner.text import iob2

log = logging.getLogger(__name__)

IOB_TAG = re.compile(r"O|[BI]-\S+")
REPAIRED = "IOB1 / stray I- tags repaired to B- (IOB2)"


def read_conll(path: str | Path, *, report: ReadReport | None = None) -> list[Sentence]:
    """Sentences of a CoNLL file with IOB2 tags.

    The token is a line's first column and the tag its last (columns split by tabs, or by spaces when
    a line has no tab); ``-DOCSTART-`` lines are skipped. A tag that is not ``O``, ``B-X`` or ``I-X``
    is an InputError naming the line; IOB1 / stray ``I-`` tags are repaired and counted in ``report``
    (logged as a warning when no report is given).
    """
    path = Path(path)
    own_report = report is None
    report = ReadReport() if report is None else report
    lines = _read_lines(path)

    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0  # line number of the current sentence's first token
    offset = 0  # where the next sentence starts in the synthesized text

    def close_sentence() -> None:
        nonlocal offset
        if not tokens:
            return
        repaired, changed = iob2(tags)
        if changed:
            report.add(REPAIRED, f"{path.name}:{first_line}")
        sentence = _sentence(path.stem, tokens, repaired, offset)
        sentences.extend(split_long(sentence, report, f"{path.name}:{first_line}"))
        offset = sentence.offsets[-1][1] + 1  # one "\n" between sentences
        tokens.clear()
        tags.clear()

    for number, line in enumerate(lines, start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or fields[0] == "-DOCSTART-":
            close_sentence()
            continue
        token, tag = fields[0].strip(), fields[-1].strip()
        if len(fields) < 2 or not token:
            raise InputError(f"line {number}: expected a token and a tag separated by a tab", path=path)
        if not IOB_TAG.fullmatch(tag):
            raise InputError(
                f"line {number}: tag {tag!r} is not IOB (expected O, B-<type> or I-<type>)", path=path
            )
        if not tokens:
            first_line = number
        tokens.append(token)
        tags.append(tag)
    close_sentence()

    if not sentences:
        raise InputError("no tokens (expected token<TAB>tag lines)", path=path)
    if own_report:
        report.log(log)
    return sentences


def _read_lines(path: Path) -> list[str]:
    """The file's lines; InputError for a missing, empty or non-UTF-8 file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the CoNLL file: {error.strerror}", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"line {line}: not UTF-8 (byte {data[error.start]:#04x}); save the file as UTF-8", path=path
        ) from None
    if not text.strip():
        raise InputError("empty file (expected token<TAB>tag lines)", path=path)
    return [line.rstrip("\r") for line in text.split("\n")]


def _sentence(document: str, tokens: list[str], tags: list[str], offset: int) -> Sentence:
    """A sentence whose tokens sit at ``offset`` onward in the synthesized text, one space apart."""
    offsets = []
    for token in tokens:
        offsets.append((offset, offset + len(token)))
        offset += len(token) + 1
    return Sentence(document=document, tokens=tuple(tokens), offsets=tuple(offsets), tags=tuple(tags))


def synthesized_text(sentences: Sequence[Sentence]) -> str:
    """The pseudo document text that :func:`read_conll` offsets index: tokens joined by one space,
    sentences by "\\n" (pass the sentences of one file, in order)."""
    return "\n".join(" ".join(sentence.tokens) for sentence in sentences)


def write_conll(
    sentences: Sequence[Sentence],
    path: str | Path,
    tags: Sequence[Sequence[str]] | None = None,
) -> Path:
    """Write ``token<TAB>tag`` lines, a blank line between sentences; ``tags`` (e.g. predictions)
    replace the sentences' own tags. Written through a temporary file and a rename."""
    path = Path(path)
    if tags is None:
        tags = [sentence.tags for sentence in sentences]
        if any(sentence_tags is None for sentence_tags in tags):
            raise ValueError("a sentence has no tags; pass tags=")
    if len(tags) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(tags)} tag sequences")
    blocks = []
    for sentence, sentence_tags in zip(sentences, tags, strict=True):
        if len(sentence_tags) != len(sentence):
            raise ValueError(f"a sentence of {len(sentence)} tokens got {len(sentence_tags)} tags")
        blocks.append("".join(f"{t}\t{tag}\n" for t, tag in zip(sentence.tokens, sentence_tags, strict=True)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(blocks), encoding="utf-8")
    os.replace(tmp, path)
    return path
