"""``clinfm ner``: train, score and compare taggers on brat or CoNLL data; tag new text into brat.

Registered in clinfm/cli.py with ``app.add_typer(ner_app, name="ner")``.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path

import typer

from clinfm.cli_common import (
    OVERWRITE_OPTION,
    RESUME_OPTION,
    console,
    devices_value,
    training_options,
    training_settings,
    user_facing,
)

ner_app = typer.Typer(
    help="Clinical named-entity recognition: TransformerCRF from scratch vs BERT-CRF fine-tuning, SamBD, "
    "the paper's token-level scores beside entity-level ones; brat and CoNLL in, brat out.",
    no_args_is_help=True,
)


class ModelName(StrEnum):
    transformer_crf = "transformer-crf"
    transformer_apt = "transformer-apt"
    bert_crf = "bert-crf"
    bert_apt = "bert-apt"
    feature_crf = "feature-crf"


class NerPreset(StrEnum):
    paper = "paper"
    small = "small"


class Overlap(StrEnum):
    longest = "longest"
    shortest = "shortest"


DATA_HELP = "A brat folder (.txt + .ann, searched recursively) or a CoNLL/IOB file (token TAB tag)."
TRAIN_REPEAT_HELP = " Repeat to train on several as one (the paper's final runs train on train and dev)."
TYPES_OPTION = typer.Option(
    None, help="Comma-separated entity types to learn and score (default: every type in the data)."
)
OVERLAP_OPTION = typer.Option(
    Overlap.longest,
    help="Which of overlapping or nested entities becomes the BIO label: longest (outermost) or shortest.",
)
PRESET_OPTION = typer.Option(
    NerPreset.paper,
    help="transformer-*: paper (DistilBERT config, 6 x 768, 65M parameters) or small (2 x 256, for CPU).",
)
ENCODER_OPTION = typer.Option(
    None, help="bert-*: a local Hugging Face encoder folder (default: the embedded all-MiniLM-L6-v2)."
)
BATCH_OPTION = typer.Option(64, min=1, help="Sequences per batch when tagging.")


def _types(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@ner_app.command("train")
@user_facing
@training_options
def train_command(
    train: list[Path] = typer.Option(..., "--train", help=DATA_HELP + TRAIN_REPEAT_HELP),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder to create."),
    dev: Path | None = typer.Option(
        None, "--dev", help="Development data: the epoch kept has its lowest loss."
    ),
    model: ModelName = typer.Option(ModelName.transformer_crf, "--model", help="Which tagger."),
    preset: NerPreset = PRESET_OPTION,
    encoder: str | None = ENCODER_OPTION,
    tokenizer: str | None = typer.Option(
        None,
        help="A local Hugging Face tokenizer (default: the encoder's; transformer-*: learned from --train).",
    ),
    sambd: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="SamBD: keep each sentence without entities with this probability (the paper: 0.08); "
        "train and dev only.",
    ),
    types: str | None = TYPES_OPTION,
    overlap: Overlap = OVERLAP_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """Train a tagger; defaults are the paper's settings for each model (AdamW, linear decay)."""
    from clinfm.ner import recipes

    path = recipes.train(
        train,
        out,
        dev_data=dev,
        model=model.value,
        preset=preset.value,
        encoder=encoder,
        tokenizer=tokenizer,
        settings=_overrides(model.value, preset.value, training),
        sambd_keep=sambd,
        types=_types(types),
        overlap=overlap.value,
        seed=training["seed"],
        overwrite=overwrite,
        resume=resume,
    )
    from clinfm.train.engine import is_global_zero

    if not is_global_zero():  # under DDP every device runs this command; one reports
        return
    run = json.loads((path / "run.json").read_text())
    dev_scores = run["results"].get("dev")
    if dev_scores:
        from clinfm.ner.metrics import format_table

        console.print(format_table(dev_scores))
    console.print(f"wrote {path}")


def _overrides(model: str, preset: str, training: dict) -> dict | None:
    """The user's training options over the model's own defaults (the paper's or the small preset's)."""
    if model == "feature-crf":
        given = [
            f"--{k.replace('_', '-')}" for k in ("epochs", "batch_size", "lr") if training[k] is not None
        ]
        if given:
            logging.getLogger(__name__).warning(
                "%s do not apply to the feature CRF (CRFsuite, 100 L-BFGS iterations); ignored",
                ", ".join(given),
            )
        return None
    from clinfm.ner.recipes import training_settings as defaults

    return training_settings(defaults(model, preset), **training).to_dict()


