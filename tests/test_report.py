"""The run report: hand-built run folders in, one self-contained HTML page out."""

# ruff: noqa: RUF001  (the page writes intervals with an en dash, as the checks below do)

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from clinfm.errors import InputError
from clinfm.evaluate.metrics import metric_info
from clinfm.report import write_report
from clinfm.report.plots import auroc, loss_columns, method_styles, roc_points

METHODS = ("pretrained", "cold_start", "logistic_regression", "gradient_boosting")
TITLE = "Asthma <b>exacerbation</b> within 180 days"


def _estimate(value: float, half_width: float = 0.06) -> dict:
    half_width = min(half_width, value / 3)  # small values (Brier, ECE) keep a positive interval
    return {"value": value, "low": round(value - half_width, 3), "high": round(value + half_width, 3)}


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def _run_json(kind: str = "efficiency", **extra: object) -> dict:
    return {
        "kind": kind,
        "title": TITLE,
        "created": "2026-11-22T01:40:00+00:00",
        "clinfm_version": "0.1.0",
        "task": {
            "name": "asthma_exacerbation_180d",
            "type": "binary",
            "labels": "/data/site_a/tasks/asthma_exacerbation_180d.parquet",
            "description": "Predict an asthma exacerbation within 180 days of a visit.",
        },
        "data": {
            "dataset": "/data/site_a",
            "n_train": 812,
            "n_tuning": 90,
            "n_test": 412,
            "test_positives": 37,
        },
        "methods": {"pretrained": "Claim-PT pre-trained on 20,000 unlabeled patients, then fine-tuned."},
        "primary_method": "pretrained",
        "config": {
            "model": {"layers": 4, "hidden": 128},
            "train": {"lr": 5e-4, "note": "<script>x</script>"},
        },
        "notes": ["Labels from site A only & <unverified>."],
        **extra,
    }


def _metrics() -> dict:
    values = {
        "pretrained": {"auroc": 0.81, "auprc": 0.42, "brier": 0.071, "ece": 0.031, "f1": 0.44},
        "cold_start": {"auroc": 0.70, "auprc": 0.30, "brier": 0.080, "ece": 0.052, "f1": 0.31},
        "logistic_regression": {"auroc": 0.76, "auprc": 0.36, "brier": 0.074, "ece": 0.025, "f1": 0.38},
        "gradient_boosting": {"auroc": 0.77, "auprc": 0.37, "brier": 0.075, "ece": 0.040, "f1": None},
    }
    methods = {
        method: {
            k: ({"value": None, "low": None, "high": None} if v is None else _estimate(v))
            for k, v in scores.items()
        }
        for method, scores in values.items()
    }
    methods["pretrained"]["auroc"] = {"value": 0.81, "low": 0.74, "high": 0.87}
    return {
        "confidence_level": 0.95,
        "n_bootstrap": 1000,
        "test": {"n": 412, "positives": 37},
        "methods": methods,
    }


def _efficiency(baseline_catches_up: bool = True) -> dict:
    """Pre-trained ahead at small fractions; gradient boosting reaches its interval at 50% (or never)."""
    fractions = [0.05, 0.1, 0.25, 0.5, 1.0]
    curves = {
        "pretrained": [0.70, 0.74, 0.77, 0.79, 0.81],
        "logistic_regression": [0.58, 0.62, 0.68, 0.72, 0.75],
        "gradient_boosting": [0.57, 0.63, 0.69, 0.75, 0.77] if baseline_catches_up else [0.5] * 5,
    }
    points = []
    for method, values in curves.items():
        for fraction, value in zip(fractions, values, strict=True):
            estimate = {**_estimate(value, 0.05), "per_seed": [value - 0.01, value, value + 0.01]}
            auprc = {**_estimate(value / 2, 0.05), "per_seed": [value / 2] * 3}
            points.append(
                {
                    "method": method,
                    "fraction": fraction,
                    "n_train": round(812 * fraction),
                    "n_train_positives": round(73 * fraction),
                    "metrics": {"auroc": estimate, "auprc": auprc},
                }
            )
    return {"metric_names": ["auroc", "auprc"], "fractions": fractions, "seeds": [0, 1, 2], "points": points}


