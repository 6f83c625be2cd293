"""MEDFuse's part of the run report: MEDFuse (full) against its ablations on macro AUROC and micro
F1 (at the thresholds tuned on the tuning split), with intervals, then each disease's AUROC.

A winner is named only where the intervals do not overlap. A disease with too few held-out patients
with (or without) it cannot be evaluated: its row says so and no variant is named better on it. The
cohort's processing log (samples without notes or labs, notes embedded in chunks) goes to the folded
data-processing details, not the caveats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from clinfm.report import blocks
from clinfm.report.folder import RunFolder, dict_at, dig

KIND_INTROS = {
    "fuse-ablate": "This run trains MEDFuse and its ablations (each branch alone, plain concatenation, no "
    "mutual-information loss, no masked lab pre-training) on the same samples and scores each on the same "
    "held-out patients.",
    "fuse-train": "This run trains one lab + note fusion model for multi-label disease prediction and scores "
    "it on held-out patients.",
    "fuse-evaluate": "This run scores a trained lab + note fusion model at the thresholds chosen when it was "
    "trained.",
    "fuse-pretrain-labs": "This run pre-trains a lab-test encoder by masked lab-test modelling; it has no "
    "prediction task of its own, so there are no test metrics.",
}
#: Ablation variant id -> the name every page and table.md shows (never the id).
VARIANT_LABELS = {
    "full": "MEDFuse (full)",
    "no_mltm": "No masked lab pre-training",
    "no_mi": "No MI penalty",
    "concat": "Plain concatenation",
    "labs": "Labs only",
    "notes": "Notes only",
    "labs_scratch": "Labs only, no pre-training",
}
FULL = "full"
OVERALL = (("f1_micro", "Micro F1"), ("f1_macro", "Macro F1"), ("auroc_macro", "Macro AUROC"))
HEADLINE_METRICS = (("auroc_macro", "macro AUROC"), ("f1_micro", "micro F1"))
blocks.add_method_labels(VARIANT_LABELS)


def variant_label(variant: str) -> str:
    """A variant's display name: ours for a known id, else readable words."""
    return blocks.method_label(variant)


# ----------------------------------------------------------------------------- reading the scores


def models(metrics: Mapping | None) -> dict[str, Mapping]:
    """id -> held-out scores: every ablation variant, or the one model of a train/evaluate run."""
    variants = dig(metrics, ("variants",))
    if isinstance(variants, Mapping):
        return {k: v.get("held_out") or {} for k, v in variants.items() if isinstance(v, Mapping)}
    scores = {k: v for k, v in (metrics or {}).items() if k != "data" and isinstance(v, Mapping)}
    return {split: v for split, v in scores.items() if "f1_micro" in v}


def _names(folder: RunFolder) -> dict[str, str]:
    """id -> display name: a known variant's name, a stored label for an unknown one, a split's words."""
    variants = dig(folder.metrics, ("variants",))
    names = {}
    for key in models(folder.metrics):
        if isinstance(variants, Mapping):
            stored = dig(variants, (key, "label"))
            names[key] = VARIANT_LABELS.get(key) or (
                stored if isinstance(stored, str) else variant_label(key)
            )
        else:
            names[key] = f"Model ({key})"
    return names


def disease_reason(folder: RunFolder, scores: Mapping, disease: str) -> str | None:
    """Why a disease cannot be evaluated on the held-out samples (too few with or without it)."""
    positives = dig(scores, ("diseases", disease, "positives"))
    samples = scores.get("samples")
    if not isinstance(positives, int) or not isinstance(samples, int):
        return None
    return blocks.too_few_to_compare(positives, samples, folder.min_class_patients)


def unevaluable_diseases(folder: RunFolder) -> dict[str, str]:
    found = models(folder.metrics)
    if not found:
        return {}
    first = next(iter(found.values()))
    return {d: r for d in dict_at(first, "diseases") if (r := disease_reason(folder, first, d))}


def _valued(estimate: object) -> bool:
    return isinstance(estimate, Mapping) and estimate.get("value") is not None


# ----------------------------------------------------------------------------- headline


def headline(folder: RunFolder) -> str:
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""), answer(folder))


