"""Claim-PT end to end: pre-train, fine-tune against baselines, checkpoints, resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from _shared import message_lines
from clinfm.claims import recipes
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.cli import app
from clinfm.errors import InputError
from clinfm.evaluate.predictions import PREDICTION_SCHEMA
from clinfm.train.engine import TrainConfig, fit

TASK = "asthma_exacerbation_180d"
TINY = TrainConfig(max_epochs=2, batch_size=64, optimizer="adam", lr=1e-3, patience=None)
QUICK = recipes.MethodSettings(TINY.replace(max_epochs=2), TINY.replace(max_epochs=2))
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(site_icd9, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("claims") / "ckpt"
    return recipes.pretrain(site_icd9, out, train=TINY, min_subjects=5)


@pytest.fixture(scope="module")
def finetuned(site_icd9, checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("claims") / "run"
    return recipes.finetune(
        site_icd9, site_icd9 / "tasks" / f"{TASK}.parquet", checkpoint, out, settings=QUICK
    )


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_checkpoint_is_a_folder_without_pickle_or_subject_ids(site_icd9, checkpoint):
    files = sorted(p.name for p in checkpoint.iterdir() if p.is_file())
    assert {"config.json", "model.safetensors", "vocabulary.json", "categories.json"} <= set(files)
    assert not [p for p in checkpoint.rglob("*") if p.suffix in (".pt", ".pkl", ".ckpt", ".bin")]
    subjects = pl.read_parquet(site_icd9 / "data" / "*.parquet")["subject_id"].unique().cast(pl.String)
    saved = " ".join(p.read_text() for p in checkpoint.glob("*.json"))
    assert not any(s in saved for s in subjects.to_list()[:200])
    assert not (checkpoint.parent / ".ckpt.partial").exists()  # training state is removed once done


def test_save_load_round_trip(checkpoint, tmp_path):
    bundle = ClaimsModel.load(checkpoint)
    again = ClaimsModel.load(bundle.save(tmp_path / "copy"))
    for name, tensor in bundle.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name])
    assert again.vocab.codes == bundle.vocab.codes and again.tokenizer == bundle.tokenizer
    assert again.categories.names == bundle.categories.names


def test_finetune_run_folder(finetuned, site_icd9):
    metrics = json.loads((finetuned / "metrics.json").read_text())
    assert set(metrics["methods"]) == set(recipes.METHODS)
    brier = metrics["methods"]["pretrained"]["brier"]
    assert brier["low"] <= brier["value"] <= brier["high"]
    assert pq.read_schema(finetuned / "predictions.parquet").equals(PREDICTION_SCHEMA)
    labels = pl.read_parquet(site_icd9 / "tasks" / f"{TASK}.parquet")
    predictions = pl.read_parquet(finetuned / "predictions.parquet")
    assert predictions.height == metrics["test"]["n"] < labels.height
    assert (finetuned / "report.html").exists() and (finetuned / "logs").is_dir()
    assert ClaimsModel.load(finetuned / "model").trained_for == "classify"
    for scores in metrics["methods"].values():  # every F1 states its threshold and where it came from
        assert scores["f1"]["threshold_source"] in (
            "tuning set, max F1",
            "default 0.5: the tuning set lacks a class",
        )
        assert 0 <= scores["f1"]["threshold"] <= 1
        assert all(
            e["interval"] in ("bca", "percentile-widened") for e in scores.values() if e["low"] is not None
        )
    saved = json.loads((finetuned / "model" / "config.json").read_text())
    assert saved["threshold"] == metrics["methods"]["pretrained"]["f1"]["threshold"]
    decided = predictions["predicted_boolean_probability"] >= saved["threshold"]
    assert (predictions["predicted_boolean_value"] == decided).all()


def test_predict_and_embed(finetuned, site_icd9, tmp_path):
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    out = recipes.predict_labels(finetuned, site_icd9, labels, tmp_path / "p.parquet")
    predicted = pl.read_parquet(out)
    assert predicted.height == pl.read_parquet(labels).height
    assert predicted["predicted_boolean_probability"].is_between(0, 1).all()
    threshold = recipes.decision_threshold(finetuned)  # the one fine-tuning chose on the tuning set
    assert threshold == json.loads((finetuned / "model" / "config.json").read_text())["threshold"]
    decided = predicted["predicted_boolean_probability"] >= threshold
    assert (predicted["predicted_boolean_value"] == decided).all()
    vectors = pl.read_parquet(recipes.embed(finetuned, site_icd9, tmp_path / "e.parquet"))
    assert (
        vectors.schema["embedding"] == pl.Array(pl.Float32, 100) and vectors["subject_id"].is_unique().all()
    )


def test_efficiency_curves_share_the_test_set(site_icd9, checkpoint, tmp_path):
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    out = recipes.efficiency(
        site_icd9,
        labels,
        checkpoint,
        tmp_path / "eff",
        fractions=(0.5, 1.0),
        seeds=(0, 1),
        methods=("pretrained", "logistic_regression"),
        settings=QUICK,
        n_bootstrap=100,
    )
    curves = json.loads((out / "efficiency.json").read_text())
    assert len(curves["points"]) == 4
    half = next(p for p in curves["points"] if p["fraction"] == 0.5)
    full = next(p for p in curves["points"] if p["fraction"] == 1.0)
    assert half["n_train"] < full["n_train"] and len(half["metrics"]["auroc"]["per_seed"]) == 2
    assert json.loads((out / "run.json").read_text())["kind"] == "efficiency"


def _scored_cohort(rng, n: int) -> recipes.Cohort:
    def part(y):
        return pl.DataFrame(
            {
                "subject_id": np.arange(len(y), dtype=np.int64) + 1000 * rng.integers(1, 9),
                "prediction_time": np.full(len(y), np.datetime64("2020-01-01", "us")),
                "boolean_value": np.asarray(y, dtype=bool),
            }
        )

    parts = {split: part(rng.random(n) < 0.2) for split in ("train", "tuning", "held_out")}
    return recipes.Cohort("toy", Path("."), Path("toy.parquet"), pl.LazyFrame(), parts)


def test_f1_is_scored_at_the_threshold_chosen_on_the_tuning_set(tmp_path):
    """A model whose probabilities are all low: 0.5 flags no one, the tuning set's max-F1 cut does."""
    from clinfm.evaluate.metrics import best_f1_threshold, f1

    rng = np.random.default_rng(0)
    cohort = _scored_cohort(rng, 400)
    y_test, y_tune = cohort.y("held_out"), cohort.y("tuning")

    def scores(y):
        return np.clip(0.05 + 0.15 * y + 0.1 * rng.random(len(y)), 0, 1)  # all below 0.5

    seeds, methods = (0, 1), ("pretrained", "gru")
    results = {(m, 1.0, s): scores(y_test) for m in methods for s in seeds}
    tuning = {(m, 1.0, s): recipes.Tuning(y_tune, scores(y_tune)) for m in methods for s in seeds}
    tuning["gru", 1.0, 1] = recipes.Tuning(np.zeros(5), np.full(5, 0.1))  # a tuning set of one class
    recipes.write_evaluation(tmp_path, results, cohort, (1.0,), seeds, methods, "pretrained", 50, tuning)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    chosen = [
        best_f1_threshold(tuning["pretrained", 1.0, s].y, tuning["pretrained", 1.0, s].p) for s in seeds
    ]
    record = metrics["methods"]["pretrained"]["f1"]
    assert all(t < 0.5 for t in chosen) and record["thresholds"] == pytest.approx(chosen)
    assert record["threshold"] == pytest.approx(np.mean(chosen))
    assert record["threshold_source"] == "tuning set, max F1"
    expected = np.mean(
        [f1(y_test, results["pretrained", 1.0, s], threshold=t) for s, t in zip(seeds, chosen, strict=True)]
    )
    assert record["value"] == pytest.approx(expected) and record["value"] > 0
    assert f1(y_test, results["pretrained", 1.0, 0], threshold=0.5) != f1(
        y_test, results["pretrained", 1.0, 0], threshold=chosen[0]
    )
    assert record["low"] <= record["value"] <= record["high"]
    gru = metrics["methods"]["gru"]["f1"]
    assert gru["thresholds"][1] == 0.5
    assert gru["threshold_source"] == "tuning set, max F1; default 0.5: the tuning set lacks a class"
    predictions = pl.read_parquet(tmp_path / "predictions" / "pretrained.parquet")
    assert (
        predictions["predicted_boolean_value"] == (predictions["predicted_boolean_probability"] >= chosen[0])
    ).all()
    assert predictions["predicted_boolean_value"].any()  # at 0.5 no one would be flagged
    assert "threshold" not in metrics["methods"]["pretrained"]["auroc"]