def _predictions(seed: int, signal: float = 0.3, n: int = 412, positives: int = 37) -> pl.DataFrame:
    """Test predictions whose separation of the two outcomes grows with ``signal``."""
    rng = np.random.default_rng(seed)
    outcome = np.zeros(n, dtype=bool)
    outcome[:positives] = True
    probability = np.clip(rng.beta(2, 12, n) + outcome * rng.uniform(0.0, signal, n), 0, 1)
    return pl.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64),
            "prediction_time": [datetime(2020, 1, 1)] * n,
            "boolean_value": outcome,
            "predicted_boolean_value": probability > 0.5,
            "predicted_boolean_probability": probability,
        }
    )


def _write_log(path: Path, epochs: int = 5) -> None:
    """A Lightning-style CSV: step rows with train_loss, epoch rows with val_loss."""
    rows = []
    for epoch in range(epochs):
        rows.append(
            {"epoch": epoch, "step": epoch * 10 + 9, "train_loss": 2.0 / (epoch + 1), "val_loss": None}
        )
        rows.append(
            {"epoch": epoch, "step": epoch * 10 + 9, "train_loss": None, "val_loss": 2.2 / (epoch + 1)}
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        rows, schema={"epoch": pl.Int64, "step": pl.Int64, "train_loss": pl.Float64, "val_loss": pl.Float64}
    ).write_csv(path)


def make_full_run(run: Path) -> Path:
    """A run folder with every file the report reads."""
    _write_json(run / "run.json", _run_json())
    _write_json(run / "metrics.json", _metrics())
    _write_json(run / "efficiency.json", _efficiency())
    _predictions(0).write_parquet(run / "predictions.parquet")
    (run / "predictions").mkdir(exist_ok=True)
    for seed, (method, signal) in enumerate(zip(METHODS, (0.3, 0.12, 0.2, 0.22), strict=True)):
        _predictions(seed, signal).write_parquet(run / "predictions" / f"{method}.parquet")
    _write_log(run / "logs" / "pretrain" / "version_0" / "metrics.csv")
    for fraction in (0.1, 0.5):
        for seed in range(4):
            _write_log(run / "logs" / f"pretrained-f{fraction}-s{seed}" / "metrics.csv")
    return run


@pytest.fixture(scope="module")
def full_page(tmp_path_factory) -> str:
    run = make_full_run(tmp_path_factory.mktemp("full"))
    out = write_report(run)
    assert out == run / "report.html"
    return out.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- the full page


def test_full_report_is_self_contained(full_page: str) -> None:
    assert "http://" not in full_page and "https://" not in full_page
    assert "<script" not in full_page  # the config's "<script>" string is escaped, not run
    assert "&lt;script&gt;x&lt;/script&gt;" in full_page
    assert "default-src 'none'" in full_page


def test_full_report_escapes_file_strings(full_page: str) -> None:
    assert "Asthma &lt;b&gt;exacerbation&lt;/b&gt; within 180 days" in full_page
    assert "<b>exacerbation" not in full_page
    assert "Labels from site A only &amp; &lt;unverified&gt;." in full_page


def test_full_report_summary_and_table(full_page: str) -> None:
    summary = re.search(r'<p class="summary">(.*?)</p>', full_page, re.S).group(1)
    assert "On 412 held-out patients (37 with the outcome)" in summary
    assert "AUROC 0.81 (95% CI 0.74–0.87)" in summary
    assert "gradient boosting" in summary  # the best other method on AUROC
    assert "0.81 (0.74–0.87)" in full_page
    assert "<strong>0.81 (0.74–0.87)</strong>" in full_page  # best AUROC in bold
    assert "<strong>0.025 (" in full_page  # lowest ECE wins: lower is better
    assert html.escape(metric_info("auroc")["description"]) in full_page  # the metric's meaning
    assert "—" in full_page  # gradient boosting's undefined F1


