"""The blocks a system's report section is built from: headline, caveats, method list, metric table,
label-efficiency curves, ROC and calibration, training curves and the data-processing details.

Every block takes the :class:`~clinfm.report.folder.RunFolder` and returns HTML as a plain ``str``
("" when the run has nothing for it), with every string from the run's files escaped here. The
page marks the finished HTML safe once, where it enters the template; blocks never do, so a block
cannot smuggle unescaped text past that boundary.

Systems name their methods through :func:`add_method_labels` (run when their report module is
imported), so shared blocks can write "Gradient boosting" or "PCLR" without knowing any system.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from clinfm.evaluate.metrics import BCA, FIXED_THRESHOLD, PERCENTILE_WIDENED, metric_info
from clinfm.report import plots
from clinfm.report.folder import RunFolder, dict_at, efficiency_points

if TYPE_CHECKING:
    import polars as pl

EN_DASH = "\u2013"  # intervals read "0.74 to 0.87" with an en dash, as in print
HEADLINE_ORDER = ("auroc", "macro_auroc", "recall@10", "recall@5", "recall@30", "auprc", "f1_micro", "f1")
DATA_LABELS = {
    "dataset": "Dataset",
    "n_train": "Training patients",
    "n_tuning": "Tuning (validation) patients",
    "n_test": "Test patients",
    "test_positives": "Test patients with the outcome",
}
WIDENED_MARK = "\u2020"  # a dagger after an interval BCa could not hold: a widened percentile one
FEW_POSITIVES = 20  # below this, bootstrap intervals on AUROC and friends are too wide to compare methods


# ----------------------------------------------------------------------------- method names and colours

_METHOD_LABELS: dict[str, str] = {}


def add_method_labels(labels: Mapping[str, str]) -> None:
    """A system's display names for its methods (``{"pclr": "PCLR"}``), used on every page after."""
    _METHOD_LABELS.update(labels)


def method_label(method: str) -> str:
    """A method's display name: a system's own label, else readable words (never a bare id)."""
    return plots.display_name(method, _METHOD_LABELS)


def method_labels() -> dict[str, str]:
    """Every display name the systems gave (for figures that name runs, such as training curves)."""
    return dict(_METHOD_LABELS)


def method_subject(method: str) -> str:
    """The method as the subject of a sentence: 'the pre-trained model reached ...'."""
    return "the pre-trained model" if method == "pretrained" else method_label(method).lower()


def method_styles(folder: RunFolder) -> dict[str, plots.Style]:
    """Each method's colour and line, fixed per method; listed primary first."""
    order = folder.methods()
    styles = plots.method_styles(order)
    return {m: styles[m] for m in order}


def swatch(style: plots.Style) -> str:
    return f'<span class="swatch" style="background:{style.color}"></span>'


# ----------------------------------------------------------------------------- HTML pieces


def escape(value: object) -> str:
    return html.escape(str(value))


def join(*parts: str) -> str:
    """The non-empty parts, one after another."""
    return "\n".join(part for part in parts if part)


def section(anchor: str, heading: str, content: str, level: int = 2) -> str:
    return f'<section id="{anchor}">\n<h{level}>{heading}</h{level}>\n{content}\n</section>'


def table(rows: Sequence[str], head: str = "", caption: str = "", css_class: str = "results") -> str:
    """A table in a horizontal scroller, so a wide one scrolls instead of pushing the page sideways.

    ``rows`` are whole ``<tr>`` rows, ``head`` the header row's cells and ``caption`` its text, all
    HTML (escaped by the caller).
    """
    parts = [f'<table class="{css_class}">']
    if caption:
        parts.append(f"<caption>{caption}</caption>")
    if head:
        parts.append(f"<thead><tr>{head}</tr></thead>")
    parts += ["<tbody>", *rows, "</tbody>", "</table>"]
    return '<div class="table-scroll">\n' + "\n".join(parts) + "\n</div>"


def row(header: str, cells: str) -> str:
    """A body row: its header cell (HTML) and its ``<td>`` cells."""
    return f"<tr><th scope='row'>{header}</th>{cells}</tr>"


def figure(svg: str, caption: str) -> str:
    """A figure with its caption; nothing at all when there is nothing to draw (never an empty plot)."""
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>" if svg else ""


# ----------------------------------------------------------------------------- numbers


def digits(metric: str) -> int:
    """Brier and ECE live near zero, where two decimals would hide real differences."""
    return 3 if metric in ("brier", "ece") else 2


