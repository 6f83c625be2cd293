"""One self-contained HTML page per run, written for a clinician-researcher who never saw the code.

The page carries everything inline (CSS, SVG figures) and a Content-Security-Policy that forbids
any network load: health-data results must open offline and never call out. Every string that
comes from a run's files is escaped. Optional files that are absent just drop their section; a
missing or unreadable ``run.json`` is an :class:`~clinfm.errors.InputError`.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from clinfm.ecg.results import METHOD_LABELS as ECG_METHOD_LABELS
from clinfm.ecg.results import METHODS as ECG_METHODS
from clinfm.errors import InputError
from clinfm.evaluate.metrics import metric_info
from clinfm.report import plots

EN_DASH = "\u2013"  # intervals read "0.74 to 0.87" with an en dash, as in print

METHOD_LABELS = {
    "pretrained": "Pre-trained transformer",
    "cold_start": "Cold start",
    "logistic_regression": "Logistic regression",
    "gradient_boosting": "Gradient boosting",
    "gru": "GRU over visits",
    **ECG_METHOD_LABELS,
}
METHOD_DESCRIPTIONS = {
    "pretrained": "A transformer first pre-trained on unlabeled patient histories, then fine-tuned on "
    "this task's labelled training patients.",
    "cold_start": "The same transformer architecture trained only on this task's labelled patients from "
    "random weights; its gap to the pre-trained model is what pre-training adds.",
    "logistic_regression": "Logistic regression on counts of each code recorded before the prediction time.",
    "gradient_boosting": "Gradient-boosted decision trees on counts of each code recorded before the "
    "prediction time.",
    "gru": "A recurrent neural network (GRU) that reads the patient's visits in order, trained from scratch.",
}
KIND_INTROS = {
    "finetune": "This run fine-tunes models for one prediction task and compares them on held-out "
    "test patients.",
    "efficiency": "This run measures how each method's performance grows with the number of labelled "
    "training patients.",
    "pretrain": "This run pre-trains a model on unlabeled patient histories; pre-training has no prediction "
    "task of its own, so there are no test metrics.",
    "nextvisit": "This run predicts which codes will be recorded at each patient's next visit.",
    "ecg-compare": "This run compares ECG representations the way PCLR does: each pre-trained encoder is "
    "frozen and a linear model is fit on its output for each label, at several numbers of labelled "
    "training patients, against hand-crafted features and networks trained from scratch on the same "
    "patients.",
    "ecg-probe": "This run fits linear models on frozen ECG representations for each label, at several "
    "numbers of labelled training patients.",
    "ecg-pretrain": "This run pre-trains an ECG encoder without labels; the pre-training has no prediction "
    "task of its own, so there are no test metrics.",
    "fuse-ablate": "This run trains MEDFuse and its ablations (each branch alone, plain concatenation, no "
    "mutual-information loss, no masked lab pre-training) on the same samples and scores each on the same "
    "held-out patients.",
    "fuse-train": "This run trains one lab + note fusion model for multi-label disease prediction and scores "
    "it on held-out patients.",
    "fuse-evaluate": "This run scores a trained lab + note fusion model at the thresholds chosen when it was "
    "trained.",
    "fuse-pretrain-labs": "This run pre-trains a lab-test encoder by masked lab-test modelling; it has no "
    "prediction task of its own, so there are no test metrics.",
    "ner-compare": "This run trains named-entity taggers on the same annotations (with and without SamBD "
    "down-sampling, where asked) and scores each on the same test documents.",
}
HEADLINE_ORDER = ("auroc", "macro_auroc", "recall@10", "recall@5", "recall@30", "auprc", "f1_micro", "f1")
DATA_LABELS = {
    "dataset": "Dataset",
    "n_train": "Training patients",
    "n_tuning": "Tuning (validation) patients",
    "n_test": "Test patients",
    "test_positives": "Test patients with the outcome",
}
FEW_POSITIVES = 20  # below this, bootstrap intervals on AUROC and friends are too wide to compare methods
MAX_EXTRA_LOGS = 4  # efficiency runs write dozens of logs; the page shows the main ones and a sample
_SEED_OR_FRACTION = re.compile(r"-[fs]\d")


@dataclass
class RunFolder:
    """Everything the page draws on, read once from the run folder."""

    path: Path
    run: dict
    metrics: dict | None = None
    efficiency: dict | None = None
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    logs: list[tuple[str, pl.DataFrame]] = field(default_factory=list)
    logs_left_out: int = 0
    problems: list[str] = field(default_factory=list)  # optional files that could not be used

    @property
    def primary(self) -> str:
        """The method the summary leads with: as named, else the pre-trained one, else the first listed."""
        if isinstance(self.run.get("primary_method"), str):
            return self.run["primary_method"]
        listed = list(_dict(self.metrics, "methods")) or list(_dict(self.run, "methods"))
        return "pretrained" if "pretrained" in listed or not listed else listed[0]

    def methods(self) -> list[str]:
        """Every method named anywhere in the run, the primary first."""
        found = list(_dict(self.run, "methods"))
        found += list(_dict(self.metrics, "methods"))
        found += [p.get("method") for p in _points(self.efficiency) if p.get("method")]
        found += list(self.predictions)
        unique = list(dict.fromkeys(found))
        order = [*plots.KNOWN_ORDER]
        unique.sort(key=lambda m: (m != self.primary, order.index(m) if m in order else len(order)))
        return unique


# ----------------------------------------------------------------------------- entry point


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/report.html`` from the run's files and return its path.

    Written through a temporary file and a rename, so a crash never leaves half a page.
    """
    folder = read_run_folder(run_dir)
    page = render(folder)
    out = folder.path / "report.html"
    tmp = out.with_name(f".report.html.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def read_run_folder(run_dir: str | os.PathLike) -> RunFolder:
    """Read run.json (required) and whichever optional files exist."""
    path = Path(run_dir)
    folder = RunFolder(path=path, run=_read_run_json(path / "run.json"))
    folder.metrics = _read_optional_json(path / "metrics.json")
    folder.efficiency = _read_optional_json(path / "efficiency.json")
    folder.predictions = _read_predictions(folder)
    folder.logs, folder.logs_left_out = _read_logs(folder)
    return folder


def _read_run_json(path: Path) -> dict:
    run = _read_json(path, missing="not found; is this a clinfm run folder?")
    if not isinstance(run, dict):
        raise InputError("must hold a JSON object with at least 'kind' and 'title'", path=path)
    for key in ("kind", "title"):
        if not isinstance(run.get(key), str):
            raise InputError(f'needs a string \'{key}\' (e.g. "kind": "finetune")', path=path)
    return run


def _read_optional_json(path: Path) -> dict | None:
    """An optional JSON file: None when absent; present but broken is an error, not a blank section."""
    if not path.exists():
        return None
    payload = _read_json(path, missing="not found")
    if not isinstance(payload, dict):
        raise InputError("must hold a JSON object", path=path)
    return payload


def _read_json(path: Path, missing: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(missing, path=path) from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})", path=path
        ) from None
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", path=path) from None
    except OSError as error:
        raise InputError(f"cannot be read ({error.strerror})", path=path) from None


