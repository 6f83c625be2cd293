"""NER from the command line's point of view: read a corpus, train a tagger, score it, tag new text.

Every command reads brat folders (``.txt`` + ``.ann``) or CoNLL/IOB files, counts what it had to
skip or repair (logged, and kept in the run's JSON), and writes its output atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from clinfm import progress
from clinfm.errors import InputError
from clinfm.evaluate.metrics import estimate_text
from clinfm.io import atomic_directory, check_output, write_json_atomic
from clinfm.ner.brat import read_brat, write_brat
from clinfm.ner.checkpoint import load_tagger, save_tagger
from clinfm.ner.conll import read_conll
from clinfm.ner.data import PAPER_SAMBD_KEEP, SubwordData, label_set, load_tokenizer, sambd, train_wordpiece
from clinfm.ner.document import OUTSIDE, Document, ReadReport, Sentence, counting_units
from clinfm.ner.features import FeatureCRF
from clinfm.ner.intervals import bootstrap_intervals
from clinfm.ner.metrics import ner_scores, paper_scores
from clinfm.ner.model import (
    PAPER_MAX_LENGTH,
    PAPER_TRAINING,
    SCRATCH_PRESETS,
    Tagger,
    TaggerConfig,
    pretrained_encoder,
    scratch_encoder_config,
    split_model_name,
)
from clinfm.ner.text import entities_from_sentences, to_sentences
from clinfm.pretrained import default_text_model_path
from clinfm.train.engine import TrainConfig, fit, is_global_zero, make_loader
from clinfm.train.runs import copy_logs, resume_note, work_dir, write_run

log = logging.getLogger(__name__)

FEATURE_CRF = "feature-crf"
TOKENIZER_WAIT_SECONDS = 600  # how long other DDP processes wait for rank 0's learned vocabulary

#: What every neural tagger trains with unless told otherwise: the paper's optimiser and schedule.
PAPER_OPTIMISATION = {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "linear", "patience": None}

#: The small preset's settings: a narrow encoder trained from scratch needs a larger learning rate
#: and more epochs than the paper's (synthetic corpus, docs/results.md: entity F1 0.968 vs 0.907).
SMALL_TRAINING = {"batch_size": 16, "max_epochs": 10, "lr": 1e-3}


# ----------------------------------------------------------------------------------------- corpora


@dataclass
class Corpus:
    """Sentences of a brat folder or a CoNLL file, the brat documents (for writing back), and what
    reading skipped or repaired."""

    source: str  # the folder or file read (several joined by " + ")
    sentences: list[Sentence]
    documents: list[Document] | None  # None for CoNLL input
    report: ReadReport


def read_corpus(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    types: Sequence[str] | None = None,
    overlap: str = "longest",
) -> Corpus:
    """A brat folder (every ``.txt`` below it, with its ``.ann``) or a CoNLL/IOB file, as sentences;
    several of them read as one corpus (e.g. train and dev, for the paper's final training runs).

    ``types`` keeps only these entity types (others become ``O``); ``overlap`` chooses the BIO label
    where entities overlap (see :func:`clinfm.ner.text.to_sentences`).
    """
    if isinstance(path, list | tuple):
        parts = [read_corpus(one, types=types, overlap=overlap) for one in path]
        return parts[0] if len(parts) == 1 else _joined(parts)
    path = Path(path)
    report = ReadReport()
    if path.is_dir():
        documents = read_brat(path, report=report)
        sentences = [
            s for d in documents for s in to_sentences(d, types=types, overlap=overlap, report=report)
        ]
    elif path.is_file():
        documents = None
        sentences = [_keep_types(s, types) for s in read_conll(path, report=report)]
    else:
        raise InputError("no such brat folder or CoNLL file", path=path)
    report.log(log, source=str(path))
    if not sentences:
        raise InputError("holds no sentence with a token (empty documents only?)", path=path)
    return Corpus(str(path), sentences, documents, report)


def _joined(parts: Sequence[Corpus]) -> Corpus:
    """One corpus of several; documents renamed ``<k>:<name>`` so two folders' names never merge."""
    sentences, documents, report = [], [], ReadReport()
    for k, part in enumerate(parts):
        sentences += [replace(s, document=f"{k}:{s.document}") for s in part.sentences]
        documents += [replace(d, name=f"{k}:{d.name}") for d in part.documents or ()]
        report.counts.update(part.report.counts)
        for kind, places in part.report.examples.items():
            report.examples.setdefault(kind, []).extend(places)
    complete = all(part.documents is not None for part in parts)
    return Corpus(" + ".join(p.source for p in parts), sentences, documents if complete else None, report)


def _keep_types(sentence: Sentence, types: Sequence[str] | None) -> Sentence:
    if types is None or sentence.tags is None:
        return sentence
    wanted = set(types)
    tags = tuple(tag if tag == OUTSIDE or tag[2:] in wanted else OUTSIDE for tag in sentence.tags)
    return Sentence(sentence.document, sentence.tokens, sentence.offsets, tags)


def entities_per_type(sentences: Sequence[Sentence]) -> dict[str, int]:
    counts = Counter(tag[2:] for s in sentences for tag in s.tags or () if tag.startswith("B-"))
    return dict(sorted(counts.items()))


def _describe(corpus: Corpus, sentences: Sequence[Sentence]) -> dict:
    return {
        "path": corpus.source,
        "sentences": len(sentences),
        "sentences_read": len(corpus.sentences),
        "sentences_without_entity": sum(all(t == OUTSIDE for t in s.tags or ()) for s in sentences),
        "entities": entities_per_type(sentences),
        # counts only: the log shows where, but document names (which can carry a patient's
        # identifiers) are not kept in a run or checkpoint
        "skipped_or_repaired": dict(sorted(corpus.report.counts.items())),
    }


# ---------------------------------------------------------------------------------------- training


def training_settings(model: str, preset: str, overrides: dict | None = None) -> TrainConfig:
    """The paper's settings for ``model`` (or the small preset's), with the user's ``overrides``."""
    if model == FEATURE_CRF:
        raise InputError("the feature CRF has no neural training settings")
    encoder, _ = split_model_name(model)
    sizes = SMALL_TRAINING if preset == "small" and encoder == "transformer" else PAPER_TRAINING[model]
    settings = {
        **PAPER_OPTIMISATION,
        **sizes,
        **{k: v for k, v in (overrides or {}).items() if v is not None},
    }
    return TrainConfig().replace(**settings)


def new_tagger(
    model: str, labels: Sequence[str], words, *, preset: str, encoder: str | None, seed: int
) -> Tagger:
    """A tagger for the tokenizer ``words``: a DistilBERT-config encoder at random (``transformer-*``)
    or a pre-trained encoder (``bert-*``; the embedded all-MiniLM-L6-v2 unless ``encoder`` names a
    local model)."""
    kind, head = split_model_name(model)
    torch.manual_seed(seed)  # the initial weights, so a run is repeatable
    if kind == "transformer":
        if encoder is not None:
            raise InputError("--encoder is for bert-* models; a transformer-* model starts from scratch")
        vocab_size = _scratch_preset(preset)["vocab_size"]
        network = _scratch_encoder(preset, max(vocab_size, len(words)))
        source = "scratch"
    else:
        source = encoder or str(default_text_model_path())
        network = pretrained_encoder(source)
    config = TaggerConfig(
        labels=tuple(labels),
        head=head,
        encoder_config=network.config.to_diff_dict() | {"model_type": network.config.model_type},
        encoder_source=source,
        max_length=PAPER_MAX_LENGTH,
    )
    return Tagger(network, config)


def _scratch_preset(preset: str) -> dict:
    if preset not in SCRATCH_PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(SCRATCH_PRESETS)}")
    return SCRATCH_PRESETS[preset]