def answer(folder: RunFolder) -> str:
    """MEDFuse (full) against each ablation on macro AUROC and micro F1, with intervals; a train or
    evaluate run's one model, with its intervals. A comparison in which no disease has enough
    held-out samples with and without it says so instead, and names no number as its answer."""
    found = models(folder.metrics)
    if not found:
        return ""
    names, level = _names(folder), blocks.confidence_level(folder)
    lead = FULL if FULL in found else next(iter(found))
    scores = found[lead]
    samples = scores.get("samples")
    where = (
        f"On {blocks.count(samples)} held-out samples" if isinstance(samples, int) else "On held-out samples"
    )
    skipped = unevaluable_diseases(folder)
    diseases = dict_at(scores, "diseases")
    if len(found) > 1 and diseases and len(skipped) == len(diseases):
        among = (
            f"among its {blocks.count(samples)} held-out samples" if isinstance(samples, int) else "held out"
        )
        return (
            f"This comparison cannot be evaluated: {among}, no disease has at least "
            f"{folder.min_class_patients} with it and {folder.min_class_patients} without it "
            f"({_positives(scores, skipped)}), so no variant is named better and no number is its answer."
        )
    reached = " and ".join(
        f"{label} {blocks.ci_phrase(scores[key], 3, level)}"
        for key, label in HEADLINE_METRICS
        if _valued(scores.get(key))
    )
    if not reached:
        return ""
    sentences = [f"{where}, {blocks.escape(names[lead])} reached {reached}."]
    for key, label in HEADLINE_METRICS if len(found) > 1 else ():
        sentence = _against(found, names, lead, key, label)
        if sentence:
            sentences.append(sentence)
    if skipped:
        sentences.append(
            f"Per disease, {_these(len(skipped))} cannot be evaluated (fewer than "
            f"{folder.min_class_patients} held-out samples with or without the disease): "
            f"{_positives(scores, skipped)}."
        )
    return " ".join(sentences)


def _positives(scores: Mapping, diseases: Mapping[str, str]) -> str:
    """'adhd (0 positives), obesity (3 negatives)': each disease's smaller held-out class."""
    samples, parts = scores.get("samples"), []
    for disease in diseases:
        positives = dig(scores, ("diseases", disease, "positives"))
        if isinstance(samples, int) and isinstance(positives, int) and positives > samples - positives:
            parts.append(f"{blocks.escape(disease)} ({_counted(samples - positives, 'negative')})")
        else:
            parts.append(f"{blocks.escape(disease)} ({_counted(positives, 'positive')})")
    return ", ".join(parts)


def _counted(n: int, noun: str) -> str:
    return f"{blocks.count(n)} {noun}" + ("" if n == 1 else "s")


def _them(n: int) -> str:
    return "it" if n == 1 else "them"


def _these(n: int) -> str:
    return "this one" if n == 1 else f"these {n}"


def _against(found: Mapping[str, Mapping], names, lead: str, key: str, label: str) -> str:
    """'On macro AUROC, MEDFuse (full) beats Labs only (0.70, 95% CI ...); its interval overlaps ...'."""
    ours = found[lead].get(key)
    if not _valued(ours):
        return ""
    better, worse, tied = [], [], []
    for other, scores in found.items():
        theirs = scores.get(key)
        if other == lead or not _valued(theirs):
            continue
        shown = f"{blocks.escape(names[other])} at {blocks.ci_phrase(theirs, 3, '')}"
        overlapping = blocks.intervals_overlap(ours, theirs)
        if overlapping is None or overlapping:
            tied.append(shown)
        elif ours["value"] > theirs["value"]:
            better.append(shown)
        else:
            worse.append(shown)
    who = blocks.escape(names[lead])
    parts = []
    if better:
        parts.append(f"{who} is better than {_listing(better)} (the intervals do not overlap)")
    if worse:
        parts.append(f"{_listing(worse)} {'is' if len(worse) == 1 else 'are'} better than {who}")
    if tied:
        those = "that variant is" if len(tied) == 1 else "those are"
        parts.append(f"its interval overlaps {_listing(tied)}, so {those} not named better or worse")
    return f"On {label}, " + "; ".join(parts) + "." if parts else ""