def test_subsample_is_stratified_and_nested():
    y = np.array([0] * 90 + [1] * 10, dtype=np.float32)
    small, large = recipes.subsample(y, 0.1, 3), recipes.subsample(y, 0.5, 3)
    assert y[small].sum() == 1 and len(small) == 10 and set(small) <= set(large)


def test_next_visit_recall(site_icd9, checkpoint, tmp_path):
    out = recipes.next_visit(site_icd9, checkpoint, tmp_path / "nv", settings=QUICK, n_bootstrap=50)
    methods = json.loads((out / "metrics.json").read_text())["methods"]
    assert set(methods) == {"pretrained", "fine_tuned", "cold_start"}
    recall = methods["fine_tuned"]
    assert recall["recall@5"]["value"] <= recall["recall@10"]["value"] <= recall["recall@30"]["value"]


class _Crash(Exception):
    pass


class _CrashAfterEpoch(__import__("lightning").pytorch.callbacks.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(trainer.checkpoint_callback.dirpath + "/last.ckpt")
            raise _Crash


@pytest.mark.parametrize("preset", ["paper", "modern"])
def test_resume_after_a_crash_reaches_the_same_weights(site_icd9, checkpoint, tmp_path, preset):
    bundle = ClaimsModel.load(checkpoint)
    events = pl.scan_parquet(site_icd9 / "data" / "*.parquet")
    data = bundle.dataset(events)
    train, val = data.subset(np.arange(0, 300)), data.subset(np.arange(300, len(data)))
    from clinfm.claims.model import ClaimPT, ClaimPTConfig

    config = ClaimPTConfig.preset_named(
        preset, len(bundle.vocab), len(bundle.categories), n_layers=1, d_model=32
    )
    settings = TINY.replace(max_epochs=4, patience=None, logger="none")

    def fresh():
        torch.manual_seed(0)
        return ClaimPT(config)

    straight = fresh()
    fit(straight, "pretrain", train, val, settings, tmp_path / "a", resume=False)
    interrupted = fresh()
    with pytest.raises(_Crash):
        fit(interrupted, "pretrain", train, val, settings, tmp_path / "b", callbacks=(_CrashAfterEpoch(1),))
    resumed = fresh()
    result = fit(resumed, "pretrain", train, val, settings, tmp_path / "b")
    assert result.resumed_from_epoch == 2
    for name, tensor in straight.state_dict().items():
        assert torch.allclose(tensor, resumed.state_dict()[name], atol=1e-6), name


def test_ddp_on_two_cpu_processes(site_icd9, tmp_path):
    """Two processes with the gloo backend: each sees half the batches, one writes the checkpoint."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "clinfm", "pretrain", "--data", site_icd9, "--out", out, "--epochs", "1"]
    command += ["--accelerator", "cpu", "--devices", "2", "--distributed", "ddp", "--batch-size", "50"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("wrote") == 1
    steps = pl.read_csv(out / "logs" / "pretrain" / "metrics.csv")["step"].max()
    train_samples = json.loads((out / "run.json").read_text())["data"]["n_train"]
    assert steps + 1 == -(-train_samples // 50) // 2  # batches shared between the two processes
    assert ClaimsModel.load(out).model is not None


# ----------------------------------------------------------------------------- bad input


def _labels(site: Path, tmp_path: Path, change) -> Path:
    frame = change(pl.read_parquet(site / "tasks" / f"{TASK}.parquet"))
    path = tmp_path / "labels.parquet"
    frame.write_parquet(path)
    return path


def test_labels_of_absent_subjects(site_icd9, checkpoint, tmp_path):
    path = _labels(site_icd9, tmp_path, lambda f: f.with_columns(pl.col("subject_id") + 10**15))
    line = _one_error_line(
        _cli("finetune", "--data", site_icd9, "--labels", path, "--from", checkpoint, "--out", tmp_path / "r")
    )
    assert "row 1" in line and "not in the dataset" in line and str(path) in line
    assert not (tmp_path / "r").exists()


def test_prediction_time_before_birth(site_icd9, checkpoint, tmp_path):
    path = _labels(site_icd9, tmp_path, lambda f: f.with_columns(prediction_time=pl.datetime(1950, 1, 1)))
    line = _one_error_line(
        _cli("finetune", "--data", site_icd9, "--labels", path, "--from", checkpoint, "--out", tmp_path / "r")
    )
    assert "before the subject's birth" in line


def test_empty_cohort(site_icd9, checkpoint, tmp_path):
    path = _labels(site_icd9, tmp_path, lambda f: f.head(0))
    line = _one_error_line(
        _cli("finetune", "--data", site_icd9, "--labels", path, "--from", checkpoint, "--out", tmp_path / "r")
    )
    assert "empty" in line


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(checkpoint, tmp_path / "copy"))


def test_checkpoint_of_another_vocabulary(site_icd9, checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    vocab = json.loads((broken / "vocabulary.json").read_text())
    vocab["codes"] = vocab["codes"][:-1]
    (broken / "vocabulary.json").write_text(json.dumps(vocab))
    line = _one_error_line(
        _cli(
            "predict",
            "--from",
            broken,
            "--data",
            site_icd9,
            "--labels",
            site_icd9 / "tasks" / f"{TASK}.parquet",
            "--out",
            tmp_path / "p.parquet",
        )
    )
    assert "different checkpoints" in line


def test_data_coded_in_another_system(site_icd10, checkpoint, tmp_path):
    with pytest.raises(InputError, match="none of the data's codes"):
        ClaimsModel.load(checkpoint).dataset(
            pl.scan_parquet(site_icd10 / "data" / "*.parquet").filter(pl.col("code").str.starts_with("ICD10"))
        )


def test_checkpoint_of_another_preset(site_icd9, checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["model_config"].update(
        preset="modern", n_layers=4, d_model=128, n_heads=4, d_ff=512, bias=True, norm_first=True
    )
    (broken / "config.json").write_text(json.dumps(config))
    line = _one_error_line(
        _cli("embed", "--from", broken, "--data", site_icd9, "--out", tmp_path / "e.parquet")
    )
    assert "model.safetensors" in line and ("preset" in line or "shape" in line)


def test_corrupt_checkpoint(site_icd9, checkpoint, tmp_path):
    broken = _copy(checkpoint, tmp_path)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    line = _one_error_line(
        _cli("embed", "--from", broken, "--data", site_icd9, "--out", tmp_path / "e.parquet")
    )
    assert "not a readable safetensors file" in line
    assert not (tmp_path / "e.parquet").exists()


def test_predict_refuses_an_untuned_checkpoint(site_icd9, checkpoint, tmp_path):
    line = _one_error_line(
        _cli(
            "predict",
            "--from",
            checkpoint,
            "--data",
            site_icd9,
            "--labels",
            site_icd9 / "tasks" / f"{TASK}.parquet",
            "--out",
            tmp_path / "p.parquet",
        )
    )
    assert "fine-tune it first" in line


def test_not_a_checkpoint(site_icd9, tmp_path):
    line = _one_error_line(
        _cli("embed", "--from", tmp_path, "--data", site_icd9, "--out", tmp_path / "e.parquet")
    )
    assert "config.json" in line


@pytest.mark.shared_data
def test_mimic_iv_demo_pretrain_and_finetune(tmp_path):
    """Real MEDS (MIMIC-IV demo, MEDS 0.3.3, hadm_id encounters) through pre-training and fine-tuning."""
    from _shared import shared_path
    from clinfm.events.splits import SplitPolicy

    data = shared_path("ehr", "mimic-iv-demo-meds")
    one_epoch = TINY.replace(max_epochs=1)
    checkpoint = recipes.pretrain(
        data, tmp_path / "ckpt", train=one_epoch, splits=SplitPolicy(seed=0, held_out=0.4)
    )
    bundle = ClaimsModel.load(checkpoint)
    assert not [c for c in bundle.vocab.codes if c.startswith(("HOSPITAL_ADMISSION", "MEDS_", "GENDER"))]
    labels = data / "tasks" / "icu_mortality_first_24h.parquet"
    run = recipes.finetune(
        data,
        labels,
        checkpoint,
        tmp_path / "run",
        baselines=False,
        settings=recipes.MethodSettings(one_epoch, one_epoch),
    )
    record = json.loads((run / "run.json").read_text())["data"]
    assert record["n_train"] + record["n_tuning"] + record["n_test"] == pl.read_parquet(labels).height
    assert pl.read_parquet(run / "predictions.parquet").height == record["n_test"]


def test_a_killed_pretraining_resumes_with_the_same_command(site_icd9, tmp_path, monkeypatch):
    """The recipe keeps its state in .<out>.partial/ and the same call picks it up."""
    from safetensors.torch import load_file

    settings = TINY.replace(max_epochs=3)
    straight = recipes.pretrain(site_icd9, tmp_path / "straight", train=settings, min_subjects=5)
    real_fit = recipes.fit

    def crashing_fit(*args, **kwargs):
        return real_fit(*args, **kwargs, callbacks=(_CrashAfterEpoch(0),))

    monkeypatch.setattr(recipes, "fit", crashing_fit)
    with pytest.raises(_Crash):
        recipes.pretrain(site_icd9, tmp_path / "killed", train=settings, min_subjects=5)
    assert not (tmp_path / "killed").exists() and (tmp_path / ".killed.partial" / "resume").is_dir()
    monkeypatch.setattr(recipes, "fit", real_fit)
    resumed = recipes.pretrain(site_icd9, tmp_path / "killed", train=settings, min_subjects=5)
    assert "resumed from the end of epoch 1" in " ".join(
        json.loads((resumed / "run.json").read_text())["notes"]
    )
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)
    assert not (tmp_path / ".killed.partial").exists()
    epochs = pl.read_csv(resumed / "logs" / "pretrain" / "metrics.csv")["epoch"].unique().sort().to_list()
    assert epochs == [0, 1, 2]  # the log covers the epochs before the interruption too


def test_ddp_fine_tuning_scores_every_held_out_sample(site_icd9, checkpoint, tmp_path):
    """Under DDP validation and prediction see every sample on every process (AUROC needs them all)."""
    out = tmp_path / "ddp-run"
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    command = [sys.executable, "-m", "clinfm", "finetune", "--data", site_icd9, "--labels", labels]
    command += ["--from", checkpoint, "--out", out, "--epochs", "2", "--no-baselines", "--batch-size", "8"]
    command += ["--accelerator", "cpu", "--devices", "2", "--distributed", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert pl.read_parquet(out / "predictions.parquet").height == metrics["test"]["n"]
    assert (out / "model" / "model.safetensors").exists()


def test_bad_training_settings_leave_nothing_behind(site_icd9, checkpoint, tmp_path):
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    out = tmp_path / "bad"
    line = _one_error_line(
        _cli(
            "finetune",
            "--data",
            site_icd9,
            "--labels",
            labels,
            "--from",
            checkpoint,
            "--out",
            out,
            "--precision",
            "foo",
        )
    )
    assert "cannot train with these settings" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no .bad.partial


def test_the_modern_preset_pretrains_next_visit_and_fine_tunes_on_every_visit(site_icd9, tmp_path):
    one_epoch = TINY.replace(max_epochs=1)
    checkpoint = recipes.pretrain(
        site_icd9, tmp_path / "modern", preset="modern", train=one_epoch, min_subjects=5
    )
    bundle = ClaimsModel.load(checkpoint)
    assert bundle.model.config.norm_first and not bundle.tokenizer.hold_out_last_visit
    events = pl.scan_parquet(site_icd9 / "data" / "*.parquet")
    assert bundle.dataset(events, hold_out=True).nvp_targets().sum() > 0  # pre-training has targets
    assert bundle.dataset(events).packed.target_codes.size == 0  # fine-tuning keeps every visit
    labels = site_icd9 / "tasks" / f"{TASK}.parquet"
    settings = recipes.MethodSettings(one_epoch, one_epoch)
    run = recipes.finetune(
        site_icd9, labels, checkpoint, tmp_path / "run", settings=settings, baselines=False
    )
    assert (run / "model" / "model.safetensors").exists()
