"""Malformed ECG and NER input, written here, through the commands a user runs: each case ends with exit
code 2 and one line naming the file (no traceback, no output folder), or exit 0 with a correct result.
Hypothesis then feeds random header fields, bytes and CSV cells to the readers, whose only allowed
outcomes are a correct read or an InputError."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from _shared import message_lines
from clinfm.cli import app
from clinfm.ecg.header import MAX_RATE, MIN_RATE
from clinfm.ecg.labels import label_values, read_labels
from clinfm.ecg.records import read_wfdb
from clinfm.errors import InputError
from clinfm.ner.conll import read_conll
from clinfm.ner.document import LONG_SENTENCES, MAX_SENTENCE_TOKENS, ReadReport

runner = CliRunner()
FS, SECONDS = 100, 12
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _refused(result, *fragments: str) -> str:
    """The one error line of a command that must exit with code 2."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = message_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------- ECG records


def _wave(n: int = FS * SECONDS) -> np.ndarray:
    t = np.arange(n) / FS
    return np.stack([np.sin(2 * np.pi * t), 0.5 * np.cos(2 * np.pi * t)])  # millivolts, leads x samples


def _record(folder: Path, name: str = "rec1", units: str = "mV", scale: float = 1.0) -> Path:
    """A 2-lead, 12 s WFDB record at 100 Hz (16-bit); its .hea path."""
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=FS,
        units=[units, units],
        sig_name=["I", "II"],
        p_signal=(_wave() * scale).T,
        fmt=["16", "16"],
        adc_gain=[1000.0 / scale] * 2,
        baseline=[0, 0],
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def _edit_header(hea: Path, edit) -> None:
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(edit(lines)) + "\n")


def _field(line: int, index: int, value: str):
    """An edit setting field ``index`` of header line ``line`` (0 = the record line)."""

    def edit(lines: list[str]) -> list[str]:
        fields = lines[line].split(" ")
        fields[index] = value
        lines[line] = " ".join(fields)
        return lines

    return edit


def _each_signal(index: int, value: str):
    def edit(lines: list[str]) -> list[str]:
        for line in (1, 2):
            lines = _field(line, index, value)(lines)
        return lines

    return edit


HEADER_CASES = {
    "negative rate (was read as 250 Hz)": (
        _field(0, 2, "-500"),
        "line 1: sampling rate -500, expected a number from 50",
    ),
    "zero rate (was a traceback)": (_field(0, 2, "0"), "sampling rate 0,"),
    "rate 0.01 Hz (was a traceback)": (_field(0, 2, "0.01"), "sampling rate 0.01,"),
    "rate 1e3 (wfdb reads 1)": (_field(0, 2, "1e3"), "sampling rate 1e3,"),
    "rate above 10 kHz": (_field(0, 2, "50000"), "sampling rate 50000,"),
    "no signals (was a traceback)": (
        lambda lines: [lines[0].replace("rec1 2", "rec1 0")],
        "number of signals 0",
    ),
    "fewer signal lines than declared": (_field(0, 1, "3"), "3 signals declared but 2 signal lines"),
    "negative samples": (_field(0, 3, "-5"), "samples per signal -5"),
    "gain nan (was read as a unit)": (_each_signal(2, "nan/mV"), "line 2: gain nan/mV"),
    "gain overflowing to infinity": (_each_signal(2, "1e999(0)/mV"), "gain 1e999, expected a finite number"),
    "no lead names (were read as 'None')": (
        lambda lines: [" ".join(x.split()[:8]) for x in lines],
        "no lead name",
    ),
    "a lead named twice": (
        lambda lines: [*lines[:2], lines[2].replace(" II", " i")],
        "lead i already named on line 2",
    ),
    "multi-segment record (was a traceback)": (
        lambda lines: ["rec1/2 2 100 1200", "a 600", "b 600"],
        "multi-segment",
    ),
    "resolution not a number": (_each_signal(3, "x"), "resolution x, expected a whole number"),
}