def tokenizer_for(
    model: str,
    train: Sequence[Sentence],
    *,
    preset: str,
    encoder: str | None,
    tokenizer: str | None,
    work: Path | None = None,
):
    """The tokenizer a new tagger reads with: ``tokenizer`` if named; a pre-trained encoder's own; or,
    for a model from scratch, a WordPiece vocabulary learned from ``train``.

    A learned vocabulary is kept in ``work`` before training starts: Hugging Face's trainer breaks
    ties differently in each process, so a resumed run, or another DDP process, must read the very
    vocabulary the weights are being trained with rather than learn its own.
    """
    kind, _ = split_model_name(model)
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    if kind == "bert":
        return load_tokenizer(encoder or str(default_text_model_path()))
    vocab_size = _scratch_preset(preset)["vocab_size"]
    if work is None:
        return train_wordpiece(train, vocab_size)
    saved = work / "tokenizer"
    if not saved.exists() and is_global_zero():
        learning = work / ".tokenizer.tmp"
        shutil.rmtree(learning, ignore_errors=True)
        train_wordpiece(train, vocab_size).save_pretrained(str(learning))
        learning.rename(saved)
    waited = 0.0
    while not saved.exists():  # another process: rank 0 is learning it
        if waited > TOKENIZER_WAIT_SECONDS:
            raise InputError("no learned tokenizer appeared from the first process", path=saved)
        time.sleep(1.0)
        waited += 1.0
    return load_tokenizer(str(saved))


