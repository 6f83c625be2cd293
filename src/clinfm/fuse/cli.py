"""``clinfm fuse``: MEDFuse (labs + notes) — diagnosis-group tasks, lab pre-training, fusion training,
evaluation and the ablation.

Registered in clinfm/cli.py with ``app.add_typer(fuse_app, name="fuse")``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from clinfm.cli_common import (
    OVERWRITE_OPTION,
    RESUME_OPTION,
    console,
    training_options,
    training_settings,
    user_facing,
)
from clinfm.errors import InputError
from clinfm.vocab.vocabulary import MIN_SAVED_SUBJECTS

fuse_app = typer.Typer(
    help="Lab tests + clinical notes (MEDFuse): masked lab-test pre-training, note embeddings, "
    "disentangled fusion with a mutual-information penalty, multi-label disease prediction.",
    no_args_is_help=True,
)

DATA_OPTION = typer.Option(..., "--data", help="A MEDS dataset with labs and notes and subject splits.")
TASK_OPTION = typer.Option(
    "diseases",
    help="The multi-label task: a name under the dataset's tasks/ (one label file per disease) or a folder.",
)
LABS_OPTION = typer.Option(
    None,
    "--labs",
    help="Code prefix of lab events (repeatable; default LOINC/, LAB/, LOCAL_LAB/). "
    "MIMIC-IV: LAB//5 keeps lab items (5xxxx) and leaves out chart events.",
)
WINDOW_OPTION = typer.Option(None, min=0.0, help="Look-back for labs in days (default: all history).")
LABS_MODEL_OPTION = typer.Option(
    None, "--labs-model", help="A lab encoder from clinfm fuse pretrain-labs (default: start untrained)."
)
MIN_SUBJECTS_OPTION = typer.Option(
    None,
    min=MIN_SAVED_SUBJECTS,
    help="Lab items seen in fewer patients are one unknown token (default: the project's).",
)


class Fusion(StrEnum):
    disentangled = "disentangled"
    concat = "concat"
    labs = "labs"
    notes = "notes"


class Preset(StrEnum):
    paper = "paper"
    small = "small"


def _inputs(labs, window_days, sections, encoder, max_chunks, labs_as_text, note_train_layers):
    from clinfm.fuse.recipes import InputSettings
    from clinfm.fuse.samples import LAB_PREFIXES, MEDFUSE_SECTIONS

    if sections is not None and sections.strip().lower() == "medfuse":
        chosen = MEDFUSE_SECTIONS
    elif sections is not None:
        chosen = tuple(part.strip() for part in sections.split(",") if part.strip())
        if not chosen:
            raise InputError("--sections: give 'medfuse' or a comma list of section names")
    else:
        chosen = None
    return InputSettings(
        labs=tuple(labs) if labs else LAB_PREFIXES,
        window_days=window_days,
        sections=chosen,
        encoder=encoder,
        max_chunks=max_chunks,
        labs_as_text=labs_as_text,
        note_train_layers=note_train_layers,
    )


SECTIONS_OPTION = typer.Option(
    None,
    help="Keep only these note sections (notes with headings): 'medfuse' (chief complaint, history of "
    "present illness, past medical history, medications on admission) or a comma list.",
)
ENCODER_OPTION = typer.Option(
    "default", help="Note encoder: default (all-MiniLM-L6-v2), st:<path>, hf:<path>[#cls|#mean]."
)
MAX_CHUNKS_OPTION = typer.Option(
    8, min=1, help="Note chunks (each as long as the encoder reads) per sample; more are counted, not read."
)
LABS_AS_TEXT_OPTION = typer.Option(
    False, help="Append abnormal lab results to the note text (MEDFuse's LABTEXT)."
)
NOTE_TRAIN_LAYERS_OPTION = typer.Option(
    0,
    min=0,
    help="Fine-tune the note encoder's top K layers with the fusion model (0: frozen, cached embeddings).",
)
CACHE_OPTION = typer.Option(
    True,
    help="Cache note embeddings so reruns do not re-embed: in DATA/.clinfm/note-embeddings (patient text "
    "stays with its dataset; delete that folder to clear it), or $CLINFM_CACHE if set.",
)


def _min_subjects(value: int | None) -> int:
    from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS

    return value if value is not None else DEFAULT_MIN_SUBJECTS


@fuse_app.command("diagnosis-task")
@user_facing
def diagnosis_task_command(
    data: Path = typer.Option(..., "--data", help="A MEDS dataset with admissions and ICD diagnoses."),
    out: Path = typer.Option(..., "--out", help="Task folder to create (e.g. DATA/tasks/diagnosis_groups)."),
    top: int = typer.Option(10, min=1, help="The most frequent groups to predict."),
    hours: float = typer.Option(24.0, min=0.0, help="Prediction time: hours after admission."),
    exclude: list[str] = typer.Option(
        [], "--exclude", help="A group to leave out (CCS/259 or its column name); repeatable."
    ),
    scheme: str = typer.Option("ccs", help="ccs (ICD-10 through the GEMs) or ccsr (ICD-9 through them)."),
    overwrite: bool = OVERWRITE_OPTION,
):
    """A multi-label task of diagnosis groups (CCS) per hospital admission, predicted HOURS in."""
    from clinfm.events.meds import scan_events
    from clinfm.fuse.targets import diagnosis_group_labels, write_task

    labels, names, report = diagnosis_group_labels(
        scan_events(data), top=top, hours_after_admission=hours, exclude=tuple(exclude), scheme=scheme
    )
    write_task(out, labels, names, report.descriptions, categories=report.categories, overwrite=overwrite)
    for line in report.lines():
        console.print(line)
    console.print(f"wrote {out}")


@fuse_app.command("pretrain-labs")
@user_facing
@training_options
def pretrain_labs_command(
    data: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="Checkpoint folder to create."),
    preset: Preset = typer.Option(Preset.paper, help="paper (128-d, 4 layers) or small (32-d, for CPU)."),
    labs: list[str] | None = LABS_OPTION,
    window_days: float | None = WINDOW_OPTION,
    min_subjects: int | None = MIN_SUBJECTS_OPTION,
    max_panels: int = typer.Option(200_000, min=1, help="At most this many lab panels (patient, time)."),
    mask_ratio: float = typer.Option(
        0.75,
        min=0.01,
        max=0.99,
        help="Share of each panel's results hidden (MAE's 0.75; MEDFuse's, reportedly).",
    ),
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Masked lab-test modelling: hide 75% of each lab panel's results, reconstruct their values."""
    from clinfm.fuse import recipes
    from clinfm.fuse.samples import LAB_PREFIXES

    counts = recipes.pretrain_labs(
        data,
        out,
        preset=preset.value,
        labs=tuple(labs) if labs else LAB_PREFIXES,
        window_days=window_days,
        min_subjects=_min_subjects(min_subjects),
        max_panels=max_panels,
        mask_ratio=mask_ratio,
        training=training_settings(recipes.PRETRAINING, **training),
        overwrite=overwrite,
        resume=resume,
    )
    console.print(
        f"pre-trained on {counts['train_panels']:,} lab panels ({counts['lab_tokens']:,} results, "
        f"{counts['lab_items']} items)"
    )
    console.print(f"wrote {out}")