@pytest.mark.parametrize("edit, message", HEADER_CASES.values(), ids=HEADER_CASES.keys())
def test_a_bad_header_field_is_one_line_naming_file_line_and_field(tmp_path, edit, message):
    hea = _record(tmp_path / "in")
    _edit_header(hea, edit)
    result = _invoke("ecg", "prepare", "--records", hea, "--out", tmp_path / "out")
    _refused(result, "rec1.hea", message)
    assert not (tmp_path / "out").exists()


def test_a_short_signal_file_of_any_fixed_size_format_is_refused(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    wfdb.wrsamp(
        "rec1", fs=FS, units=["mV"], sig_name=["I"], p_signal=_wave()[:1].T, fmt=["24"], write_dir=str(folder)
    )
    _edit_header(folder / "rec1.hea", _field(0, 3, "10000000"))  # was only checked for formats 16, 212, 80
    result = _invoke("ecg", "prepare", "--records", folder / "rec1.hea", "--out", tmp_path / "out")
    _refused(result, "rec1.dat", "header declares 10000000 samples per signal but the file holds 1200")
    assert not (tmp_path / "out").exists()


def test_microvolts_are_read_as_microvolts(tmp_path):
    # wfdb reads headers as ASCII and dropped the µ: µV became V, a factor of a million
    hea = _record(tmp_path / "in", units="uV", scale=1000.0)
    hea.write_text(hea.read_text().replace("/uV", "/µV"), encoding="utf-8")
    result = _invoke(
        "ecg", "prepare", "--records", hea, "--out", tmp_path / "set", "--samples", "64", "--leads", "I,II"
    )
    assert result.exit_code == 0, result.output
    window = np.load(tmp_path / "set" / "signals.npy")[0]
    assert np.abs(window).max() == pytest.approx(1.0, abs=0.01)  # the 1 mV sine, in millivolts


NPY_CASES = {
    "strings (was a traceback)": (
        np.array([["a"] * 2000] * 2),
        "100",
        "values of type <U1, expected integers or floats",
    ),
    "complex numbers": (np.ones((2, 2000), dtype=complex), "100", "values of type complex128"),
    "booleans": (np.ones((2, 2000), dtype=bool), "100", "values of type bool"),
    "no samples": (np.ones((2, 0), dtype=np.float32), "100", "array of shape 2x0 is empty"),
    "samples x leads": (np.ones((2000, 12), dtype=np.float32), "100", "has 2000 leads, expected at most 256"),
    "rate 0 Hz (was a traceback)": (
        np.ones((2, 2000), dtype=np.float32),
        "0",
        "--sampling-rate 0.0, expected",
    ),
    "rate 0.01 Hz (was a traceback)": (np.ones((2, 2000), dtype=np.float32), "0.01", "--sampling-rate 0.01,"),
    "rate nan": (np.ones((2, 2000), dtype=np.float32), "nan", "--sampling-rate nan,"),
}


@pytest.mark.parametrize("array, rate, message", NPY_CASES.values(), ids=NPY_CASES.keys())
def test_a_bad_numpy_record_is_one_line(tmp_path, array, rate, message):
    np.save(tmp_path / "ecg.npy", array)
    result = _invoke(
        "ecg",
        "prepare",
        "--records",
        tmp_path / "ecg.npy",
        "--sampling-rate",
        rate,
        "--out",
        tmp_path / "out",
    )
    line = _refused(result, message)
    assert "ecg.npy" in line or "--sampling-rate" in line
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------- ECG labels, embeddings

PATIENTS = [f"P{k:02d}-2020-01-0{k % 9 + 1}" for k in range(12)]  # ids that look like they hold a date


def _embeddings(folder: Path, vectors: np.ndarray | None = None, windows: str | None = None) -> Path:
    """An embeddings folder as clinfm ecg embed writes it: 2 windows per patient."""
    folder.mkdir(parents=True)
    rows = [(2 * k + j, f"r{k}_{j}", patient) for k, patient in enumerate(PATIENTS) for j in range(2)]
    if vectors is None:
        vectors = np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float32)
    np.save(folder / "embeddings.npy", vectors)
    table = windows or "window,record_id,patient_id\n" + "".join(f"{w},{r},{p}\n" for w, r, p in rows)
    (folder / "windows.csv").write_text(table)
    return folder


