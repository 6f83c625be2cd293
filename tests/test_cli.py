"""The command line: every command has --help, bad input is one line with exit code 2."""

from __future__ import annotations

import html
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from _shared import message_lines
from clinfm.cli import app

runner = CliRunner()


def clinfm_process(*args: str) -> subprocess.CompletedProcess:
    """Run the real console entry point, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "clinfm", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["synth"],
        ["convert"],
        ["convert", "mimic3"],
        ["convert", "omop"],
        ["convert", "csv"],
        ["validate"],
        ["describe"],
        ["demo"],
        ["ner"],
        ["ner", "train"],
        ["ner", "evaluate"],
        ["ner", "predict"],
        ["ner", "compare"],
        ["ner", "synth"],
    ],
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_synth_validate_describe(tmp_path):
    out = tmp_path / "site"
    result = runner.invoke(
        app, ["synth", "--out", str(out), "--patients", "80", "--site", "b", "--coding", "icd10"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["validate", str(out), "--strict"])
    assert result.exit_code == 0 and "valid MEDS (meds_version 0.4" in result.output
    result = runner.invoke(app, ["describe", str(out), "--json"])
    description = json.loads(result.stdout)
    assert description["subjects"] == 80
    assert {v["vocabulary"] for v in description["vocabularies"]} >= {
        "ICD10CM",
        "RXNORM",
        "LOINC",
        "CPT4",
        "NOTE",
    }


def test_demo_writes_two_valid_sites_claims_and_transfer_reports(quick_demo):
    demo, result = quick_demo
    result.ok()
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["site_a"]["coding"] == "icd9" and summary["site_b"]["coding"] == "icd10"
    assert summary["site_a"]["subjects"] == summary["site_b"]["subjects"] == 4000
    assert (demo / "claims" / "pretrained" / "model.safetensors").exists()
    run = demo / "claims" / "asthma_exacerbation_180d"
    methods = json.loads((run / "metrics.json").read_text())["methods"]
    assert {"pretrained", "cold_start", "gru", "logistic_regression", "gradient_boosting"} == set(methods)
    transfer = demo / "transfer" / "asthma_exacerbation_180d"
    methods = json.loads((transfer / "run.json").read_text())["methods"]
    assert {"ids/shared", "text/shared", "text/transfer", "text/pooled"} <= set(methods)
    assert str(demo.parent) in json.loads((transfer / "run.json").read_text())["data"]["target"]
    assert ".partial" not in (transfer / "run.json").read_text()
    ner = demo / "ner" / "compare"
    labels = [row["label"] for row in json.loads((ner / "metrics.json").read_text())["ner"]["models"]]
    assert labels == ["transformer-crf", "transformer-crf+sambd", "feature-crf", "feature-crf+sambd"]
    assert "Taggers compared" in (ner / "report.html").read_text()
    assert (demo / "ner" / "corpus" / "test" / "annotation.conf").exists()
    assert ".tmp" not in (ner / "models" / "feature-crf" / "run.json").read_text()
    ecg = demo / "ecg" / "compare"
    curves = json.loads((ecg / "metrics.json").read_text())["ecg"]["probes"]
    assert {c["method"] for c in curves} == {"pclr", "clocs", "autoencoder", "scratch", "handcrafted"}
    assert {c["label"] for c in curves} == {"sex", "age"}
    assert "Representations probed" in (ecg / "report.html").read_text()
    assert (demo / "ecg" / "synthetic" / "cohort" / "labels.csv").exists()


def test_demo_ends_with_one_story_every_report_with_its_headline_and_time(quick_demo):
    """The console's last block and index.html list the same reports, each with a headline sentence
    and its section's wall time; every --quick report says it is a smoke test; no Markdown tables."""
    demo, result = quick_demo
    summary = json.loads((demo / "summary.json").read_text())
    reports = summary["reports"]
    keys = [r["run"] for r in reports]
    assert keys == [
        "claims/pretrained",
        "claims/asthma_exacerbation_180d",
        "transfer/asthma_exacerbation_180d",
        "ner/compare",
        "ecg/compare",
        "fuse/ablation",
    ]
    shown = " ".join(result.output.split())
    index = (demo / "index.html").read_text()
    for report in reports:
        assert report["headline"] and report["seconds"] > 0, report
        assert " ".join(report["headline"].split()) in shown, report["headline"]
        assert report["title"] in shown and html.escape(report["title"]) in index
        assert f'href="{report["run"]}/report.html"' in index
        page = (demo / report["run"] / "report.html").read_text()
        assert 'id="smoke-test"' in page and 'id="headline"' in page
    assert "|---" not in result.output and "| ---" not in result.output  # no Markdown tables
    assert "Smoke test on tiny data" in index


def test_quick_demo_compares_only_what_its_test_sets_can_support(quick_demo):
    """Each --quick comparison has at least 10 test patients with and without its outcome (the
    fusion report may still list single diseases it cannot evaluate); what --quick leaves out for
    that reason is named, with the reason, in index.html, summary.json and on the console."""
    demo, result = quick_demo
    summary = json.loads((demo / "summary.json").read_text())
    for report in summary["reports"]:
        assert "comparison cannot be evaluated" not in report["headline"], report
        page = (demo / report["run"] / "report.html").read_text()
        if report["run"] != "fuse/ablation":
            assert "cannot be evaluated" not in page, report["run"]
    fusion = (demo / "fuse" / "ablation" / "report.html").read_text()
    assert "MEDFuse (full) reached macro AUROC" in html.unescape(fusion)
    left_out = {entry["title"]: entry["reason"] for entry in summary["left_out"]}
    assert set(left_out) == {"Claim-PT: self harm 365d", "ECG: atrial fibrillation, wide QRS"}
    index = html.unescape((demo / "index.html").read_text())
    shown = " ".join(result.output.split())
    for title, reason in left_out.items():
        assert "at least 10" in reason or "about 3" in reason
        assert title in index and reason in index
        assert f"Left out: {title}" in shown and reason in shown


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "mimic3", "{tmp}/nowhere", "{tmp}/out"], "not a directory"),
        (["convert", "omop", "{tmp}", "{tmp}/out"], "required table PERSON not found"),
        (["validate", "{tmp}"], "no MEDS event shards"),
        (["synth", "--out", "{tmp}", "--patients", "5"], "output already exists"),
        (["synth", "--out", ".", "--overwrite"], "is the current folder"),
        (["convert", "csv", "{tmp}", "{tmp}/out", "--mapping", "{tmp}/none.yaml"], "mapping file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    result = clinfm_process(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and message in lines[0]


def test_validate_exit_code_on_a_broken_dataset(tmp_path):
    import polars as pl

    (tmp_path / "data").mkdir()
    pl.DataFrame({"subject_id": [1], "time": [None], "code": ["A"], "numeric_value": [1.0]}).write_parquet(
        tmp_path / "data" / "0.parquet"
    )
    result = clinfm_process("validate", str(tmp_path))
    assert result.returncode == 2 and "numeric_value" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_value_in_a_conversion_is_one_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PATIENTS.csv").write_text("subject_id,gender,dob\n1,F,2001-13-45\n")
    result = clinfm_process("convert", "mimic3", str(src), str(tmp_path / "out"))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "PATIENTS.csv: row 1, column dob: got '9999-99-99'" in errors[0] and "2001-13-45" not in errors[0]
    assert not (tmp_path / "out").exists()