def _scratch_encoder(preset: str, vocab_size: int):
    from transformers import AutoModel

    return AutoModel.from_config(scratch_encoder_config(preset, vocab_size))


def train(
    train_data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    dev_data: str | os.PathLike | None = None,
    model: str = "transformer-crf",
    preset: str = "paper",
    encoder: str | None = None,
    tokenizer: str | None = None,
    settings: dict | None = None,
    sambd_keep: float | None = None,
    types: Sequence[str] | None = None,
    overlap: str = "longest",
    seed: int = 0,
    overwrite: bool = False,
    resume: bool = True,
) -> Path:
    """Train a tagger on brat folders or CoNLL files (one or several, read as one corpus); select
    its epoch on ``dev_data`` (lowest loss).

    ``sambd_keep``: SamBD, keeping each all-O sentence of train and dev with this probability (the
    paper's 0.08); None keeps them all. Writes a checkpoint folder with ``run.json`` (data counts,
    settings, dev scores when there is a dev set).
    """
    out = check_output(out, overwrite)
    train_corpus = read_corpus(train_data, types=types, overlap=overlap)
    dev_corpus = read_corpus(dev_data, types=types, overlap=overlap) if dev_data is not None else None
    train_sentences, dev_sentences = _downsample(train_corpus, dev_corpus, sambd_keep, seed)
    data = {"train": _describe(train_corpus, train_sentences)}
    if dev_corpus is not None:
        data["dev"] = _describe(dev_corpus, dev_sentences)
    recorded = {
        "model": model,
        "preset": preset,
        "encoder": encoder,
        "tokenizer": tokenizer,
        "seed": seed,
        "sambd_keep": sambd_keep,
        "types": types,
        "overlap": overlap,
        "data": data,
    }
    if model == FEATURE_CRF:
        if not is_global_zero():  # one process trains it; under DDP the others have nothing to do
            return out
        return _train_feature_crf(train_sentences, dev_sentences, out, recorded, settings, overwrite)

    config = training_settings(model, preset, settings).replace(seed=seed)
    labels = label_set(train_sentences)
    _warn_unknown_types(labels, dev_sentences, "dev")
    if dev_corpus is not None and not dev_sentences:
        log.warning("the dev data hold no sentence after SamBD: the last epoch's weights are kept")
    recorded |= {"training": config.to_dict(), "labels": list(labels)}
    started = time.perf_counter()
    with work_dir(out, recorded, resume) as work:
        words = tokenizer_for(
            model, train_sentences, preset=preset, encoder=encoder, tokenizer=tokenizer, work=work
        )
        tagger = new_tagger(model, labels, words, preset=preset, encoder=encoder, seed=seed)
        train_set = SubwordData(train_sentences, words, labels, tagger.config.max_length)
        dev_set = (
            SubwordData(dev_sentences, words, labels, tagger.config.max_length) if dev_sentences else None
        )
        result = fit(tagger, "tag", train_set, dev_set, config, work, name="ner", resume=resume)
    seconds = time.perf_counter() - started
    if not result.is_global_zero:
        return out
    dev_scores = evaluate_sentences(tagger, words, dev_sentences) if dev_sentences else None
    with atomic_directory(out, overwrite=overwrite) as tmp:
        save_tagger(tmp, tagger, words, {"model": model, "preset": preset, "training": config.to_dict()})
        copy_logs(work, tmp)
        write_run(
            tmp,
            "ner-train",
            f"NER: {model} ({preset if model.startswith('transformer') else 'pre-trained'})",
            recorded | {"parameters": tagger.num_parameters(), "dropped_words": train_set.dropped_words},
            {
                "epochs": result.epochs,
                f"best_{result.monitor}": result.best_score,
                "train_seconds": round(seconds, 1),
                "dev": dev_scores,
            },
            resume_note(result),
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


def _downsample(train_corpus, dev_corpus, keep, seed) -> tuple[list[Sentence], list[Sentence]]:
    train_sentences = train_corpus.sentences
    dev_sentences = dev_corpus.sentences if dev_corpus is not None else []
    if keep is None:
        return train_sentences, dev_sentences
    kept_train, kept_dev = sambd(train_sentences, keep, seed), sambd(dev_sentences, keep, seed + 1)
    log.info(
        "SamBD (keep %.2f of all-O sentences): train %d -> %d sentences, dev %d -> %d",
        keep,
        len(train_sentences),
        len(kept_train),
        len(dev_sentences),
        len(kept_dev),
    )
    return kept_train, kept_dev


def _warn_unknown_types(labels: Sequence[str], sentences: Sequence[Sentence], what: str) -> int:
    """Count (and log) entities of types the model was not trained on: they can only be missed."""
    known = {label[2:] for label in labels if label != OUTSIDE}
    unknown = Counter(
        t[2:] for s in sentences for t in s.tags or () if t.startswith("B-") and t[2:] not in known
    )
    if unknown:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(unknown.items()))
        log.warning(
            "%d %s entities of types the model does not know, scored as missed: %s",
            sum(unknown.values()),
            what,
            listed,
        )
    return sum(unknown.values())