def _labels(rows: list[str]) -> str:
    good = [f"{p},{k % 2},{40 + k}" for k, p in enumerate(PATIENTS)]
    return "patient_id,af,age\n" + "\n".join(rows + good[len(rows) :]) + "\n"


LABEL_CASES = {
    "a row holding only its key (was a traceback)": (
        _labels([PATIENTS[0]]),
        "line 2: 1 field, expected 3 (patient_id, af, age)",
    ),
    "a row with an extra field (was ignored)": (
        _labels([f"{PATIENTS[0]},1,40,7"]),
        "line 2: 4 fields, expected 3",
    ),
    "inf label (was a traceback in sklearn)": (
        _labels([f"{PATIENTS[0]},inf,40"]),
        "line 2, column af: not a finite number",
    ),
    "-inf regression label": (_labels([f"{PATIENTS[0]},0,-inf"]), "line 2, column age: not a finite"),
    "nan label (a missing value is an empty cell)": (
        _labels([f"{PATIENTS[0]},1,NaN"]),
        "line 2, column age: not a finite",
    ),
    "a row without its key (was joined to nothing)": (_labels([",1,40"]), "line 2, column patient_id: empty"),
    "a key twice (its value was printed)": (
        _labels([f"{PATIENTS[1]},1,40"]),
        "line 3, column patient_id: the same as line 2",
    ),
}


@pytest.mark.parametrize("table, message", LABEL_CASES.values(), ids=LABEL_CASES.keys())
def test_a_bad_labels_csv_is_one_line_naming_the_row_and_column_never_a_value(tmp_path, table, message):
    (tmp_path / "labels.csv").write_text(table)
    embeddings = _embeddings(tmp_path / "vectors")
    args = ["--embeddings", embeddings, "--labels", tmp_path / "labels.csv", "--out", tmp_path / "out"]
    result = _invoke(
        "ecg", "probe", *args, "--label", "af", "--label", "age", "--sizes", "all", "--seeds", "1"
    )
    line = _refused(result, "labels.csv", message)
    assert not any(patient in line for patient in PATIENTS)
    assert not (tmp_path / "out").exists()


EMBEDDING_CASES = {
    "text vectors (was a traceback)": (
        np.full((24, 4), "x"),
        None,
        "values of type <U1, expected integers or floats",
    ),
    "infinite vectors": (
        np.full((24, 4), np.inf, dtype=np.float32),
        None,
        "embeddings.npy: holds infinite values",
    ),
    "a windows row cut short": (
        None,
        "window,record_id,patient_id\n0,r0\n",
        "windows.csv: line 2: 2 fields, expected 3",
    ),
}


@pytest.mark.parametrize("vectors, windows, message", EMBEDDING_CASES.values(), ids=EMBEDDING_CASES.keys())
def test_a_bad_embeddings_folder_is_one_line(tmp_path, vectors, windows, message):
    (tmp_path / "labels.csv").write_text(_labels([]))
    embeddings = _embeddings(tmp_path / "vectors", vectors, windows)
    args = [
        "--embeddings",
        embeddings,
        "--labels",
        tmp_path / "labels.csv",
        "--label",
        "af",
        "--out",
        tmp_path / "out",
    ]
    _refused(_invoke("ecg", "probe", *args), message)
    assert not (tmp_path / "out").exists()


def test_text_that_reads_as_infinity_stays_a_category(tmp_path):
    # "Inf" for an inferior infarct is a category, not a number: only columns of numbers are checked
    (tmp_path / "labels.csv").write_text(
        "patient_id,mi\n" + "".join(f"{p},{('Inf', 'Ant')[k % 2]}\n" for k, p in enumerate(PATIENTS))
    )
    windows = [{"patient_id": p} for p in PATIENTS]
    label = label_values("mi=Inf", windows, read_labels(tmp_path / "labels.csv"))
    assert label.values.tolist() == [1.0, 0.0] * 6


# ---------------------------------------------------------------------------------------------- NER

WORDS = ("aspirin", "25", "mg", "po", "daily", "the", "patient", "took", "with", "pain", "and", "bid")


