"""``clinfm ner`` end to end on the synthetic medication corpus: train, evaluate, predict to brat,
compare; and the bad input a user meets, as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinfm.cli import app
from clinfm.ner.brat import read_brat
from clinfm.ner.synth import synthetic_corpus

runner = CliRunner()
QUICK = ["--preset", "small", "--epochs", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return synthetic_corpus(tmp_path_factory.mktemp("ner") / "corpus", train=150, dev=40, test=40, seed=0)


@pytest.fixture(scope="module")
def tagger(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ner") / "tagger"
    result = runner.invoke(
        app,
        [
            "ner",
            "train",
            "--train",
            str(corpus / "train"),
            "--dev",
            str(corpus / "dev"),
            "--out",
            str(out),
            *QUICK,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "entity strict micro" in result.output
    return out


def clinfm_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clinfm", *args], capture_output=True, text=True, timeout=300
    )


def test_a_trained_tagger_is_a_folder_with_weights_tokenizer_labels_and_no_text(tagger, corpus):
    names = {p.name for p in tagger.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer", "run.json"} <= names
    config = json.loads((tagger / "config.json").read_text())
    assert config["kind"] == "ner-tagger" and config["tagger"]["labels"][0] == "O"
    assert config["training"]["schedule"] == "linear"
    run = json.loads((tagger / "run.json").read_text())
    assert run["results"]["dev"]["entity"]["micro"]["f1"] > 0.3  # learned something in two epochs
    assert not list(tagger.rglob("*.pkl")) and not list(tagger.rglob("*.bin"))
    # the checkpoint holds no document text or names beyond the sub-word vocabulary
    assert not any("synth_0" in (tagger / name).read_text() for name in ("config.json", "run.json"))


def test_evaluate_writes_all_three_families_of_scores(tagger, corpus, tmp_path):
    out = tmp_path / "scores"
    result = runner.invoke(
        app, ["ner", "evaluate", "--model", str(tagger), "--data", str(corpus / "test"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "metrics.json").read_text())
    assert scores["paper_unit"] == "subword"
    assert {"bio_strict", "token"} <= set(scores["paper"]) and "per_type" in scores["entity"]
    assert scores["partial"]["micro"]["f1"] >= scores["entity"]["micro"]["f1"] - 1e-9


def test_predict_writes_brat_that_reads_back_with_the_same_texts(tagger, corpus, tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for source in sorted((corpus / "test").glob("*.txt"))[:5]:
        (texts / source.name).write_bytes(source.read_bytes())  # text only: no .ann
    out = tmp_path / "predicted"
    result = runner.invoke(
        app, ["ner", "predict", "--model", str(tagger), "--in", str(texts), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    documents = read_brat(out)
    originals = {d.name: d.text for d in read_brat(texts)}
    assert {d.name: d.text for d in documents} == originals
    assert any(d.entities for d in documents)
    for document in documents:
        for entity in document.entities:  # every predicted span is real text of the document
            assert all(0 <= start < end <= len(document.text) for start, end in entity.spans)
    assert (out / "annotation.conf").exists()
    # asked again without --overwrite, nothing is replaced
    again = clinfm_process("ner", "predict", "--model", str(tagger), "--in", str(texts), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_compare_trains_each_model_with_and_without_sambd(corpus, tmp_path):
    out = tmp_path / "compare"
    result = runner.invoke(
        app,
        [
            "ner",
            "compare",
            "--train",
            str(corpus / "train"),
            "--dev",
            str(corpus / "dev"),
            "--test",
            str(corpus / "test"),
            "--models",
            "transformer-crf,feature-crf",
            "--out",
            str(out),
            *QUICK,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "metrics.json").read_text())["ner"]["models"]
    assert [r["label"] for r in rows] == [
        "transformer-crf",
        "transformer-crf+sambd",
        "feature-crf",
        "feature-crf+sambd",
    ]
    assert rows[1]["train_sentences"] < rows[0]["train_sentences"]  # SamBD removed all-O sentences
    assert (out / "table.md").read_text().count("\n") == 2 + 4
    page = (out / "report.html").read_text()
    assert "TransformerCRF + SamBD" in page and "transformer-crf+sambd" not in page  # display names
    assert "| TransformerCRF + SamBD |" in (out / "table.md").read_text()
    processing = page[page.index('<details id="processing"') :]
    sentences_read = rows[0]["train_sentences"]
    assert (
        f"SamBD for TransformerCRF + SamBD: {rows[1]['train_sentences']:,} of {sentences_read:,}"
        in processing
    )


def _write(folder: Path, name: str, text: bytes, ann: bytes | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_bytes(text)
    if ann is not None:
        (folder / f"{name}.ann").write_bytes(ann)


def test_messy_brat_input_is_counted_not_fatal(tmp_path, caplog):
    from clinfm.ner.recipes import _describe, read_corpus

    folder = tmp_path / "messy"
    _write(folder, "good", b"Aspirin 81 mg daily.", b"T1\tDrug 0 7\tAspirin\nT2\tStrength 8 13\t81 mg\n")
    _write(folder, "case_past_end", b"Short.", b"T1\tDrug 0 40\tShort. and more\n")
    _write(folder, "case_bad_line", b"Heparin SC.", b"T1\tDrug 0\tHeparin\nE1\tnonsense\n")
    _write(folder, "case_latin1", "Caf\xe9 au lait.".encode("latin-1"), None)
    _write(folder, "empty", b"", b"")
    (folder / "orphan.ann").write_bytes(b"T1\tDrug 0 3\tabc\n")
    corpus = read_corpus(folder)
    counts = corpus.report.counts
    assert len(corpus.sentences) == 3
    assert sum(counts.values()) >= 5 and any("UTF-8" in kind for kind in counts)
    assert any(".txt" in kind for kind in counts)  # the orphan .ann
    # what a run records counts the problems without naming documents (names can identify patients)
    recorded = json.dumps(_describe(corpus, corpus.sentences))
    assert "case_" not in recorded


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["ner", "train", "--train", "{tmp}/nowhere", "--out", "{tmp}/o"],
            "no such brat folder or CoNLL file",
        ),
        (["ner", "train", "--train", "{tmp}/empty", "--out", "{tmp}/o"], "no .txt"),
        (["ner", "train", "--train", "{tmp}/plain", "--out", "{tmp}/o"], "no entity"),
        (["ner", "evaluate", "--model", "{tmp}/plain", "--data", "{tmp}/plain"], "not a tagger folder"),
        (["ner", "train", "--train", "{tmp}/bad.tsv", "--out", "{tmp}/o"], "line 2"),
        (
            ["ner", "predict", "--model", "{tmp}/plain", "--in", "{tmp}/bad.tsv", "--out", "{tmp}/o"],
            "is a file",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "plain", "a", b"No entity here.", b"")
    (tmp_path / "bad.tsv").write_text("Aspirin\tB-Drug\ndaily\tX-Freq\n")
    result = clinfm_process(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_test_labels_the_model_does_not_know_are_counted(tagger, tmp_path, caplog):
    from clinfm.ner.recipes import evaluate

    folder = tmp_path / "other"
    _write(folder, "a", b"Aspirin caused a rash.", b"T1\tDrug 0 7\tAspirin\nT2\tAdverseEffect 17 21\trash\n")
    scores = evaluate(tagger, folder)
    assert scores["unknown_type_entities"] == 1
    assert "AdverseEffect" in caplog.text


def test_an_interrupted_comparison_keeps_the_models_it_finished(corpus, tmp_path, monkeypatch):
    from clinfm.ner import recipes

    real_train, calls = recipes.train, []

    def train_then_stop(*args, **kwargs):
        calls.append(kwargs["model"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(recipes, "train", train_then_stop)
    out = tmp_path / "compare"
    with pytest.raises(KeyboardInterrupt):
        recipes.compare(corpus / "train", corpus / "test", out, models=["feature-crf"])
    assert (tmp_path / ".compare.partial" / "models" / "feature-crf" / "run.json").exists()
    monkeypatch.setattr(recipes, "train", real_train)
    recipes.compare(corpus / "train", corpus / "test", out, models=["feature-crf"])  # resumes
    assert [r["label"] for r in json.loads((out / "metrics.json").read_text())["ner"]["models"]] == [
        "feature-crf",
        "feature-crf+sambd",
    ]


def test_several_training_sets_are_read_as_one_corpus(corpus, tmp_path):
    from clinfm.ner.recipes import read_corpus

    both = read_corpus([corpus / "train", corpus / "dev"])
    one, other = read_corpus(corpus / "train"), read_corpus(corpus / "dev")
    assert len(both.sentences) == len(one.sentences) + len(other.sentences)
    # the two folders' document names (synth_00001 in each) stay apart
    assert len({s.document for s in both.sentences}) == len({s.document for s in one.sentences}) + len(
        {s.document for s in other.sentences}
    )
    out = tmp_path / "paper-final"
    args = ["ner", "train", "--train", str(corpus / "train"), "--train", str(corpus / "dev"), "--model"]
    result = runner.invoke(app, [*args, "feature-crf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "run.json").read_text())["config"]["data"]["train"]
    assert recorded["sentences"] == len(both.sentences) and " + " in recorded["path"]