def number(value: float | None, places: int = 2) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def value_range(low: float, high: float, places: int) -> str:
    return f"{number(low, places)}{EN_DASH}{number(high, places)}"


def format_estimate(estimate: Mapping | None, places: int = 2) -> str:
    """``0.81 (0.74-0.87)`` (en dash); the value alone without an interval; a dash when undefined."""
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        return "—"
    value = number(estimate["value"], places)
    if estimate.get("low") is None or estimate.get("high") is None:
        return value
    return f"{value} ({value_range(estimate['low'], estimate['high'], places)})"


def count(value: object) -> str:
    """A count with thousands separators; anything else escaped as written."""
    return f"{value:,}" if isinstance(value, int) else escape(value)


def confidence_level(folder: RunFolder) -> str:
    level = (folder.metrics or {}).get("confidence_level") or 0.95
    return f"{float(level):.0%}"


def test_counts(folder: RunFolder) -> tuple[int | None, int | None]:
    """Test patients and positives: metrics.json's count wins over run.json's."""
    test, data = dict_at(folder.metrics, "test"), dict_at(folder.run, "data")
    n = test.get("n", data.get("n_test"))
    positives = test.get("positives", data.get("test_positives"))
    return n, positives


def too_few_to_compare(positives: int | None, n: int | None, minimum: int) -> str | None:
    """Why a binary test set cannot rank methods, as the headline says it; None when it can.

    With fewer than ``minimum`` patients in either class an AUROC interval spans most of [0, 1], so
    no method is named better and nothing is drawn as if it could be read.
    """
    if positives is None or n is None:
        return None
    if positives < minimum:
        noun = "positive" if positives == 1 else "positives"
        return f"cannot be evaluated: {count(positives)} {noun} in the test set (at least {minimum} needed)"
    if n - positives < minimum:
        negatives = count(n - positives)
        return (
            f"cannot be evaluated: {negatives} test patients without the outcome (at least {minimum} needed)"
        )
    return None


def unevaluable(folder: RunFolder) -> str | None:
    """:func:`too_few_to_compare` for this run's test set (binary tasks only)."""
    if not is_binary(folder):
        return None
    n, positives = test_counts(folder)
    return too_few_to_compare(positives, n, folder.min_class_patients)


def is_binary(folder: RunFolder) -> bool:
    """A yes/no outcome, where 'patients with the outcome' and prevalence mean something."""
    return dict_at(folder.run, "task").get("type", "binary") == "binary"


# ----------------------------------------------------------------------------- headline


def headline(folder: RunFolder, intro: str, *more: str) -> str:
    """The one plain-English paragraph the page opens with: what the run did (``intro``), how the
    primary method did against the best other one, where the label-efficiency curves meet, then
    whatever the system adds (``more``)."""
    sentences = [intro, *_result_sentences(folder), _efficiency_summary(folder), *more]
    return " ".join(s for s in sentences if s)


def _headline_metric(folder: RunFolder) -> str | None:
    """The metric the headline leads with: the first of HEADLINE_ORDER the primary method has."""
    primary = dict_at(dict_at(folder.metrics, "methods"), folder.primary)
    present = [k for k, v in primary.items() if isinstance(v, Mapping) and v.get("value") is not None]
    preferred = [k for k in HEADLINE_ORDER if k in present]
    return (preferred or present or [None])[0]


def _result_sentences(folder: RunFolder) -> list[str]:
    """'On 412 held-out patients (37 with the outcome), the pre-trained model reached AUROC 0.81 ...'."""
    metric = _headline_metric(folder)
    if metric is None:
        return []
    reason = unevaluable(folder)
    if reason is not None:
        return [f"This comparison {escape(reason)}, so no method is named better and no curve is drawn."]
    methods, level, places = dict_at(folder.metrics, "methods"), confidence_level(folder), digits(metric)
    label = metric_info(metric)["label"]
    primary = methods[folder.primary][metric]
    n, positives = test_counts(folder)
    where = f"On {count(n)} held-out patients" if n is not None else "On the held-out test patients"
    if positives is not None and is_binary(folder):
        where += f" ({count(positives)} with the outcome)"
    subject = escape(method_subject(folder.primary))
    first = f"{where}, {subject} reached {escape(label)} {ci_phrase(primary, places, level)}"
    first += f" ({escape(threshold_text(primary))})." if primary.get("threshold") is not None else "."
    rival = _best_other(methods, folder.primary, metric)
    if rival is None:
        return [first]
    other, estimate = rival
    second = (
        f"The best other method, {escape(method_label(other).lower())}, reached "
        f"{ci_phrase(estimate, places, level)}; {overlap_clause(primary, estimate)}."
    )
    return [first, second]