def _listing(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------------------- caveats


def caveats(folder: RunFolder) -> list[str]:
    """Test size, diseases that cannot be evaluated, what the intervals cover; the processing log
    (run.json's notes) goes to the data-processing details instead."""
    found = []
    scores = models(folder.metrics)
    first = next(iter(scores.values()), {})
    samples = first.get("samples")
    if isinstance(samples, int) and samples < 200:
        found.append(f"Only {samples} held-out samples: intervals are wide.")
    skipped = unevaluable_diseases(folder)
    without = [d for d in dict_at(first, "diseases") if dig(first, ("diseases", d, "positives")) == 0]
    if without:
        found.append(
            f"No held-out sample has {', '.join(without)}: no AUROC or F1 is computed for "
            f"{_them(len(without))}, and macro scores average the other diseases."
        )
    rest = [d for d in skipped if d not in without]
    if rest:
        found.append(
            f"{', '.join(rest)}: too few held-out samples with or without {_them(len(rest))} "
            f"(at least {folder.min_class_patients} each) to compare variants; macro AUROC still counts "
            f"{_them(len(rest))}."
        )
    if scores:
        found.append(
            "Confidence intervals cover the sampling of held-out patients, not pre-training or training "
            "seeds (each variant was trained once, with one seed)."
        )
    quiet = dataclasses.replace(folder, run={**folder.run, "notes": []})
    return blocks.caveats(quiet, *found)


# ----------------------------------------------------------------------------- sections


def section(folder: RunFolder) -> str:
    return blocks.join(fusion_section(folder), blocks.training_section(folder))


def fusion_section(folder: RunFolder) -> str:
    """Multi-label scores per model (F1 at tuned thresholds, AUROC) and each disease's AUROC."""
    found = models(folder.metrics)
    if not found:
        return ""
    names = _names(folder)
    tables = blocks.join(_overall_table(found, names), _disease_table(folder, found, names))
    return blocks.section("fusion", "Lab + note fusion", tables)


def _overall_table(found: Mapping[str, Mapping], names: Mapping[str, str]) -> str:
    rows = [
        blocks.row(
            blocks.escape(names[key]),
            "".join(f"<td>{blocks.format_estimate(scores.get(k), 3)}</td>" for k, _ in OVERALL),
        )
        for key, scores in found.items()
    ]
    head = "<th>Model</th>" + "".join(f"<th>{name}</th>" for _, name in OVERALL)
    samples = next(iter(found.values())).get("samples")
    caption = (
        f"Scores on {blocks.count(samples)} samples not used for training; F1 at each disease's threshold "
        "chosen on the tuning split; brackets are bootstrap 95% intervals resampling patients."
    )
    return blocks.table(rows, head, blocks.escape(caption))


def _disease_table(folder: RunFolder, found: Mapping[str, Mapping], names: Mapping[str, str]) -> str:
    first = next(iter(found.values()))
    rows = []
    for disease in dict_at(first, "diseases"):
        positives = dig(first, ("diseases", disease, "positives"))
        reason = disease_reason(folder, first, disease)
        if reason:
            cells = f"<td colspan='{len(found)}'>{blocks.escape(reason)}</td>"
        else:
            cells = "".join(
                f"<td>{blocks.format_estimate(dig(scores, ('diseases', disease, 'auroc')), 3)}</td>"
                for scores in found.values()
            )
        rows.append(blocks.row(blocks.escape(disease), f"<td>{blocks.count(positives)}</td>{cells}"))
    head = "<th>Disease</th><th>Positives</th>" + "".join(
        f"<th>{blocks.escape(names[key])}</th>" for key in found
    )
    return blocks.table(rows, head, "AUROC per disease.")


# ----------------------------------------------------------------------------- processing


def processing(folder: RunFolder) -> str:
    """The cohort's processing log (run.json's notes: samples without notes or labs, notes embedded in
    chunks or cut) and its counts."""
    notes = folder.run.get("notes") or []
    notes = [notes] if isinstance(notes, str) else notes
    data = dict_at(folder.metrics, "data")
    facts = []
    for key in (
        "samples_without_labs",
        "samples_without_notes",
        "notes_chunked",
        "chunks",
        "chunks_beyond_max",
    ):
        if isinstance(data.get(key), int):
            facts.append(
                f"<li>{blocks.escape(key.replace('_', ' ').capitalize())}: {blocks.count(data[key])}</li>"
            )
    samples = dict_at(data, "samples")
    if samples:
        split = ", ".join(f"{blocks.escape(k)} {blocks.count(v)}" for k, v in samples.items())
        facts.append(f"<li>Samples per split: {split}</li>")
    items = [f"<li>{blocks.escape(note)}</li>" for note in notes] + facts
    if not items:
        return ""
    return blocks.section("fusion-log", "Processing log", "<ul>\n" + "\n".join(items) + "\n</ul>", level=3)