def _long_text(tokens: int, seed: int = 0) -> tuple[str, str]:
    """A single line of ``tokens`` words with no sentence end, and its .ann (each aspirin a Drug)."""
    words = np.random.default_rng(seed).choice(WORDS, size=tokens)
    text = " ".join(words) + "\n"
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    ann = "".join(f"T{k}\tDrug {s} {s + 7}\taspirin\n" for k, s in enumerate(starts[words == "aspirin"], 1))
    return text, ann


MEASURE_CRF_MEMORY = """
import json, resource, sys
from clinfm.ner.brat import read_brat
from clinfm.ner.document import ReadReport
from clinfm.ner.features import FeatureCRF
from clinfm.ner.text import to_sentences

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = ReadReport()
sentences = [s for d in read_brat(sys.argv[1], report=report) for s in to_sentences(d, report=report)]
FeatureCRF(max_iterations=1).fit(sentences)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"mb": grown, "counts": report.counts, "longest": max(map(len, sentences))}))
"""


def test_a_huge_single_line_text_is_split_counted_and_stays_small(tmp_path):
    text, ann = _long_text(60_000)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "note.txt").write_text(text)
    (tmp_path / "big" / "note.ann").write_text(ann)
    # in a fresh process, so its peak memory is this reading and featurising alone (not torch's)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE_CRF_MEMORY, str(tmp_path / "big")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert measured["mb"] < 200, measured  # one 60,000-token sentence took 466 MB (1,000,000: over 5 GB)
    assert measured["counts"] == {LONG_SENTENCES: 1} and measured["longest"] <= MAX_SENTENCE_TOKENS


def test_long_sentences_are_split_and_counted_through_train_and_predict(tmp_path):
    text, ann = _long_text(1_500, seed=1)
    for folder in ("train", "texts"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "note.txt").write_text(text)
    (tmp_path / "train" / "note.ann").write_text(ann)
    result = _invoke(
        "ner", "train", "--train", tmp_path / "train", "--model", "feature-crf", "--out", tmp_path / "crf"
    )
    assert result.exit_code == 0, result.output
    assert f"1 {LONG_SENTENCES}" in result.output  # on the console
    data = json.loads((tmp_path / "crf" / "run.json").read_text())["config"]["data"]["train"]
    assert data["skipped_or_repaired"] == {LONG_SENTENCES: 1} and data["sentences"] == 3
    result = _invoke(
        "ner",
        "predict",
        "--model",
        tmp_path / "crf",
        "--in",
        tmp_path / "texts",
        "--out",
        tmp_path / "tagged",
    )
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "tagged" / "run.json").read_text())
    assert run["skipped_or_repaired"] == {LONG_SENTENCES: 1} and run["entities"] == ann.count("\n")


def test_a_long_conll_sentence_is_split_between_entities(tmp_path):
    tags = ["O"] * 1_300
    tags[MAX_SENTENCE_TOKENS - 1 : MAX_SENTENCE_TOKENS + 2] = [
        "B-Drug",
        "I-Drug",
        "I-Drug",
    ]  # across the limit
    lines = [f"w{k}\t{tag}" for k, tag in enumerate(tags)]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n\nAspirin\tB-Drug\n")
    report = ReadReport()
    sentences = read_conll(tmp_path / "train.tsv", report=report)
    assert [len(s) for s in sentences] == [MAX_SENTENCE_TOKENS - 1, MAX_SENTENCE_TOKENS, 1300 - 1023, 1]
    assert sentences[1].tags[:3] == ("B-Drug", "I-Drug", "I-Drug")  # the entity is whole
    assert [t for s in sentences[:3] for t in s.tokens] == [f"w{k}" for k in range(1_300)]
    assert report.counts == {LONG_SENTENCES: 1}
    result = _invoke(
        "ner", "train", "--train", tmp_path / "train.tsv", "--model", "feature-crf", "--out", tmp_path / "crf"
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "crf" / "run.json").read_text())["config"]["data"]["train"]
    assert data["skipped_or_repaired"] == {LONG_SENTENCES: 1}


# ------------------------------------------------------------------------------------------- fuzzing