def test_full_report_has_every_plot(full_page: str) -> None:
    for section in ("results", "efficiency", "predictions", "training", "config", "methods", "task"):
        assert f'<section id="{section}">' in full_page
    assert full_page.count("<svg") == 4  # efficiency, ROC, calibration, loss
    assert "AUROC 0.7" in full_page or "AUROC 0.8" in full_page  # AUROC in the ROC legend
    assert "<details><summary>Show configuration (JSON)</summary>" in full_page
    assert "4 more training logs" in full_page  # 8 fraction/seed logs, 4 shown


def test_efficiency_meeting_point_is_computed(full_page: str) -> None:
    # Gradient boosting reaches 0.75 at 50%, inside the pre-trained interval 0.74-0.84.
    assert (
        "comes within the pre-trained model's 95% interval (0.74–0.84) at 50% of the training labels"
        in full_page
    )


def test_efficiency_curves_that_never_meet(tmp_path: Path) -> None:
    _write_json(tmp_path / "run.json", _run_json())
    efficiency = _efficiency(baseline_catches_up=False)
    efficiency["points"] = [p for p in efficiency["points"] if p["method"] != "logistic_regression"]
    _write_json(tmp_path / "efficiency.json", efficiency)
    page = write_report(tmp_path).read_text()
    assert "do not meet in the range tested" in page


def test_rewrite_replaces_the_page_and_leaves_no_temp_file(tmp_path: Path) -> None:
    make_full_run(tmp_path)
    write_report(tmp_path)
    write_report(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ----------------------------------------------------------------------------- partial runs


def test_minimal_run_omits_missing_sections(tmp_path: Path) -> None:
    _write_json(tmp_path / "run.json", {"kind": "finetune", "title": "Readmission within 30 days"})
    page = write_report(tmp_path).read_text()
    assert "<h1>Readmission within 30 days</h1>" in page
    assert "<svg" not in page
    for section in ("results", "efficiency", "predictions", "training", "config", "methods", "task"):
        assert f'id="{section}"' not in page
    assert "no metrics.json" in page  # a fine-tuning run without results says so


def test_pretrain_run_shows_data_loss_and_config(tmp_path: Path) -> None:
    run = {
        "kind": "pretrain",
        "title": "Claim-PT pre-training",
        "data": {"dataset": "/data/site_a", "n_train": 20000, "n_tuning": 1000},
        "config": {"model": {"layers": 4}},
    }
    _write_json(tmp_path / "run.json", run)
    _write_log(tmp_path / "logs" / "pretrain" / "version_0" / "metrics.csv", epochs=10)
    page = write_report(tmp_path).read_text()
    assert page.count("<svg") == 1
    assert '<section id="training">' in page and '<section id="config">' in page
    assert "20,000" in page
    assert "went from 2 to 0.2 over 10 epochs" in page
    assert 'id="results"' not in page and 'id="caveats"' not in page


def test_nextvisit_run_shows_recall_table(tmp_path: Path) -> None:
    _write_json(
        tmp_path / "run.json", {"kind": "nextvisit", "title": "Next visit", "task": {"type": "multilabel"}}
    )
    scores = {
        "recall@10": _estimate(0.52, 0.02),
        "recall@30": _estimate(0.71, 0.02),
        "f1_micro": _estimate(0.3),
    }
    metrics = {
        "test": {"n": 5000},
        "methods": {"pretrained": scores, "gru": {**scores, "recall@10": _estimate(0.45)}},
    }
    _write_json(tmp_path / "metrics.json", metrics)
    page = write_report(tmp_path).read_text()
    assert "Recall@10" in page and html.escape(metric_info("recall@10")["description"]) in page
    assert "<strong>0.52 (0.50–0.54)</strong>" in page
    assert "with the outcome" not in page  # positives mean nothing for next-visit codes


def test_few_positives_add_a_caveat(tmp_path: Path) -> None:
    _write_json(tmp_path / "run.json", _run_json(kind="finetune", notes=[]))
    metrics = _metrics()
    metrics["test"] = {"n": 120, "positives": 9}
    _write_json(tmp_path / "metrics.json", metrics)
    page = write_report(tmp_path).read_text()
    assert "Only 9 patients in the test set have the outcome: confidence intervals are wide" in page


def test_unreadable_prediction_file_is_a_caveat_not_a_crash(tmp_path: Path) -> None:
    _write_json(tmp_path / "run.json", _run_json(kind="finetune"))
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "gru.parquet").write_text("not parquet")
    _predictions(1).write_parquet(tmp_path / "predictions" / "pretrained.parquet")
    page = write_report(tmp_path).read_text()
    assert "predictions/gru.parquet could not be read" in page
    assert page.count("<svg") == 2  # ROC and calibration, from the readable file