def _read_predictions(folder: RunFolder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Outcome and predicted probability per method: predictions/<method>.parquet, plus the primary's."""
    files = {p.stem: p for p in sorted((folder.path / "predictions").glob("*.parquet"))}
    if (folder.path / "predictions.parquet").exists():
        files.setdefault(folder.primary, folder.path / "predictions.parquet")
    predictions = {}
    for method, path in files.items():
        try:
            frame = pl.read_parquet(path, columns=["boolean_value", "predicted_boolean_probability"])
        except Exception as error:  # a bad optional file costs its curve, not the whole report
            folder.problems.append(
                f"{path.relative_to(folder.path)} could not be read ({_first_line(error)})."
            )
            continue
        frame = frame.drop_nulls().filter(pl.col("predicted_boolean_probability").is_not_nan())
        if frame.height:
            predictions[method] = (
                frame["boolean_value"].to_numpy().astype(bool),
                frame["predicted_boolean_probability"].to_numpy().astype(float),
            )
    return predictions


def _read_logs(folder: RunFolder) -> tuple[list[tuple[str, pl.DataFrame]], int]:
    """Lightning CSV logs with a loss column: the main ones plus a few, and how many were left out."""
    logs = []
    for path in sorted((folder.path / "logs").glob("**/metrics.csv")):
        try:
            frame = pl.read_csv(path, infer_schema_length=None)
        except Exception as error:
            folder.problems.append(
                f"{path.relative_to(folder.path)} could not be read ({_first_line(error)})."
            )
            continue
        if plots.loss_columns(frame.columns):
            logs.append((_log_title(path), frame))
    main = [log for log in logs if not _SEED_OR_FRACTION.search(log[0])]
    others = sorted((log for log in logs if _SEED_OR_FRACTION.search(log[0])), key=_log_priority(folder))
    return main + others[:MAX_EXTRA_LOGS], max(len(others) - MAX_EXTRA_LOGS, 0)


def _log_priority(folder: RunFolder):
    """Sort key for per-point logs: the primary method's first, then the largest label fraction
    (the models the metrics table reports), then by name."""
    primary = folder.primary

    def key(log: tuple[str, pl.DataFrame]) -> tuple:
        name = log[0]
        fraction = re.search(r"-f([0-9.]+)-s", name)
        return (f"-{primary}-" not in name, -float(fraction.group(1)) if fraction else 0.0, name)

    return key


def _log_title(path: Path) -> str:
    """The run's folder name; CSVLogger's ``version_N`` level is skipped (N > 0 is kept as a suffix)."""
    parent = path.parent
    match = re.fullmatch(r"version_(\d+)", parent.name)
    if not match:
        return parent.name
    return parent.parent.name if match.group(1) == "0" else f"{parent.parent.name} ({parent.name})"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ----------------------------------------------------------------------------- small helpers


def _e(value: object) -> str:
    return html.escape(str(value))


def _dict(payload: Mapping | None, key: str) -> dict:
    value = (payload or {}).get(key)
    return value if isinstance(value, dict) else {}


def _points(efficiency: Mapping | None) -> list[dict]:
    points = (efficiency or {}).get("points")
    return [p for p in points if isinstance(p, dict)] if isinstance(points, list) else []


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method.replace("_", " ").capitalize())


def _digits(metric: str) -> int:
    """Brier and ECE live near zero, where two decimals would hide real differences."""
    return 3 if metric in ("brier", "ece") else 2


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _range(low: float, high: float, digits: int) -> str:
    return f"{_number(low, digits)}{EN_DASH}{_number(high, digits)}"


def format_estimate(estimate: Mapping | None, digits: int = 2) -> str:
    """``0.81 (0.74-0.87)`` (en dash); the value alone without an interval; a dash when undefined."""
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        return "—"
    value = _number(estimate["value"], digits)
    if estimate.get("low") is None or estimate.get("high") is None:
        return value
    return f"{value} ({_range(estimate['low'], estimate['high'], digits)})"


def _level(folder: RunFolder) -> str:
    level = (folder.metrics or {}).get("confidence_level") or 0.95
    return f"{float(level):.0%}"


def _test_counts(folder: RunFolder) -> tuple[int | None, int | None]:
    """Test patients and positives: metrics.json's count wins over run.json's."""
    test, data = _dict(folder.metrics, "test"), _dict(folder.run, "data")
    n = test.get("n", data.get("n_test"))
    positives = test.get("positives", data.get("test_positives"))
    return n, positives


def _is_binary(folder: RunFolder) -> bool:
    return folder.run["kind"] != "nextvisit" and _dict(folder.run, "task").get("type", "binary") == "binary"


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else _e(value)


# ----------------------------------------------------------------------------- the page


