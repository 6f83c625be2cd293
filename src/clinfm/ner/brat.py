"""brat standoff corpora: a folder of ``name.txt`` texts with ``name.ann`` annotations beside them.

Only entities (T lines) are read; events, relations, attributes, normalisations, notes and
equivalences are skipped and counted. Offsets count the characters of the ``.txt`` exactly as stored
(no newline translation: "\\r\\n" is two characters, as brat counts it), and every entity is checked
against the text its line quotes, so a corpus with shifted offsets is noticed rather than trained on.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from clinfm.errors import InputError
from clinfm.io import atomic_directory
from clinfm.ner.document import Document, Entity, ReadReport

log = logging.getLogger(__name__)

# "Drug 12 24;30 35": a type, then one or more "start end" fragments separated by ";".
TYPE_AND_SPANS = re.compile(r"(\S+) (\d+ \d+(?:;\d+ \d+)*)")

# Lines that are not entities, skipped on purpose (not errors), counted by kind.
SKIPPED_LINES = {
    "E": "event lines (E) skipped",
    "R": "relation lines (R) skipped",
    "A": "attribute lines (A/M) skipped",
    "M": "attribute lines (A/M) skipped",
    "N": "normalisation lines (N) skipped",
    "#": "note lines (#) skipped",
    "*": "equivalence lines (*) skipped",
}
MALFORMED = "malformed .ann lines"
MISMATCHED = "entities whose offsets do not match the text"
TRAILING_BLANKS = "entity lines whose text column ends in blanks (kept)"
NOT_UTF8 = "files that are not UTF-8"
NO_ANN = "texts without .ann"
NO_TXT = "annotation files without .txt"

# Line breaks as str.splitlines knows them: a .ann line cannot hold one in its text column.
LINE_BREAK = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


def read_brat(
    directory: str | Path, *, report: ReadReport | None = None, annotations: bool = True
) -> list[Document]:
    """Every ``*.txt`` below ``directory`` (recursive, sorted) with the entities of its ``.ann``.

    ``Document.name`` is the path below ``directory`` without extension, with "/" separators. What is
    skipped is counted in ``report``; without one, the counts are logged as warnings at the end.
    ``annotations=False`` reads the texts alone (to tag them), ignoring any ``.ann``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("brat folder not found (expected a folder of .txt and .ann files)", path=directory)
    own_report = report is None
    report = ReadReport() if report is None else report

    texts = {_name(path, directory): path for path in directory.rglob("*.txt") if path.is_file()}
    if not texts:
        raise InputError("no .txt files in this brat folder", path=directory)
    for path in sorted(directory.rglob("*.ann")) if annotations else ():
        if path.is_file() and _name(path, directory) not in texts:
            report.add(NO_TXT, str(path.relative_to(directory).as_posix()))

    documents = []
    for name in sorted(texts):
        document = _read_document(name, texts[name], report, annotations)
        if document is not None:
            documents.append(document)
    if own_report:
        report.log(log)
    return documents


def _name(path: Path, directory: Path) -> str:
    return path.relative_to(directory).with_suffix("").as_posix()


def _read_document(name: str, txt: Path, report: ReadReport, annotations: bool = True) -> Document | None:
    """One text and its entities, or None (counted) when a file is not UTF-8."""
    text = _read_utf8(txt, f"{name}.txt", report)
    if text is None or not annotations:
        return None if text is None else Document(name=name, text=text)
    ann = txt.with_suffix(".ann")
    if not ann.is_file():
        report.add(NO_ANN, f"{name}.txt")
        return Document(name=name, text=text)
    annotations = _read_utf8(ann, f"{name}.ann", report)
    if annotations is None:
        return None
    entities = []
    for number, line in enumerate(annotations.split("\n"), start=1):
        line = line.rstrip("\r")  # an .ann saved with Windows line ends
        if not line.strip():
            continue
        where = f"{name}.ann:{number}"
        if line[0] in SKIPPED_LINES:
            report.add(SKIPPED_LINES[line[0]], where)
        elif line[0] != "T":
            report.add(MALFORMED, f"{where}: not a brat line kind")
        elif (entity := _parse_entity(line, text, where, report)) is not None:
            entities.append(entity)
    return Document(name=name, text=text, entities=entities)


