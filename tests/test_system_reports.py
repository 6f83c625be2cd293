# ruff: noqa: RUF001  (intervals print with an en dash, as on the page)
"""The NER, ECG and fusion report sections: a plain-English headline with intervals, labels and
diseases that cannot be evaluated, no percentages of R^2, display names, grouped probe figures, real
caveats, and processing logs folded away (issue 15, item 4)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from clinfm.report import write_report


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def _est(value: float, half: float = 0.03) -> dict:
    return {"value": value, "low": round(value - half, 3), "high": round(value + half, 3), "interval": "bca"}


def _parts(page: str) -> dict[str, str]:
    """The headline, the caveats box, the system sections and the folded processing details."""
    headline = re.search(r'<section id="headline".*?</section>', page, re.S)
    caveats = re.search(r'<aside id="caveats".*?</aside>', page, re.S)
    processing = page[page.index('<details id="processing"') :] if 'id="processing"' in page else ""
    start = caveats.end() if caveats else headline.end()
    end = page.index('<details id="processing"') if processing else len(page)
    return {
        "headline": html.unescape(headline.group(0)) if headline else "",
        "caveats": html.unescape(caveats.group(0)) if caveats else "",
        "sections": html.unescape(page[start:end]),
        "processing": html.unescape(processing),
    }


# ----------------------------------------------------------------------------- ECG


def _point(n: int, value: float, half: float, metric: str, positives: int | None) -> dict:
    point = {"n_train_patients": n, "metric": metric, "seeds": 3, **_est(value, half), "test_patients": 100}
    if positives is not None:
        point["test_positives"] = positives
    return point


ECG_VALUES = {  # label -> method -> (value at 10, value at 1,000)
    "af": {"pclr": (0.90, 0.95), "clocs": (0.85, 0.94), "scratch": (0.60, 0.93), "handcrafted": (0.62, 0.92)},
    "rare": {
        "pclr": (0.70, 0.80),
        "clocs": (0.60, 0.70),
        "scratch": (0.50, 0.60),
        "handcrafted": (0.55, 0.6),
    },
    "age": {
        "pclr": (0.05, 0.10),
        "clocs": (0.02, 0.08),
        "scratch": (-0.02, 0.03),
        "handcrafted": (0.0, 0.04),
    },
}


def _ecg_run(run: Path) -> Path:
    curves = []
    for label, by_method in ECG_VALUES.items():
        metric = "r2" if label == "age" else "auroc"
        positives = {"af": 30, "rare": 3}.get(label)
        for method, values in by_method.items():
            points = [_point(n, v, 0.02, metric, positives) for n, v in zip((10, 1000), values, strict=True)]
            curves.append(
                {
                    "method": method,
                    "label": label,
                    "task": "regression" if label == "age" else "binary",
                    "windows": 400,
                    "patients": 120,
                    "windows_without_label": 7,
                    "positives": positives,
                    "points": points,
                }
            )
    _write_json(run / "run.json", {"kind": "ecg-compare", "title": "ECG", "notes": []})
    _write_json(run / "metrics.json", {"ecg": {"probes": curves, "gains": {}}})
    return run


@pytest.fixture(scope="module")
def ecg_page(tmp_path_factory) -> dict[str, str]:
    run = _ecg_run(tmp_path_factory.mktemp("ecg"))
    return _parts(write_report(run).read_text())


def test_ecg_headline_answers_per_label_at_smallest_and_largest_size(ecg_page):
    headline = ecg_page["headline"]
    assert "Does PCLR's representation beat the others with few labels?" in headline
    af = headline[headline.index("af (AUROC)") :]
    assert (
        "with 10 training patients, PCLR 0.900 (95% CI 0.880–0.920) against the best other, CLOCS-style,"
        in af
    )
    assert "the intervals do not overlap: PCLR did better than" in af.split(";")[0]
    assert "with 1,000 training patients" in af and "neither is named better" in af


def test_ecg_label_with_too_few_positives_cannot_be_evaluated(ecg_page, tmp_path, monkeypatch):
    reason = "rare cannot be evaluated: 3 positives in the test set (at least 10 needed)"
    assert reason in ecg_page["headline"]
    rare = ecg_page["headline"][ecg_page["headline"].index("rare cannot") :].split(".")[0]
    assert "better" not in rare.replace("no method is named better", "")
    assert "cannot be evaluated: 3 positives in the test set" in ecg_page["sections"]  # its table row
    from clinfm.ecg import report

    drawn = {}
    real = report.plots.probe_svg
    monkeypatch.setattr(
        report.plots,
        "probe_svg",
        lambda curves, *a, **k: drawn.update(curves=curves, groups=k.get("groups")) or real(curves, *a, **k),
    )
    write_report(_ecg_run(tmp_path))
    assert {c["label"] for c in drawn["curves"]} == {"af", "age"}  # no curve for the rare label
    assert drawn["groups"] == {
        "Pre-trained encoders": ["pclr", "clocs"],
        "Baselines": ["scratch", "handcrafted"],
    }


def test_ecg_r2_is_a_difference_never_a_percentage(ecg_page):
    page = ecg_page["headline"] + ecg_page["sections"]
    assert "ΔR² = +" in page
    assert not re.search(r"[+-]\d+%", page)  # no relative gain anywhere
    from clinfm.ecg.results import relative_gains

    age = [
        {"method": m, "label": "age", "points": [{"n_train_patients": 10, "metric": "r2", "value": v}]}
        for m, v in (("pclr", 0.05), ("scratch", 0.01))
    ]
    gains = relative_gains(age)["scratch"]
    assert gains["mean_relative_gain"] is None and gains["mean_difference"]["r2"] == pytest.approx(0.04)


def test_ecg_methods_by_display_name(ecg_page):
    sections = ecg_page["sections"]
    assert "Hand-crafted features" in sections and "Scratch (supervised)" in sections
    assert ">handcrafted<" not in sections and ">scratch<" not in sections


def test_ecg_caveats_and_processing(ecg_page):
    caveats, processing = ecg_page["caveats"], ecg_page["processing"]
    assert "not pre-training or training seeds (3 training draws per point)" in caveats
    assert "rare cannot be evaluated" in caveats
    assert "ECG windows per label" in processing and "Windows without the label (dropped)" in processing
    assert "ECG windows per label" not in caveats


# ----------------------------------------------------------------------------- fusion


def _fuse_run(run: Path, copd_positives: int = 40) -> Path:
    def held_out(auroc: float, f1: float) -> dict:
        diseases = {
            "copd": {"positives": copd_positives, "threshold": 0.3, "auroc": _est(auroc)},
            "rare <b>": {"positives": 4, "threshold": 0.5, "auroc": _est(0.9, 0.2)},
        }
        return {"samples": 300, "f1_micro": _est(f1), "auroc_macro": _est(auroc), "diseases": diseases}

    variants = {
        "labs": {"label": "Labs only", "held_out": held_out(0.70, 0.50)},
        "no_mi": {"label": "Disentangled, no MI loss", "held_out": held_out(0.84, 0.61)},
        "concat": {"label": "Concatenation fusion", "held_out": held_out(0.83, 0.60)},
        "full": {"label": "MEDFuse (full)", "held_out": held_out(0.85, 0.62)},
    }
    notes = ["12 samples had no notes and were kept with an empty note."]
    _write_json(run / "run.json", {"kind": "fuse-ablate", "title": "Fusion", "notes": notes})
    _write_json(run / "metrics.json", {"variants": variants, "data": {"notes_chunked": 9, "chunks": 30}})
    return run


@pytest.fixture(scope="module")
def fuse_page(tmp_path_factory) -> dict[str, str]:
    return _parts(write_report(_fuse_run(tmp_path_factory.mktemp("fuse"))).read_text())


def test_fuse_headline_compares_full_with_its_ablations(fuse_page):
    headline = fuse_page["headline"]
    assert (
        "On 300 held-out samples, MEDFuse (full) reached macro AUROC 0.850 (95% CI 0.820–0.880)" in headline
    )
    auroc = headline[headline.index("On macro AUROC") :]
    assert (
        "MEDFuse (full) is better than Labs only at 0.700 (0.670–0.730) (the intervals do not overlap)"
        in auroc
    )
    assert "its interval overlaps No MI penalty" in auroc and "Plain concatenation" in auroc
    assert "On micro F1" in headline


def test_fuse_disease_with_few_positives_cannot_be_evaluated(fuse_page):
    reason = (
        "this one cannot be evaluated (fewer than 10 held-out samples with or without the disease): "
        "rare <b> (4 positives)"
    )
    assert reason in fuse_page["headline"]
    row = re.search(r"<tr><th scope='row'>rare <b></th>.*?</tr>", fuse_page["sections"], re.S).group(0)
    assert "cannot be evaluated: 4 positives in the test set" in row and "0.900" not in row


def test_fuse_comparison_without_an_evaluable_disease_names_no_number(tmp_path):
    page = _parts(write_report(_fuse_run(tmp_path, copd_positives=295)).read_text())
    headline = page["headline"]
    assert (
        "This comparison cannot be evaluated: among its 300 held-out samples, no disease has at least 10 "
        "with it and 10 without it (copd (5 negatives), rare <b> (4 positives)), so no variant is named"
    ) in headline
    assert "reached" not in headline and "0.850" not in headline and "better than" not in headline


def test_fuse_variants_by_display_name_on_page_and_in_table_md(fuse_page):
    page = fuse_page["headline"] + fuse_page["sections"]
    for name in ("MEDFuse (full)", "No MI penalty", "Plain concatenation", "Labs only"):
        assert name in page
    assert "Disentangled, no MI loss" not in page and "no_mi" not in page
    from clinfm.fuse.report import VARIANT_LABELS, variant_label

    assert variant_label("no_mltm") == "No masked lab pre-training" == VARIANT_LABELS["no_mltm"]
    pytest.importorskip("torch")
    from clinfm.fuse.ablation import ABLATIONS

    assert {k: a.label for k, a in ABLATIONS.items()} == VARIANT_LABELS  # table.md writes these labels


def test_fuse_processing_log_is_folded_away_not_a_caveat(fuse_page):
    caveats, processing = fuse_page["caveats"], fuse_page["processing"]
    assert "12 samples had no notes" in processing and "12 samples had no notes" not in caveats
    assert "Notes chunked: 9" in processing
    assert "not pre-training or training seeds" in caveats and "rare <b>" in caveats


# ----------------------------------------------------------------------------- NER


def _ner_model(label: str, value: float) -> dict:
    scores = {
        "paper_unit": "subword",
        "entity": {"micro": {"f1": value}, "per_type": {"Drug": {"f1": value}, "Dose": {"f1": 0.0}}},
        "intervals": {"entity_micro_f1": _est(value, 0.02)},
    }
    return {"label": label, "parameters": 1000, "train_sentences": 800, "scores": scores}


def _ner_run(run: Path) -> Path:
    models = [
        _ner_model("transformer-crf", 0.80),
        _ner_model("transformer-crf+sambd", 0.82),
        _ner_model("bert-crf", 0.70),
    ]
    test = {"sentences": 500, "sentences_without_entity": 200, "entities": {"Drug": 300, "Dose": 0}}
    _write_json(run / "run.json", {"kind": "ner-compare", "title": "NER", "notes": []})
    _write_json(run / "metrics.json", {"ner": {"test": test, "models": models}})
    train = {"sentences": 800, "sentences_read": 1200}
    _write_json(run / "models" / "transformer-crf+sambd" / "run.json", {"config": {"data": {"train": train}}})
    return run


@pytest.fixture(scope="module")
def ner_page(tmp_path_factory) -> dict[str, str]:
    return _parts(write_report(_ner_run(tmp_path_factory.mktemp("ner"))).read_text())


def test_ner_headline_names_the_best_tagger_with_its_interval(ner_page):
    headline = ner_page["headline"]
    assert (
        "On the test documents (500 sentences, 300 entities), TransformerCRF + SamBD reached the highest "
        "entity-level strict F1, 0.820 (95% CI 0.800–0.840)" in headline
    )
    assert (
        "The runner-up, TransformerCRF, reached 0.800 (95% CI 0.780–0.820); the intervals overlap" in headline
    )
    assert (
        "TransformerCRF without SamBD reached 0.800" in headline
        and "SamBD made no clear difference" in headline
    )


def test_ner_taggers_by_display_name(ner_page):
    page = ner_page["headline"] + ner_page["sections"]
    assert "BERT-CRF" in page and "TransformerCRF + SamBD" in page
    assert "transformer-crf" not in page and "bert-crf" not in page


def test_ner_table_md_uses_display_names():
    pytest.importorskip("torch")
    from clinfm.ner.recipes import comparison_table

    scores = {
        "paper_unit": "subword",
        "sentences_per_second": 10.0,
        "paper": {"bio_strict": {"macro": {"precision": 0.5, "recall": 0.5}, "weighted": {"f1": 0.5}}},
        "entity": {"macro": {"f1": 0.5}},
        "intervals": {k: _est(0.5) for k in ("bio_strict_macro_f1", "token_macro_f1")}
        | {k: _est(0.5) for k in ("entity_micro_f1", "partial_micro_f1")},
    }
    row = {
        "label": "bert-apt+sambd",
        "parameters": 10,
        "train_sentences": 5,
        "train_seconds": 1.0,
        "scores": scores,
    }
    assert "| BERT-APT + SamBD |" in comparison_table([row])


def test_ner_caveats_and_processing(ner_page):
    caveats, processing = ner_page["caveats"], ner_page["processing"]
    assert "No test entity of type Dose" in caveats
    assert "not training seeds" in caveats
    assert "SamBD for TransformerCRF + SamBD: 800 of 1,200 training sentences kept" in processing
    assert "Test entities per type: Drug 300, Dose 0." in processing and "SamBD for" not in caveats


def test_ecg_probe_points_record_test_patients_with_the_label():
    """Where the report finds a binary label's test positives (counted per patient, not per ECG)."""
    import numpy as np

    from clinfm.ecg.probes import probe_curve

    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(60), 2).astype(str)
    y = np.repeat(np.arange(60) % 3 == 0, 2).astype(float)
    x = rng.normal(size=(120, 4)) + y[:, None]
    points = probe_curve(x, y, ids, sizes=(10,), seeds=(0,), test_share=0.5, n_bootstrap=20)
    assert points[0]["test_patients"] == 30 and points[0]["test_positives"] == 10
    assert "test_positives" not in probe_curve(x, x[:, 0], ids, task="regression", sizes=(10,), seeds=(0,))[0]