def _train_feature_crf(train_sentences, dev_sentences, out, recorded, settings, overwrite) -> Path:
    hyper = {
        k: v for k, v in (settings or {}).items() if k in ("c1", "c2", "max_iterations") and v is not None
    }
    started = time.perf_counter()
    with progress.status("training the feature CRF"):
        model = FeatureCRF(**hyper).fit(train_sentences)
    seconds = time.perf_counter() - started
    dev_scores = evaluate_sentences(model, None, dev_sentences) if dev_sentences else None
    with atomic_directory(out, overwrite=overwrite) as tmp:
        model.save(tmp / "crf")
        write_run(
            tmp,
            "ner-train",
            "NER: feature CRF",
            recorded | {"parameters": model.num_parameters, "hyperparameters": model.hyperparameters()},
            {"train_seconds": round(seconds, 1), "dev": dev_scores},
            [],
        )
    return out


# ------------------------------------------------------------------------------------------ tagging


@dataclass
class Tagging:
    """A model's tags for some sentences: per word, and (neural models) per sub-word with the gold."""

    words: list[list[str]]
    gold_subwords: list[list[str]] | None = None
    pred_subwords: list[list[str]] | None = None
    piece_sentences: list[int] | None = None  # the sentence each sub-word sequence belongs to
    seconds: float = 0.0


def load_model(folder: str | os.PathLike) -> tuple[Tagger | FeatureCRF, object]:
    """A tagger folder from ``train``: (model, tokenizer); the feature CRF has no tokenizer."""
    folder = Path(folder)
    if (folder / "crf").is_dir():
        return FeatureCRF.load(folder / "crf"), None
    if not (folder / "config.json").is_file():
        raise InputError("is not a tagger folder (expected one written by clinfm ner train)", path=folder)
    model, tokenizer, _ = load_tagger(folder)
    return model, tokenizer


