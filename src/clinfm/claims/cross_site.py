"""``clinfm transfer``: does a model trained at site A help at site B, coded otherwise?

The protocols of the concept-embedding paper (Gao et al., arXiv:2409.13893), judged on B's held-out
patients at several shares of B's training labels:

- ``local``: trained on B's labels only;
- ``shared``: A's model moved to B's codes and applied untouched (no B label used);
- ``transfer``: A's model moved to B's codes, then tuned on B's labels, every layer;
- ``transfer_head``: the same, tuning the classification head only;
- ``pooled``: trained on A's labels and B's together, over both sites' codes.

Two model families (``preset``):

- ``paper``: the paper's own model and training: a findings table per sample (present / absent /
  missing, :mod:`clinfm.concepts.findings`) read by the 1-D CNN (:mod:`clinfm.concepts.cnn`); the
  source model is the best of three seeds by validation AUROC; transfer tunes at 10x the rate.
- ``claimpt``: Claim-PT on the visit sequence, trained on each site's labels (no pre-training, so
  only the transfer is measured).

Each protocol runs for code ids (one-hot findings, or Claim-PT's learned code table: B's codes are
unknown to A's model) and for the concept embeddings of each text encoder given (codes read through
their descriptions' text embeddings, so A's model can read B's codes).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clinfm import __version__, progress
from clinfm.claims.batches import VisitBatches
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.claims.model import CODE_EMBEDDINGS
from clinfm.claims.recipes import FROM_SCRATCH, Tuning, load_cohort, subsample, write_evaluation
from clinfm.claims.transfer import move_to_site, new_model, site_vocabulary
from clinfm.concepts.findings import (
    FindingsData,
    choose_findings,
    findings_table,
    onehot_vectors,
    text_vectors,
    token_ids,
)
from clinfm.errors import InputError
from clinfm.events.meds import scan_events, scan_shards
from clinfm.events.splits import SplitPolicy
from clinfm.io import atomic_directory, check_output, write_json_atomic
from clinfm.train.engine import FitResult, TrainConfig, clone, fit, is_global_zero, predict
from clinfm.train.runs import now
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, Vocabulary

PROTOCOLS = ("local", "shared", "transfer", "transfer_head", "pooled")
PRESETS = ("claimpt", "paper")
DESCRIPTIONS = {
    "local": "trained on the target site's labels only",
    "shared": "the source site's model applied to the target untouched (no target label used)",
    "transfer": "the source site's model tuned on the target's labels, every layer",
    "transfer_head": "the source site's model with only its classification head tuned on the target's labels",
    "pooled": "trained on both sites' labels together",
}
ID_ARMS = {
    "claimpt": "code ids (Claim-PT's learned code table)",
    "paper": "one-hot findings (the paper's baseline)",
}


def _tokenized(bundle: ClaimsModel, cohort, splits: tuple[str, ...]) -> dict[str, VisitBatches]:
    """A site's labelled splits tokenized once for a vocabulary; label shares are ``subset`` views."""
    shards = scan_shards(cohort.data)
    return {split: bundle.dataset(shards, cohort.parts[split], cohort.y(split)) for split in splits}