@fuse_app.command("train")
@user_facing
@training_options
def train_command(
    data: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="Run folder to create (model/, metrics.json, predictions)."),
    task: str = TASK_OPTION,
    labs_model: Path | None = LABS_MODEL_OPTION,
    fusion: Fusion = typer.Option(Fusion.disentangled, help="disentangled (MEDFuse), concat, labs or notes."),
    mi_weight: float = typer.Option(0.1, min=0.0, help="Weight of the CLUB mutual-information penalty."),
    preset: Preset = typer.Option(
        Preset.paper, help="Model size: paper (128-d) or small (32-d, for CPU); a --labs-model keeps its own."
    ),
    labs: list[str] | None = LABS_OPTION,
    window_days: float | None = WINDOW_OPTION,
    sections: str | None = SECTIONS_OPTION,
    encoder: str = ENCODER_OPTION,
    max_chunks: int = MAX_CHUNKS_OPTION,
    labs_as_text: bool = LABS_AS_TEXT_OPTION,
    note_train_layers: int = NOTE_TRAIN_LAYERS_OPTION,
    min_subjects: int | None = MIN_SUBJECTS_OPTION,
    cache: bool = CACHE_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Train one fusion model; scores on the held-out split (F1 at thresholds chosen on tuning)."""
    from clinfm.fuse import recipes

    metrics = recipes.train(
        data,
        task,
        out,
        labs_model=labs_model,
        fusion=recipes.fusion_preset(preset.value, fusion=fusion.value, mi_weight=mi_weight),
        settings=_inputs(labs, window_days, sections, encoder, max_chunks, labs_as_text, note_train_layers),
        preset=preset.value,
        min_subjects=_min_subjects(min_subjects),
        training=training_settings(recipes.FINE_TUNING, **training),
        cache=cache,
        overwrite=overwrite,
        resume=resume,
    )
    _print_scores(metrics)
    console.print(f"wrote {out}")


@fuse_app.command("evaluate")
@user_facing
def evaluate_command(
    model: Path = typer.Option(..., "--model", help="The model/ folder of a clinfm fuse train run."),
    data: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="Folder to create (metrics.json, run.json)."),
    task: str = TASK_OPTION,
    split: str = typer.Option("held_out", help="train, tuning, held_out or all."),
    cache: bool = CACHE_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
):
    """Score a trained fusion model on a dataset (its own or another site's) at its tuned thresholds."""
    from clinfm.fuse import recipes

    if split not in (*recipes.SPLITS, "all"):
        raise InputError(f"--split: expected train, tuning, held_out or all, got {split!r}")
    _print_scores(recipes.evaluate(model, data, task, out, split=split, cache=cache, overwrite=overwrite))
    console.print(f"wrote {out}")


@fuse_app.command("ablate")
@user_facing
@training_options
def ablate_command(
    data: Path = DATA_OPTION,
    out: Path = typer.Option(..., "--out", help="Folder to create (metrics.json, table.md, report)."),
    task: str = TASK_OPTION,
    labs_model: Path | None = typer.Option(
        None,
        "--labs-model",
        help="A lab encoder from clinfm fuse pretrain-labs (default: pre-train one here).",
    ),
    variants: str = typer.Option(
        "labs,notes,concat,no_mi,no_mltm,full",
        help="Comma list of the models to train: labs, notes, concat, no_mi, no_mltm, full, labs_scratch.",
    ),
    mi_weight: float = typer.Option(0.1, min=0.0, help="Weight of the CLUB penalty where it is on."),
    preset: Preset = typer.Option(Preset.paper, help="Lab encoder size: paper or small (for CPU)."),
    labs: list[str] | None = LABS_OPTION,
    window_days: float | None = WINDOW_OPTION,
    sections: str | None = SECTIONS_OPTION,
    encoder: str = ENCODER_OPTION,
    max_chunks: int = MAX_CHUNKS_OPTION,
    labs_as_text: bool = LABS_AS_TEXT_OPTION,
    note_train_layers: int = NOTE_TRAIN_LAYERS_OPTION,
    min_subjects: int | None = MIN_SUBJECTS_OPTION,
    cache: bool = CACHE_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Labs only, notes only, concatenation, no MI loss, no masked lab pre-training and the full model,
    on the same samples: micro / macro F1 and AUROC per disease with 95% CIs."""
    from clinfm.fuse import recipes
    from clinfm.fuse.ablation import ablate

    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    results = ablate(
        data,
        task,
        out,
        labs_model=labs_model,
        variants=chosen,
        base=recipes.fusion_preset(preset.value, mi_weight=mi_weight),
        settings=_inputs(labs, window_days, sections, encoder, max_chunks, labs_as_text, note_train_layers),
        preset=preset.value,
        min_subjects=_min_subjects(min_subjects),
        pretraining=training_settings(recipes.PRETRAINING, **training),
        training=training_settings(recipes.FINE_TUNING, **training),
        cache=cache,
        overwrite=overwrite,
        resume=resume,
    )
    console.print((out / "table.md").read_text() if (out / "table.md").exists() else results)
    console.print(f"wrote {out}")


def _print_scores(metrics: dict) -> None:
    from clinfm.evaluate.metrics import estimate_text

    shown = ", ".join(
        f"{name} {estimate_text(metrics[name])}" for name in ("f1_micro", "f1_macro", "auroc_macro")
    )
    console.print(f"{shown} on {metrics['samples']:,} samples")