def render(folder: RunFolder) -> str:
    """The whole page as one string."""
    order = folder.methods()
    styles = plots.method_styles(order)
    styles = {m: styles[m] for m in order}  # colours fixed per method; listing order primary-first
    sections = [
        _summary_section(folder),
        _caveats_section(folder),
        _task_section(folder),
        _methods_section(folder, styles),
        _metrics_section(folder, styles),
        _protocol_section(folder),
        _ner_section(folder),
        _ecg_section(folder),
        _fuse_section(folder),
        _efficiency_section(folder, styles),
        _predictions_section(folder, styles),
        _training_section(folder),
        _config_section(folder),
    ]
    body = "\n".join(section for section in sections if section)
    return PAGE.format(
        title=_e(folder.run["title"]),
        meta=_meta_line(folder),
        css=CSS,
        body=body,
        footer=_footer(folder),
    )


def _meta_line(folder: RunFolder) -> str:
    run = folder.run
    parts = [f"{_e(run['kind'])} run"]
    if run.get("created"):
        parts.append(f"created {_e(_when(run['created']))}")
    if run.get("clinfm_version"):
        parts.append(f"clinfm {_e(run['clinfm_version'])}")
    return " · ".join(parts)


def _when(created: object) -> str:
    """ISO time as ``2026-11-22 01:40 UTC``; anything else as written."""
    try:
        moment = datetime.fromisoformat(str(created))
    except ValueError:
        return str(created)
    zone = " UTC" if moment.utcoffset() is not None and not moment.utcoffset() else ""
    return moment.strftime("%Y-%m-%d %H:%M") + zone


