"""NER input and output: tokens with offsets, sentences, BIO tags from brat entities and back, the brat
and CoNLL readers (each way they count or refuse bad input) and writers."""

from __future__ import annotations

import json
import time

import pytest

from _shared import shared_path
from clinfm.errors import InputError
from clinfm.ner.brat import read_brat, write_brat
from clinfm.ner.conll import read_conll, synthesized_text, write_conll
from clinfm.ner.document import Document, Entity, ReadReport
from clinfm.ner.text import (
    entities_from_sentences,
    iob2,
    split_sentences,
    to_entities,
    to_sentences,
    tokenize,
)

# --- tokenizer and sentences -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("azithromycin-induced ototoxicity.", ["azithromycin", "-", "induced", "ototoxicity", "."]),
        ("25mg p.o. b/w", ["25", "mg", "p", ".", "o", ".", "b", "/", "w"]),
        ("2.5 mg, 1,000 units (x2).", ["2.5", "mg", ",", "1,000", "units", "(", "x", "2", ")", "."]),
        ("BP 120/80; T 37.2C", ["BP", "120", "/", "80", ";", "T", "37.2", "C"]),
        ("naïve café_au-lait", ["naïve", "café", "_", "au", "-", "lait"]),
        ("  \r\n ", []),
    ],
)
def test_tokenize_splits_finely_with_exact_offsets(text, tokens):
    found = tokenize(text)
    assert [token for token, _, _ in found] == tokens
    assert all(text[start:end] == token for token, start, end in found)


def test_tokenize_a_slice_keeps_offsets_into_the_whole_text():
    text = "Dose: 25mg daily"
    assert tokenize(text, 6, 10) == [("25", 6, 8), ("mg", 8, 10)]


def test_split_sentences_at_lines_and_sentence_ends_but_not_abbreviations():
    text = (
        "Seen by Dr. Smith today. Took 5 mg p.o. Daily since e.g. Monday.\n\n"
        "  HPI: fever!  2 days ago\r\nPlan"
    )
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "Seen by Dr. Smith today.",
        "Took 5 mg p.o. Daily since e.g. Monday.",
        "HPI: fever!",
        "2 days ago",
        "Plan",
    ]


def test_a_numbered_list_item_stays_one_sentence():
    text = "Medications:\n1. Aspirin 81 mg daily. 2. Losartan 50 mg.\n12. Heparin. Then stop."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Medications:",
        "1. Aspirin 81 mg daily.",
        "2. Losartan 50 mg.",
        "12. Heparin.",
        "Then stop.",
    ]


def test_split_sentences_needs_an_uppercase_or_digit_after_the_stop():
    text = "fever vs. chills. then rigors. Then rest."
    assert [text[s:e] for s, e in split_sentences(text)] == ["fever vs. chills. then rigors.", "Then rest."]
    assert split_sentences(" \n\t ") == []


# --- BIO tags from entities ----------------------------------------------------------------------


def tags_of(sentences):
    return [(token, tag) for s in sentences for token, tag in zip(s.tokens, s.tags, strict=True)]


def test_to_sentences_tags_entities_and_keeps_offsets():
    text = "Intravenous azithromycin-induced ototoxicity.\nNo rash."
    doc = Document("d", text, [Entity("Drug", ((12, 24),), "T1"), Entity("Effect", ((33, 44),), "T2")])
    sentences = to_sentences(doc)
    assert len(sentences) == 2
    assert tags_of(sentences)[:5] == [
        ("Intravenous", "O"),
        ("azithromycin", "B-Drug"),
        ("-", "O"),
        ("induced", "O"),
        ("ototoxicity", "B-Effect"),
    ]
    for sentence in sentences:
        assert [text[s:e] for s, e in sentence.offsets] == list(sentence.tokens)


def test_nested_entities_follow_the_overlap_policy_and_are_counted():
    # PHEE style: a Treatment mention with the Drug inside it.
    text = "after oral amoxicillin therapy."
    treatment = Entity("Treatment", ((6, 30),), "T1")
    drug = Entity("Drug", ((11, 22),), "T2")
    doc = Document("d", text, [treatment, drug])

    report = ReadReport()
    longest = tags_of(to_sentences(doc, overlap="longest", report=report))
    assert [tag for _, tag in longest] == ["O", "B-Treatment", "I-Treatment", "I-Treatment", "O"]
    assert report.counts["overlapping entities not labelled"] == 1
    assert report.examples["overlapping entities not labelled"] == ["d:T2"]

    shortest = tags_of(to_sentences(doc, overlap="shortest"))
    assert [tag for _, tag in shortest] == ["O", "O", "B-Drug", "O", "O"]

    only_treatment = tags_of(to_sentences(doc, types={"Treatment"}, overlap="shortest"))
    assert [tag for _, tag in only_treatment] == ["O", "B-Treatment", "I-Treatment", "I-Treatment", "O"]
    with pytest.raises(ValueError, match="overlap"):
        to_sentences(doc, overlap="outer")


