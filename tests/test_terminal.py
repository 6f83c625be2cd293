"""Every long command as a user runs it: under a pseudo-terminal (rich's live display, as in a real
terminal, which CI never has), piped (stamped progress lines), and stopped with Ctrl-C (exit code 130,
one line, a resumable run that the same command continues).

Two live displays at once (clinfm's and Lightning's bar) ended the README's first command with
``IndexError: pop from empty list`` in a terminal; only a terminal shows it, hence these tests.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
from pathlib import Path

import pytest

import clinfm
from _shared import PROGRESS_LINE
from _terminal import TIMEOUT_S, CommandResult, PtyCommand, command_env, in_terminal, piped
from test_convert import ADMISSIONS, DIAGNOSES, PATIENTS, _csv_site

MAX_SILENCE_S = 30  # piped: the longest gap allowed between two progress lines
TASK = "asthma_exacerbation_180d"
CLAIMS_TINY = ["--epochs", "1", "--batch-size", "64", "--logger", "none"]
NER_TINY = ["--preset", "small", "--epochs", "2"]
ECG_TINY = ["--preset", "small", "--epochs", "2", "--batch-size", "4", "--logger", "none"]
FUSE_TINY = ["--preset", "small", "--epochs", "2", "--batch-size", "32", "--logger", "none"]

STAMP = re.compile(r"^\[\s*(\d+):(\d\d)\] (.*)$")


def progress_lines(stderr: str) -> list[tuple[int, str]]:
    """A piped command's progress lines: (seconds since it began, text)."""
    found = [STAMP.match(line) for line in stderr.splitlines()]
    return [(int(m[1]) * 60 + int(m[2]), m[3]) for m in found if m]


def assert_progress_is_never_silent(result: CommandResult, epochs: dict[str, int]) -> None:
    """Stamped lines, a line per epoch of each training named in ``epochs``, no long silence."""
    lines = progress_lines(result.stderr)
    assert lines, result.output
    assert all(PROGRESS_LINE.match(line) for line in result.stderr.splitlines() if STAMP.match(line))
    stamps = [seconds for seconds, _ in lines]
    assert stamps == sorted(stamps), result.stderr
    gaps = [(later - earlier, text) for (earlier, _), (later, text) in itertools.pairwise(lines)]
    worst = max(gaps, default=(0, ""))
    assert worst[0] <= MAX_SILENCE_S, f"{worst[0]} s without a progress line before {worst[1]!r}"
    for name, total in epochs.items():
        seen = [
            int(m[1])
            for _, text in lines
            if (m := re.match(rf"{re.escape(name)}: epoch (\d+)/{total}\b", text))
        ]
        assert seen == list(range(1, total + 1)), (name, seen, result.stderr)


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """One text-encoder cache for the module (transfer, fusion and the demo embed code texts)."""
    return command_env(CLINFM_CACHE=str(tmp_path_factory.getbasetemp() / "embedding-cache"))


