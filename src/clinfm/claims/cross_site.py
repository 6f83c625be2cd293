"""``clinfm transfer``: does a model trained at site A help at site B, coded otherwise?

The protocols of the concept-embedding paper (Gao et al., arXiv:2409.13893), on Claim-PT trained on
each site's labels (no pre-training, so only the transfer is measured), judged on B's held-out
patients at several shares of B's training labels:

- ``local``: trained on B's labels only;
- ``shared``: A's model moved to B's codes and applied untouched (no B label used);
- ``transfer``: A's model moved to B's codes, then tuned on B's labels, every layer;
- ``transfer_head``: the same, tuning the classification head only;
- ``pooled``: trained on A's labels and B's together, over both sites' codes.

Each protocol runs for code-id embeddings (the paper's Claim-PT: B's codes are unknown to A's
model) and for concept embeddings (``projected``: codes from their descriptions' text embeddings,
so A's model can read B's codes).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clinfm import __version__, progress
from clinfm.claims.batches import CategoryMap, VisitBatches
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.claims.model import ClaimPT, ClaimPTConfig
from clinfm.claims.recipes import FROM_SCRATCH, _now, load_cohort, subsample, write_evaluation
from clinfm.claims.tokenizer import PackedVisits, TokenizerConfig
from clinfm.claims.transfer import concept_vectors, move_to_site, site_vocabulary
from clinfm.errors import InputError
from clinfm.events.meds import scan_events, scan_shards
from clinfm.events.splits import SplitPolicy
from clinfm.io import atomic_directory, check_output, write_json_atomic
from clinfm.train.engine import TrainConfig, clone, fit, predict
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, Vocabulary

PROTOCOLS = ("local", "shared", "transfer", "transfer_head", "pooled")
DESCRIPTIONS = {
    "local": "trained on the target site's labels only",
    "shared": "the source site's model applied to the target untouched (no target label used)",
    "transfer": "the source site's model tuned on the target's labels, every layer",
    "transfer_head": "the source site's model with only its classification head tuned on the target's labels",
    "pooled": "trained on both sites' labels together",
}
EMBEDDINGS = {"ids": "code ids (the paper's Claim-PT)", "text": "concept embeddings of code descriptions"}


def _site_model(vocab: Vocabulary, mode: str, encoder: str | None, data, seed: int) -> ClaimsModel:
    """A fresh Claim-PT (paper preset) for ``vocab``: code ids, or projected concept vectors."""
    categories = CategoryMap.build(vocab)
    concepts, name = (None, None) if mode == "id" else concept_vectors(vocab, encoder, data)
    dim = 0 if concepts is None else concepts.shape[1]
    config = ClaimPTConfig.paper(len(vocab), len(categories), code_embedding=mode, concept_dim=dim)
    torch.manual_seed(seed)
    model = ClaimPT(config)
    if concepts is not None:
        model.visit_embedding.code.set_concepts(torch.from_numpy(concepts))
    return ClaimsModel(model, vocab, categories, TokenizerConfig.paper(), encoder=encoder, encoder_name=name)


def _tokenized(bundle: ClaimsModel, cohort, splits: tuple[str, ...]) -> dict[str, VisitBatches]:
    """A site's labelled splits tokenized once for a vocabulary; label shares are ``subset`` views."""
    shards = scan_shards(cohort.data)
    return {split: bundle.dataset(shards, cohort.parts[split], cohort.y(split)) for split in splits}


def _joined(a: VisitBatches, b: VisitBatches) -> VisitBatches:
    """Two sites' samples in one dataset (tokenized with the same vocabulary)."""
    packed = PackedVisits.concat([a.packed.take(a.rows), b.packed.take(b.rows)])
    return VisitBatches(packed, a.categories, np.concatenate([a.label_values, b.label_values]))


def transfer(
    source: str | os.PathLike,
    target: str | os.PathLike,
    task: str,
    out: str | os.PathLike,
    *,
    encoder: str | None = None,
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0),
    seeds: tuple[int, ...] = (0, 1, 2),
    protocols: tuple[str, ...] = PROTOCOLS,
    settings: TrainConfig = FROM_SCRATCH,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    held_out: float | None = None,
    n_bootstrap: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Every protocol, for code ids and for concept embeddings, at each share of the target's labels.

    ``task`` names a label file both sites have (``<site>/tasks/<task>.parquet``) or is a path
    relative to each site. ``held_out`` replaces the sites' own splits by a stable-hash split with
    that share of patients held out (small sites, rare outcomes). Writes a label-efficiency run
    (``efficiency.json``, ``metrics.json``, predictions, ``report.html``) with one curve per
    ``<embedding>/<protocol>``.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise InputError(f"unknown protocols {unknown}; expected some of {', '.join(PROTOCOLS)}")
    out = check_output(out, overwrite)
    source, target = Path(source).resolve(), Path(target).resolve()
    fractions = tuple(sorted(set(fractions)))
    policy = SplitPolicy() if held_out is None else SplitPolicy(seed=0, held_out=held_out)
    a = load_cohort(source, _labels(source, task), policy)
    b = load_cohort(target, _labels(target, task), policy)
    plan = Plan(
        fractions,
        seeds,
        protocols,
        settings,
        min_subjects,
        policy,
        encoder,
        out.parent / f".{out.name}.partial",
    )
    work = plan.work
    results: dict[tuple[str, float, int], np.ndarray] = {}
    for embedding, mode in (("ids", "id"), ("text", "projected")):
        with progress.status(f"{embedding}: training at the source site"):
            results |= _protocols(a, b, embedding, mode, plan)
    methods = tuple(f"{e}/{p}" for e in EMBEDDINGS for p in protocols)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        primary = f"text/{'transfer' if 'transfer' in protocols else protocols[0]}"
        write_evaluation(tmp, results, b, fractions, seeds, methods, primary, n_bootstrap)
        write_json_atomic(
            tmp / "run.json", _run_json(a, b, task, methods, primary, encoder, fractions, seeds, settings)
        )
        if (work / "logs").exists():
            shutil.copytree(work / "logs", tmp / "logs")
        from clinfm.report import write_report

        write_report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _labels(site: Path, task: str) -> Path:
    path = site / "tasks" / f"{task}.parquet"
    return path if path.exists() else site / task