def ci_phrase(estimate: Mapping, places: int, level: str) -> str:
    """'0.81 (95% CI 0.74 to 0.87)' (an en dash for "to"); the value alone without an interval;
    ``level`` "" drops the "95% CI" prefix."""
    value = number(estimate["value"], places)
    if estimate.get("low") is None or estimate.get("high") is None:
        return value
    prefix = f"{level} CI " if level else ""
    return f"{value} ({prefix}{value_range(estimate['low'], estimate['high'], places)})"


def intervals_overlap(a: Mapping, b: Mapping) -> bool | None:
    """Whether two estimates' intervals overlap (a cautious reading, not a formal test); None when
    either has none. Reports name a method better only when this is False."""
    bounds = (a.get("low"), a.get("high"), b.get("low"), b.get("high"))
    if any(x is None for x in bounds):
        return None
    return a["low"] <= b["high"] and b["low"] <= a["high"]


def overlap_clause(a: Mapping, b: Mapping) -> str:
    """Plain words for :func:`intervals_overlap`."""
    overlapping = intervals_overlap(a, b)
    if overlapping is None:
        return "no intervals were computed, so the difference cannot be judged"
    if overlapping:
        return "the two intervals overlap, so this test set cannot tell them apart with confidence"
    return "the two intervals do not overlap"


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


def verdict(a: Mapping, b: Mapping, name_a: str, name_b: str) -> str:
    """Which of two estimates is better, in words: only when their intervals do not overlap (higher
    is better); otherwise that neither is named better, and why."""
    overlapping = intervals_overlap(a, b)
    if overlapping is None:
        return "no intervals were computed, so neither is named better"
    if overlapping:
        return "the intervals overlap, so neither is named better"
    better, worse = (name_a, name_b) if a["value"] > b["value"] else (name_b, name_a)
    return f"the intervals do not overlap: {better} did better than {worse}"


def training_sentence(folder: RunFolder) -> str:
    """'It trained on 20,000 patients. The training loss went from 5.1 to 2.3 over 10 epochs.'"""
    data = dict_at(folder.run, "data")
    sentence = ""
    if data.get("n_train") is not None:
        sentence = f"It trained on {count(data['n_train'])} patients."
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
    return f"The {escape(column.replace('_', ' '))} went from {values[0]:.3g} to {values[-1]:.3g}{span}."


# ----------------------------------------------------------------------------- caveats


def caveats(folder: RunFolder, *more: str, pretrained_once: bool = False) -> list[str]:
    """What a reader must keep in mind before trusting a number, as plain text (the page escapes it):
    the automatic warnings, then the system's (``more``), then run.json's ``caveats`` (a writer's own
    warnings). run.json's ``notes`` say how the run was done, a log rather than a warning: they go to
    the folded Data processing (:func:`processing`). ``pretrained_once``: the methods build on one
    pre-training run, which the seeds caveat says too."""
    own = folder.run.get("caveats") or []
    own = [own] if isinstance(own, str) else own
    found = [*_automatic_caveats(folder)]
    seeds = seeds_caveat(folder, pretrained_once)
    if seeds:
        found.append(seeds)
    found += threshold_caveats(dict_at(folder.metrics, "methods"))
    return [*found, *more, *(str(caveat) for caveat in own)]


def run_notes(folder: RunFolder) -> list[str]:
    """run.json's ``notes``: how the run was done, shown in Data processing."""
    notes = folder.run.get("notes") or []
    return [notes] if isinstance(notes, str) else [str(note) for note in notes]


def run_seeds(folder: RunFolder) -> list | None:
    """The training seeds the run names: metrics.json's, else efficiency.json's, else its config's."""
    for source in (folder.metrics, folder.efficiency, dict_at(folder.run, "config")):
        seeds = (source or {}).get("seeds")
        if isinstance(seeds, list) and seeds:
            return seeds
    return None


def seeds_caveat(folder: RunFolder, pretrained_once: bool = False) -> str:
    """'The confidence intervals cover test-patient sampling only, not pre-training or training seeds
    (3 seeds were run; pre-training once).' Only where the run has intervals and names its seeds."""
    seeds = run_seeds(folder)
    has_intervals = any(e.get("low") is not None for e in _estimates(folder)) or efficiency_points(
        folder.efficiency
    )
    if not seeds or not has_intervals:
        return ""
    what = "pre-training or training seeds" if pretrained_once else "training seeds"
    ran = f"{len(seeds)} seed{'s were' if len(seeds) != 1 else ' was'} run"
    if pretrained_once:
        ran += "; pre-training once"
    spread = (
        "how much the results move from one training run to another is not in them"
        if len(seeds) > 1
        else "another training run could land elsewhere"
    )
    return f"The confidence intervals cover test-patient sampling only, not {what} ({ran}): {spread}."