_TOKEN = st.text(alphabet="0123456789.-+eE/()xnaifmuVµ", min_size=1, max_size=8)  # one field: no blanks
_RATE = st.one_of(st.integers(-1000, 20_000).map(str), st.floats().map(str), _TOKEN)
_GAIN = st.one_of(st.sampled_from(["1000(0)/mV", "1(0)/V", "1000000(0)/uV", "0(0)/mV", "1000/mV"]), _TOKEN)
_LEAD = st.one_of(st.sampled_from(["I", "II", "ii", "V1"]), st.text(max_size=5))


@FUZZ
@given(rate=_RATE, gain=_GAIN, leads=st.tuples(_LEAD, _LEAD))
def test_fuzzed_header_fields_read_correctly_or_raise_input_error(rate, gain, leads):
    with tempfile.TemporaryDirectory() as tmp:
        hea = _record(Path(tmp))
        lines = hea.read_text().splitlines()
        lines[0] = f"rec1 2 {rate} {FS * SECONDS}"
        lines[1:] = [
            " ".join([*line.split()[:2], gain, *line.split()[3:8], lead])
            for line, lead in zip(lines[1:], leads, strict=True)
        ]
        hea.write_text("\n".join(lines) + "\n")
        try:
            record = read_wfdb(hea)
        except InputError as error:
            assert "\n" not in str(error) and "rec1." in str(error)
            return
    # read: then every field is what the header says, and the samples are the right millivolts
    assert MIN_RATE <= record.sampling_rate <= MAX_RATE and record.sampling_rate == float(rate.split("/")[0])
    assert record.leads == tuple(lead.strip() for lead in leads)
    digital = np.round(_wave() * 1000)  # what wrsamp stored, gain 1000 per mV
    written = re.fullmatch(r"(?P<gain>[^(/]*)(?:\((?P<baseline>[^)]*)\))?(?:/(?P<unit>.*))?", gain)
    per_unit = float(written["gain"] or 0) or 200.0  # WFDB: a gain of 0 or none is 200
    millivolts = {"mv": 1.0, "v": 1e3, "uv": 1e-3, "µv": 1e-3}[(written["unit"] or "mV").lower()]
    expected = ((digital - int(written["baseline"] or 0)) / per_unit * millivolts).astype(np.float32)
    np.testing.assert_allclose(record.signal, expected, rtol=1e-5, atol=1e-9)


@FUZZ
@given(data=st.data())
def test_fuzzed_header_bytes_read_or_raise_input_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        hea = _record(Path(tmp))
        original = hea.read_bytes()
        start = data.draw(st.integers(0, len(original)))
        end = data.draw(st.integers(start, min(len(original), start + 12)))
        hea.write_bytes(original[:start] + data.draw(st.binary(max_size=12)) + original[end:])
        try:
            record = read_wfdb(hea)
        except InputError as error:
            assert "\n" not in str(error) and "rec1." in str(error)
            return
    assert MIN_RATE <= record.sampling_rate <= MAX_RATE
    assert record.signal.shape[0] == len(record.leads) == len({lead.lower() for lead in record.leads})


_CELL = st.one_of(
    st.sampled_from(["", "0", "1", "2.5", "inf", "-inf", "nan", "NaN", "Inf", "M", "p1", "p2"]),
    st.text(max_size=4),
)


@FUZZ
@given(rows=st.lists(st.lists(_CELL, min_size=0, max_size=4), max_size=6))
def test_fuzzed_labels_csv_reads_correctly_or_raises_input_error(rows):
    text = "patient_id,a,b\n" + "".join(
        ",".join(f'"{c}"' if "," in c or '"' in c else c for c in row) + "\n" for row in rows
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        path.write_text(text, encoding="utf-8")
        try:
            key, table = read_labels(path)
        except InputError as error:
            assert "\n" not in str(error) and "labels.csv" in str(error)
            return
    assert key == "patient_id"
    for row in table.values():
        assert set(row) == {"patient_id", "a", "b"} and row["patient_id"].strip()
    windows = [{"patient_id": patient} for patient in table]
    for column in ("a", "b"):
        try:
            label = label_values(column, windows, (key, table))
        except InputError:
            continue
        assert not np.isinf(label.values).any() and all(math.isfinite(v) for v in label.values[label.known])