# ----------------------------------------------------------------------------- bad input


def test_missing_run_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"run\.json") as caught:
        write_report(tmp_path)
    assert caught.value.path == tmp_path / "run.json"
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"kind": "finetune"}', "'title'")],
)
def test_unreadable_run_json_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        write_report(tmp_path)
    assert str(tmp_path / "run.json") in str(caught.value)


# ----------------------------------------------------------------------------- plot helpers


def test_auroc_matches_scikit_learn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    outcome = rng.random(300) < 0.2
    probability = np.round(rng.random(300) * 0.7 + outcome * 0.2, 1)  # many ties
    assert auroc(outcome, probability) == pytest.approx(metrics.roc_auc_score(outcome, probability))
    fpr, tpr = roc_points(outcome, probability)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert auroc(np.ones(5, dtype=bool), np.linspace(0, 1, 5)) is None


def test_method_colours_are_stable_and_loss_columns_prefer_epoch() -> None:
    assert method_styles(["gru", "pretrained"])["pretrained"] == method_styles(["pretrained"])["pretrained"]
    assert len({s.color for s in method_styles(list(METHODS)).values()}) == len(METHODS)
    columns = ["epoch", "step", "train_loss_step", "train_loss_epoch", "val_loss", "lr"]
    assert loss_columns(columns) == ["train_loss_epoch", "val_loss"]