def threshold_caveats(methods: Mapping[str, object]) -> list[str]:
    """A thresholded metric (F1) whose threshold fell back to 0.5 instead of being tuned, per metric:
    'F1 of gradient boosting uses 0.5 by default because the tuning set lacks a class, ...'."""
    found = []
    scored = {m: s for m, s in methods.items() if isinstance(s, Mapping)}
    for key in threshold_sources(scored):
        untuned = {}
        for method, scores in scored.items():
            estimate = scores.get(key)
            if isinstance(estimate, Mapping) and estimate.get("threshold") is not None:
                source = str(estimate.get("threshold_source") or "")
                if not all(_is_tuned(part) for part in source.split("; ")):
                    untuned[method] = source
        if not untuned:
            continue
        label = metric_info(key)["label"]
        whom = ", ".join(method_label(m).lower() for m in untuned)
        reasons = "; ".join(dict.fromkeys(untuned.values()))
        if len(untuned) == len([s for s in scored.values() if isinstance(s.get(key), Mapping)]):
            found.append(
                f"{label} uses a threshold that was not tuned ({reasons}); "
                "a threshold chosen on a tuning set would usually give a higher F1."
            )
        else:
            found.append(
                f"{label} of {whom} uses the threshold 0.5 instead of one tuned like the other models' "
                f"({reasons}), so that {label} is not directly comparable with theirs."
            )
    return found


def classes_without_positives_caveat(labels: Sequence[str], what: str = "diagnoses") -> str:
    """For multi-label tasks: 'No test patient has 2 of the diagnoses (asthma, copd): their AUROC and
    F1 are undefined and left out of any average.' ("" when every class has positives)."""
    if not labels:
        return ""
    names = ", ".join(str(label) for label in labels)
    return (
        f"No test patient has {len(labels)} of the {what} ({names}): their AUROC and F1 cannot be computed "
        "and are left out of any average over them."
    )


def _automatic_caveats(folder: RunFolder) -> list[str]:
    found = []
    _, positives = test_counts(folder)
    if is_binary(folder) and isinstance(positives, int) and positives < FEW_POSITIVES:
        found.append(
            f"Only {positives} patients in the test set have the outcome: confidence intervals are wide, "
            "and differences between methods should be read with caution."
        )
    if any(_has_undefined(scores) for scores in dict_at(folder.metrics, "methods").values()):
        found.append(
            "Some metrics could not be computed and are shown as —; AUROC, for example, needs patients "
            "both with and without the outcome."
        )
    if folder.problems:
        n = len(folder.problems)
        found.append(
            f"{n} optional {'file' if n == 1 else 'files'} of this run could not be read and "
            f"{'is' if n == 1 else 'are'} left out of this page; Data processing, at the end, says which "
            "and why."
        )
    return found


def _has_undefined(scores: object) -> bool:
    return isinstance(scores, Mapping) and any(
        not isinstance(e, Mapping) or e.get("value") is None for e in scores.values()
    )


# ----------------------------------------------------------------------------- methods and test-set metrics


def methods_section(
    folder: RunFolder, styles: Mapping[str, plots.Style], descriptions: Mapping[str, str]
) -> str:
    """Each method with its colour and what it is: run.json's words first, else the system's."""
    if not styles:
        return ""
    described = dict_at(folder.run, "methods")
    items = []
    for method, style in styles.items():
        text = described.get(method) or descriptions.get(method, "")
        primary = ' <span class="tag">primary</span>' if method == folder.primary else ""
        items.append(
            f"<dt>{swatch(style)}{escape(method_label(method))}{primary}</dt><dd>{escape(text)}</dd>"
        )
    return section("methods", "Methods compared", '<dl class="methods">\n' + "\n".join(items) + "\n</dl>")