def _read_utf8(path: Path, where: str, report: ReadReport) -> str | None:
    """The file's exact characters (bytes decoded, no newline translation), or None (counted)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        report.add(NOT_UTF8, f"{where}:{line} (byte {data[error.start]:#04x})")
        return None


def _parse_entity(line: str, text: str, where: str, report: ReadReport) -> Entity | None:
    """The entity of one ``T3<TAB>Drug 12 24;30 35<TAB>quoted text`` line; None (counted) when the
    line is malformed or its offsets do not quote its text."""
    fields = line.split("\t", 2)
    match = TYPE_AND_SPANS.fullmatch(fields[1]) if len(fields) == 3 else None
    if match is None:
        report.add(MALFORMED, f"{where}: expected 'T<n><TAB><type> <start> <end>[;<start> <end>]<TAB><text>'")
        return None
    spans = [tuple(map(int, fragment.split())) for fragment in match.group(2).split(";")]
    if any(start >= end for start, end in spans):
        report.add(MALFORMED, f"{where}: a span does not end after it starts")
        return None
    if any(end > len(text) for _, end in spans):
        report.add(MISMATCHED, f"{where}: span past the end of the text ({len(text)} characters)")
        return None
    # brat quotes discontinuous fragments in the order written, joined by one space.
    quoted = " ".join(text[start:end] for start, end in spans)
    if quoted != fields[2] and quoted == fields[2].rstrip(" \t"):
        # The offsets quote the text; only the column has trailing blanks (PHEE dev has one): keep it.
        report.add(TRAILING_BLANKS, where)
    elif quoted != fields[2]:
        report.add(MISMATCHED, f"{where}: the text at the offsets is {quoted!r}, the line says {fields[2]!r}")
        return None
    return Entity(type=match.group(1), spans=tuple(sorted(spans)), id=fields[0])


def write_brat(
    documents: Sequence[Document],
    directory: str | Path,
    *,
    overwrite: bool = False,
    read_counts: dict[str, int] | None = None,
) -> Path:
    """Write ``documents`` as a brat folder: ``<name>.txt`` (exact text), ``<name>.ann`` (entities as T
    lines), an ``annotation.conf`` so it opens in brat, and a ``run.json`` that marks it as clinfm
    output (so ``overwrite=True`` may replace it later) and keeps ``read_counts`` (what reading the
    texts skipped, repaired or split). Written atomically; returns the folder.

    Entities without an id are numbered T1, T2, ... A fragment holding a line break is written as one
    fragment per line (the .ann format is line-based), and so reads back as a discontinuous entity.
    """
    _check_names(documents)
    types: Counter = Counter()
    split = 0
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        for document in documents:
            txt = tmp / f"{document.name}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text(document.text, encoding="utf-8", newline="")
            lines, split_here = _ann_lines(document)
            split += split_here
            txt.with_suffix(".ann").write_text("".join(lines), encoding="utf-8", newline="")
            types.update(entity.type for entity in document.entities)
        (tmp / "annotation.conf").write_text(_annotation_conf(types), encoding="utf-8")
        run = {
            "format": "clinfm-brat-predictions",
            "version": 1,
            "documents": len(documents),
            "entities": sum(types.values()),
            "types": dict(sorted(types.items())),
            "skipped_or_repaired": dict(sorted((read_counts or {}).items())),
        }
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    if split:
        log.warning("%d entities held a line break and were written as one fragment per line", split)
    return Path(directory)


def _check_names(documents: Sequence[Document]) -> None:
    """Names must be unique relative paths that stay inside the output folder."""
    seen = set()
    for document in documents:
        parts = document.name.split("/")
        if not document.name or document.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InputError(f"document name {document.name!r} is not a relative path inside the folder")
        if document.name in seen:
            raise InputError(f"two documents are named {document.name!r}")
        seen.add(document.name)


def _ann_lines(document: Document) -> tuple[list[str], int]:
    """The T lines of a document's entities, and how many entities had to be split at line breaks."""
    used = {entity.id for entity in document.entities if entity.id}
    numbers = (f"T{n}" for n in range(1, len(document.entities) + len(used) + 2) if f"T{n}" not in used)
    written: set[str] = set()
    lines, split, dropped = [], 0, 0
    for entity in document.entities:
        identifier = entity.id
        if not identifier.startswith("T") or identifier in written or not _one_word(identifier):
            identifier = next(numbers)
        written.add(identifier)
        spans = _line_fragments(document.text, entity.spans)
        if not spans:  # nothing but line breaks: nothing brat could show
            dropped += 1
            continue
        split += spans != list(entity.spans)
        offsets = ";".join(f"{start} {end}" for start, end in spans)
        quoted = " ".join(document.text[start:end] for start, end in spans)
        lines.append(f"{identifier}\t{entity.type} {offsets}\t{quoted}\n")
    if dropped:
        log.warning("%s: %d entities covering only line breaks not written", document.name, dropped)
    return lines, split


def _one_word(identifier: str) -> bool:
    return not any(character.isspace() for character in identifier)


def _line_fragments(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` with each fragment cut at line breaks (the breaks themselves left out)."""
    fragments = []
    for start, end in spans:
        piece_start = start
        for brk in LINE_BREAK.finditer(text, start, end):
            if brk.start() > piece_start:
                fragments.append((piece_start, brk.start()))
            piece_start = brk.end()
        if end > piece_start:
            fragments.append((piece_start, end))
    return fragments


def _annotation_conf(types: Counter) -> str:
    """brat's configuration: the entity types, and no relations, events or attributes."""
    entities = "".join(f"{name}\n" for name in sorted(types))
    return f"[entities]\n{entities}\n[relations]\n\n[events]\n\n[attributes]\n"