@ner_app.command("evaluate")
@user_facing
def evaluate_command(
    model: Path = typer.Option(..., "--model", help="A tagger folder from clinfm ner train."),
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    out: Path | None = typer.Option(None, "--out", help="A folder to write metrics.json to."),
    types: str | None = TYPES_OPTION,
    overlap: Overlap = OVERLAP_OPTION,
    batch_size: int = BATCH_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
):
    """Score a tagger: the paper's sub-word scores (O included), entity-level (seqeval strict), partial."""
    from clinfm.ner import recipes
    from clinfm.ner.metrics import format_table

    scores = recipes.evaluate(
        model,
        data,
        out=out,
        types=_types(types),
        overlap=overlap.value,
        batch_size=batch_size,
        overwrite=overwrite,
    )
    console.print(format_table(scores))
    if out is not None:
        console.print(f"wrote {out / 'metrics.json'}")


@ner_app.command("predict")
@user_facing
def predict_command(
    model: Path = typer.Option(..., "--model", help="A tagger folder from clinfm ner train."),
    texts: Path = typer.Option(..., "--in", help="A folder of .txt files (searched recursively)."),
    out: Path = typer.Option(
        ..., "--out", help="A brat folder to create: each .txt with its predicted .ann."
    ),
    batch_size: int = BATCH_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
):
    """Tag text files; the output opens in the brat annotation tool."""
    from clinfm.ner import recipes

    path = recipes.predict(model, texts, out, batch_size=batch_size, overwrite=overwrite)
    console.print(f"wrote {path}")


class Sambd(StrEnum):
    both = "both"
    on = "on"
    off = "off"


SAMBD_VARIANTS = {"both": (False, True), "on": (True,), "off": (False,)}


@ner_app.command("compare")
@user_facing
@training_options
def compare_command(
    train: list[Path] = typer.Option(..., "--train", help=DATA_HELP + TRAIN_REPEAT_HELP),
    test: Path = typer.Option(
        ..., "--test", help="Labelled data every model is scored on (never down-sampled)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Run folder to create (metrics.json, table.md, report.html)."
    ),
    dev: Path | None = typer.Option(None, "--dev", help="Development data for each model's epoch choice."),
    models: str = typer.Option(
        ",".join(m.value for m in ModelName), help="Comma-separated models to compare."
    ),
    sambd: Sambd = typer.Option(Sambd.both, help="Train each model without SamBD, with it, or both."),
    sambd_keep: float = typer.Option(
        0.08, min=0.0, max=1.0, help="SamBD: probability of keeping a sentence without entities."
    ),
    preset: NerPreset = PRESET_OPTION,
    encoder: str | None = ENCODER_OPTION,
    types: str | None = TYPES_OPTION,
    overlap: Overlap = OVERLAP_OPTION,
    resume: bool = RESUME_OPTION,
    overwrite: bool = OVERWRITE_OPTION,
    **training,
):
    """The paper's comparison on your data: each model with and without SamBD, scored three ways."""
    from clinfm.ner import recipes

    names = [m.strip() for m in models.split(",") if m.strip()]
    # Only what the user set overrides each model's own defaults (--epochs for all, say).
    chosen = {
        k: v
        for k, v in (
            ("max_epochs", training["epochs"]),
            ("batch_size", training["batch_size"]),
            ("lr", training["lr"]),
        )
        if v is not None
    }
    chosen |= {k: training[k] for k in ("accelerator", "num_nodes", "distributed", "precision")}
    chosen |= {"logger": training["logger"].value, "devices": devices_value(training["devices"])}
    path = recipes.compare(
        train,
        test,
        out,
        dev_data=dev,
        models=names,
        sambd_variants=SAMBD_VARIANTS[sambd.value],
        sambd_keep=sambd_keep,
        preset=preset.value,
        encoder=encoder,
        settings=chosen,
        types=_types(types),
        overlap=overlap.value,
        seed=training["seed"],
        overwrite=overwrite,
        resume=resume,
    )
    from clinfm.train.engine import is_global_zero

    if not is_global_zero():
        return
    console.print((path / "table.md").read_text())
    console.print(f"wrote {path} (report: {path / 'report.html'})")


@ner_app.command("synth")
@user_facing
def synth_command(
    out: Path = typer.Option(..., "--out", help="Folder to create with train/, dev/ and test/ brat folders."),
    train: int = typer.Option(2000, min=1, help="Training documents."),
    dev: int = typer.Option(300, min=1, help="Development documents."),
    test: int = typer.Option(300, min=2, help="Test documents (half name drugs that training never saw)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same corpus."),
    overwrite: bool = OVERWRITE_OPTION,
):
    """Write a synthetic medication corpus (n2c2-2018 entity types) as brat, to try everything on."""
    from clinfm.ner.synth import synthetic_corpus

    path = synthetic_corpus(out, train=train, dev=dev, test=test, seed=seed, overwrite=overwrite)
    console.print(f"wrote {path}")