def metrics_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    """metrics.json's methods by metrics, each cell an estimate with its interval, the best in bold;
    under it, each thresholded metric's thresholds (F1 at which cut, chosen how)."""
    methods = {m: s for m, s in dict_at(folder.metrics, "methods").items() if isinstance(s, Mapping)}
    if not methods:
        return ""
    keys = list(dict.fromkeys(k for scores in methods.values() for k in scores))
    comparable = unevaluable(folder) is None
    best = {key: _best_methods(methods, key) if comparable else set() for key in keys}
    rows = []
    shown = [m for m in styles if m in methods]
    for method in shown:
        cells = "".join(_metric_cell(methods[method].get(key), key, method in best[key]) for key in keys)
        rows.append(row(f"{swatch(styles[method])}{escape(method_label(method))}", cells))
    head = "<th>Method</th>" + "".join(_metric_header(key) for key in keys)
    ordered = {m: methods[m] for m in shown}
    results = table(rows, head, _metrics_caption(folder))
    legend = metric_legend(keys, threshold_sources(ordered))
    return section("results", "Test-set results", join(results, thresholds_note(ordered), legend))


def _metrics_caption(folder: RunFolder) -> str:
    n, _ = test_counts(folder)
    patients = f" on {count(n)} test patients" if n is not None else ""
    reason = unevaluable(folder)
    best = f"Not compared: {escape(reason)}." if reason else "Best value per column in bold."
    return (
        f"Each cell: estimate{patients} ({confidence_level(folder)} confidence interval, "
        f"{interval_method(folder)}). {best}"
    )


def _estimates(folder: RunFolder) -> list[Mapping]:
    """Every estimate of metrics.json (methods by metrics)."""
    return [
        estimate
        for scores in dict_at(folder.metrics, "methods").values()
        if isinstance(scores, Mapping)
        for estimate in scores.values()
        if isinstance(estimate, Mapping)
    ]


def interval_method(folder: RunFolder) -> str:
    """How the intervals were made, in words: 'BCa bootstrap over test patients, 1,000 resamples;
    2 intervals are percentile intervals widened to reach their estimate (marked †)'."""
    resamples = (folder.metrics or {}).get("n_bootstrap")
    estimates = _estimates(folder)
    methods = {e.get("interval") for e in estimates if e.get("low") is not None}
    bca = methods & {BCA, PERCENTILE_WIDENED}
    how = "BCa bootstrap over test patients" if bca else "bootstrap over test patients"
    if resamples:
        how += f", {count(resamples)} resamples"
    widened = sum(1 for e in estimates if e.get("interval") == PERCENTILE_WIDENED)
    if widened:
        what = "interval is a percentile interval" if widened == 1 else "intervals are percentile intervals"
        whose = "its" if widened == 1 else "their"
        how += (
            f"; {widened} {what} widened to reach {whose} estimate, where BCa could not hold it "
            f"(marked {WIDENED_MARK})"
        )
    return how


def _best_methods(methods: Mapping[str, Mapping], key: str) -> set[str]:
    """Methods holding the best value at display precision (ties all bold); none if < 2 values."""
    higher = metric_info(key)["higher_is_better"]
    shown = {}
    for method, scores in methods.items():
        estimate = scores.get(key)
        if isinstance(estimate, Mapping) and estimate.get("value") is not None:
            shown[method] = round(float(estimate["value"]), digits(key))
    if higher is None or len(shown) < 2:
        return set()
    target = max(shown.values()) if higher else min(shown.values())
    return {m for m, v in shown.items() if v == target}


def _metric_header(key: str) -> str:
    info = metric_info(key)
    arrow = {True: " ↑", False: " ↓"}.get(info["higher_is_better"], "")
    return f'<th><abbr title="{escape(info["description"])}">{escape(info["label"])}</abbr>{arrow}</th>'


def _metric_cell(estimate: object, key: str, bold: bool) -> str:
    estimate = estimate if isinstance(estimate, Mapping) else None
    text = escape(format_estimate(estimate, digits(key)))
    if estimate is not None and estimate.get("interval") == PERCENTILE_WIDENED:
        text += WIDENED_MARK
    title = ""
    if estimate is not None and estimate.get("threshold") is not None and estimate.get("value") is not None:
        title = f' title="{escape(threshold_text(estimate))}"'
    return f"<td{title}><strong>{text}</strong></td>" if bold else f"<td{title}>{text}</td>"


# ----------------------------------------------------------------------------- thresholds


def threshold_text(estimate: Mapping) -> str:
    """Plain text: 'threshold 0.31 (tuning set, max F1)', 'threshold 0.31, the mean of 3 seeds' own
    (0.29 to 0.33; tuning set, max F1)'; "" without a threshold."""
    threshold = estimate.get("threshold")
    if threshold is None:
        return ""
    source = estimate.get("threshold_source") or "source not stated"
    several = [float(t) for t in estimate.get("thresholds") or []]
    if len(several) > 1:
        spread = f"{min(several):.2f} to {max(several):.2f}"
        return f"threshold {threshold:.2f}, the mean of {len(several)} seeds' own ({spread}; {source})"
    return f"threshold {threshold:.2f} ({source})"


