"""Training and tagging speed of each NER model, in sentences per second.

    python benchmarks/ner_throughput.py [--sentences 10000] [--train-steps 30] [--models ...]

On the synthetic medication corpus (clinfm.ner.synth; sentences of 5 to 25 words): for each neural
model, optimiser steps at its paper batch size (the small preset at its own), timed after a warm-up,
then tagging ``--sentences`` sentences through ``clinfm.ner.recipes.tag`` (the path ``clinfm ner
predict`` takes, length-bucketed batches of 64); for the feature CRF, a whole fit and the tagging.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a shared machine

import torch

from clinfm.ner.data import SubwordData, label_set
from clinfm.ner.features import FeatureCRF
from clinfm.ner.recipes import new_tagger, tag, tokenizer_for, training_settings
from clinfm.ner.synth import synthetic_documents
from clinfm.ner.text import to_sentences
from clinfm.train.engine import make_loader, make_optimizer, parameter_groups

MODELS = ("transformer-crf:paper", "transformer-crf:small", "bert-crf:paper", "bert-apt:paper", "feature-crf")


def corpus(n: int, seed: int):
    sentences = []
    for document in synthetic_documents(n, seed=seed):
        sentences += to_sentences(document)
    return sentences


def train_rate(name: str, preset: str, sentences, steps: int):
    """(training sentences per second, parameters, (model, tokenizer)) over ``steps`` optimiser steps."""
    labels = label_set(sentences)
    tokenizer = tokenizer_for(name, sentences, preset=preset, encoder=None, tokenizer=None)
    model = new_tagger(name, labels, tokenizer, preset=preset, encoder=None, seed=0)
    settings = training_settings(name, preset)
    data = SubwordData(sentences, tokenizer, labels, model.config.max_length)
    optimiser = make_optimizer(parameter_groups(model, settings), settings)
    batches = iter(make_loader(data, settings, train=True))
    model.train()

    def step():
        loss, _ = model.loss(next(batches))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    return steps * settings.batch_size / seconds, model.num_parameters(), (model, tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=10_000, help="sentences to tag")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    train_sentences = corpus(1500, seed=0)
    to_tag = corpus(args.sentences // 2 + 50, seed=1)[: args.sentences]
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"training sentences {len(train_sentences):,}; tagging {len(to_tag):,} sentences")
    print("| model | preset | parameters | train sentences/s | tag sentences/s | tag 10,000 sentences |")
    print("|---|---|---|---|---|---|")
    for spec in args.models.split(","):
        name, _, preset = spec.partition(":")
        if name == "feature-crf":
            started = time.perf_counter()
            model = FeatureCRF().fit(train_sentences)
            fit_rate = len(train_sentences) / (
                time.perf_counter() - started
            )  # one whole fit (100 iterations)
            parameters, tokenizer = model.num_parameters, None
            rate_note = f"{fit_rate:,.0f} (whole fit)"
        else:
            rate, parameters, (model, tokenizer) = train_rate(name, preset, train_sentences, args.train_steps)
            rate_note = f"{rate:,.1f}"
        tagged = tag(model, tokenizer, to_tag)
        per_second = len(to_tag) / tagged.seconds
        print(
            f"| {name} | {preset or '-'} | {parameters:,} | {rate_note} | {per_second:,.0f} "
            f"| {10_000 / per_second:,.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