def transfer(
    source: str | os.PathLike,
    target: str | os.PathLike,
    task: str,
    out: str | os.PathLike,
    *,
    preset: str = "claimpt",
    encoders: tuple[str | None, ...] = (None,),
    code_embedding: str = "projected",
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0),
    seeds: tuple[int, ...] = (0, 1, 2),
    protocols: tuple[str, ...] = PROTOCOLS,
    settings: TrainConfig | None = None,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    held_out: float | None = None,
    max_findings: int = 100,
    missing: str = "absent",
    finding_prefixes: tuple[str, ...] | None = None,
    source_labels: str | os.PathLike | None = None,
    target_labels: str | os.PathLike | None = None,
    n_bootstrap: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Every protocol, for code ids and each text encoder's concept embeddings, at each share of the
    target's labels.

    ``task`` names a label file both sites have (``<site>/tasks/<task>.parquet``) or is a path
    relative to each site; ``source_labels`` / ``target_labels`` name a site's file anywhere else
    (a read-only dataset). ``encoders``: text encoder specs (None: the default MiniLM).
    ``code_embedding``: how Claim-PT reads the text vectors (projected, frozen, finetuned).
    ``settings``: training of every model (default: the preset's); the transfer protocols tune at
    ten times its learning rate under the paper preset. ``held_out`` replaces the sites' own splits
    by a stable-hash split with that share of patients held out (small sites, rare outcomes).
    ``max_findings``, ``missing`` and ``finding_prefixes`` (which codes may be findings) shape the
    paper preset's findings tables. Writes a label-efficiency run (``efficiency.json``,
    ``metrics.json``, predictions, ``report.html``) with one curve per ``<embedding>/<protocol>``.
    """
    plan = _plan(
        preset=preset,
        encoders=encoders,
        code_embedding=code_embedding,
        fractions=fractions,
        seeds=seeds,
        protocols=protocols,
        settings=settings,
        min_subjects=min_subjects,
        held_out=held_out,
        max_findings=max_findings,
        missing=missing,
        finding_prefixes=finding_prefixes,
        out=out,
    )
    out = check_output(out, overwrite)
    if is_global_zero():  # an interrupted run's logs; transfer does not resume, and its folder is its own
        shutil.rmtree(plan.work, ignore_errors=True)
    source, target = Path(source).resolve(), Path(target).resolve()
    a = load_cohort(source, source_labels or _labels(source, task), plan.policy)
    b = load_cohort(target, target_labels or _labels(target, task), plan.policy)
    tables = _findings_tables(a, b, plan) if preset == "paper" else None  # the same for every arm
    results: dict[tuple[str, float, int], np.ndarray] = {}
    tuning: dict[tuple[str, float, int], Tuning] = {}
    for label, encoder in plan.embeddings.items():
        with progress.status(f"{label}: training at the source site"):
            arm = (
                _paper_arm(a, b, tables, label, encoder, plan)
                if tables
                else _claimpt_arm(a, b, label, encoder, plan)
            )
            held_out, tuned = _run_protocols(arm, label, plan)
            results |= held_out
            tuning |= tuned
    methods = tuple(f"{e}/{p}" for e in plan.embeddings for p in protocols)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        text = next((e for e in plan.embeddings if e != "ids"), "ids")
        primary = f"{text}/{'transfer' if 'transfer' in protocols else protocols[0]}"
        write_evaluation(tmp, results, b, plan.fractions, seeds, methods, primary, n_bootstrap, tuning)
        write_json_atomic(tmp / "run.json", _run_json(a, b, task, methods, primary, plan, tables))
        if (plan.work / "logs").exists():
            shutil.copytree(plan.work / "logs", tmp / "logs")
        from clinfm.report import write_report

        write_report(tmp)
    shutil.rmtree(plan.work, ignore_errors=True)
    return out


def _labels(site: Path, task: str) -> Path:
    path = site / "tasks" / f"{task}.parquet"
    return path if path.exists() else site / task


@dataclass(frozen=True)
class Plan:
    preset: str
    embeddings: dict[str, str | None]  # run label -> text encoder spec; "ids" -> None (code ids)
    code_embedding: str
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    protocols: tuple[str, ...]
    settings: TrainConfig
    transfer_settings: TrainConfig  # the transfer protocols' training (the paper: 10x the rate)
    min_subjects: int
    policy: SplitPolicy
    max_findings: int
    missing: str
    finding_prefixes: tuple[str, ...] | None
    work: Path


def _plan(
    *,
    preset,
    encoders,
    code_embedding,
    fractions,
    seeds,
    protocols,
    settings,
    min_subjects,
    held_out,
    max_findings,
    missing,
    finding_prefixes,
    out,
) -> Plan:
    """The run's choices, checked before any data is read."""
    from clinfm.concepts import load_encoder
    from clinfm.concepts.cnn import PAPER_TRAINING
    from clinfm.concepts.findings import MISSING_POLICIES

    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise InputError(f"unknown protocols {unknown}; expected some of {', '.join(PROTOCOLS)}")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if code_embedding not in CODE_EMBEDDINGS[1:]:
        raise InputError(
            f"code embedding must be one of {', '.join(CODE_EMBEDDINGS[1:])}, not {code_embedding!r}"
        )
    if missing not in MISSING_POLICIES:
        raise InputError(f"missing must be one of {', '.join(MISSING_POLICIES)}, not {missing!r}")
    if max_findings < 1:
        raise InputError("max_findings must be at least 1")
    if settings is None:
        settings = PAPER_TRAINING if preset == "paper" else FROM_SCRATCH
    transfer_settings = settings.replace(lr=settings.lr * 10) if preset == "paper" else settings
    if min_subjects < 1:
        raise InputError("min_subjects must be at least 1")
    encoders = tuple(dict.fromkeys(e or "default" for e in encoders or (None,)))  # None: ids, never text
    for encoder in encoders:  # a missing model fails now, not after the first arm has trained
        load_encoder(encoder)
    embeddings = {"ids": None}
    for encoder in encoders:
        label, base, n = _embedding_label(encoder, len(encoders)), None, 1
        while label in embeddings:  # hf:m#cls and hf:m#mean, st:a/m and st:b/m
            base, n = base or label, n + 1
            label = f"{base}-{n}"
        embeddings[label] = encoder
    out = Path(out)
    return Plan(
        preset,
        embeddings,
        code_embedding,
        tuple(sorted(set(fractions))),
        tuple(seeds),
        tuple(protocols),
        settings,
        transfer_settings,
        min_subjects,
        SplitPolicy() if held_out is None else SplitPolicy(seed=0, held_out=held_out),
        max_findings,
        missing,
        tuple(finding_prefixes) if finding_prefixes else None,
        out.parent / f".{out.name}.transfer.partial",  # never a recipe's resumable .partial folder
    )