def threshold_sources(methods: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """Each thresholded metric's distinct threshold sources, split per seed ('a; b' is two)."""
    found: dict[str, list[str]] = {}
    for scores in methods.values():
        for key, estimate in scores.items():
            if isinstance(estimate, Mapping) and estimate.get("threshold") is not None:
                parts = str(estimate.get("threshold_source") or "").split("; ")
                found.setdefault(key, [])
                found[key] += [part for part in parts if part and part not in found[key]]
    return found


def _is_tuned(source: str) -> bool:
    return "max F1" in source


def thresholds_note(methods: Mapping[str, Mapping]) -> str:
    """HTML under the metric table: each model's threshold for each thresholded metric, grouped by how
    it was chosen ('F1 flags a patient at or above each model's own threshold. Chosen on the tuning set
    (max F1): pre-trained transformer 0.31, ... Default 0.5 because the tuning set lacks a class: ...')."""
    paragraphs = []
    for key in threshold_sources(methods):
        groups: dict[str, list[str]] = {}
        for method, scores in methods.items():
            estimate = scores.get(key)
            if not isinstance(estimate, Mapping) or estimate.get("threshold") is None:
                continue
            source = str(estimate.get("threshold_source") or "source not stated")
            value = f"{float(estimate['threshold']):.2f}"
            several = [float(t) for t in estimate.get("thresholds") or []]
            if len(several) > 1:
                value += f" (mean of {len(several)} seeds, {min(several):.2f}{EN_DASH}{max(several):.2f})"
            groups.setdefault(source, []).append(f"{method_label(method).lower()} {value}")
        label = escape(metric_info(key)["label"])
        parts = [
            f"{escape(_source_phrase(source))}: {escape(', '.join(entries))}"
            for source, entries in groups.items()
        ]
        paragraphs.append(
            f'<p class="thresholds"><strong>{label} thresholds.</strong> {label} flags a patient whose '
            f"predicted risk is at or above each model's own threshold. " + "; ".join(parts) + ".</p>"
        )
    return join(*paragraphs)


def _source_phrase(source: str) -> str:
    """A threshold source as the start of a clause: 'Chosen on the tuning set (max F1)'."""
    if "; " in source:
        return "Chosen differently per seed (" + source + ")"
    if _is_tuned(source):
        where = source.removesuffix(", max F1").strip()
        return f"Chosen on the {where} (max F1)" if where else "Chosen to maximise F1"
    if source.startswith("default 0.5"):
        why = source.partition(":")[2].strip()
        return f"0.5 by default because {why}" if why else "0.5 by default"
    if source == FIXED_THRESHOLD:
        return "Fixed at 0.5, not tuned"
    return source[:1].upper() + source[1:]


def _threshold_legend(sources: Sequence[str]) -> str:
    """The legend's sentence on how a thresholded metric's threshold was chosen."""
    tuned = [s for s in sources if _is_tuned(s)]
    fallback = [s for s in sources if not _is_tuned(s)]
    text = ""
    if tuned:
        wheres = list(dict.fromkeys(s.removesuffix(", max F1") for s in tuned))
        where = " or ".join(wheres)
        text = f" The threshold is chosen on the {where} (max F1), not 0.5."
    if fallback and tuned:
        text += " Where that was not possible, 0.5 is used instead; the note under the table says where."
    elif fallback:
        text = " The threshold is 0.5, not tuned; the note under the table says why."
    return text


def metric_legend(keys: Sequence[str], thresholds: Mapping[str, Sequence[str]] | None = None) -> str:
    """The metrics' meanings in print too, where hovering is not an option; ``thresholds`` (a metric's
    threshold sources, from :func:`threshold_sources`) adds how its threshold was chosen."""
    items = []
    for key in keys:
        info = metric_info(key)
        direction = {True: " Higher is better.", False: " Lower is better."}.get(info["higher_is_better"], "")
        chosen = _threshold_legend((thresholds or {}).get(key, []))
        items.append(
            f"<dt>{escape(info['label'])}</dt><dd>{escape(info['description'])}{direction}{escape(chosen)}</dd>"
        )
    return '<dl class="legend">\n' + "\n".join(items) + "\n</dl>"


# ----------------------------------------------------------------------------- label efficiency


def efficiency_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    """Curves of each metric against the share of training labels, where they meet, and the numbers."""
    points = efficiency_points(folder.efficiency)
    names = efficiency_metrics(folder)
    if not points or not names:
        return ""
    curve_styles = {m: s for m, s in styles.items() if any(p.get("method") == m for p in points)}
    labels = {m: method_label(m) for m in styles}
    metric_labels = {k: metric_info(k)["label"] for k in names}
    svg = (
        ""
        if unevaluable(folder)
        else plots.efficiency_svg(points, names, metric_labels, curve_styles, labels)
    )
    seeds = (folder.efficiency or {}).get("seeds") or []
    seeds_text = (
        f"{len(seeds)} training seed{'s' if len(seeds) != 1 else ''}" if seeds else "several training seeds"
    )
    intro = (
        "<p>Each method was trained on growing shares of the labelled training patients and scored on the "
        f"same test set. A line is the average over {seeds_text}; the shaded band is its "
        f"{confidence_level(folder)} confidence interval (bootstrap over test patients); faint dots are the "
        "individual seeds.</p>"
    )
    meetings = [(k, body) for k in names if (body := _meeting(folder, points, k))]
    notes = "".join(
        f"<p><strong>{escape(metric_info(k)['label'])}:</strong> {body[0].upper()}{body[1:]}</p>"
        for k, body in meetings
    )
    numbers = _efficiency_tables(points, names, curve_styles)
    content = join(intro, figure(svg, "Label-efficiency curves."), notes, numbers)
    return section("efficiency", "Label efficiency", content)


def efficiency_metrics(folder: RunFolder) -> list[str]:
    """The metrics efficiency.json names, else every metric its points carry."""
    names = (folder.efficiency or {}).get("metric_names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    points = efficiency_points(folder.efficiency)
    return list(dict.fromkeys(k for p in points for k in (p.get("metrics") or {})))


def efficiency_fractions(points: Sequence[Mapping]) -> list[float]:
    return sorted({p["fraction"] for p in points if isinstance(p.get("fraction"), int | float)})


def estimate_at(points: Sequence[Mapping], method: str, fraction: float, metric: str) -> Mapping | None:
    """A method's estimate at one share of the labels, with that point's ``n_train``."""
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
    fractions = efficiency_fractions(points)
    if higher is None or not baselines:
        return ""
    who, places, level = escape(method_subject(primary)), digits(metric), confidence_level(folder)
    compared = 0
    for fraction in fractions:
        ours = estimate_at(points, primary, fraction, metric)
        theirs = [(m, e) for m in baselines if (e := estimate_at(points, m, fraction, metric))]
        if ours is None or not theirs:
            continue
        compared += 1
        best, estimate = (max if higher else min)(theirs, key=lambda item: item[1]["value"])
        low = ours["low"] if ours.get("low") is not None else ours["value"]
        high = ours["high"] if ours.get("high") is not None else ours["value"]
        reached = estimate["value"] >= low if higher else estimate["value"] <= high
        if reached:
            verb = "comes within" if low <= estimate["value"] <= high else "overtakes"
            size = f" ({count(ours['n_train'])} patients)" if ours.get("n_train") else ""
            first = " — already at the smallest share tested" if compared == 1 else ""
            return (
                f"the best baseline ({escape(method_label(best).lower())}, "
                f"{number(estimate['value'], places)}) {verb} {who}'s {level} interval "
                f"({value_range(low, high, places)}) at {fraction:.0%} of the training labels"
                f"{size}{first}."
            )
    if not compared:
        return ""
    return (
        f"{who} and the best baseline do not meet in the range tested: at every "
        f"share up to {fractions[-1]:.0%}, the best baseline stays worse than {who}'s whole "
        f"{level} interval."
    )


def _efficiency_summary(folder: RunFolder) -> str:
    """The meeting point of the first efficiency metric, for the headline."""
    points = efficiency_points(folder.efficiency)
    names = efficiency_metrics(folder)
    if not points or not names:
        return ""
    body = _meeting(folder, points, names[0])
    label = escape(metric_info(names[0])["label"])
    return f"In the label-efficiency experiment ({label}), {body}" if body else ""


def _efficiency_tables(
    points: Sequence[Mapping], names: Sequence[str], styles: Mapping[str, plots.Style]
) -> str:
    """The numbers behind the curves, folded away: exact values for whoever needs to cite them."""
    fractions = efficiency_fractions(points)
    head = "<th>Method</th>" + "".join(f"<th>{f:.0%}</th>" for f in fractions)
    tables = []
    for metric in names:
        rows = []
        for method in styles:
            cells = "".join(
                f"<td>{escape(format_estimate(estimate_at(points, method, f, metric), digits(metric)))}</td>"
                for f in fractions
            )
            rows.append(row(escape(method_label(method)), cells))
        caption = f"{escape(metric_info(metric)['label'])} by share of training labels"
        tables.append(table(rows, head, caption))
    return "<details><summary>Numbers behind the curves</summary>\n" + "\n".join(tables) + "\n</details>"


# ----------------------------------------------------------------------------- predictions


def predictions_section(folder: RunFolder, styles: Mapping[str, plots.Style]) -> str:
    """ROC and calibration curves of each method's test predictions."""
    predictions = {m: folder.predictions[m] for m in styles if m in folder.predictions}
    if not predictions or unevaluable(folder):
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
            f"<p>No ROC curve for {escape(', '.join(one_class))}: its test predictions hold only one "
            "outcome.</p>"
        )
    roc = figure(plots.roc_svg(predictions, styles, labels), "ROC curves.")
    calibration = figure(
        plots.calibration_svg(predictions, styles, labels, prevalence), "Calibration (reliability) curves."
    )
    figures = f'<div class="figures">{roc}{calibration}</div>'
    return section("predictions", "Discrimination and calibration", text + "\n" + figures)


# ----------------------------------------------------------------------------- training curves


def training_section(folder: RunFolder) -> str:
    """Loss per epoch from the run's Lightning logs, one panel per trained model."""
    if not folder.logs:
        return ""
    text = (
        "<p>Loss per epoch, from the training logs (each panel is one trained model). A validation loss "
        "that rises while the training loss keeps falling is the usual sign of over-fitting.</p>"
    )
    left_out = ""
    if folder.logs_left_out:
        left_out = (
            f"<p>{folder.logs_left_out} more training logs (one per share of labels and seed) are not shown; "
            "they are in the run's <code>logs/</code> folder.</p>"
        )
    content = join(
        text, figure(plots.loss_svg(folder.logs, labels=method_labels()), "Training curves."), left_out
    )
    return section("training", "Training curves", content)


# ----------------------------------------------------------------------------- data processing


def processing(folder: RunFolder) -> str:
    """What went in and how, for whoever checks or reproduces the run: the task and its counts, the
    run's own notes (run.json ``notes``), the optional files that could not be read, the resolved
    configuration. The page folds it away."""
    return join(
        _task_section(folder), _notes_section(folder), _problems_section(folder), _config_section(folder)
    )


def _task_section(folder: RunFolder) -> str:
    task, data = dict_at(folder.run, "task"), dict_at(folder.run, "data")
    rows = []
    if task.get("description"):
        rows.append(("Task", escape(task["description"])))
    if task.get("name"):
        rows.append(("Task name", f"<code>{escape(task['name'])}</code>"))
    if task.get("type"):
        rows.append(("Outcome type", escape(task["type"])))
    for key, value in data.items():
        if isinstance(value, dict | list):
            continue
        shown = f"<code>{escape(value)}</code>" if key == "dataset" else count(value)
        rows.append((DATA_LABELS.get(key) or escape(key.replace("_", " ").capitalize()), shown))
    n, positives = test_counts(folder)
    if is_binary(folder) and isinstance(n, int) and isinstance(positives, int) and n:
        rows.append(("Prevalence in the test set", f"{positives / n:.1%}"))
    if task.get("labels"):
        rows.append(("Labels file", f"<code>{escape(task['labels'])}</code>"))
    if not rows:
        return ""
    facts = table([row(name, f"<td>{value}</td>") for name, value in rows], css_class="facts")
    return section("task", "Task and cohort", facts, level=3)


def _notes_section(folder: RunFolder) -> str:
    notes = run_notes(folder)
    if not notes:
        return ""
    items = "\n".join(f"<li>{escape(note)}</li>" for note in notes)
    return section("notes", "How this run was done", f"<ul>\n{items}\n</ul>", level=3)


def _problems_section(folder: RunFolder) -> str:
    if not folder.problems:
        return ""
    items = "\n".join(f"<li>{escape(problem)}</li>" for problem in folder.problems)
    return section("problems", "Files that could not be read", f"<ul>\n{items}\n</ul>", level=3)


def _config_section(folder: RunFolder) -> str:
    config = folder.run.get("config")
    if config is None:
        return ""
    pretty = json.dumps(config, indent=2, ensure_ascii=False, default=str)
    return section(
        "config",
        "Configuration",
        "<p>The full resolved configuration of this run, to reproduce it exactly.</p>\n"
        f"<details><summary>Show configuration (JSON)</summary>\n<pre>{escape(pretty)}</pre>\n</details>",
        level=3,
    )
