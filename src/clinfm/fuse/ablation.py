"""``clinfm fuse ablate``: what each part of MEDFuse adds, as one command.

Six models on the same samples, splits and note embeddings (:data:`DEFAULT_VARIANTS`): the lab
branch alone, the note branch alone, plain concatenation of the two, the disentangled fusion
without the MI loss, the full model with a lab encoder that skipped masked lab-test pre-training,
and the full model; ``labs_scratch`` (the lab branch alone, not pre-trained) on request.
The lab encoder is pre-trained once (or given); each model fine-tunes its own copy.
The pre-trained encoder and each finished model's scores are kept in the work folder, so an
interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from clinfm import progress
from clinfm.errors import InputError
from clinfm.evaluate.metrics import estimate_text
from clinfm.fuse.model import FusionConfig
from clinfm.fuse.recipes import (
    FINE_TUNING,
    PRETRAINING,
    InputSettings,
    LabBranch,
    input_counts,
    lab_branch_for,
    load_lab_branch,
    note_cache,
    prepare_notes,
    pretrain_labs,
    read_cohort,
    report_lines,
    scores_of,
    train_fusion,
)
from clinfm.fuse.report import VARIANT_LABELS
from clinfm.io import atomic_directory, check_output, write_json_atomic
from clinfm.train.engine import TrainConfig, is_global_zero
from clinfm.train.runs import copy_logs, work_dir, write_run
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS


@dataclass(frozen=True)
class Ablation:
    label: str
    fusion: str
    mi: bool = True
    pretrained_labs: bool = True


ABLATIONS = {  # labels: the report's display names, so table.md and report.html agree
    "labs": Ablation(VARIANT_LABELS["labs"], "labs"),
    "notes": Ablation(VARIANT_LABELS["notes"], "notes"),
    "concat": Ablation(VARIANT_LABELS["concat"], "concat"),
    "no_mi": Ablation(VARIANT_LABELS["no_mi"], "disentangled", mi=False),
    "no_mltm": Ablation(VARIANT_LABELS["no_mltm"], "disentangled", pretrained_labs=False),
    "full": Ablation(VARIANT_LABELS["full"], "disentangled"),
    # Not in the default six: the lab branch alone without its pre-training (data without notes).
    "labs_scratch": Ablation(VARIANT_LABELS["labs_scratch"], "labs", pretrained_labs=False),
}
DEFAULT_VARIANTS = ("labs", "notes", "concat", "no_mi", "no_mltm", "full")


def fusion_config(ablation: Ablation, base: FusionConfig) -> FusionConfig:
    return dataclasses.replace(base, fusion=ablation.fusion, mi_weight=base.mi_weight if ablation.mi else 0.0)


def ablate(
    data: str | os.PathLike,
    task: str,
    out: str | os.PathLike,
    *,
    labs_model: str | os.PathLike | None = None,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    base: FusionConfig | None = None,
    settings: InputSettings | None = None,
    preset: str = "paper",
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    pretraining: TrainConfig = PRETRAINING,
    training: TrainConfig = FINE_TUNING,
    cache=True,
    overwrite: bool = False,
    resume: bool = True,
) -> dict:
    """Train every variant in ``variants``; ``out`` gets metrics.json, table.md, run.json, a report and
    the pre-trained lab encoder (``lab_model/``) when this command trained it."""
    out = check_output(out, overwrite)
    unknown = sorted(set(variants) - set(ABLATIONS))
    if unknown or not variants:
        raise InputError(f"unknown variants {unknown}; choose from {', '.join(ABLATIONS)}")
    base, settings = base or FusionConfig(), settings or InputSettings()
    recorded = {
        "data": str(data),
        "task": task,
        "labs_model": str(labs_model) if labs_model else None,
        "variants": list(variants),
        "min_subjects": min_subjects,
        "fusion": base.to_dict(),
        "inputs": settings.to_dict(),
        "preset": preset,
        "pretraining": pretraining.to_dict(),
        "training": training.to_dict(),
    }
    given = load_lab_branch(labs_model)[0] if labs_model is not None else None
    cohort = read_cohort(data, task, settings, units=given.units if given else None)
    cohort.require("train", "held_out")
    with work_dir(out, recorded, resume) as work:
        pretrained = given or _pretrain_here(data, work, cohort, preset, min_subjects, pretraining)
        fresh = lab_branch_for(cohort, None, preset, min_subjects, training.seed)
        if any(ABLATIONS[v].fusion != "labs" for v in variants):
            prepare_notes(cohort, pretrained, cache=note_cache(data, cache))
        results = {}
        for name in progress.track(variants, "ablation", total=len(variants)):
            results[name] = _variant(name, cohort, pretrained, fresh, base, training, work)
        if not is_global_zero():
            return results
        counts = input_counts(cohort)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            write_json_atomic(tmp / "metrics.json", {"variants": results, "data": counts})
            (tmp / "table.md").write_text(markdown_table(results, cohort.names))
            if labs_model is None:
                shutil.copytree(work / "models" / "lab_model", tmp / "lab_model")
            write_run(
                tmp, "fuse-ablate", "MEDFuse ablation", recorded, {"data": counts}, report_lines(cohort)
            )
            copy_logs(work, tmp)
            from clinfm.report.html import write_report

            write_report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return results


def _pretrain_here(data, work: Path, cohort, preset, min_subjects, pretraining) -> LabBranch:
    """A lab encoder pre-trained on the dataset's training patients, in the cohort's units; kept in the
    work folder (``models/*/run.json`` survives an interruption), so a resumed ablation reuses it."""
    folder = work / "models" / "lab_model"
    if not folder.exists():
        pretrain_labs(
            data,
            folder,
            preset=preset,
            labs=cohort.settings.labs,
            window_days=cohort.settings.window_days,
            min_subjects=min_subjects,
            units=cohort.units,
            training=pretraining,
        )
    return load_lab_branch(folder)[0]


def _variant(name, cohort, pretrained, fresh, base, training, work: Path) -> dict:
    """One variant's held-out scores, read back when an interrupted ablation already has them."""
    done = work / "points" / f"{name}.json"  # points/*: kept if the ablation is interrupted
    if done.exists():
        return json.loads(done.read_text())["result"]
    ablation = ABLATIONS[name]
    config = fusion_config(ablation, base)
    branch = pretrained if ablation.pretrained_labs else fresh
    _, outputs = train_fusion(cohort, branch, config, training, work, name=name)
    _, metrics = scores_of(cohort, outputs)
    fit = outputs["fit"]
    result = {
        "label": ablation.label,
        "fusion": config.to_dict(),
        "pretrained_labs": ablation.pretrained_labs,
        "epochs": fit.epochs,
        "best": {fit.monitor: fit.best_score},
        "held_out": metrics,
    }
    write_json_atomic(done, {"result": result})
    return result


def markdown_table(results: dict, names: list[str]) -> str:
    """Overall scores per variant, then each disease's AUROC per variant."""
    lines = [
        "| model | micro F1 | macro F1 | macro AUROC |",
        "|---|---|---|---|",
    ]
    for result in results.values():
        held = result["held_out"]
        cells = [
            estimate_text(held["f1_micro"]),
            estimate_text(held["f1_macro"]),
            estimate_text(held["auroc_macro"]),
        ]
        lines.append(f"| {result['label']} | " + " | ".join(cells) + " |")
    lines += ["", "| disease (positives) | " + " | ".join(r["label"] for r in results.values()) + " |"]
    lines.append("|---" * (len(results) + 1) + "|")
    for disease in names:
        first = next(iter(results.values()))["held_out"]["diseases"][disease]
        cells = [estimate_text(r["held_out"]["diseases"][disease].get("auroc")) for r in results.values()]
        lines.append(f"| {disease} ({first['positives']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["ABLATIONS", "DEFAULT_VARIANTS", "Ablation", "ablate", "fusion_config", "markdown_table"]