def _embedding_label(encoder: str, n_encoders: int) -> str:
    """``text`` for a single encoder; ``text-<model>`` for each of several (file-name safe)."""
    if n_encoders == 1:
        return "text"
    name = encoder.rstrip("/").split("@")[0].split("#")[0].split("/")[-1].split(":")[-1]
    return "text-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


@dataclass
class Arm:
    """One embedding's models and datasets, ready for the protocols."""

    moved: torch.nn.Module  # trained at the source, reading the target's inputs
    local: torch.nn.Module  # untrained, for the target's inputs
    pooled: torch.nn.Module  # untrained, for both sites' inputs
    at_b: dict  # the target's splits as ``moved`` and ``local`` read them
    pooled_a: dict  # each site's splits as ``pooled`` reads them
    pooled_b: dict
    source_tuning: Tuning  # the source model on the source site's tuning set (shared's threshold)


def _tuning(model: torch.nn.Module, data, where: str = "tuning set") -> Tuning:
    """A model's probabilities on a tuning set (its F1 threshold is chosen there)."""
    if not len(data):
        return Tuning(None, None, where)
    return Tuning(np.asarray(data.label_values), predict(model, data, "classify").numpy(), where)


def _run_protocols(arm: Arm, embedding: str, plan: Plan) -> tuple[dict, dict]:
    """Held-out probabilities at the target for each protocol, fraction and seed, and each model's
    predictions on the target's tuning labels of that fraction (where its F1 threshold is chosen).

    Every point trains a fresh copy (or a clone of the moved source model) on a ``subset`` of the
    target's labels; ``shared`` uses none, so it is predicted once, and its threshold comes from the
    source site's tuning set (a target label would break "no target label used").
    """
    shared = predict(arm.moved, arm.at_b["held_out"], "classify").numpy()
    labels = {split: arm.at_b[split].label_values for split in ("train", "tuning")}
    results, tuning = {}, {}
    for fraction in plan.fractions:
        for seed in plan.seeds:
            rows = {split: subsample(labels[split], fraction, seed) for split in ("train", "tuning")}
            for protocol in plan.protocols:
                if protocol == "shared":
                    results[f"{embedding}/shared", fraction, seed] = shared
                    tuning[f"{embedding}/shared", fraction, seed] = arm.source_tuning
                    continue
                torch.manual_seed(seed)
                config = plan.settings.replace(seed=seed)
                data = arm.pooled_b if protocol == "pooled" else arm.at_b
                train, val = data["train"].subset(rows["train"]), data["tuning"].subset(rows["tuning"])
                if protocol in ("transfer", "transfer_head"):
                    model = clone(arm.moved)
                    strategy = "probe" if protocol == "transfer_head" else "full"
                    config = plan.transfer_settings.replace(seed=seed, strategy=strategy)
                elif protocol == "local":
                    model = arm.local.fresh_copy()
                else:  # pooled: both sites' labels over both sites' inputs
                    model = arm.pooled.fresh_copy()
                    train, val = arm.pooled_a["train"].joined(train), arm.pooled_a["tuning"].joined(val)
                name = f"{embedding}-{protocol}-f{fraction:g}-s{seed}"
                fit(model, "classify", train, val, config, work_dir=plan.work, name=name, resume=False)
                results[f"{embedding}/{protocol}", fraction, seed] = predict(
                    model, data["held_out"], "classify"
                ).numpy()
                # the target's tuning labels only (pooled stops early on both sites'; B is scored)
                tuning[f"{embedding}/{protocol}", fraction, seed] = _tuning(
                    model, data["tuning"].subset(rows["tuning"])
                )
    return results, tuning