@dataclass(frozen=True)
class Plan:
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    protocols: tuple[str, ...]
    settings: TrainConfig
    min_subjects: int
    policy: SplitPolicy
    encoder: str | None
    work: Path


def _protocols(a, b, embedding: str, mode: str, plan: Plan) -> dict:
    """Held-out probabilities at the target for each protocol, fraction and seed, for one embedding.

    Each vocabulary's data are tokenized and its code vectors embedded once; every point trains a
    fresh copy (or a clone of the moved source model) on a ``subset`` of the target's labels.
    """
    fit_args = {"work_dir": plan.work, "resume": False}
    source_vocab = site_vocabulary(a.data, plan.policy.assign(a.data, scan_events(a.data)), plan.min_subjects)
    source = _site_model(source_vocab, mode, plan.encoder, a.data, seed=0)
    source.splits = plan.policy
    at_a = _tokenized(source, a, ("train", "tuning"))
    fit(
        source.model,
        "classify",
        at_a["train"],
        at_a["tuning"],
        plan.settings,
        name=f"{embedding}-source",
        **fit_args,
    )
    moved = move_to_site(source, b.data, min_subjects=plan.min_subjects)
    at_b = _tokenized(moved, b, ("train", "tuning", "held_out"))  # local models share the moved vocabulary
    local = _site_model(moved.vocab, mode, plan.encoder, b.data, seed=0)
    both = Vocabulary(
        tuple(sorted(set(source_vocab.codes) | set(moved.vocab.codes))), plan.min_subjects, counted=True
    )
    pooled = _site_model(both, mode, plan.encoder, None, seed=0)
    pooled_a = _tokenized(pooled, a, ("train", "tuning"))
    pooled_b = _tokenized(pooled, b, ("train", "tuning", "held_out"))
    shared = predict(moved.model, at_b["held_out"], "classify").numpy()  # no target label: one model
    results = {}
    for fraction in plan.fractions:
        for seed in plan.seeds:
            rows = {split: subsample(b.y(split), fraction, seed) for split in ("train", "tuning")}
            for protocol in plan.protocols:
                if protocol == "shared":
                    results[f"{embedding}/shared", fraction, seed] = shared
                    continue
                torch.manual_seed(seed)
                config = plan.settings.replace(seed=seed)
                data = pooled_b if protocol == "pooled" else at_b
                train, val = data["train"].subset(rows["train"]), data["tuning"].subset(rows["tuning"])
                if protocol in ("transfer", "transfer_head"):
                    model = clone(moved.model)
                    config = config.replace(strategy="probe" if protocol == "transfer_head" else "full")
                elif protocol == "local":
                    model = local.model.fresh_copy()
                else:  # pooled: both sites' labels over both sites' codes
                    model = pooled.model.fresh_copy()
                    train, val = _joined(pooled_a["train"], train), _joined(pooled_a["tuning"], val)
                fit(
                    model,
                    "classify",
                    train,
                    val,
                    config,
                    name=f"{embedding}-{protocol}-f{fraction:g}-s{seed}",
                    **fit_args,
                )
                results[f"{embedding}/{protocol}", fraction, seed] = predict(
                    model, data["held_out"], "classify"
                ).numpy()
    return results


def _run_json(a, b, task, methods, primary, encoder, fractions, seeds, settings) -> dict:
    return {
        "kind": "efficiency",
        "title": f"{task.replace('_', ' ')}: from {a.data.name} to {b.data.name}",
        "created": _now(),
        "clinfm_version": __version__,
        "task": {"name": task, "type": "binary", "labels": str(b.labels_path)},
        "data": {
            "source": str(a.data),
            "target": str(b.data),
            "n_train": b.parts["train"].height,
            "train_positives": int(b.y("train").sum()),
            "n_tuning": b.parts["tuning"].height,
            "n_test": b.parts["held_out"].height,
            "test_positives": int(b.y("held_out").sum()),
            "source_train": a.parts["train"].height,
        },
        "methods": {m: f"{EMBEDDINGS[m.split('/')[0]]}; {DESCRIPTIONS[m.split('/')[1]]}" for m in methods},
        "primary_method": primary,
        "config": {
            "encoder": encoder or "default",
            "training": settings.to_dict(),
            "fractions": list(fractions),
            "seeds": list(seeds),
        },
        "notes": [
            "The x axis counts the target site's training labels; shared uses none of them (a flat line).",
            "Every protocol is judged on the same held-out patients of the target site.",
        ],
    }