@pytest.fixture(scope="module")
def checkpoint(site_icd9, env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("terminal") / "claimpt"
    args = ("pretrain", "--data", site_icd9, "--out", out, "--min-subjects", "5")
    in_terminal(*args, *CLAIMS_TINY, env=env).ok()
    return out


@pytest.fixture(scope="module")
def ner_corpus(tmp_path_factory) -> Path:
    from clinfm.ner.synth import synthetic_corpus

    return synthetic_corpus(tmp_path_factory.mktemp("terminal") / "ner", train=150, dev=40, test=40, seed=0)


@pytest.fixture(scope="module")
def ecg_records(env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("terminal") / "ecg"
    patients = ("--pretrain-patients", "8", "--cohort-patients", "12", "--ecgs-per-patient", "2-2")
    in_terminal("ecg", "synth", "--out", out, *patients, "--sampling-rate", "100", env=env).ok()
    return out


@pytest.fixture(scope="module")
def lab_model(site_icd9, env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("terminal") / "labs"
    in_terminal("fuse", "pretrain-labs", "--data", site_icd9, "--out", out, *FUSE_TINY, env=env).ok()
    return out


def _has(folder: Path, *names: str) -> None:
    missing = [name for name in names if not (folder / name).exists()]
    assert not missing, f"{folder} lacks {missing}: {sorted(p.name for p in folder.iterdir())}"
    assert not (folder.parent / f".{folder.name}.partial").exists()


# ----------------------------------------------------------------------------------------- data commands


def test_synth_validate_describe(env, tmp_path):
    out = tmp_path / "site"
    in_terminal("synth", "--out", out, "--patients", "80", "--site", "b", "--coding", "icd10", env=env).ok()
    assert clinfm.validate(out).ok and clinfm.describe(out).subjects == 80
    assert "valid MEDS" in in_terminal("validate", out, "--strict", env=env).ok().output
    assert "Codes by vocabulary" in in_terminal("describe", out, env=env).ok().output


def test_convert_mimic3(env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in (("PATIENTS", PATIENTS), ("ADMISSIONS", ADMISSIONS), ("DIAGNOSES_ICD", DIAGNOSES)):
        (src / f"{name}.csv").write_text(text)
    in_terminal("convert", "mimic3", src, tmp_path / "out", env=env).ok()
    assert clinfm.validate(tmp_path / "out").ok and clinfm.describe(tmp_path / "out").subjects == 2


def test_convert_omop(env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "PERSON.csv").write_text("person_id,gender_concept_id,year_of_birth\n1,8532,2001\n2,8507,1990\n")
    (src / "CONDITION_OCCURRENCE.csv").write_text(
        "person_id,condition_concept_id,condition_start_date,condition_source_value\n1,317009,2010-02-03,J45\n"
    )
    in_terminal("convert", "omop", src, tmp_path / "out", env=env).ok()
    assert clinfm.validate(tmp_path / "out").ok and clinfm.describe(tmp_path / "out").subjects == 2


def test_convert_csv(env, tmp_path):
    src, mapping = _csv_site(tmp_path)
    in_terminal("convert", "csv", src, tmp_path / "out", "--mapping", mapping, env=env).ok()
    assert clinfm.validate(tmp_path / "out").ok and clinfm.describe(tmp_path / "out").subjects == 2


def test_validate_and_describe_a_site(site_icd9, env):
    assert "valid MEDS" in in_terminal("validate", site_icd9, env=env).ok().output
    assert "Tasks (label files)" in in_terminal("describe", site_icd9, env=env).ok().output


# ----------------------------------------------------------------------------------------- Claim-PT


def test_pretrain(checkpoint):
    _has(checkpoint, "config.json", "model.safetensors", "vocabulary.json", "report.html")


def test_finetune(site_icd9, checkpoint, env, tmp_path):
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    run = tmp_path / "run"
    args = ("finetune", "--data", site_icd9, "--labels", labels, "--from", checkpoint, "--out", run)
    result = in_terminal(*args, *CLAIMS_TINY, env=env).ok()
    _has(run, "run.json", "metrics.json", "report.html")
    assert {"pretrained", "cold_start", "gru"} <= set(
        json.loads((run / "metrics.json").read_text())["methods"]
    )
    assert "held-out samples" in result.output


def test_efficiency(site_icd9, checkpoint, env, tmp_path):
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    run = tmp_path / "eff"
    args = ("efficiency", "--data", site_icd9, "--labels", labels, "--from", checkpoint, "--out", run)
    curve = ("--fractions", "0.5,1", "--seeds", "0", "--methods", "pretrained,logistic_regression")
    in_terminal(*args, *curve, *CLAIMS_TINY, env=env).ok()
    _has(run, "run.json", "metrics.json", "efficiency.json", "report.html")


def test_nextvisit(site_icd9, checkpoint, env, tmp_path):
    run = tmp_path / "nv"
    args = ("nextvisit", "--data", site_icd9, "--from", checkpoint, "--out", run, "--max-train", "200")
    in_terminal(*args, *CLAIMS_TINY, env=env).ok()
    _has(run, "run.json", "metrics.json", "report.html")


def test_transfer(site_icd9, site_icd10, env, tmp_path):
    run = tmp_path / "xfer"
    sites = ("--source", site_icd9, "--target", site_icd10, "--labels", TASK, "--held-out", "0.4")
    plan = ("--fractions", "1", "--seeds", "0", "--protocols", "local,transfer")
    in_terminal("transfer", *sites, *plan, "--out", run, *CLAIMS_TINY, env=env).ok()
    _has(run, "run.json", "metrics.json", "efficiency.json", "report.html")


def test_pretrain_piped_prints_a_stamped_line_per_step_and_epoch(site_icd9, env, tmp_path):
    args = ("pretrain", "--data", site_icd9, "--out", tmp_path / "ckpt", "--min-subjects", "5")
    result = piped(*args, "--epochs", "3", "--batch-size", "64", "--logger", "none", env=env).ok()
    _has(tmp_path / "ckpt", "config.json", "model.safetensors")
    assert_progress_is_never_silent(result, {"pretrain": 3})
    assert any(text == "tokenizing ..." for _, text in progress_lines(result.stderr))
    assert "\x1b[" not in result.output  # no escapes where nothing reads them


# ----------------------------------------------------------------------------------------- NER


def test_ner_train(ner_corpus, env, tmp_path):
    out = tmp_path / "tagger"
    data = ("--train", ner_corpus / "train", "--dev", ner_corpus / "dev")
    result = in_terminal("ner", "train", *data, "--out", out, *NER_TINY, env=env).ok()
    _has(out, "config.json", "model.safetensors", "tokenizer", "run.json")
    assert "entity strict micro" in result.output


def test_ner_train_piped(ner_corpus, env, tmp_path):
    out = tmp_path / "tagger"
    data = ("--train", ner_corpus / "train", "--dev", ner_corpus / "dev")
    result = piped("ner", "train", *data, "--out", out, *NER_TINY, env=env).ok()
    _has(out, "config.json", "model.safetensors")
    lines = progress_lines(result.stderr)
    trainings = {m[1] for _, text in lines if (m := re.match(r"(.+): epoch \d+/2\b", text))}
    assert len(trainings) == 1, result.stderr
    assert_progress_is_never_silent(result, {trainings.pop(): 2})


def test_ner_compare(ner_corpus, env, tmp_path):
    out = tmp_path / "compare"
    data = ("--train", ner_corpus / "train", "--dev", ner_corpus / "dev", "--test", ner_corpus / "test")
    models = ("--models", "transformer-crf,feature-crf")
    in_terminal("ner", "compare", *data, *models, "--out", out, *NER_TINY, env=env).ok()
    _has(out, "metrics.json", "table.md", "report.html")
    assert len(json.loads((out / "metrics.json").read_text())["ner"]["models"]) == 4


# ----------------------------------------------------------------------------------------- ECG


def test_ecg_synth(ecg_records):
    assert len(list((ecg_records / "pretrain").glob("*.hea"))) == 16
    assert len(list((ecg_records / "cohort").glob("*.hea"))) == 24
    assert (ecg_records / "cohort" / "labels.csv").exists()


def test_ecg_prepare(ecg_records, env, tmp_path):
    out = tmp_path / "set"
    in_terminal(
        "ecg", "prepare", "--records", ecg_records / "pretrain", "--out", out, "--samples", 1024, env=env
    ).ok()
    from clinfm.ecg.corpus import open_set

    assert open_set(out).signals.shape == (16, 12, 1024)


def test_ecg_pretrain(ecg_records, env, tmp_path):
    out = tmp_path / "pclr"
    in_terminal(
        "ecg", "pretrain", "--records", ecg_records / "pretrain", "--out", out, *ECG_TINY, env=env
    ).ok()
    _has(out, "config.json", "model.safetensors", "report.html")


def test_ecg_pretrain_piped(ecg_records, env, tmp_path):
    out = tmp_path / "pclr"
    result = piped("ecg", "pretrain", "--records", ecg_records / "pretrain", "--out", out, *ECG_TINY, env=env)
    result.ok()
    _has(out, "config.json", "model.safetensors")
    lines = progress_lines(result.stderr)
    trainings = {m[1] for _, text in lines if (m := re.match(r"(.+): epoch \d+/2\b", text))}
    assert len(trainings) == 1, result.stderr
    assert_progress_is_never_silent(result, {trainings.pop(): 2})


def test_ecg_compare(ecg_records, env, tmp_path):
    run = tmp_path / "compare"
    data = ("--records", ecg_records / "cohort", "--pretrain-records", ecg_records / "pretrain")
    labels = ("--labels", ecg_records / "cohort" / "labels.csv", "--label", "age")
    probes = ("--sizes", "all", "--seeds", 1, "--folds", 3, "--scratch-steps", 2)
    in_terminal("ecg", "compare", *data, *labels, *probes, "--out", run, *ECG_TINY, env=env).ok()
    _has(run, "metrics.json", "table.md", "report.html")


# ----------------------------------------------------------------------------------------- fusion


def test_fuse_pretrain_labs(lab_model):
    _has(lab_model, "config.json", "model.safetensors", "lab_vocabulary.json", "run.json")


def test_fuse_train(site_icd9, lab_model, env, tmp_path):
    run = tmp_path / "fusion"
    args = ("fuse", "train", "--data", site_icd9, "--labs-model", lab_model, "--out", run)
    in_terminal(*args, *FUSE_TINY, env=env).ok()
    _has(run, "model", "metrics.json", "run.json")
    _has(run / "model", "config.json", "model.safetensors")


def test_fuse_ablate(site_icd9, lab_model, env, tmp_path):
    out = tmp_path / "ablation"
    args = ("fuse", "ablate", "--data", site_icd9, "--labs-model", lab_model, "--variants", "labs,full")
    in_terminal(*args, "--out", out, *FUSE_TINY, env=env).ok()
    _has(out, "metrics.json", "table.md", "report.html")
    assert list(json.loads((out / "metrics.json").read_text())["variants"]) == ["labs", "full"]


# ----------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_pretraining_with_one_line_and_the_same_command_resumes(site_icd9, env, tmp_path):
    out = tmp_path / "claimpt"
    args = ("pretrain", "--data", site_icd9, "--out", out, "--min-subjects", "5", "--epochs", "30")
    args = (*args, "--batch-size", "32", "--logger", "none")
    command = PtyCommand(args, env)
    command.read_until(r"epoch ([2-9]|[1-9]\d)/30", timeout=TIMEOUT_S)  # epoch 1's state is saved
    command.send(b"\x03")  # Ctrl-C, as a terminal sends it: SIGINT to the foreground process group
    stopped = command.finish(TIMEOUT_S)
    shown = stopped.output
    assert stopped.code == 130, shown
    assert "Traceback" not in shown and "Error" not in shown, shown
    said = [line.removeprefix("^C").strip() for line in shown.splitlines() if "interrupted:" in line]
    assert len(said) == 1 and said[0].startswith("interrupted:") and "rerun the same command" in said[0], (
        shown
    )
    assert not out.exists()
    assert (tmp_path / ".claimpt.partial").is_dir()

    again = in_terminal(*args, env=env).ok()
    assert "resuming" in again.output, again.output
    _has(out, "config.json", "model.safetensors", "vocabulary.json", "report.html")
    notes = json.loads((out / "run.json").read_text())["notes"]
    assert any("resumed from the end of epoch" in note for note in notes), notes


def test_sigterm_stops_pretraining_with_exit_143_and_the_same_command_resumes(site_icd9, env, tmp_path):
    """``kill``, a scheduler's time limit or ``docker stop`` send SIGTERM: exit 143 (not 0), one line,
    the finished epochs kept, and the same command resumes from them."""
    out = tmp_path / "claimpt"
    args = ("pretrain", "--data", site_icd9, "--out", out, "--min-subjects", "5", "--epochs", "4")
    args = (*args, "--batch-size", "32", "--logger", "none")
    command = PtyCommand(args, env)
    command.read_until(r"epoch [2-4]/4", timeout=TIMEOUT_S)  # epoch 1's state is saved
    os.kill(command.pid, signal.SIGTERM)
    stopped = command.finish(TIMEOUT_S)
    shown = stopped.output
    assert stopped.code == 143, shown
    assert "Traceback" not in shown, shown
    said = [line.strip() for line in shown.splitlines() if "terminated:" in line]
    assert len(said) == 1 and "rerun the same command" in said[0], shown
    assert not out.exists() and (tmp_path / ".claimpt.partial").is_dir()
    again = in_terminal(*args, env=env).ok()
    assert "resuming" in again.output, again.output
    _has(out, "config.json", "model.safetensors")


# ----------------------------------------------------------------------------------------- the demo


def test_demo_quick_in_a_terminal(quick_demo):
    """The README's first command (--quick) in a terminal: exit 0, no traceback, every output."""
    out, result = quick_demo
    result.ok()
    _has(out, "summary.json", "index.html", "site_a", "site_b")
    _has(out / "claims" / "pretrained", "config.json", "model.safetensors")
    for run in (out / "ner" / "compare", out / "ecg" / "compare", out / "fuse" / "ablation"):
        _has(run, "metrics.json", "report.html")
    assert "index.html for every report" in " ".join(result.output.split())