# ----------------------------------------------------------------------------- Claim-PT


def _claimpt_arm(a, b, label: str, encoder: str | None, plan: Plan) -> Arm:
    """Claim-PT trained at A (once), moved to B's codes; fresh models for B's and both sites' codes."""
    mode = "id" if encoder is None else plan.code_embedding
    source_vocab = site_vocabulary(a.data, plan.policy.assign(a.data, scan_events(a.data)), plan.min_subjects)
    source = new_model(source_vocab, code_embedding=mode, encoder=encoder, data=a.data)
    source.splits = plan.policy
    at_a = _tokenized(source, a, ("train", "tuning"))
    fit(
        source.model,
        "classify",
        at_a["train"],
        at_a["tuning"],
        plan.settings,
        work_dir=plan.work,
        name=f"{label}-source",
        resume=False,
    )
    source_tuning = _tuning(source.model, at_a["tuning"], "source site's tuning set")
    moved = move_to_site(source, b.data, min_subjects=plan.min_subjects)
    local = new_model(moved.vocab, code_embedding=mode, encoder=encoder, data=b.data)  # the moved vocabulary
    both = Vocabulary(
        tuple(sorted(set(source_vocab.codes) | set(moved.vocab.codes))), plan.min_subjects, counted=True
    )
    pooled = new_model(both, code_embedding=mode, encoder=encoder)
    return Arm(
        moved.model,
        local.model,
        pooled.model,
        _tokenized(moved, b, ("train", "tuning", "held_out")),
        _tokenized(pooled, a, ("train", "tuning")),
        _tokenized(pooled, b, ("train", "tuning", "held_out")),
        source_tuning,
    )


# ----------------------------------------------------------------------------- the paper's CNN


@dataclass
class FindingsTables:
    """Each site's findings and its labelled splits as findings tables: built once, read by every arm."""

    source: list[str]  # A's findings (its training patients' most common codes)
    target: list[str]  # B's
    both: list[str]  # A's, then B's not among them (the pooled model's columns)
    at_a: dict[str, FindingsData]  # A over A's findings
    at_b: dict[str, FindingsData]  # B over B's findings
    pooled_a: dict[str, FindingsData]  # each site over both sites' findings
    pooled_b: dict[str, FindingsData]


def _findings_tables(a, b, plan: Plan) -> FindingsTables:
    chosen = [
        choose_findings(
            cohort.events,
            cohort.parts["train"],
            min_subjects=plan.min_subjects,
            max_findings=plan.max_findings,
            prefixes=plan.finding_prefixes,
        )
        for cohort in (a, b)
    ]
    both = list(dict.fromkeys(chosen[0] + chosen[1]))
    with progress.status("building findings tables"):
        return FindingsTables(
            chosen[0],
            chosen[1],
            both,
            _findings_data(a, chosen[0], ("train", "tuning"), plan.missing),
            _findings_data(b, chosen[1], ("train", "tuning", "held_out"), plan.missing),
            _findings_data(a, both, ("train", "tuning"), plan.missing),
            _findings_data(b, both, ("train", "tuning", "held_out"), plan.missing),
        )


def _paper_arm(a, b, tables: FindingsTables, label: str, encoder: str | None, plan: Plan) -> Arm:
    """The CNN trained at A over A's findings (best of the paper's seeds), moved to B's findings by
    swapping its vector table; fresh CNNs over B's and both sites' findings."""
    from clinfm.concepts.cnn import CNNConfig, FindingsCNN

    vectors = _finding_vectors(encoder)
    source_vectors = vectors(tables.source, tables.source, a.data)
    source = _best_of_seeds(
        lambda: FindingsCNN(CNNConfig(dim=source_vectors.shape[1]), torch.from_numpy(source_vectors)),
        tables.at_a,
        plan,
        f"{label}-source",
    )
    moved = clone(source)
    # One-hot: B's findings in A's space (a code A never had reads as zeros); text: B's descriptions.
    moved.set_vectors(torch.from_numpy(vectors(tables.target, tables.source, b.data)))
    local_vectors = vectors(tables.target, tables.target, b.data)
    pooled_vectors = _pooled_vectors(vectors, tables, a.data, b.data)
    return Arm(
        moved,
        FindingsCNN(CNNConfig(dim=local_vectors.shape[1]), torch.from_numpy(local_vectors)),
        FindingsCNN(CNNConfig(dim=pooled_vectors.shape[1]), torch.from_numpy(pooled_vectors)),
        tables.at_b,
        tables.pooled_a,
        tables.pooled_b,
        _tuning(source, tables.at_a["tuning"], "source site's tuning set"),
    )


