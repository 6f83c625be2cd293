"""``clinfm ecg`` end to end on a tiny synthetic corpus: synth, prepare, pretrain, embed, probe, compare,
and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from clinfm.cli import app
from clinfm.ecg.corpus import open_set

runner = CliRunner()
TINY = ["--preset", "small", "--epochs", "2", "--batch-size", "4", "--logger", "none"]


def _ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("ecg") / "synth"
    synth = ("ecg", "synth", "--out", out, "--pretrain-patients", 8, "--cohort-patients", 12)
    _ok(*synth, "--ecgs-per-patient", "2-2", "--sampling-rate", 100, "--workers", 2)
    return out


def test_synth_writes_wfdb_records_with_patients_labels_and_rhythm(corpus):
    cohort = sorted((corpus / "cohort").glob("*.hea"))
    assert len(cohort) == 24 and len(list((corpus / "pretrain").glob("*.hea"))) == 16
    labels = (corpus / "cohort" / "labels.csv").read_text().splitlines()
    assert labels[0] == "patient_id,sex,age,af,bradycardia,tachycardia,wide_qrs" and len(labels) == 13
    from clinfm.ecg.records import read_record

    record = read_record(cohort[0])
    assert record.patient_id == cohort[0].stem.rsplit("_", 1)[0]
    assert record.signal.shape == (12, 1000) and record.annotations[0][1] in ("(N", "(AFIB")


def test_pretrain_embed_probe(corpus, tmp_path):
    model = tmp_path / "pclr"
    _ok("ecg", "pretrain", "--records", corpus / "pretrain", "--out", model, *TINY)
    config = json.loads((model / "config.json").read_text())
    assert config["kind"] == "ecg-encoder" and config["objective"] == "pclr"
    assert "P0" not in (model / "config.json").read_text()  # no patient ids in the checkpoint
    assert (model / "report.html").exists()
    vectors = tmp_path / "vectors"
    _ok("ecg", "embed", "--model", model, "--records", corpus / "cohort", "--out", vectors)
    assert np.load(vectors / "embeddings.npy").shape == (24, 80)
    run = tmp_path / "probe"
    labels = ("--labels", corpus / "cohort" / "labels.csv", "--label", "age", "--label", "rhythm=N")
    result = _ok(
        "ecg", "probe", "--embeddings", vectors, *labels, "--sizes", "4,all", "--seeds", 2, "--out", run
    )
    assert "rhythm=N" in result.output
    curves = json.loads((run / "metrics.json").read_text())["ecg"]["probes"]
    assert [c["label"] for c in curves] == ["age", "rhythm=N"]
    assert [c["task"] for c in curves] == ["regression", "binary"]
    assert [p["n_train_patients"] for p in curves[0]["points"]] == [4, 9]
    assert "Representations probed" in (run / "report.html").read_text()


def test_compare_every_method_with_folds(corpus, tmp_path):
    run = tmp_path / "compare"
    data = ("--records", corpus / "cohort", "--pretrain-records", corpus / "pretrain")
    labels = ("--labels", corpus / "cohort" / "labels.csv", "--label", "age")
    probes = ("--sizes", "all", "--seeds", 1, "--folds", 3, "--scratch-steps", 2)
    _ok("ecg", "compare", *data, *labels, *probes, "--out", run, *TINY)
    metrics = json.loads((run / "metrics.json").read_text())["ecg"]
    assert {c["method"] for c in metrics["probes"]} == {
        "pclr",
        "clocs",
        "autoencoder",
        "scratch",
        "handcrafted",
    }
    assert all(c["points"][0]["value"] is not None for c in metrics["probes"])
    assert set(metrics["gains"]) == {"clocs", "autoencoder", "scratch", "handcrafted"}
    assert (run / "table.md").read_text().startswith("| label |")
    assert not (tmp_path / ".compare.partial").exists()
    for method in ("pclr", "clocs", "autoencoder"):  # the encoders are kept, loadable by ecg embed
        assert json.loads((run / "models" / method / "config.json").read_text())["objective"] == method


def test_prepared_set_is_reused_and_checked(corpus, tmp_path):
    prepared = tmp_path / "set"
    _ok("ecg", "prepare", "--records", corpus / "pretrain", "--out", prepared, "--samples", 1024)
    assert open_set(prepared).signals.shape == (16, 12, 1024)
    result = runner.invoke(
        app,
        ["ecg", "pretrain", "--records", str(prepared), "--out", str(tmp_path / "m"), "--preset", "paper"],
    )
    assert result.exit_code == 2 and "samples = 1024" in result.output and "4096" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ecg", "probe", "--embeddings", "{tmp}", "--label", "af", "--out", "{tmp}/o"],
            "not an embeddings folder",
        ),
        (["ecg", "prepare", "--records", "{tmp}/empty", "--out", "{tmp}/o"], "no ECG records"),
        (["ecg", "pretrain", "--records", "{tmp}/x.npy", "--out", "{tmp}/o"], "--sampling-rate"),
        (
            ["ecg", "pretrain", "--records", "{tmp}/x.npy", "--sampling-rate", "500", "--out", "{tmp}/o"],
            "PCLR needs patients with at least two ECGs",
        ),
        (
            [
                "ecg",
                "compare",
                "--records",
                "{tmp}",
                "--label",
                "af",
                "--methods",
                "simclr",
                "--out",
                "{tmp}/o",
            ],
            "unknown method 'simclr'",
        ),
        (
            ["ecg", "probe", "--embeddings", "{tmp}", "--label", "af", "--sizes", "ten", "--out", "{tmp}/o"],
            "--sizes",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    np.save(tmp_path / "x.npy", np.zeros((2, 12, 5000), dtype=np.float32))
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_truncated_record_alone_is_one_line(corpus, tmp_path):
    import shutil

    for suffix in (".hea", ".dat"):
        shutil.copy(corpus / "cohort" / f"P00008_0{suffix}", tmp_path / f"P00008_0{suffix}")
    data = tmp_path / "P00008_0.dat"
    data.write_bytes(data.read_bytes()[:1000])
    result = runner.invoke(
        app, ["ecg", "prepare", "--records", str(tmp_path / "P00008_0.hea"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "P00008_0.dat" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