def test_overlap_ties_go_to_the_earlier_start_then_file_order():
    text = "aa bb cc"
    first, second = Entity("X", ((0, 5),), "T1"), Entity("Y", ((3, 8),), "T2")
    assert [t for _, t in tags_of(to_sentences(Document("d", text, [second, first])))] == ["B-X", "I-X", "O"]
    same = [Entity("Y", ((0, 2),), "T1"), Entity("X", ((0, 2),), "T2")]
    assert [t for _, t in tags_of(to_sentences(Document("d", text, same)))] == ["B-Y", "O", "O"]


def test_discontinuous_entity_becomes_one_run_per_fragment():
    text = "Stomatitis, diarrhea and dermatitis"
    doc = Document("d", text, [Entity("Effect", ((0, 10), (25, 35)), "T1")])
    report = ReadReport()
    tags = [t for _, t in tags_of(to_sentences(doc, report=report))]
    assert tags == ["B-Effect", "O", "O", "O", "B-Effect"]
    assert report.counts["discontinuous entities split into fragments"] == 1


def test_entity_inside_a_token_tags_the_whole_token_and_is_counted():
    text = "Tetracycline-induced rash"
    doc = Document("d", text, [Entity("Drug", ((4, 12),), "T1")])
    report = ReadReport()
    assert [t for _, t in tags_of(to_sentences(doc, report=report))] == ["B-Drug", "O", "O", "O"]
    assert report.counts["entity boundaries inside a token"] == 1


def test_a_sentence_is_not_split_inside_an_entity():
    text = "Took Tylenol\nExtra Strength today. Then slept."
    end = text.index(" today")
    doc = Document("d", text, [Entity("Drug", ((5, end),), "T1")])
    assert len(split_sentences(text)) == 3
    report = ReadReport()
    sentences = to_sentences(doc, report=report)
    assert [" ".join(s.tokens) for s in sentences] == ["Took Tylenol Extra Strength today .", "Then slept ."]
    assert sentences[0].tags == ("O", "B-Drug", "I-Drug", "I-Drug", "O", "O")
    assert report.counts["sentence boundaries inside an entity (sentences merged)"] == 1


def test_whitespace_document_gives_no_sentences_and_is_counted():
    report = ReadReport()
    assert to_sentences(Document("blank", " \r\n\n"), report=report) == []
    assert report.counts["empty documents"] == 1


def test_to_entities_is_lenient_like_conlleval():
    offsets = [(0, 3), (4, 8), (9, 12), (13, 15), (16, 20)]
    tags = ["I-Drug", "I-Drug", "B-Drug", "I-Effect", "O"]
    assert to_entities(offsets, tags) == [
        Entity("Drug", ((0, 8),)),
        Entity("Drug", ((9, 12),)),
        Entity("Effect", ((13, 15),)),
    ]
    assert to_entities([], []) == []
    with pytest.raises(ValueError, match="not IOB2"):
        to_entities([(0, 1)], ["S-Drug"])


def test_iob2_repairs_iob1_and_counts():
    assert iob2(["I-X", "I-X", "O", "I-Y", "B-Y", "I-X"]) == (["B-X", "I-X", "O", "B-Y", "B-Y", "B-X"], 3)
    assert iob2(["B-X", "I-X"]) == (["B-X", "I-X"], 0)


# --- brat ----------------------------------------------------------------------------------------


def write_files(folder, files):
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def sample_documents():
    text = "Pt given 25mg amoxicillin.\r\nDeveloped rash and\r\nfever after 2 days.\r\n"
    rash, fever = text.index("rash"), text.index("fever")
    return [
        Document(
            "notes/a",
            text,
            [
                Entity("Drug", ((14, 25),), "T1"),
                Entity("Effect", ((rash, rash + 4), (fever, fever + 5)), "T2"),
                Entity("Dose", ((9, 13),), ""),
            ],
        ),
        Document("b", "", []),
        Document("c", "Nothing here.\n", []),
    ]


def test_brat_round_trip_is_exact(tmp_path):
    documents = sample_documents()
    out = write_brat(documents, tmp_path / "out")
    read = read_brat(out)
    assert [d.name for d in read] == ["b", "c", "notes/a"]
    by_name = {d.name: d for d in read}
    for document in documents:
        back = by_name[document.name]
        assert back.text == document.text
        assert [(e.type, e.spans) for e in back.entities] == [(e.type, e.spans) for e in document.entities]
    ann = (out / "notes" / "a.ann").read_text(encoding="utf-8")
    assert "T2\tEffect 38 42;48 53\trash fever\n" in ann
    assert "T3\tDose 9 13\t25mg\n" in ann  # a new id that does not clash with T1, T2
    assert "[entities]\nDose\nDrug\nEffect\n" in (out / "annotation.conf").read_text()
    assert json.loads((out / "run.json").read_text())["documents"] == 3

    with pytest.raises(InputError, match="already exists"):
        write_brat(documents, out)
    write_brat(documents[:1], out, overwrite=True)
    assert [d.name for d in read_brat(out)] == ["notes/a"]