def tag(
    model: Tagger | FeatureCRF, tokenizer, sentences: Sequence[Sentence], *, batch_size: int = 64
) -> Tagging:
    """Tag ``sentences``: a word's tag is its first sub-word's (sub-word tags kept for the paper's scores)."""
    started = time.perf_counter()
    if isinstance(model, FeatureCRF):
        return Tagging(words=model.predict(sentences), seconds=time.perf_counter() - started)
    data = SubwordData(sentences, tokenizer, model.config.labels, model.config.max_length)
    if data.dropped_words:
        log.warning("%d words have no sub-word in this tokenizer and are tagged O", data.dropped_words)
    predicted: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(data)
    model.eval()
    device = next(model.parameters()).device
    loader = make_loader(data, TrainConfig(batch_size=batch_size), train=False)
    for batch in progress.track(loader, "tagging", total=len(loader)):
        ids = model.predict({k: v.to(device) for k, v in batch.items()}).cpu().numpy()
        for row, index in enumerate(batch["index"].tolist()):
            predicted[index] = ids[row, : data.lengths[index]]
    return _assemble(data, predicted, time.perf_counter() - started)


def _assemble(data: SubwordData, predicted: list[np.ndarray], seconds: float) -> Tagging:
    labels = data.labels
    words = [[OUTSIDE] * len(s) for s in data.sentences]
    pred_subwords, gold_subwords = [], []
    for piece, ids in zip(data.pieces, predicted, strict=True):
        tags = [labels[i] for i in ids]
        pred_subwords.append(tags)
        if data.sentences[piece.sentence].tags is not None:
            gold_subwords.append(data.gold_subword_tags(piece))
        first = np.flatnonzero(np.r_[True, piece.word_index[1:] != piece.word_index[:-1]])
        for position in first:  # the first sub-word of each word carries the word's tag
            words[piece.sentence][piece.first_word + piece.word_index[position]] = tags[position]
    labelled = len(gold_subwords) == len(pred_subwords)
    sentences = [piece.sentence for piece in data.pieces]
    return Tagging(words, gold_subwords if labelled else None, pred_subwords, sentences, seconds)


def evaluate_sentences(
    model, tokenizer, sentences: Sequence[Sentence], *, batch_size: int = 64, n_bootstrap: int = 1000
) -> dict:
    """All three families of scores (the paper's, entity-level, partial), the paper's on words, and
    bootstrap 95% intervals of the headline ones (resampling documents)."""
    tagged = tag(model, tokenizer, sentences, batch_size=batch_size)
    if tagged.pred_subwords is not None and not any(tagged.pred_subwords):
        raise InputError(
            "nothing to score: no word of these sentences has a sub-word in the tagger's vocabulary"
        )
    gold = [list(s.tags) for s in sentences]
    scores = ner_scores(gold, tagged.words, tagged.gold_subwords, tagged.pred_subwords)
    scores["paper_on_words"] = paper_scores(gold, tagged.words)
    documents = counting_units(sentences)  # resampled whole: a document's sentences are not independent
    scores["intervals"] = bootstrap_intervals(
        gold,
        tagged.words,
        documents,
        gold_subwords=tagged.gold_subwords,
        pred_subwords=tagged.pred_subwords,
        subword_groups=[documents[i] for i in tagged.piece_sentences] if tagged.piece_sentences else None,
        n_bootstrap=n_bootstrap,
    )
    scores["sentences"] = len(sentences)
    scores["sentences_per_second"] = round(len(sentences) / max(tagged.seconds, 1e-9), 1)
    return scores