def test_efficiency_logs_shown_are_the_primary_methods_at_the_largest_fraction(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_json(run / "run.json", _run_json())
    names = [f"t-{m}-f{f}-s{s}" for m in ("cold_start", "pretrained") for f in ("0.1", "1") for s in (0, 1)]
    for name in names:
        _write_log(run / "logs" / name / "metrics.csv")
    page = write_report(run).read_text()
    shown = ("100% of labels, seed 0", "100% of labels, seed 1", "10% of labels, seed 0")
    assert all(f"Pre-trained transformer, {run}" in page for run in shown)
    assert "Cold start, 10% of labels, seed 0" not in page
    assert "t-pretrained" not in page  # display names, never run ids


# ----------------------------------------------------------------------------- page structure


def _position(page: str, hook: str) -> int:
    assert hook in page, hook
    return page.index(hook)


def test_page_opens_with_headline_then_caveats_and_ends_with_processing(full_page: str) -> None:
    order = [
        "<header>",
        '<section id="headline" class="headline">',
        '<aside id="caveats" class="caveats">',
        '<section id="methods">',
        '<section id="results">',
        '<details id="processing" class="processing">\n<summary>Data processing</summary>',
        "<footer>",
    ]
    positions = [_position(full_page, hook) for hook in order]
    assert positions == sorted(positions)
    processing = full_page[positions[-2] : positions[-1]]
    for inside in ('<section id="task">', '<section id="config">', "Training patients"):
        assert inside in processing
    assert 'id="smoke-test"' not in full_page


def test_every_table_scrolls_sideways_and_figures_shrink(full_page: str) -> None:
    assert full_page.count("<table") > 3
    assert full_page.count("<table") == full_page.count('<div class="table-scroll">\n<table')
    css = re.search(r"<style>(.*?)</style>", full_page, re.S).group(1)
    assert re.search(r"\.table-scroll \{[^}]*overflow-x: auto", css)
    assert re.search(r"svg \{[^}]*max-width: 100%; height: auto", css)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in full_page


@pytest.mark.parametrize(
    ("flag", "reason"), [(True, None), ("--preset tiny on 40 <synthetic> patients", "&lt;synthetic&gt;")]
)
def test_smoke_test_banner_opens_the_page(tmp_path: Path, flag: object, reason: str | None) -> None:
    _write_json(tmp_path / "run.json", {"kind": "finetune", "title": "T", "smoke_test": flag})
    page = write_report(tmp_path).read_text()
    banner = re.search(r'<div id="smoke-test" class="banner"[^>]*>(.*?)</div>', page, re.S)
    assert banner and page.index('id="smoke-test"') < page.index("<header>")
    assert "pipeline runs, not how well the methods work" in banner.group(1)
    assert reason is None or reason in banner.group(1)


def test_problems_are_counted_in_caveats_and_listed_in_processing(tmp_path: Path) -> None:
    _write_json(tmp_path / "run.json", {"kind": "finetune", "title": "T"})
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "gru.parquet").write_text("not parquet")
    page = write_report(tmp_path).read_text()
    caveats = page[page.index('<aside id="caveats"') : page.index("</aside>")]
    processing = page[page.index('<details id="processing"') :]
    assert "1 optional file of this run could not be read" in caveats
    assert "predictions/gru.parquet could not be read" in processing


# ----------------------------------------------------------------------------- each system's section


def _ecg_run(run: Path) -> None:
    _write_json(run / "run.json", {"kind": "ecg-compare", "title": "ECG"})
    points = [{"n_train_patients": n, **_estimate(0.7)} for n in (10, 100)]
    curves = [{"method": m, "label": "af", "metric": "auroc", "points": points} for m in ("scratch", "pclr")]
    gains = {"scratch": {"mean_relative_gain": 0.2, "points": 2}}
    _write_json(run / "metrics.json", {"ecg": {"probes": curves, "gains": gains}})


def _ner_run(run: Path) -> None:
    _write_json(run / "run.json", {"kind": "ner-compare", "title": "NER"})
    scores = {
        "entity": {"micro": {"f1": 0.5}, "per_type": {"Drug": {"f1": 0.6}}},
        "intervals": {"entity_micro_f1": _estimate(0.5)},
    }
    model = {"label": "crf+sambd", "parameters": 1200, "scores": scores}
    _write_json(run / "metrics.json", {"ner": {"models": [model]}})


def _fuse_run(run: Path) -> None:
    _write_json(run / "run.json", {"kind": "fuse-ablate", "title": "Fusion"})
    held_out = {
        "f1_micro": _estimate(0.6),
        "samples": 50,
        "diseases": {"copd <b>": {"positives": 5, "auroc": _estimate(0.7)}},
    }
    variants = {"full": {"label": "MEDFuse", "held_out": held_out}}
    _write_json(run / "metrics.json", {"variants": variants})


@pytest.mark.parametrize(
    ("make", "module", "heading", "shown"),
    [
        (_ecg_run, "clinfm.ecg.report", "Representations probed", "PCLR"),  # ECG's own method label
        (_ner_run, "clinfm.ner.report", "Taggers compared", "CRF + SamBD"),  # display name, not the id
        (_fuse_run, "clinfm.fuse.report", "Lab + note fusion", "copd &lt;b&gt;"),
        (make_full_run, "clinfm.claims.report", "Label efficiency", "Gradient boosting"),
    ],
)
def test_each_system_writes_its_own_section(tmp_path: Path, make, module: str, heading: str, shown: str):
    from clinfm.report import systems

    make(tmp_path)
    kind = json.loads((tmp_path / "run.json").read_text())["kind"]
    assert systems.module_for(kind) == module
    page = write_report(tmp_path).read_text()
    assert f"<h2>{heading}</h2>" in page and shown in page
    intro = systems.system_for(kind).KIND_INTROS[kind]
    assert intro in re.search(r'<p class="summary">(.*?)</p>', page, re.S).group(1)