def test_write_brat_refuses_a_users_folder_and_bad_names(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(InputError, match="refusing"):
        write_brat(sample_documents(), tmp_path / "mine", overwrite=True)
    with pytest.raises(InputError, match="relative path"):
        write_brat([Document("../up", "x")], tmp_path / "o1")
    with pytest.raises(InputError, match="two documents"):
        write_brat([Document("a", "x"), Document("a", "y")], tmp_path / "o2")


def test_write_brat_cuts_a_fragment_at_line_breaks(tmp_path):
    text = "rash on\r\nlegs"
    out = write_brat([Document("a", text, [Entity("Effect", ((0, 13),))])], tmp_path / "out")
    (back,) = read_brat(out)
    assert back.entities[0].spans == ((0, 7), (9, 13))


def test_predictions_through_bio_and_back_to_brat(tmp_path):
    documents = [d for d in sample_documents() if d.name != "b"]
    # Make the documents BIO-representable: no discontinuous entities.
    documents[0].entities = [e for e in documents[0].entities if len(e.spans) == 1]
    read = read_brat(write_brat(documents, tmp_path / "gold"))
    predicted = []
    for document in read:
        sentences = to_sentences(document)
        predicted.append(
            entities_from_sentences(document.name, document.text, sentences, [s.tags for s in sentences])
        )
    again = {d.name: d for d in read_brat(write_brat(predicted, tmp_path / "pred"))}
    for document in read:
        spans = sorted((e.type, e.spans) for e in document.entities)
        assert sorted((e.type, e.spans) for e in again[document.name].entities) == spans
    with pytest.raises(ValueError, match="sentence of"):
        entities_from_sentences("other", "", to_sentences(read[0]), [s.tags for s in to_sentences(read[0])])


def test_brat_reader_counts_each_problem(tmp_path):
    text = "Aspirin caused rash.\n"
    corpus = write_files(
        tmp_path / "corpus",
        {
            "good.txt": text,
            "good.ann": "\n".join(
                [
                    "T1\tDrug 0 7\tAspirin",
                    "T2\tEffect 15 19\trash",
                    "E1\tAdverse_event:T2 Cause:T1",
                    "R1\tCause Arg1:T1 Arg2:T2",
                    "A1\tSeverity E1 High",
                    "M2\tNegated E1",
                    "N1\tReference T1 RxNorm:1191\tAspirin",
                    "#1\tAnnotatorNotes T1\tchecked",
                    "*\tEquiv T1 T2",
                    "T3\tDrug 12",  # bad offsets
                    "T4\tEffect 0 4\trash",  # text does not match
                    "T5\tEffect 15 99\trash",  # past the end
                    "T6\tDrug 0 3;4 7\tAsp rin",  # discontinuous, matching
                    "T7\tEffect 15 19\trash\t ",  # trailing blanks in the text column: kept
                    "E2\tAdverse_event:T4Intravenous",  # a broken event line: an E line, still skipped
                    "X1\twhat is this",
                    "",
                ]
            ),
            "no_ann.txt": "Plain text.",
            "empty.txt": "",
            "empty.ann": "",
            "orphan.ann": "T1\tDrug 0 1\tx\n",
            "latin1.txt": "caf\xe9".encode("latin-1"),
            "latin1.ann": "",
            "sub/bad_ann.txt": "ok",
            "sub/bad_ann.ann": b"T1\tDrug 0 2\t\xff\n",
        },
    )
    report = ReadReport()
    documents = read_brat(corpus, report=report)
    assert [d.name for d in documents] == ["empty", "good", "no_ann"]
    good = documents[1]
    assert [(e.id, e.type, e.spans) for e in good.entities] == [
        ("T1", "Drug", ((0, 7),)),
        ("T2", "Effect", ((15, 19),)),
        ("T6", "Drug", ((0, 3), (4, 7))),
        ("T7", "Effect", ((15, 19),)),
    ]
    assert dict(report.counts) == {
        "event lines (E) skipped": 2,
        "relation lines (R) skipped": 1,
        "attribute lines (A/M) skipped": 2,
        "normalisation lines (N) skipped": 1,
        "note lines (#) skipped": 1,
        "equivalence lines (*) skipped": 1,
        "malformed .ann lines": 2,
        "entities whose offsets do not match the text": 2,
        "entity lines whose text column ends in blanks (kept)": 1,
        "texts without .ann": 1,
        "annotation files without .txt": 1,
        "files that are not UTF-8": 2,
    }
    assert report.examples["malformed .ann lines"][0].startswith("good.ann:10")
    assert report.examples["entities whose offsets do not match the text"][0].startswith("good.ann:11")
    not_utf8 = ["latin1.txt:1 (byte 0xe9)", "sub/bad_ann.ann:1 (byte 0xff)"]
    assert report.examples["files that are not UTF-8"] == not_utf8
    assert documents[0].text == ""
    sentence_report = ReadReport()
    assert to_sentences(documents[0], report=sentence_report) == []
    assert sentence_report.counts["empty documents"] == 1


def test_brat_reader_keeps_crlf_characters(tmp_path):
    corpus = write_files(tmp_path / "c", {"a.txt": b"x\r\nfever", "a.ann": b"T1\tEffect 3 8\tfever\r\n"})
    (document,) = read_brat(corpus)
    assert document.text == "x\r\nfever"
    assert document.entities[0].spans == ((3, 8),)


def test_brat_reader_refuses_a_missing_or_textless_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_brat(tmp_path / "nope")
    write_files(tmp_path / "only_ann", {"a.ann": "T1\tDrug 0 1\tx\n"})
    with pytest.raises(InputError, match=r"no \.txt"):
        read_brat(tmp_path / "only_ann")


# --- CoNLL ---------------------------------------------------------------------------------------


def test_conll_reader(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(
        "-DOCSTART-\tO\n\n"
        "Identification\tNN\tO\n"
        "of\tIN\tO\n"
        "APC2\tNN\tI-Gene\n\n\n"
        "adenomatous B-Disease\n"
        "polyposis I-Disease\r\n"
        "\n",
        encoding="utf-8",
    )
    report = ReadReport()
    sentences = read_conll(path, report=report)
    assert [s.tokens for s in sentences] == [("Identification", "of", "APC2"), ("adenomatous", "polyposis")]
    assert sentences[0].tags == ("O", "O", "B-Gene")  # stray I- repaired
    assert sentences[1].tags == ("B-Disease", "I-Disease")
    assert report.counts["IOB1 / stray I- tags repaired to B- (IOB2)"] == 1
    assert all(s.document == "train" for s in sentences)
    text = synthesized_text(sentences)
    assert text == "Identification of APC2\nadenomatous polyposis"
    assert all(text[a:b] == t for s in sentences for t, (a, b) in zip(s.tokens, s.offsets, strict=True))

    out = write_conll(sentences, tmp_path / "out.tsv")
    assert [s.tags for s in read_conll(out)] == [s.tags for s in sentences]
    predicted = [("O", "O", "O"), ("B-Disease", "O")]
    assert [s.tags for s in read_conll(write_conll(sentences, out, tags=predicted))] == predicted


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\tO\nb\tE-Disease\n", r"line 2: tag 'E-Disease' is not IOB"),
        ("a\tO\nlonely\n", r"line 2: expected a token and a tag"),
        ("", "empty file"),
        ("\n\n-DOCSTART- O\n\n", "no tokens"),
        (b"a\tO\n\xe9\tO\n", r"line 2: not UTF-8"),
    ],
)
def test_conll_reader_refuses_bad_input(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=message):
        read_conll(path)