def evaluate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    types: Sequence[str] | None = None,
    overlap: str = "longest",
    batch_size: int = 64,
    overwrite: bool = False,
) -> dict:
    """Score a trained tagger on a labelled brat folder or CoNLL file; write ``metrics.json`` to ``out``."""
    if out is not None:
        out = check_output(out, overwrite)
    model, tokenizer = load_model(checkpoint)
    corpus = read_corpus(data, types=types, overlap=overlap)
    labels = model.labels if isinstance(model, FeatureCRF) else model.config.labels
    unknown = _warn_unknown_types(labels, corpus.sentences, "test")
    scores = evaluate_sentences(model, tokenizer, corpus.sentences, batch_size=batch_size)
    scores |= {
        "data": _describe(corpus, corpus.sentences),
        "unknown_type_entities": unknown,
        "checkpoint": str(Path(checkpoint).resolve()),
    }
    if out is not None:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            write_json_atomic(tmp / "metrics.json", scores)
            write_run(
                tmp,
                "ner-evaluate",
                "NER evaluation",
                {"checkpoint": str(checkpoint), "data": str(data)},
                {"metrics": "metrics.json"},
                [],
            )
    return scores


def predict(
    checkpoint: str | os.PathLike,
    texts: str | os.PathLike,
    out: str | os.PathLike,
    *,
    batch_size: int = 64,
    overwrite: bool = False,
) -> Path:
    """Tag every ``.txt`` under ``texts``; write brat files (same names, predicted ``.ann``) to ``out``."""
    out = check_output(out, overwrite)
    if Path(texts).is_file():
        raise InputError(
            "is a file; clinfm ner predict tags a folder of .txt files "
            "(score a CoNLL file with clinfm ner evaluate)",
            path=texts,
        )
    model, tokenizer = load_model(checkpoint)
    report = ReadReport()
    documents = read_brat(texts, report=report, annotations=False)
    per_document = [to_sentences(Document(d.name, d.text), report=report) for d in documents]
    report.log(log)
    sentences = [s for group in per_document for s in group]
    tagged = tag(model, tokenizer, sentences, batch_size=batch_size)
    predictions, position = [], 0
    for document, group in zip(documents, per_document, strict=True):
        tags = tagged.words[position : position + len(group)]
        predictions.append(entities_from_sentences(document.name, document.text, group, tags))
        position += len(group)
    write_brat(predictions, out, overwrite=overwrite, read_counts=dict(report.counts))
    log.info(
        "tagged %d documents (%d sentences, %.0f sentences/s)",
        len(documents),
        len(sentences),
        len(sentences) / max(tagged.seconds, 1e-9),
    )
    return out


# --------------------------------------------------------------------------------------- comparison

NEURAL_MODELS = ("transformer-crf", "transformer-apt", "bert-crf", "bert-apt")
COMPARED = (*NEURAL_MODELS, FEATURE_CRF)