def test_every_kind_a_system_introduces_routes_back_to_it() -> None:
    import importlib

    from clinfm.report import systems

    for module in (*systems.SYSTEMS.values(), systems.DEFAULT):
        system = importlib.import_module(module)
        assert system.KIND_INTROS and all(systems.module_for(k) == module for k in system.KIND_INTROS)
        assert all(callable(getattr(system, name)) for name in ("headline", "caveats", "section"))


def test_the_report_package_imports_no_system() -> None:
    """Shared packages never import a system (docs' design rule): systems are found by name only."""
    import ast

    import clinfm.report

    systems = ("claims", "concepts", "ner", "ecg", "fuse")
    for path in Path(clinfm.report.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not any(name.startswith(f"clinfm.{s}") for s in systems), f"{path.name} imports {name}"


def test_a_test_set_with_too_few_positives_names_no_winner_and_draws_no_curves(tmp_path: Path) -> None:
    from clinfm.report.blocks import too_few_to_compare

    assert (
        too_few_to_compare(4, 500, 10)
        == "cannot be evaluated: 4 positives in the test set (at least 10 needed)"
    )
    assert too_few_to_compare(495, 500, 10).startswith("cannot be evaluated: 5 test patients without")
    assert too_few_to_compare(10, 500, 10) is None
    assert too_few_to_compare(None, 500, 10) is None


# ----------------------------------------------------------------------------- thresholds, intervals, caveats


def _thresholded_metrics() -> dict:
    """Pre-trained and cold start F1 at tuned thresholds over 3 seeds; gradient boosting's fell back."""
    metrics = _metrics()
    methods = metrics["methods"]
    methods["pretrained"]["f1"].update(
        threshold=0.31, threshold_source="tuning set, max F1", thresholds=[0.29, 0.31, 0.33], interval="bca"
    )
    methods["cold_start"]["f1"].update(threshold=0.27, threshold_source="tuning set, max F1", interval="bca")
    methods["logistic_regression"]["f1"].update(
        threshold=0.5, threshold_source="default 0.5: the tuning set lacks a class", interval="bca"
    )
    methods["cold_start"]["ece"]["interval"] = "percentile-widened"
    metrics["seeds"] = [0, 1, 2]
    return metrics


def test_f1_states_its_threshold_and_the_caption_names_the_interval(tmp_path: Path) -> None:
    _write_json(tmp_path / "run.json", _run_json(kind="finetune"))
    _write_json(tmp_path / "metrics.json", _thresholded_metrics())
    page = write_report(tmp_path).read_text()
    results = page[page.index('<section id="results">') : page.index('<dl class="legend">')]
    legend = page[page.index('<dl class="legend">') :]
    assert (
        'title="threshold 0.31, the mean of 3 seeds&#x27; own (0.29 to 0.33; tuning set, max F1)"' in results
    )
    assert "Chosen on the tuning set (max F1): pre-trained transformer 0.31 (mean of 3 seeds" in results
    assert "cold start 0.27" in results
    assert "0.5 by default because the tuning set lacks a class: logistic regression 0.50" in results
    assert "The threshold is chosen on the tuning set (max F1), not 0.5." in legend
    assert "BCa bootstrap over test patients, 1,000 resamples" in results
    assert "1 interval is a percentile interval widened to reach its estimate" in results
    caveats = page[page.index('<aside id="caveats"') : page.index("</aside>")]
    assert "F1 of logistic regression uses the threshold 0.5 instead of one tuned" in caveats


def test_caveats_name_the_seeds_and_notes_go_to_processing(tmp_path: Path) -> None:
    notes = [
        "Every method is judged on the same held-out patients.",
        "30% of codes: vocabulary does not hold",
    ]
    _write_json(tmp_path / "run.json", _run_json(kind="finetune", notes=notes))
    _write_json(tmp_path / "metrics.json", _thresholded_metrics())
    page = write_report(tmp_path).read_text()
    caveats = page[page.index('<aside id="caveats"') : page.index("</aside>")]
    processing = page[page.index('<details id="processing"') :]
    assert (
        "The confidence intervals cover test-patient sampling only, not pre-training or training seeds "
        "(3 seeds were run; pre-training once)" in caveats
    )
    assert "judged on the same held-out patients" not in caveats
    assert "vocabulary does not hold" in caveats  # a warning, not a log
    assert '<section id="notes">' in processing and "judged on the same held-out patients" in processing


def _transfer_run(run: Path, positives: int = 40) -> None:
    embeddings, protocols = ("ids", "text"), ("local", "shared", "transfer", "transfer_head")
    methods = [f"{e}/{p}" for e in embeddings for p in protocols]
    values = {"ids/local": 0.70, "ids/transfer": 0.72, "text/local": 0.71, "text/transfer": 0.86}
    run_json = {
        "kind": "efficiency",
        "title": "Transfer",
        "task": {"name": "t", "type": "binary"},
        "data": {"source": "/data/site_a", "target": "/data/site_b", "n_train": 300, "n_test": 400},
        "methods": {m: "described" for m in methods},
        "primary_method": "text/transfer",
        "config": {"preset": "claimpt", "seeds": [0, 1]},
        "notes": ["The x axis counts the target site's training labels."],
    }
    _write_json(run / "run.json", run_json)
    scores = {m: {"auroc": {**_estimate(values.get(m, 0.65), 0.04), "interval": "bca"}} for m in methods}
    metrics = {
        "n_bootstrap": 200,
        "test": {"n": 400, "positives": positives},
        "seeds": [0, 1],
        "methods": scores,
    }
    _write_json(run / "metrics.json", metrics)
    points = [
        {
            "method": m,
            "fraction": f,
            "n_train": round(300 * f),
            "metrics": {"auroc": _estimate(values.get(m, 0.65))},
        }
        for m in methods
        for f in (0.5, 1.0)
    ]
    _write_json(run / "efficiency.json", {"metric_names": ["auroc"], "seeds": [0, 1], "points": points})


def test_transfer_run_answers_its_question_with_display_names(tmp_path: Path) -> None:
    _transfer_run(tmp_path)
    page = write_report(tmp_path).read_text()
    summary = re.search(r'<p class="summary">(.*?)</p>', page, re.S).group(1)
    assert "Does site_a's model help at site_b?" in summary
    assert "With code ids, site_b's own model (local) reached AUROC 0.70 (95% CI 0.66–0.74)" in summary
    assert "the intervals overlap, so neither is named better" in summary  # ids: 0.70 against 0.72
    assert "text embeddings did better than code ids" in summary  # 0.86 against 0.72
    for shown in ("Code ids, local", "Text embeddings, transfer (head only)", "transfer (all layers)"):
        assert shown in page
    shown_to_readers = page[: page.index('<details id="processing"')]  # the config may hold raw ids
    for internal in ("transfer_head", "ids/local", "text/transfer", "Ids", "Text/"):
        assert internal not in shown_to_readers


def test_unevaluable_transfer_run_names_no_winner(tmp_path: Path) -> None:
    _transfer_run(tmp_path, positives=4)
    page = write_report(tmp_path).read_text()
    summary = re.search(r'<p class="summary">(.*?)</p>', page, re.S).group(1)
    assert "cannot be evaluated: 4 positives in the test set" in summary
    assert "did better" not in summary and "<strong>0." not in page