def _pooled_vectors(vectors, tables: FindingsTables, a_data, b_data) -> np.ndarray:
    """The pooled model's table: its columns are A's findings then B's others (``tables.both``), each
    described from its own site's dataset."""
    extra = tables.both[len(tables.source) :]
    return np.concatenate(
        [vectors(tables.source, tables.both, a_data), vectors(extra, tables.both, b_data)[1:]]
    )


def _finding_vectors(encoder: str | None):
    """(findings, one-hot space, site data) -> vector table: one-hot for code ids, else text."""
    from clinfm.concepts import load_encoder

    if encoder is None:
        return lambda findings, space, data: onehot_vectors(findings, space)
    text_encoder = load_encoder(encoder)
    return lambda findings, space, data: text_vectors(findings, text_encoder, data)


def _findings_data(
    cohort, findings: list[str], splits: tuple[str, ...], missing: str
) -> dict[str, FindingsData]:
    return {
        split: FindingsData(
            token_ids(findings_table(cohort.events, cohort.parts[split], findings), missing), cohort.y(split)
        )
        for split in splits
    }


def _best_of_seeds(build, data: dict, plan: Plan, name: str) -> torch.nn.Module:
    """The paper's selection: a model per seed (``PAPER_SEEDS``), keeping the best by validation
    AUROC (by loss when the tuning set lacks a class)."""
    from clinfm.concepts.cnn import PAPER_SEEDS

    best, best_result = None, None
    for seed in PAPER_SEEDS:
        torch.manual_seed(seed)
        model = build()
        result = fit(
            model,
            "classify",
            data["train"],
            data["tuning"],
            plan.settings.replace(seed=seed),
            work_dir=plan.work,
            name=f"{name}-s{seed}",
            resume=False,
        )
        if best is None or _better(result, best_result):
            best, best_result = model, result
    return best


def _better(result: FitResult, than: FitResult) -> bool:
    if result.best_score is None or than.best_score is None:
        return than.best_score is None and result.best_score is not None
    return (
        result.best_score > than.best_score
        if result.monitor == "val_auroc"
        else result.best_score < than.best_score
    )


def _describe(method: str, plan: Plan) -> str:
    embedding, protocol = method.split("/")
    encoder = plan.embeddings[embedding]
    kind = (
        ID_ARMS[plan.preset]
        if embedding == "ids"
        else f"concept embeddings of code descriptions by {encoder} encoder"
    )
    return f"{kind}; {DESCRIPTIONS[protocol]}"


def _run_json(a, b, task, methods, primary, plan: Plan, tables: FindingsTables | None) -> dict:
    model = "the paper's 1-D CNN over findings tables" if plan.preset == "paper" else "Claim-PT"
    return {
        "kind": "efficiency",
        "title": f"{task.replace('_', ' ')}: from {a.data.name} to {b.data.name}",
        "created": now(),
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
        "methods": {m: _describe(m, plan) for m in methods},
        "primary_method": primary,
        "config": {
            "preset": plan.preset,
            "model": model,
            "encoders": {label: encoder for label, encoder in plan.embeddings.items() if encoder},
            "code_embedding": plan.code_embedding if plan.preset == "claimpt" else "frozen",
            "findings": None
            if tables is None
            else {  # codes in at least min_subjects patients: what a saved vocabulary may hold
                "max": plan.max_findings,
                "missing": plan.missing,
                "prefixes": plan.finding_prefixes,
                "source": tables.source,
                "target": tables.target,
            },
            "training": plan.settings.to_dict(),
            "transfer_training": plan.transfer_settings.to_dict(),
            "fractions": list(plan.fractions),
            "seeds": list(plan.seeds),
        },
        "notes": [
            "The x axis counts the target site's training labels; shared uses none of them (a flat line).",
            "Every protocol is judged on the same held-out patients of the target site.",
            "F1 flags a patient at each model's threshold maximising F1 on the target's tuning labels "
            "of its fraction (shared: on the source site's tuning set, as it uses no target label); "
            "metrics.json states it beside F1.",
        ],
    }