def _section(anchor: str, heading: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{heading}</h2>\n{content}\n</section>'


def _footer(folder: RunFolder) -> str:
    version = folder.run.get("clinfm_version")
    made = f"clinfm {_e(version)}" if version else "clinfm"
    return (
        f"Report written by {made} from the run folder <code>{_e(folder.path.name)}</code>. "
        "This page is self-contained: it loads nothing from the network, opens offline and prints as shown."
    )


# ----------------------------------------------------------------------------- summary and caveats


def _summary_section(folder: RunFolder) -> str:
    sentences = [KIND_INTROS.get(folder.run["kind"], "")]
    sentences += _headline_sentences(folder)
    efficiency = _efficiency_summary(folder)
    if efficiency:
        sentences.append(efficiency)
    if folder.run["kind"] == "pretrain":
        sentences.append(_pretrain_sentence(folder))
    text = " ".join(s for s in sentences if s)
    return f'<p class="summary">{text}</p>' if text else ""


def _headline_metric(folder: RunFolder) -> str | None:
    """The metric the summary leads with: the first of HEADLINE_ORDER the primary method has."""
    primary = _dict(_dict(folder.metrics, "methods"), folder.primary)
    present = [k for k, v in primary.items() if isinstance(v, Mapping) and v.get("value") is not None]
    preferred = [k for k in HEADLINE_ORDER if k in present]
    return (preferred or present or [None])[0]


def _headline_sentences(folder: RunFolder) -> list[str]:
    """'On 412 held-out patients (37 with the outcome), the pre-trained model reached AUROC 0.81 ...'."""
    metric = _headline_metric(folder)
    if metric is None:
        return []
    methods, level, digits = _dict(folder.metrics, "methods"), _level(folder), _digits(metric)
    label = metric_info(metric)["label"]
    primary = methods[folder.primary][metric]
    n, positives = _test_counts(folder)
    where = f"On {_count(n)} held-out patients" if n is not None else "On the held-out test patients"
    if positives is not None and _is_binary(folder):
        where += f" ({_count(positives)} with the outcome)"
    first = (
        f"{where}, {_e(_subject(folder.primary))} reached {_e(label)} {_ci_phrase(primary, digits, level)}."
    )
    rival = _best_other(methods, folder.primary, metric)
    if rival is None:
        return [first]
    other, estimate = rival
    second = (
        f"The best other method, {_e(method_label(other).lower())}, reached "
        f"{_ci_phrase(estimate, digits, level)}; {_overlap_clause(primary, estimate)}."
    )
    return [first, second]


def _subject(method: str) -> str:
    return "the pre-trained model" if method == "pretrained" else method_label(method).lower()


def _ci_phrase(estimate: Mapping, digits: int, level: str) -> str:
    value = _number(estimate["value"], digits)
    if estimate.get("low") is None or estimate.get("high") is None:
        return value
    return (
        f"{value} ({level} CI {_number(estimate['low'], digits)}{EN_DASH}{_number(estimate['high'], digits)})"
    )


def _best_other(methods: Mapping, primary: str, metric: str) -> tuple[str, Mapping] | None:
    """The best non-primary method on ``metric`` (None when there is none or no direction is known)."""
    higher = metric_info(metric)["higher_is_better"]
    candidates = [
        (m, scores[metric])
        for m, scores in methods.items()
        if m != primary
        and isinstance(scores, Mapping)
        and isinstance(scores.get(metric), Mapping)
        and scores[metric].get("value") is not None
    ]
    if not candidates or higher is None:
        return None
    pick = max if higher else min
    return pick(candidates, key=lambda item: item[1]["value"])


def _overlap_clause(a: Mapping, b: Mapping) -> str:
    """Plain words for whether two intervals overlap (a cautious reading, not a formal test)."""
    bounds = (a.get("low"), a.get("high"), b.get("low"), b.get("high"))
    if any(x is None for x in bounds):
        return "no intervals were computed, so the difference cannot be judged"
    if a["low"] <= b["high"] and b["low"] <= a["high"]:
        return "the two intervals overlap, so this test set cannot tell them apart with confidence"
    return "the two intervals do not overlap"


def _pretrain_sentence(folder: RunFolder) -> str:
    data = _dict(folder.run, "data")
    sentence = ""
    if data.get("n_train") is not None:
        sentence = f"It trained on {_count(data['n_train'])} patients."
    if folder.logs:
        trend = _loss_trend(folder.logs[0][1])
        if trend:
            sentence += f" {trend}"
    return sentence.strip()


def _loss_trend(frame: pl.DataFrame) -> str:
    """'The training loss went from 5.10 to 2.31 over 10 epochs.' from the first loss column."""
    column = plots.loss_columns(frame.columns)[0]
    values = frame[column].drop_nulls().drop_nans()
    if values.len() < 2:
        return ""
    span = ""
    if "epoch" in frame.columns and frame["epoch"].drop_nulls().n_unique() > 1:
        span = f" over {frame['epoch'].drop_nulls().n_unique()} epochs"
    return f"The {_e(column.replace('_', ' '))} went from {values[0]:.3g} to {values[-1]:.3g}{span}."


def _caveats_section(folder: RunFolder) -> str:
    notes = folder.run.get("notes") or []
    notes = [notes] if isinstance(notes, str) else notes
    items = [*_automatic_caveats(folder), *(_e(note) for note in notes)]
    items += [_e(problem) for problem in folder.problems]
    if not items:
        return ""
    listing = "\n".join(f"<li>{item}</li>" for item in items)
    return f'<section id="caveats" class="caveats">\n<h2>Caveats</h2>\n<ul>\n{listing}\n</ul>\n</section>'


def _automatic_caveats(folder: RunFolder) -> list[str]:
    caveats = []
    _, positives = _test_counts(folder)
    if _is_binary(folder) and isinstance(positives, int) and positives < FEW_POSITIVES:
        caveats.append(
            f"Only {positives} patients in the test set have the outcome: confidence intervals are wide, "
            "and differences between methods should be read with caution."
        )
    if folder.metrics is None and folder.run["kind"] in ("finetune", "nextvisit"):
        caveats.append("This run has no metrics.json, so there are no test-set results to show.")
    if any(_has_undefined(scores) for scores in _dict(folder.metrics, "methods").values()):
        caveats.append(
            "Some metrics could not be computed and are shown as —; AUROC, for example, needs patients "
            "both with and without the outcome."
        )
    return caveats


def _has_undefined(scores: object) -> bool:
    return isinstance(scores, Mapping) and any(
        not isinstance(e, Mapping) or e.get("value") is None for e in scores.values()
    )


# ----------------------------------------------------------------------------- task, cohort, methods


def _task_section(folder: RunFolder) -> str:
    task, data = _dict(folder.run, "task"), _dict(folder.run, "data")
    rows = []
    if task.get("description"):
        rows.append(("Task", _e(task["description"])))
    if task.get("name"):
        rows.append(("Task name", f"<code>{_e(task['name'])}</code>"))
    if task.get("type"):
        rows.append(("Outcome type", _e(task["type"])))
    for key, value in data.items():
        if isinstance(value, dict | list):
            continue
        shown = f"<code>{_e(value)}</code>" if key == "dataset" else _count(value)
        rows.append((DATA_LABELS.get(key, key.replace("_", " ").capitalize()), shown))
    n, positives = _test_counts(folder)
    if _is_binary(folder) and isinstance(n, int) and isinstance(positives, int) and n:
        rows.append(("Prevalence in the test set", f"{positives / n:.1%}"))
    if task.get("labels"):
        rows.append(("Labels file", f"<code>{_e(task['labels'])}</code>"))
    if not rows:
        return ""
    listing = "\n".join(f"<tr><th scope='row'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return _section("task", "Task and cohort", f'<table class="facts">\n{listing}\n</table>')


def _swatch(style: plots.Style) -> str:
    return f'<span class="swatch" style="background:{style.color}"></span>'


def _methods_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    described = _dict(folder.run, "methods")
    if not styles:
        return ""
    items = []
    for method, style in styles.items():
        text = described.get(method) or METHOD_DESCRIPTIONS.get(method, "")
        primary = ' <span class="tag">primary</span>' if method == folder.primary else ""
        items.append(f"<dt>{_swatch(style)}{_e(method_label(method))}{primary}</dt><dd>{_e(text)}</dd>")
    return _section("methods", "Methods compared", '<dl class="methods">\n' + "\n".join(items) + "\n</dl>")


# ----------------------------------------------------------------------------- test-set metrics


def _metrics_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    methods = _dict(folder.metrics, "methods")
    methods = {m: s for m, s in methods.items() if isinstance(s, Mapping)}
    if not methods:
        return ""
    keys = list(dict.fromkeys(k for scores in methods.values() for k in scores))
    order = [m for m in styles if m in methods]
    best = {key: _best_methods(methods, key) for key in keys}
    header = "".join(_metric_header(key) for key in keys)
    rows = []
    for method in order:
        cells = "".join(_metric_cell(methods[method].get(key), key, method in best[key]) for key in keys)
        rows.append(
            f"<tr><th scope='row'>{_swatch(styles[method])}{_e(method_label(method))}</th>{cells}</tr>"
        )
    caption = _metrics_caption(folder)
    table = (
        f'<table class="results">\n<caption>{caption}</caption>\n'
        f"<thead><tr><th>Method</th>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )
    return _section("results", "Test-set results", table + "\n" + _metric_legend(keys))


def _metrics_caption(folder: RunFolder) -> str:
    metrics = folder.metrics or {}
    n, _ = _test_counts(folder)
    resamples = metrics.get("n_bootstrap")
    how = f"bootstrap over {_count(resamples)} resamples of test patients" if resamples else "bootstrap"
    patients = f" on {_count(n)} test patients" if n is not None else ""
    return (
        f"Each cell: estimate{patients} ({_level(folder)} confidence interval, {how}). "
        "Best value per column in bold."
    )


def _best_methods(methods: Mapping[str, Mapping], key: str) -> set[str]:
    """Methods holding the best value at display precision (ties all bold); none if < 2 values."""
    higher = metric_info(key)["higher_is_better"]
    shown = {}
    for method, scores in methods.items():
        estimate = scores.get(key)
        if isinstance(estimate, Mapping) and estimate.get("value") is not None:
            shown[method] = round(float(estimate["value"]), _digits(key))
    if higher is None or len(shown) < 2:
        return set()
    target = max(shown.values()) if higher else min(shown.values())
    return {m for m, v in shown.items() if v == target}


def _metric_header(key: str) -> str:
    info = metric_info(key)
    arrow = {True: " ↑", False: " ↓"}.get(info["higher_is_better"], "")
    return f'<th><abbr title="{_e(info["description"])}">{_e(info["label"])}</abbr>{arrow}</th>'


def _metric_cell(estimate: object, key: str, bold: bool) -> str:
    text = _e(format_estimate(estimate if isinstance(estimate, Mapping) else None, _digits(key)))
    return f"<td><strong>{text}</strong></td>" if bold else f"<td>{text}</td>"


def _metric_legend(keys: Sequence[str]) -> str:
    """The metrics' meanings in print too, where hovering is not an option."""
    items = []
    for key in keys:
        info = metric_info(key)
        direction = {True: " Higher is better.", False: " Lower is better."}.get(info["higher_is_better"], "")
        items.append(f"<dt>{_e(info['label'])}</dt><dd>{_e(info['description'])}{direction}</dd>")
    return '<dl class="legend">\n' + "\n".join(items) + "\n</dl>"


# ----------------------------------------------------------------------------- label efficiency


def _efficiency_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    points = _points(folder.efficiency)
    names = _efficiency_metrics(folder.efficiency or {}, points)
    if not points or not names:
        return ""
    efficiency_styles = {m: s for m, s in styles.items() if any(p.get("method") == m for p in points)}
    labels = {m: method_label(m) for m in styles}
    svg = plots.efficiency_svg(
        points, names, {k: metric_info(k)["label"] for k in names}, efficiency_styles, labels
    )
    seeds = (folder.efficiency or {}).get("seeds") or []
    seeds_text = (
        f"{len(seeds)} training seed{'s' if len(seeds) != 1 else ''}" if seeds else "several training seeds"
    )
    intro = (
        "<p>Each method was trained on growing shares of the labelled training patients and scored on the "
        f"same test set. A line is the average over {seeds_text}; the shaded band is its {_level(folder)} "
        "confidence interval (bootstrap over test patients); faint dots are the individual seeds.</p>"
    )
    meetings = [(k, body) for k in names if (body := _meeting(folder, points, k))]
    notes = "".join(
        f"<p><strong>{_e(metric_info(k)['label'])}:</strong> {body[0].upper()}{body[1:]}</p>"
        for k, body in meetings
    )
    figure = f"<figure>{svg}<figcaption>Label-efficiency curves.</figcaption></figure>"
    table = _efficiency_table(points, names, efficiency_styles)
    return _section("efficiency", "Label efficiency", intro + "\n" + figure + "\n" + notes + "\n" + table)


def _protocol_section(folder: RunFolder, metric: str = "auroc") -> str:
    """Cross-site runs (methods named ``<embedding>/<protocol>``): embeddings by protocols at all
    the target's labels, and how many target labels each needs to match the best local model."""
    points = _points(folder.efficiency)
    methods = list(_dict(folder.run, "methods")) or folder.methods()  # as the run lists them
    if not points or not methods or not all("/" in m for m in methods):
        return ""
    embeddings = list(dict.fromkeys(m.split("/")[0] for m in methods))
    protocols = list(dict.fromkeys(m.split("/")[1] for m in methods))
    fractions = sorted({p["fraction"] for p in points if isinstance(p.get("fraction"), int | float)})
    if not fractions:
        return ""
    top = fractions[-1]
    local = [_estimate_at(points, f"{e}/local", top, metric) for e in embeddings]
    reference = max((e["value"] for e in local if e), default=None)
    rows = []
    for embedding in embeddings:
        cells = []
        for protocol in protocols:
            estimate = _estimate_at(points, f"{embedding}/{protocol}", top, metric)
            reached = _labels_to_reach(points, f"{embedding}/{protocol}", fractions, metric, reference)
            note = f"<br><small>{reached}</small>" if reached else ""
            cells.append(f"<td>{format_estimate(estimate, _digits(metric))}{note}</td>")
        rows.append(f"<tr><th scope='row'>{_e(embedding)}</th>{''.join(cells)}</tr>")
    header = "".join(f"<th>{_e(p.replace('_', ' '))}</th>" for p in protocols)
    caption = f"{_e(metric_info(metric)['label'])} at the target with all its training labels (CI)."
    if reference is not None:
        caption += (
            " Under each, the fewest target labels at which its point estimate reaches the best local "
            f"model's with all of them ({_number(reference, 3)}); see the intervals."
        )
    table = (
        f'<table class="results">\n<caption>{caption}</caption>\n'
        f"<thead><tr><th>Embedding</th>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )
    return _section("protocols", "Protocols across sites", table)


# ----------------------------------------------------------------------------- NER comparisons

#: (label, path into a model's scores, path to its bootstrap interval) of the NER table's columns:
#: the paper's sub-word scores first, then entity-level ones.
NER_COLUMNS = (
    ("BIO-strict macro F1", ("paper", "bio_strict", "macro", "f1"), ("intervals", "bio_strict_macro_f1")),
    (
        "BIO-strict weighted F1",
        ("paper", "bio_strict", "weighted", "f1"),
        ("intervals", "bio_strict_weighted_f1"),
    ),
    ("Token macro F1", ("paper", "token", "macro", "f1"), ("intervals", "token_macro_f1")),
    ("Token macro F1 without O", ("paper", "token", "macro_without_o", "f1"), None),
    ("Entity strict F1 (micro)", ("entity", "micro", "f1"), ("intervals", "entity_micro_f1")),
    ("Entity strict F1 (macro)", ("entity", "macro", "f1"), ("intervals", "entity_macro_f1")),
    ("Partial-match F1 (micro)", ("partial", "micro", "f1"), ("intervals", "partial_micro_f1")),
)
PAPER_COLUMNS = 4  # the first four are the paper's, on sub-words (or words for models without them)


def _dig(payload: object, path: Sequence[str]) -> object:
    for key in path:
        payload = payload.get(key) if isinstance(payload, Mapping) else None
    return payload


def _ner_section(folder: RunFolder) -> str:
    """An NER comparison: per model, the paper's sub-word scores (O included) beside entity-level
    strict and partial F1, with size and speed; then entity F1 per type."""
    rows = _dig(folder.metrics, ("ner", "models"))
    if not isinstance(rows, list) or not rows:
        return ""
    header = "".join(f"<th>{_e(label)}</th>" for label, _, _ in NER_COLUMNS)
    body = []
    for row in rows:
        scores = row.get("scores") or {}
        unit = "" if scores.get("paper_unit") == "subword" else " <small>(words)</small>"
        cells = "".join(
            f"<td>{_ner_cell(scores, path, interval)}{unit if i < PAPER_COLUMNS else ''}</td>"
            for i, (_, path, interval) in enumerate(NER_COLUMNS)
        )
        speed = _number(scores.get("sentences_per_second"), 0)
        body.append(
            f"<tr><th scope='row'>{_e(row.get('label'))}</th><td>{_count(row.get('parameters'))}</td>"
            f"<td>{_count(row.get('train_sentences'))}</td><td>{_number(row.get('train_seconds'), 0)}</td>"
            f"<td>{speed}</td>{cells}</tr>"
        )
    caption = (
        "The paper's scores are scikit-learn's over sub-word tokens with O included (BIO-strict: B and I "
        "distinct; token: merged); entity scores are seqeval strict over words; partial counts a predicted "
        "entity right when it overlaps a gold one of its type. Models without sub-words are scored on words. "
        "In brackets: bootstrap 95% intervals, resampling test documents."
    )
    table = (
        f'<table class="results">\n<caption>{_e(caption)}</caption>\n<thead><tr><th>Model</th>'
        "<th>Parameters</th><th>Training sentences</th><th>Training s</th><th>Tagged sentences/s</th>"
        f"{header}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
    )
    return _section("ner", "Taggers compared", table + _ner_types_table(rows))


def _ecg_section(folder: RunFolder) -> str:
    """ECG probe curves (one panel per label) and their table, with PCLR's mean relative gains."""
    curves = _dig(folder.metrics, ("ecg", "probes"))
    if not isinstance(curves, list) or not curves:
        return ""
    methods = list(dict.fromkeys(c.get("method") for c in curves))
    order = [m for m in ECG_METHODS if m in methods]
    order += [m for m in methods if m not in order]
    svg = plots.probe_svg(curves, plots.ordered_styles(order), {m: method_label(m) for m in order})
    caption = (
        "Test AUROC (binary labels) or R\u00b2 (numbers) against the number of labelled training patients; "
        "bands and brackets are bootstrap 95% intervals resampling test patients; each point averages the "
        "test predictions of several training draws."
    )
    header = "".join(f"<th>{_e(method_label(m))}</th>" for m in order)
    body = []
    for label in dict.fromkeys(c.get("label") for c in curves):
        by_method = {
            c["method"]: {p.get("n_train_patients"): p for p in c.get("points", [])}
            for c in curves
            if c.get("label") == label
        }
        sizes = sorted({n for points in by_method.values() for n in points if n is not None})
        for size in sizes:
            cells = "".join(f"<td>{format_estimate(by_method.get(m, {}).get(size), 3)}</td>" for m in order)
            body.append(f"<tr><th scope='row'>{_e(label)}</th><td>{_count(size)}</td>{cells}</tr>")
    table = (
        f'<table class="results">\n<caption>{_e(caption)}</caption>\n<thead><tr><th>Label</th>'
        f"<th>Training patients</th>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )
    gains = _dig(folder.metrics, ("ecg", "gains")) or {}
    gain_text = "; ".join(
        f"{_e(method_label(m))} {g['mean_relative_gain']:+.0%} over {g['points']} points"
        for m, g in gains.items()
        if isinstance(g, Mapping) and g.get("mean_relative_gain") is not None
    )
    note = (
        f"<p>PCLR's mean relative gain ((PCLR \u2212 other) / |other|, over labels and sizes): {gain_text}. "
        "The paper reports +51% over scratch without naming its metric; read these with the intervals.</p>"
        if gain_text
        else ""
    )
    figure = f"<figure>{svg}<figcaption>Probe curves.</figcaption></figure>"
    return _section("ecg", "Representations probed", f"{figure}\n{note}{table}")


def _fuse_models(metrics: Mapping | None) -> dict[str, Mapping]:
    """label -> held-out scores: every ablation variant, or the one model of a train/evaluate run."""
    variants = _dig(metrics, ("variants",))
    if isinstance(variants, Mapping):
        return {
            v.get("label", k): v.get("held_out", {}) for k, v in variants.items() if isinstance(v, Mapping)
        }
    scores = {k: v for k, v in (metrics or {}).items() if k != "data" and isinstance(v, Mapping)}
    return {f"Model ({split})": v for split, v in scores.items() if "f1_micro" in v}


def _fuse_section(folder: RunFolder) -> str:
    """Multi-label scores per model (F1 at tuned thresholds, AUROC) and each disease's AUROC."""
    if not folder.run["kind"].startswith("fuse-"):
        return ""
    models = _fuse_models(folder.metrics)
    if not models:
        return ""
    overall = [("f1_micro", "Micro F1"), ("f1_macro", "Macro F1"), ("auroc_macro", "Macro AUROC")]
    rows = [
        f"<tr><th scope='row'>{_e(label)}</th>"
        + "".join(f"<td>{format_estimate(scores.get(key), 3)}</td>" for key, _ in overall)
        + "</tr>"
        for label, scores in models.items()
    ]
    head = "".join(f"<th>{name}</th>" for _, name in overall)
    first = next(iter(models.values()))
    samples = first.get("samples")
    caption = (
        f"Scores on {_count(samples)} samples not used for training; F1 at each disease's threshold chosen "
        "on the tuning split; brackets are bootstrap 95% intervals resampling patients."
    )
    table = (
        f'<table class="results">\n<caption>{_e(caption)}</caption>\n<thead><tr><th>Model</th>{head}'
        "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    )
    diseases = list(_dict(first, "diseases"))
    head = "".join(f"<th>{_e(label)}</th>" for label in models)
    rows = []
    for disease in diseases:
        positives = _dig(first, ("diseases", disease, "positives"))
        cells = "".join(
            f"<td>{format_estimate(_dig(scores, ('diseases', disease, 'auroc')), 3)}</td>"
            for scores in models.values()
        )
        rows.append(f"<tr><th scope='row'>{_e(disease)}</th><td>{_count(positives)}</td>{cells}</tr>")
    per_disease = (
        '<table class="results">\n<caption>AUROC per disease.</caption>\n'
        f"<thead><tr><th>Disease</th><th>Positives</th>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )
    return _section("fusion", "Lab + note fusion", f"{table}\n{per_disease}")


def _ner_cell(scores: Mapping, path: Sequence[str], interval: Sequence[str] | None) -> str:
    estimate = _dig(scores, interval) if interval else None
    return format_estimate(estimate, 3) if isinstance(estimate, Mapping) else _number(_dig(scores, path), 3)


def _ner_types_table(rows: Sequence[Mapping]) -> str:
    per_model = {row.get("label"): _dig(row, ("scores", "entity", "per_type")) or {} for row in rows}
    types = sorted({t for scores in per_model.values() for t in scores})
    if not types:
        return ""
    header = "".join(f"<th>{_e(t)}</th>" for t in types)
    body = []
    for label, scores in per_model.items():
        cells = "".join(f"<td>{_number(_dig(scores, (t, 'f1')), 3)}</td>" for t in types)
        body.append(f"<tr><th scope='row'>{_e(label)}</th>{cells}</tr>")
    return (
        '\n<table class="results">\n<caption>Entity-level strict F1 per type.</caption>\n'
        f"<thead><tr><th>Model</th>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def _labels_to_reach(points, method: str, fractions, metric: str, reference: float | None) -> str:
    """Escaped HTML: where the method's point estimate first reaches ``reference``."""
    if reference is None:
        return ""
    measured = [e for f in fractions if (e := _estimate_at(points, method, f, metric))]
    for estimate in measured:
        if estimate["value"] >= reference:
            if method.endswith("/shared"):
                return "reaches local with no target label"
            n = estimate.get("n_train")
            return f"reaches local from {_count(n)} labels" if n is not None else "reaches local"
    return "does not reach local" if measured else ""


def _efficiency_metrics(efficiency: Mapping, points: Sequence[Mapping]) -> list[str]:
    names = efficiency.get("metric_names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    return list(dict.fromkeys(k for p in points for k in (p.get("metrics") or {})))


def _estimate_at(points: Sequence[Mapping], method: str, fraction: float, metric: str) -> Mapping | None:
    for point in points:
        if point.get("method") == method and point.get("fraction") == fraction:
            estimate = (point.get("metrics") or {}).get(metric)
            if isinstance(estimate, Mapping) and estimate.get("value") is not None:
                return {**estimate, "n_train": point.get("n_train")}
    return None


def _meeting(folder: RunFolder, points: Sequence[Mapping], metric: str) -> str:
    """Where the best baseline first reaches the primary method's interval, computed from the data.

    A clause starting in lower case ("the best baseline (...) comes within ..."), or "" when there
    is nothing to compare.
    """
    higher = metric_info(metric)["higher_is_better"]
    primary = folder.primary
    baselines = sorted({p.get("method") for p in points if p.get("method") not in (primary, None)})
    fractions = sorted({p["fraction"] for p in points if isinstance(p.get("fraction"), int | float)})
    if higher is None or not baselines:
        return ""
    who, digits = _e(_subject(primary)), _digits(metric)
    compared = 0
    for fraction in fractions:
        ours = _estimate_at(points, primary, fraction, metric)
        theirs = [(m, e) for m in baselines if (e := _estimate_at(points, m, fraction, metric))]
        if ours is None or not theirs:
            continue
        compared += 1
        best, estimate = (max if higher else min)(theirs, key=lambda item: item[1]["value"])
        low = ours["low"] if ours.get("low") is not None else ours["value"]
        high = ours["high"] if ours.get("high") is not None else ours["value"]
        reached = estimate["value"] >= low if higher else estimate["value"] <= high
        if reached:
            inside = low <= estimate["value"] <= high
            verb = "comes within" if inside else "overtakes"
            size = f" ({_count(ours['n_train'])} patients)" if ours.get("n_train") else ""
            first = " — already at the smallest share tested" if compared == 1 else ""
            return (
                f"the best baseline ({_e(method_label(best).lower())}, "
                f"{_number(estimate['value'], digits)}) {verb} {who}'s {_level(folder)} interval "
                f"({_range(low, high, digits)}) at {fraction:.0%} of the training labels"
                f"{size}{first}."
            )
    if not compared:
        return ""
    return (
        f"{who} and the best baseline do not meet in the range tested: at every "
        f"share up to {fractions[-1]:.0%}, the best baseline stays worse than {who}'s whole "
        f"{_level(folder)} interval."
    )


def _efficiency_summary(folder: RunFolder) -> str:
    """The meeting point of the first efficiency metric, for the summary paragraph."""
    points = _points(folder.efficiency)
    names = _efficiency_metrics(folder.efficiency or {}, points)
    if not points or not names:
        return ""
    body = _meeting(folder, points, names[0])
    return (
        f"In the label-efficiency experiment ({_e(metric_info(names[0])['label'])}), {body}" if body else ""
    )


def _efficiency_table(
    points: Sequence[Mapping], names: Sequence[str], styles: Mapping[str, plots.Style]
) -> str:
    """The numbers behind the curves, folded away: exact values for whoever needs to cite them."""
    fractions = sorted({p["fraction"] for p in points if isinstance(p.get("fraction"), int | float)})
    header = "".join(f"<th>{f:.0%}</th>" for f in fractions)
    blocks = []
    for metric in names:
        rows = []
        for method in styles:
            cells = "".join(
                f"<td>{_e(format_estimate(_estimate_at(points, method, f, metric), _digits(metric)))}</td>"
                for f in fractions
            )
            rows.append(f"<tr><th scope='row'>{_e(method_label(method))}</th>{cells}</tr>")
        blocks.append(
            f'<table class="results"><caption>{_e(metric_info(metric)["label"])} by share of training labels'
            f"</caption><thead><tr><th>Method</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "<details><summary>Numbers behind the curves</summary>\n" + "\n".join(blocks) + "\n</details>"


# ----------------------------------------------------------------------------- predictions


def _predictions_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    predictions = {m: folder.predictions[m] for m in styles if m in folder.predictions}
    if not predictions:
        return ""
    labels = {m: method_label(m) for m in predictions}
    y = predictions.get(folder.primary, next(iter(predictions.values())))[0]
    prevalence = float(y.mean())
    one_class = [method_label(m) for m, (y_m, _) in predictions.items() if y_m.all() or not y_m.any()]
    text = (
        f"<p>In the test predictions, {int(y.sum()):,} of {len(y):,} patients ({prevalence:.1%}) had the "
        "outcome. <strong>Left:</strong> for every possible risk threshold, the share of patients with the "
        "outcome who are flagged (sensitivity) against the share without it who are flagged; curves nearer "
        "the top-left corner discriminate better. <strong>Right:</strong> patients grouped into 10 bins of "
        "predicted risk; each point compares the mean predicted risk in a bin with how often the outcome "
        "happened there. Points on the dotted diagonal mean the risks can be read at face value; a point's "
        "area shows how many patients fall in its bin.</p>"
    )
    if one_class:
        text += (
            f"<p>No ROC curve for {_e(', '.join(one_class))}: its test predictions hold only one outcome.</p>"
        )
    roc = plots.roc_svg(predictions, styles, labels)
    calibration = plots.calibration_svg(predictions, styles, labels, prevalence)
    figures = (
        f'<div class="figures"><figure>{roc}<figcaption>ROC curves.</figcaption></figure>'
        f"<figure>{calibration}<figcaption>Calibration (reliability) curves.</figcaption></figure></div>"
    )
    return _section("predictions", "Discrimination and calibration", text + "\n" + figures)


# ----------------------------------------------------------------------------- training logs and config


def _training_section(folder: RunFolder) -> str:
    if not folder.logs:
        return ""
    text = (
        "<p>Loss per epoch, from the training logs (each panel is one trained model). A validation loss "
        "that rises while the training loss keeps falling is the usual sign of over-fitting.</p>"
    )
    svg = plots.loss_svg(folder.logs)
    figure = f"<figure>{svg}<figcaption>Training curves.</figcaption></figure>"
    left_out = ""
    if folder.logs_left_out:
        left_out = (
            f"<p>{folder.logs_left_out} more training logs (one per share of labels and seed) are not shown; "
            "they are in the run's <code>logs/</code> folder.</p>"
        )
    return _section("training", "Training curves", text + "\n" + figure + "\n" + left_out)


def _config_section(folder: RunFolder) -> str:
    config = folder.run.get("config")
    if config is None:
        return ""
    pretty = json.dumps(config, indent=2, ensure_ascii=False, default=str)
    return _section(
        "config",
        "Configuration",
        "<p>The full resolved configuration of this run, to reproduce it exactly.</p>\n"
        f"<details><summary>Show configuration (JSON)</summary>\n<pre>{_e(pretty)}</pre>\n</details>",
    )


# ----------------------------------------------------------------------------- template

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="meta">{meta}</p>
</header>
<main>
{body}
</main>
<footer>{footer}</footer>
</body>
</html>
"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #222; line-height: 1.5; max-width: 64rem; margin: 2rem auto; padding: 0 1.2rem; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
.meta { color: #666; margin-top: 0; }
.summary { font-size: 1.08rem; background: #f4f7fa; border-left: 4px solid #0072B2; padding: 0.8rem 1rem; }
.caveats { background: #fff7f0; border-left: 4px solid #D55E00; padding: 0.1rem 1rem 0.4rem; }
.caveats h2 { border: none; margin-top: 0.8rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.88rem; padding-top: 0.4rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
.results td { text-align: right; white-space: nowrap; }
.results th { text-align: left; }
.facts th { text-align: left; font-weight: 600; color: #444; }
abbr[title] { text-decoration: underline dotted; cursor: help; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.45em;
          -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.tag { font-size: 0.75rem; color: #0072B2; border: 1px solid #0072B2; border-radius: 3px; padding: 0 0.3em;
       margin-left: 0.4em; }
dl.methods dt, dl.legend dt { font-weight: 600; margin-top: 0.5rem; }
dl.methods dd, dl.legend dd { margin-left: 1.3rem; }
dl.legend { font-size: 0.9rem; color: #444; }
figure { margin: 1rem 0; }
figcaption { color: #555; font-size: 0.88rem; }
svg { max-width: 100%; height: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.figures figure { flex: 1 1 22rem; margin: 0; }
details { margin: 0.8rem 0; }
summary { cursor: pointer; color: #0072B2; }
pre { background: #f6f8fa; padding: 0.8rem; overflow: auto; font-size: 0.82rem; }
footer { margin-top: 3rem; color: #777; font-size: 0.85rem; border-top: 1px solid #ddd; padding-top: 0.6rem; }
@media print {
  body { max-width: none; margin: 0; font-size: 10pt; }
  .summary, .caveats, pre { background: none; }
  figure, table, .caveats { break-inside: avoid; }
  pre { white-space: pre-wrap; }
}
"""