def test_conll_reader_refuses_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_conll(tmp_path / "none.tsv")


# --- the real corpora ----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_phee_train_reads_fast_and_counts_what_it_skips():
    folder = shared_path("ner", "phee", "train")
    started = time.perf_counter()
    report, sentence_report = ReadReport(), ReadReport()
    documents = read_brat(folder, report=report)
    sentences = [s for d in documents for s in to_sentences(d, report=sentence_report)]
    assert time.perf_counter() - started < 4  # well under 2 s alone; slack for a busy machine
    assert len(documents) == 2898
    assert len(sentences) >= len(documents)

    t_lines = sum(
        line.startswith("T") for path in folder.glob("*.ann") for line in path.read_text().split("\n")
    )
    kept = sum(len(d.entities) for d in documents)
    counts = report.counts
    problems = counts["malformed .ann lines"] + counts["entities whose offsets do not match the text"]
    assert kept + problems == t_lines
    assert report.counts["event lines (E) skipped"] > 3000  # events are skipped, not fatal
    for document in documents:
        for entity in document.entities:
            assert all(0 <= start < end <= len(document.text) for start, end in entity.spans)


@pytest.mark.shared_data
def test_ncbi_disease_train_reads_as_iob2():
    sentences = read_conll(shared_path("ner", "ncbi-disease", "train.tsv"))
    assert len(sentences) == 5424
    assert {tag for s in sentences for tag in s.tags} == {"O", "B-Disease", "I-Disease"}
    assert sum(len(s) for s in sentences) == 135701