def compare(
    train_data: str | os.PathLike | Sequence[str | os.PathLike],
    test_data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dev_data: str | os.PathLike | None = None,
    models: Sequence[str] = COMPARED,
    sambd_variants: Sequence[bool] = (False, True),
    sambd_keep: float = PAPER_SAMBD_KEEP,
    preset: str = "paper",
    encoder: str | None = None,
    settings: dict | None = None,
    types: Sequence[str] | None = None,
    overlap: str = "longest",
    seed: int = 0,
    batch_size: int = 64,
    overwrite: bool = False,
    resume: bool = True,
) -> Path:
    """The paper's comparison on the user's data: each model trained with and without SamBD, all
    scored on ``test_data`` by the three families of scores, with parameters and times.

    ``settings`` (epochs, batch size, ...) apply to every neural model over its own defaults. Each
    trained tagger is kept under ``<out>/models/``; an interrupted comparison resumes at the first
    model it had not finished.
    """
    out = check_output(out, overwrite)
    for name in models:
        if name != FEATURE_CRF:
            split_model_name(name)
    test = read_corpus(test_data, types=types, overlap=overlap)
    recorded = {
        "models": list(models),
        "sambd": list(sambd_variants),
        "sambd_keep": sambd_keep,
        "preset": preset,
        "encoder": encoder,
        "settings": settings,
        "types": types,
        "overlap": overlap,
        "seed": seed,
        "train": [str(p) for p in train_data] if isinstance(train_data, list | tuple) else str(train_data),
        "dev": str(dev_data) if dev_data else None,
        "test": str(test_data),
    }
    rows = []
    with work_dir(out, recorded, resume) as work:
        for name in models:
            for downsampled in sambd_variants:
                label = f"{name}+sambd" if downsampled else name
                folder = work / "models" / label
                if not (folder / "run.json").exists():
                    log.info("training %s", label)
                    train(
                        train_data,
                        folder,
                        dev_data=dev_data,
                        model=name,
                        preset=preset,
                        encoder=encoder if name.startswith("bert") else None,
                        settings=None
                        if name == FEATURE_CRF
                        else training_settings(name, preset, settings).to_dict(),
                        sambd_keep=sambd_keep if downsampled else None,
                        types=types,
                        overlap=overlap,
                        seed=seed,
                        overwrite=True,
                        resume=resume,
                    )
                if is_global_zero():  # under DDP, one process scores while the others wait in the next fit
                    rows.append(_score_row(label, name, downsampled, folder, test, batch_size))
    if not is_global_zero():
        return out
    with atomic_directory(out, overwrite=overwrite) as tmp:
        shutil.move(work / "models", tmp / "models")
        write_json_atomic(
            tmp / "metrics.json", {"ner": {"test": _describe(test, test.sentences), "models": rows}}
        )
        (tmp / "table.md").write_text(comparison_table(rows))
        write_run(
            tmp,
            "ner-compare",
            f"NER comparison on {'/'.join(Path(test_data).parts[-2:])}",
            recorded,
            {"metrics": "metrics.json", "table": "table.md"},
            [],
        )
        from clinfm.report.html import write_report

        write_report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _score_row(label: str, name: str, downsampled: bool, folder: Path, test: Corpus, batch_size: int) -> dict:
    model, tokenizer = load_model(folder)
    _warn_unknown_types(
        model.labels if isinstance(model, FeatureCRF) else model.config.labels, test.sentences, "test"
    )
    run = json.loads((folder / "run.json").read_text())
    scores = evaluate_sentences(model, tokenizer, test.sentences, batch_size=batch_size)
    return {
        "label": label,
        "model": name,
        "sambd": downsampled,
        "parameters": run["config"]["parameters"],
        "train_sentences": run["config"]["data"]["train"]["sentences"],
        "train_seconds": run["results"]["train_seconds"],
        "epochs": run["results"].get("epochs"),
        "scores": scores,
    }


def comparison_table(rows: Sequence[dict]) -> str:
    """The paper's table (BIO-strict macro P / R / F1 and weighted F1, token-level macro F1, on
    sub-words with O included) beside entity-level strict and partial F1, with bootstrap 95%
    intervals (documents resampled), parameters and times, as Markdown."""
    header = (
        "| model | parameters | train sentences | train s | tag sent/s | BIO-strict macro P / R | "
        "BIO-strict macro F1 (95% CI) | BIO-strict weighted F1 | token macro F1 (95% CI) | "
        "entity strict micro F1 (95% CI) | entity strict macro F1 | partial micro F1 (95% CI) |"
    )
    from clinfm.ner.report import tagger_name  # display names, as on the HTML page

    lines = [header, "|" + "---|" * 12]
    for row in rows:
        s, ci = row["scores"], row["scores"]["intervals"]
        bio = s["paper"]["bio_strict"]
        unit = "" if s["paper_unit"] == "subword" else " (words)"
        lines.append(
            f"| {tagger_name(row['label'])} | {row['parameters']:,} | {row['train_sentences']:,} "
            f"| {row['train_seconds']:.0f} | {s['sentences_per_second']:,.0f} "
            f"| {bio['macro']['precision']:.3f} / {bio['macro']['recall']:.3f}{unit} "
            f"| {estimate_text(ci['bio_strict_macro_f1'])} | {bio['weighted']['f1']:.3f} "
            f"| {estimate_text(ci['token_macro_f1'])} | {estimate_text(ci['entity_micro_f1'])} "
            f"| {s['entity']['macro']['f1']:.3f} | {estimate_text(ci['partial_micro_f1'])} |"
        )
    return "\n".join(lines) + "\n"
