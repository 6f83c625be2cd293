"""``clinfm fuse`` end to end on a small synthetic cohort: lab pre-training, the ablation (every
switch), train + evaluate, a diagnosis-group task, and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from clinfm.cli import app

runner = CliRunner()
TINY = ["--preset", "small", "--epochs", "2", "--batch-size", "32", "--logger", "none"]


def _ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _bad(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CLINFM_CACHE", str(tmp_path_factory.getbasetemp() / "embedding-cache"))


@pytest.fixture(scope="module")
def lab_model(site_icd9, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuse") / "labs"
    _ok("fuse", "pretrain-labs", "--data", site_icd9, "--out", out, *TINY)
    return out


def test_pretrain_labs_writes_an_encoder_without_ids(lab_model, site_icd9):
    config = json.loads((lab_model / "config.json").read_text())
    assert config["kind"] == "fuse-lab-encoder" and config["encoder"]["dim"] == 32
    assert config["encoder"]["mask_ratio"] == 0.75
    vocabulary = json.loads((lab_model / "lab_vocabulary.json").read_text())
    assert vocabulary["codes"] and all(code.startswith("LOINC/") for code in vocabulary["codes"])
    subjects = set(pl.read_parquet(site_icd9 / "metadata" / "subject_splits.parquet")["subject_id"].to_list())

    def scalars(node):  # every number and string anywhere in a JSON document
        if isinstance(node, dict):
            return [x for key, value in node.items() for x in [key, *scalars(value)]]
        if isinstance(node, list):
            return [x for value in node for x in scalars(value)]
        return [node]

    saved = [
        x
        for p in lab_model.glob("*.json")
        if p.name != "run.json"
        for x in scalars(json.loads(p.read_text()))
    ]
    assert not {x for x in saved if isinstance(x, int) and not isinstance(x, bool)} & subjects
    assert not {x for x in saved if isinstance(x, str)} & {str(s) for s in subjects}
    run = json.loads((lab_model / "run.json").read_text())
    assert run["results"]["data"]["train_panels"] > 100


def test_ablate_trains_every_variant_on_the_same_samples(lab_model, site_icd9, tmp_path):
    out = tmp_path / "ablation"
    _ok("fuse", "ablate", "--data", site_icd9, "--labs-model", lab_model, "--out", out, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    variants = metrics["variants"]
    assert list(variants) == ["labs", "notes", "concat", "no_mi", "no_mltm", "full"]
    assert variants["no_mltm"]["pretrained_labs"] is False and variants["full"]["pretrained_labs"] is True
    assert variants["no_mi"]["fusion"]["mi_weight"] == 0.0 and variants["full"]["fusion"]["mi_weight"] == 0.1
    assert {v["fusion"]["fusion"] for v in variants.values()} == {"labs", "notes", "concat", "disentangled"}
    samples = {v["held_out"]["samples"] for v in variants.values()}
    assert len(samples) == 1 and samples.pop() > 50
    for variant in variants.values():
        held = variant["held_out"]
        assert 0.0 <= held["f1_micro"]["value"] <= 1.0 and held["auroc_macro"]["low"] is not None
        assert len(held["diseases"]) == 10
    assert "| MEDFuse (full) |" in (out / "table.md").read_text()
    assert (out / "report.html").exists() and not (out / "lab_model").exists()  # given, not trained here
    data = metrics["data"]
    assert data["samples"]["train"] > data["samples"]["held_out"] > 0 and "samples_without_notes" in data
    assert data["encoder"].startswith("sentence-transformers:")


def test_train_then_evaluate_reproduces_the_held_out_scores(lab_model, site_icd9, tmp_path):
    run = tmp_path / "run"
    _ok(
        "fuse", "train", "--data", site_icd9, "--labs-model", lab_model, "--out", run, *TINY, "--labs-as-text"
    )
    assert (run / "model" / "config.json").exists()
    report = (run / "report.html").read_text()
    assert "Lab + note fusion" in report and "could not be read" not in report
    from clinfm.evaluate.predictions import read_predictions

    thresholds = json.loads((run / "model" / "config.json").read_text())["thresholds"]
    files = sorted((run / "diseases").glob("*.parquet"))
    assert [f.stem for f in files] == sorted(
        json.loads((run / "model" / "config.json").read_text())["diseases"]
    )
    asthma = read_predictions(run / "diseases" / "asthma.parquet")  # the meds-evaluation schema
    k = [f.stem for f in files].index("asthma")
    decided = asthma["predicted_boolean_probability"] >= thresholds[k]
    assert (asthma["predicted_boolean_value"] == decided).all()  # decisions at the tuned threshold
    assert "subject_id" not in (run / "model" / "config.json").read_text()
    trained = json.loads((run / "metrics.json").read_text())["held_out"]
    again = tmp_path / "again"
    _ok("fuse", "evaluate", "--model", run / "model", "--data", site_icd9, "--out", again)
    evaluated = json.loads((again / "metrics.json").read_text())["held_out"]
    assert pl.read_parquet(again / "diseases" / "asthma.parquet").equals(
        pl.read_parquet(run / "diseases" / "asthma.parquet")
    )
    assert evaluated["f1_micro"] == pytest.approx(trained["f1_micro"])
    assert evaluated["auroc_macro"] == pytest.approx(trained["auroc_macro"])
    notes = json.loads((run / "run.json").read_text())["notes"]
    assert any("no lab result before prediction time" in line for line in notes)


def test_a_notes_only_model_needs_no_lab_encoder(site_icd9, tmp_path):
    run = tmp_path / "notes"
    _ok("fuse", "train", "--data", site_icd9, "--fusion", "notes", "--out", run, *TINY)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["lab_encoder"] is None and not (run / "model" / "lab_vocabulary.json").exists()


def test_diagnosis_task_from_inpatient_stays(site_icd9, tmp_path):
    task = tmp_path / "groups"
    result = _ok("fuse", "diagnosis-task", "--data", site_icd9, "--out", task, "--top", 3)
    assert "admissions" in result.output
    assert len(list(task.glob("*.parquet"))) == 3 and (task / "groups.json").exists()
    from clinfm.fuse.recipes import load_task

    listed = [g["name"] for g in json.loads((task / "groups.json").read_text())["groups"]]
    assert load_task(site_icd9, str(task.resolve()))[1] == listed  # a folder by path: groups.json order


def test_bad_input_is_one_line(lab_model, site_icd9, tmp_path):
    assert "no label files under tasks/nothing" in _bad(
        "fuse", "train", "--data", site_icd9, "--task", "nothing", "--out", tmp_path / "x", *TINY
    )
    assert "not a fusion model" in _bad(
        "fuse", "evaluate", "--model", lab_model, "--data", site_icd9, "--out", tmp_path / "y"
    )
    assert "is a MEDS dataset, not a checkpoint" in _bad(
        "fuse", "train", "--data", site_icd9, "--labs-model", site_icd9, "--out", tmp_path / "z", *TINY
    )
    assert "unknown variants" in _bad(
        "fuse", "ablate", "--data", site_icd9, "--variants", "labs,sum", "--out", tmp_path / "w", *TINY
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "w").exists()


def test_the_note_encoder_can_be_fine_tuned_with_the_fusion_model(site_icd9, tmp_path):
    run = tmp_path / "tuned"
    _ok(
        "fuse",
        "train",
        "--data",
        site_icd9,
        "--fusion",
        "notes",
        "--note-train-layers",
        1,
        "--out",
        run,
        *TINY[:2],
        "--epochs",
        1,
        "--batch-size",
        64,
        "--logger",
        "none",
    )
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["inputs"]["note_train_layers"] == 1 and config["note_dim"] == 384
    again = tmp_path / "again"
    _ok("fuse", "evaluate", "--model", run / "model", "--data", site_icd9, "--out", again)
    trained = json.loads((run / "metrics.json").read_text())["held_out"]
    assert json.loads((again / "metrics.json").read_text())["held_out"]["f1_micro"] == pytest.approx(
        trained["f1_micro"]
    )


def test_an_untrained_lab_encoder_follows_the_seed(site_icd9, tmp_path):
    scores = []
    for name in ("a", "b"):
        run = tmp_path / name
        _ok("fuse", "train", "--data", site_icd9, "--fusion", "labs", "--out", run, *TINY, "--seed", 3)
        scores.append(json.loads((run / "metrics.json").read_text())["held_out"]["auroc_macro"])
    assert scores[0] == scores[1]


def test_an_interrupted_ablation_keeps_its_pre_trained_encoder_and_resumes(site_icd9, tmp_path, monkeypatch):
    import clinfm.fuse.ablation as ablation

    out = tmp_path / "ablation"
    real = ablation.prepare_notes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation, "prepare_notes", interrupted)
    args = ("fuse", "ablate", "--data", site_icd9, "--variants", "labs,notes", "--out", out, *TINY)
    assert runner.invoke(app, [str(a) for a in args]).exit_code != 0
    kept = tmp_path / ".ablation.partial" / "models" / "lab_model" / "config.json"
    assert kept.exists(), "the pre-trained encoder was deleted with the interrupted run"
    before = kept.stat().st_mtime_ns
    monkeypatch.setattr(ablation, "prepare_notes", real)
    _ok(*args)
    assert (out / "lab_model" / "config.json").exists()
    assert json.loads((out / "lab_model" / "config.json").read_text())["units"] is not None
    assert (out / "lab_model" / "config.json").stat().st_mtime_ns == before  # reused, not trained again


def test_lab_units_are_the_training_splits_and_travel_with_the_model(tmp_path):
    import datetime as dt

    from clinfm.events.meds import write_dataset
    from clinfm.fuse.recipes import InputSettings, read_cohort

    # Item A in mg/dL for the 6 training subjects, in mmol/L for the 10 held-out ones (the majority).
    t0 = dt.datetime(2020, 1, 1)
    subjects = list(range(1, 17))
    splits = pl.DataFrame({"subject_id": subjects, "split": ["train"] * 6 + ["held_out"] * 10})
    events = pl.DataFrame(
        {
            "subject_id": subjects,
            "time": [t0] * 16,
            "code": ["LOINC/A"] * 16,
            "numeric_value": [float(i) for i in subjects],
            "unit": ["mg/dL"] * 6 + ["mmol/L"] * 10,
        },
        schema_overrides={"numeric_value": pl.Float32},
    )
    labels = pl.DataFrame(
        {
            "subject_id": subjects,
            "prediction_time": [t0 + dt.timedelta(hours=1)] * 16,
            "boolean_value": [True, False] * 8,
        }
    )
    tasks = {"dx/d1": labels, "dx/d2": labels}
    root = write_dataset(tmp_path / "site", events, dataset_name="units", splits=splits, tasks=tasks)
    root = tmp_path / "site"
    cohort = read_cohort(root, "dx", InputSettings())
    assert cohort.units == {"LOINC/A": "mg/dL"}
    assert (
        cohort.labs["n_labs"].to_list() == [1] * 6 + [0] * 10
    )  # held-out mmol/L values dropped, not rescaled
    model_units = read_cohort(root, "dx", InputSettings(), units={"LOINC/A": "mmol/L"})
    assert model_units.labs["n_labs"].to_list() == [0] * 6 + [1] * 10


def test_older_training_results_decide_a_unit_even_when_the_latest_has_none(tmp_path):
    import datetime as dt

    from clinfm.events.meds import write_dataset
    from clinfm.fuse.recipes import InputSettings, read_cohort

    t0 = dt.datetime(2020, 1, 1)
    subjects = list(range(1, 11))
    splits = pl.DataFrame({"subject_id": subjects, "split": ["train"] * 4 + ["held_out"] * 6})
    train_old = [(s, t0, "mg/dL") for s in subjects[:4]]
    train_new = [(s, t0 + dt.timedelta(minutes=5), None) for s in subjects[:4]]  # latest: no unit
    held_out = [(s, t0, "g/L") for s in subjects[4:]]
    rows = train_old + train_new + held_out
    events = pl.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "time": [r[1] for r in rows],
            "code": ["LOINC/A"] * len(rows),
            "numeric_value": [1.0] * len(rows),
            "unit": [r[2] for r in rows],
        },
        schema_overrides={"numeric_value": pl.Float32, "unit": pl.String},
    )
    when = [t0 + dt.timedelta(hours=1)] * 10
    labels = pl.DataFrame(
        {"subject_id": subjects, "prediction_time": when, "boolean_value": [True, False] * 5}
    )
    write_dataset(tmp_path / "site", events, dataset_name="units", splits=splits, tasks={"dx/a": labels})
    cohort = read_cohort(tmp_path / "site", "dx", InputSettings())
    assert cohort.units == {"LOINC/A": "mg/dL"}
    assert cohort.labs["n_labs"].to_list() == [1] * 4 + [0] * 6  # the held-out g/L results are not read


def test_labels_without_a_value_are_refused_before_training(tmp_path, site_icd9):
    import shutil

    root = tmp_path / "site"
    shutil.copytree(site_icd9, root)
    first = sorted((root / "tasks" / "diseases").glob("*.parquet"))[0]
    frame = pl.read_parquet(first)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(None)
        .otherwise(pl.col("boolean_value"))
        .alias("boolean_value")
    ).write_parquet(first)
    output = _bad("fuse", "train", "--data", root, "--fusion", "labs", "--out", tmp_path / "run", *TINY)
    assert "have no value for" in output and not (tmp_path / "run").exists()


def test_a_task_without_held_out_subjects_is_refused_before_training(site_icd9, tmp_path):
    import shutil

    root = tmp_path / "site"
    shutil.copytree(site_icd9, root)
    splits = root / "metadata" / "subject_splits.parquet"
    pl.read_parquet(splits).with_columns(
        split=pl.when(pl.col("split") == "held_out").then(pl.lit("train")).otherwise(pl.col("split"))
    ).write_parquet(splits)
    output = _bad("fuse", "ablate", "--data", root, "--out", tmp_path / "run", *TINY)
    assert "no sample of a subject in the held_out split" in output
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()
