"""Claim-PT recipes: pre-train, fine-tune against baselines, label efficiency, next visit, embed, predict.

Every recipe reads a MEDS dataset and its patient splits (``metadata/subject_splits.parquet``, or
stable-hash 80/10/10 splits when absent): models train on ``train``, stop early on ``tuning`` and
are judged on ``held_out``, the same held-out patients for every method, fraction and seed.
Pre-training never sees a held-out patient.

Outputs are folders written atomically. Training state lives beside the output in
``.<name>.partial/`` until the run finishes, so a run that is killed resumes where it stopped when
started again with the same command.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from clinfm import __version__, progress
from clinfm.claims.batches import CategoryMap, VisitBatches
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.claims.gru import VisitGRU, VisitGRUConfig
from clinfm.claims.tokenizer import TokenizerConfig, claim_code_filter
from clinfm.claims.transfer import move_to_site, new_model, site_vocabulary
from clinfm.errors import InputError
from clinfm.events.labels import check_labels
from clinfm.events.meds import read_labels, scan_events, scan_shards
from clinfm.events.splits import SplitPolicy
from clinfm.io import atomic_directory, check_output, write_json_atomic, write_parquet_atomic
from clinfm.train.engine import TrainConfig, clone, fit, is_global_zero, predict
from clinfm.train.runs import copy_logs, now, resume_note, work_dir
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, check_saved_min_subjects

PRESETS = ("paper", "modern")
NEURAL_METHODS = ("pretrained", "cold_start", "gru")
COUNT_METHODS = ("logistic_regression", "gradient_boosting")
METHODS = NEURAL_METHODS + COUNT_METHODS
EFFICIENCY_METRICS = ("auroc", "auprc")
COUNT_FEATURES = 500  # the most common codes; enough for the baselines, small enough to fit in seconds

#: The paper's optimisation: RMSprop (Keras defaults), batch 100, early stopping with patience 5.
PRETRAIN = {
    "paper": TrainConfig(max_epochs=1000, batch_size=100, optimizer="rmsprop", lr=1e-3, patience=5),
    "modern": TrainConfig(
        max_epochs=200,
        batch_size=64,
        optimizer="adamw",
        lr=5e-4,
        weight_decay=0.01,
        patience=5,
        gradient_clip=1.0,
    ),
}
#: The paper's fine-tuning: Adam 1e-4, 20 epochs, every layer trainable (we also keep the best epoch).
FINETUNE = TrainConfig(max_epochs=20, batch_size=100, optimizer="adam", lr=1e-4, patience=5)
#: Models trained from scratch get a larger learning rate and more epochs: a fair chance, not a straw man.
FROM_SCRATCH = TrainConfig(max_epochs=100, batch_size=100, optimizer="adam", lr=1e-3, patience=5)

METHOD_DESCRIPTIONS = {
    "pretrained": "Claim-PT pre-trained on unlabeled patients' visit sequences, then fine-tuned on this task",
    "cold_start": "the same Claim-PT architecture trained on this task alone, from random weights",
    "gru": "a GRU over the same visit sequences, trained on this task alone",
    "logistic_regression": "logistic regression on counts of each code before the prediction time",
    "gradient_boosting": "gradient-boosted trees on counts of each code before the prediction time",
}


def _split_events(events: pl.LazyFrame, splits: pl.DataFrame, names: tuple[str, ...]) -> pl.LazyFrame:
    subjects = splits.filter(pl.col("split").is_in(names)).select("subject_id").lazy()
    return events.join(subjects, on="subject_id", how="semi")


def _split_shards(data: Path, splits: pl.DataFrame, names: tuple[str, ...]) -> list[pl.LazyFrame]:
    """The dataset's shards, each narrowed to the patients of ``names``: tokenized one at a time."""
    return [_split_events(shard, splits, names) for shard in scan_shards(data)]


# ----------------------------------------------------------------------------- pre-training


def pretrain(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    preset: str = "paper",
    train: TrainConfig | None = None,
    tokenizer: TokenizerConfig | None = None,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    model_overrides: dict | None = None,
    splits: SplitPolicy | None = None,
    code_embedding: str = "id",
    encoder: str | None = None,
    overwrite: bool = False,
    resume: bool = True,
) -> Path:
    """Pre-train Claim-PT on the train split's patients (no labels); save a checkpoint folder at ``out``.

    ``code_embedding`` other than ``id`` makes code vectors from their descriptions' text embeddings
    (``encoder``: a spec for clinfm.concepts.load_encoder; the embedded MiniLM by default).
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    out = check_output(out, overwrite)
    check_saved_min_subjects(min_subjects)  # now, not after training, when the checkpoint is saved
    data = Path(data).resolve()
    train = train or PRETRAIN[preset]
    tokenizer = tokenizer or (TokenizerConfig.paper() if preset == "paper" else TokenizerConfig.modern())
    events = scan_events(data)
    policy = splits or SplitPolicy()
    splits = policy.assign(data, events)
    with progress.status("building the vocabulary"):
        vocab = site_vocabulary(data, splits, min_subjects)
    bundle = new_model(
        vocab,
        preset=preset,
        code_embedding=code_embedding,
        encoder=encoder,
        data=data,
        tokenizer=tokenizer,
        seed=train.seed,  # the initial weights, so a run is repeatable (and resumable)
        **(model_overrides or {}),
    )
    config = bundle.model.config
    bundle.splits = policy
    with progress.status("tokenizing"):
        train_data = bundle.dataset(_split_shards(data, splits, ("train",)), hold_out=True)
        val_data = bundle.dataset(_split_shards(data, splits, ("tuning",)), hold_out=True)
    if len(train_data) == 0:
        raise InputError(
            "no training patient has two visits with known codes: the cohort is empty", path=data
        )
    recorded = {"data": data, "preset": preset, "model": config.to_dict(), "tokenizer": tokenizer.to_dict()}
    recorded |= {"training": train.to_dict(), "min_subjects": min_subjects, "splits": policy.to_dict()}
    recorded |= {"code_embedding": code_embedding, "encoder": bundle.encoder_name}
    with work_dir(out, recorded, resume) as work:
        result = fit(
            bundle.model, "pretrain", train_data, val_data, train, work, name="pretrain", resume=resume
        )
    if not result.is_global_zero:
        return out
    with atomic_directory(out, overwrite=overwrite) as tmp:
        bundle.save(tmp, training=train.to_dict())
        copy_logs(work, tmp)
        write_json_atomic(
            tmp / "run.json",
            {
                "kind": "pretrain",
                "title": f"Claim-PT pre-training ({preset} preset)",
                "created": now(),
                "clinfm_version": __version__,
                "data": {
                    "dataset": str(data),
                    "n_train": len(train_data),
                    "n_tuning": len(val_data),
                    "vocabulary_size": len(vocab.codes),
                    "categories": len(bundle.categories),
                },
                "config": {
                    "model": config.to_dict(),
                    "tokenizer": tokenizer.to_dict(),
                    "training": train.to_dict(),
                    "min_subjects": min_subjects,
                    "splits": policy.to_dict(),
                },
                "results": {"epochs": result.epochs, f"best_{result.monitor}": result.best_score},
                "notes": resume_note(result),
            },
        )
        _report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _report(run_dir: Path) -> None:
    from clinfm.report import write_report

    write_report(run_dir)


# ----------------------------------------------------------------------------- labelled cohorts


@dataclass
class Cohort:
    """A binary task's labels split by patient, tokenized once for every method."""

    name: str
    data: Path
    labels_path: Path
    events: pl.LazyFrame
    parts: dict[str, pl.DataFrame]  # train / tuning / held_out label rows
    datasets: dict[str, VisitBatches] = field(default_factory=dict)
    unknown_share: float = 0.0  # of the claims events, those whose code the model does not know
    counts: dict[str, object] = field(default_factory=dict)  # code-count features per split

    def y(self, split: str) -> np.ndarray:
        return self.parts[split]["boolean_value"].cast(pl.Float32).to_numpy()


def load_cohort(data: str | os.PathLike, labels: str | os.PathLike, splits: SplitPolicy) -> Cohort:
    """Labels checked against the data and split by patient, as the checkpoint was pre-trained."""
    data, labels_path = Path(data), Path(labels)
    events = scan_events(data)
    frame = read_labels(labels_path)
    check_labels(events, frame, path=labels_path)
    frame = frame.select("subject_id", "prediction_time", "boolean_value")
    splits = splits.assign(data, events)
    tagged = frame.with_row_index("label_row").join(splits, on="subject_id", how="left")
    parts = {
        name: tagged.filter(pl.col("split") == name).sort("label_row").drop("label_row", "split")
        for name in ("train", "tuning", "held_out")
    }
    for name in ("train", "held_out"):
        if parts[name].height == 0:
            raise InputError(
                f"no label rows for {name} patients: the cohort is empty after splitting", path=labels_path
            )
    if parts["train"]["boolean_value"].n_unique() < 2:
        raise InputError("the train patients' labels have only one class: nothing to learn", path=labels_path)
    return Cohort(labels_path.stem, data, labels_path, events, parts)


UNKNOWN_SHARE_WARNING = 0.2


def unknown_code_share(bundle: ClaimsModel, events: pl.LazyFrame) -> float:
    """The share of claims events whose code is not in the model's vocabulary (they are dropped),
    logged when large: the sign of a checkpoint used on data coded differently."""
    claims = events.filter(claim_code_filter(events.collect_schema().names()))
    known = pl.col("code").is_in(pl.Series(bundle.vocab.codes, dtype=pl.String).implode())
    share = claims.select((~known).mean()).collect().item() or 0.0
    if share > UNKNOWN_SHARE_WARNING:
        logging.getLogger(__name__).warning(
            "%.0f%% of the claims events have codes outside the model's vocabulary and are dropped "
            "(--adapt rebuilds the code table for this site)",
            100 * share,
        )
    return float(share)


def _tokenized(cohort: Cohort, bundle: ClaimsModel) -> None:
    if cohort.datasets:
        return
    with progress.status(f"tokenizing {cohort.name}"):
        for name, part in cohort.parts.items():
            cohort.datasets[name] = bundle.dataset(scan_shards(cohort.data), part, cohort.y(name))


def _count_features(cohort: Cohort) -> None:
    from clinfm.evaluate.baselines import code_count_features

    if cohort.counts:
        return
    # The same inputs as the neural models: claims codes (no labs, notes or demographics).
    claims = cohort.events.filter(claim_code_filter(cohort.events.collect_schema().names()))
    with progress.status(f"counting codes for {cohort.name}"):
        X, codes = code_count_features(claims, cohort.parts["train"], max_features=COUNT_FEATURES)
        cohort.counts["train"] = X
        for name in ("tuning", "held_out"):
            cohort.counts[name] = code_count_features(claims, cohort.parts[name], codes=codes)[0]


def subsample(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Row indices of a stratified ``fraction`` of ``y`` (at least one of each class).

    For one seed the subsets are nested: the 10% sample is inside the 25% one, so curves across
    fractions differ by the added labels, not by a new draw.
    """
    if fraction >= 1 or len(y) == 0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    chosen = []
    for value in (0.0, 1.0):
        rows = np.flatnonzero(y == value)
        if len(rows):
            chosen.append(rng.permutation(rows)[: max(1, math.ceil(fraction * len(rows)))])
    return np.sort(np.concatenate(chosen))


@dataclass
class MethodSettings:
    finetune: TrainConfig = FINETUNE
    from_scratch: TrainConfig = FROM_SCRATCH


def _fit_neural(
    method, bundle, cohort, rows, seed, settings, work, name
) -> tuple[np.ndarray, np.ndarray, object]:
    """Held-out and tuning-set probabilities of a neural method trained at one point, and the model."""
    train_data = cohort.datasets["train"].subset(rows["train"])
    val_data = cohort.datasets["tuning"].subset(rows["tuning"])
    if method == "pretrained":
        torch.manual_seed(seed)
        model, config = clone(bundle.model), settings.finetune.replace(seed=seed)
        model.reset_classifier()
    elif method == "cold_start":
        torch.manual_seed(seed)
        model, config = bundle.model.fresh_copy(), settings.from_scratch.replace(seed=seed)
    else:
        torch.manual_seed(seed)
        gru = VisitGRUConfig(len(bundle.vocab), bundle.tokenizer.date_vocab, bundle.model.config.d_model)
        model, config = VisitGRU(gru), settings.from_scratch.replace(seed=seed, strategy="full")
    fit(model, "classify", train_data, val_data, config, work, name=name)
    tuning = predict(model, val_data, "classify").numpy() if len(val_data) else np.empty(0)
    return predict(model, cohort.datasets["held_out"], "classify").numpy(), tuning, model


def _fit_counts(method, cohort, rows, seed) -> tuple[np.ndarray, np.ndarray]:
    """Held-out and tuning-set probabilities of a count baseline (the tuning set picks its threshold)."""
    from clinfm.evaluate.baselines import fit_baseline

    X = cohort.counts["train"][rows["train"]]
    estimator = fit_baseline(method, X, cohort.y("train")[rows["train"]], seed=seed)
    tuning = cohort.counts["tuning"][rows["tuning"]]
    tuned = estimator.predict_proba(tuning)[:, 1] if tuning.shape[0] else np.empty(0)
    return estimator.predict_proba(cohort.counts["held_out"])[:, 1], tuned


@dataclass
class Point:
    """One method at one label fraction and seed: held-out probabilities, and the tuning labels it
    saw with its probabilities for them (its F1 threshold is chosen there), and the model if kept."""

    probabilities: np.ndarray
    tuning_y: np.ndarray
    tuning_p: np.ndarray
    model: object = None


def run_point(
    method, bundle, cohort, fraction, seed, settings, work: Path, *, keep_model: bool = False
) -> Point:
    """One method at one label fraction and seed: its test-set and tuning-set probabilities, and the
    model (the tuning rows are the fraction's, the ones its early stopping saw).

    Finished points are cached in ``work`` so an interrupted run skips them; a point whose model is
    to be kept (``keep_model``) is always trained, since only its predictions are cached.
    """
    name = f"{cohort.name}-{method}-f{fraction:g}-s{seed}"
    cached = work / "points" / f"{name}.npy"
    cached_tuning = work / "points" / f"{name}.tuning.npy"
    rows = {split: subsample(cohort.y(split), fraction, seed) for split in ("train", "tuning")}
    tuning_y = cohort.y("tuning")[rows["tuning"]]
    if cached.exists() and cached_tuning.exists() and not keep_model:  # finished before an interruption
        return Point(
            np.load(cached, allow_pickle=False), tuning_y, np.load(cached_tuning, allow_pickle=False)
        )
    model = None
    if method in NEURAL_METHODS:
        _tokenized(cohort, bundle)
        probabilities, tuning_p, model = _fit_neural(method, bundle, cohort, rows, seed, settings, work, name)
    else:
        _count_features(cohort)
        probabilities, tuning_p = _fit_counts(method, cohort, rows, seed)
    for split, values in (("held_out", probabilities), ("tuning", tuning_p)):
        expected = cohort.parts["held_out"].height if split == "held_out" else len(tuning_y)
        if len(values) != expected:
            raise RuntimeError(f"{name}: {len(values)} {split} predictions for {expected} samples")
    if is_global_zero():
        _save_array(cached_tuning, tuning_p.astype(np.float64))
        _save_array(cached, probabilities.astype(np.float64))
        shutil.rmtree(work / "resume" / name, ignore_errors=True)
    return Point(probabilities, tuning_y, tuning_p, model)


def _save_array(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, values, allow_pickle=False)
    tmp.replace(path)


def _check_methods(methods) -> tuple[str, ...]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    return tuple(dict.fromkeys(methods))  # once each, in the order given


def efficiency(
    data: str | os.PathLike,
    labels: str | os.PathLike,
    from_checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fractions: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0),
    seeds: tuple[int, ...] = (0, 1, 2),
    methods: tuple[str, ...] = METHODS,
    settings: MethodSettings | None = None,
    n_bootstrap: int = 1000,
    overwrite: bool = False,
    resume: bool = True,
    save_model: bool = False,
    adapt: bool = False,
    min_subjects: int = DEFAULT_MIN_SUBJECTS,
    cohort: Cohort | None = None,
    bundle: ClaimsModel | None = None,
) -> Path:
    """Every method at every label fraction and seed, judged on the same held-out patients.

    Writes ``efficiency.json`` (curves with bootstrap CIs of the seed-averaged metric),
    ``metrics.json`` (every metric at the largest fraction), the predictions of each method (largest
    fraction, first seed) and ``report.html``.
    """
    methods = _check_methods(methods)
    if not fractions or any(not 0 < f <= 1 for f in fractions) or not seeds:
        raise InputError("fractions must lie in (0, 1] and at least one seed is needed")
    fractions = tuple(sorted(set(fractions)))
    out = check_output(out, overwrite)
    data, labels, from_checkpoint = (Path(p).resolve() for p in (data, labels, from_checkpoint))
    bundle = bundle or load_model(from_checkpoint)
    if adapt:  # another site's codes: the code table is rebuilt for them (claims.transfer)
        with progress.status("moving the model to this site's codes"):
            bundle = move_to_site(bundle, data, min_subjects=min_subjects)
    cohort = cohort or load_cohort(data, labels, bundle.splits)
    cohort.unknown_share = unknown_code_share(bundle, cohort.events)
    settings = settings or MethodSettings()
    recorded = {
        "data": data,
        "labels": labels,
        "checkpoint": from_checkpoint,
        "methods": methods,
        "adapt": adapt,
    }
    recorded |= {"fractions": fractions, "seeds": seeds, "finetune": settings.finetune.to_dict()}
    results: dict[tuple[str, float, int], np.ndarray] = {}
    tuning: dict[tuple[str, float, int], Tuning] = {}
    kept = ("pretrained", fractions[-1], seeds[0]) if save_model and "pretrained" in methods else None
    final_model = None
    grid = [(m, f, s) for f in fractions for s in seeds for m in methods]
    with work_dir(out, recorded | {"from_scratch": settings.from_scratch.to_dict()}, resume) as work:
        for point in progress.track(grid, f"{cohort.name}: training", total=len(grid)):
            done = run_point(*point[:1], bundle, cohort, *point[1:], settings, work, keep_model=point == kept)
            results[point] = done.probabilities
            tuning[point] = Tuning(done.tuning_y, done.tuning_p)
            final_model = done.model if point == kept else final_model
    if not is_global_zero():  # under DDP every device runs the recipe; one writes
        return out
    with atomic_directory(out, overwrite=overwrite) as tmp:
        _write_efficiency_run(
            tmp,
            results,
            cohort,
            bundle,
            from_checkpoint,
            fractions,
            seeds,
            methods,
            settings,
            n_bootstrap,
            tuning,
        )
        if final_model is not None:
            fine_tuned = replace(bundle, model=final_model, trained_for="classify")
            threshold, source = tuning[kept].threshold()
            fine_tuned.save(
                tmp / "model",
                task=cohort.name,
                training=settings.finetune.to_dict(),
                threshold=threshold,  # clinfm predict decides at it
                threshold_source=source,
            )
        copy_logs(work, tmp)
        _report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _write_efficiency_run(
    tmp, results, cohort, bundle, source, fractions, seeds, methods, settings, n_bootstrap, tuning
):
    primary = "pretrained" if "pretrained" in methods else methods[0]
    write_evaluation(tmp, results, cohort, fractions, seeds, methods, primary, n_bootstrap, tuning)
    write_json_atomic(
        tmp / "run.json",
        _run_json(cohort, bundle, source, fractions, seeds, methods, settings, primary, n_bootstrap),
    )


@dataclass(frozen=True)
class Tuning:
    """A model's tuning-set labels and probabilities, where its decision threshold is chosen."""

    y: np.ndarray | None
    p: np.ndarray | None
    where: str = "tuning set"  # e.g. "source site's tuning set" for a model that saw no target label

    def threshold(self) -> tuple[float, str]:
        """The cut maximising F1 there, or 0.5 where it lacks a class; and which, in words."""
        from clinfm.evaluate.metrics import tuned_threshold

        return tuned_threshold(self.y, self.p, self.where)


def _thresholds(tuning: dict | None, method: str, fraction: float, seeds) -> tuple[list[float], str]:
    """Each seed's F1 threshold for a method at a fraction, and their source(s) in words."""
    chosen = [(tuning or {}).get((method, fraction, s), Tuning(None, None)).threshold() for s in seeds]
    sources = list(dict.fromkeys(source for _, source in chosen))
    return [t for t, _ in chosen], "; ".join(sources)


def write_evaluation(
    tmp, results, cohort, fractions, seeds, methods, primary, n_bootstrap, tuning=None
) -> None:
    """``efficiency.json``, ``metrics.json`` and the predictions of ``results``, keyed by (method,
    fraction, seed) and holding held-out probabilities: what every label-efficiency run reports.

    ``tuning`` (same keys, :class:`Tuning`) holds each model's tuning-set predictions: F1 is scored,
    and the predictions files decide, at the threshold maximising F1 there (0.5 where a tuning set
    lacks a class or is not given), stated in ``metrics.json`` beside F1 as ``threshold`` and
    ``threshold_source`` (``thresholds``: one per seed when there are several).
    """
    from clinfm.evaluate.metrics import auprc, auroc, binary_metrics_runs
    from clinfm.evaluate.predictions import write_predictions

    y = cohort.y("held_out")
    patients = cohort.parts["held_out"]["subject_id"].to_numpy()  # the bootstrap draws patients
    point_metrics = {"auroc": auroc, "auprc": auprc}
    points = []
    for method in methods:
        for fraction in fractions:
            runs = [results[method, fraction, s] for s in seeds]
            estimates = binary_metrics_runs(y, runs, n_bootstrap=n_bootstrap, groups=patients)
            rows = subsample(cohort.y("train"), fraction, seeds[0])
            points.append(
                {
                    "method": method,
                    "fraction": fraction,
                    "n_train": len(rows),
                    "n_train_positives": int(cohort.y("train")[rows].sum()),
                    "metrics": {
                        name: {**estimates[name].to_dict(), "per_seed": [_finite(fn(y, r)) for r in runs]}
                        for name, fn in point_metrics.items()
                    },
                }
            )
    top = fractions[-1]
    thresholds = {m: _thresholds(tuning, m, top, seeds) for m in methods}
    table = {
        m: {
            k: e.to_dict()
            for k, e in binary_metrics_runs(
                y,
                [results[m, top, s] for s in seeds],
                threshold=thresholds[m][0],
                threshold_source=thresholds[m][1],
                n_bootstrap=n_bootstrap,
                groups=patients,
            ).items()
        }
        for m in methods
    }
    test = cohort.parts["held_out"]
    write_json_atomic(
        tmp / "efficiency.json",
        {
            "metric_names": list(EFFICIENCY_METRICS),
            "fractions": list(fractions),
            "seeds": list(seeds),
            "points": points,
        },
    )
    write_json_atomic(
        tmp / "metrics.json",
        {
            "confidence_level": 0.95,
            "n_bootstrap": n_bootstrap,
            "interval": "BCa bootstrap over held-out patients (clinfm.evaluate.metrics)",
            "test": {"n": test.height, "positives": int(y.sum())},
            "fraction": top,
            "seeds": list(seeds),
            "methods": table,
        },
    )
    for method in methods:
        probabilities = results[method, top, seeds[0]]
        target = tmp / "predictions" / f"{method}.parquet"
        write_predictions(
            target,
            subject_id=test["subject_id"].to_numpy(),
            prediction_time=test["prediction_time"].to_numpy(),
            y=y.astype(bool),
            p=probabilities,
            threshold=thresholds[method][0][0],  # the first seed's model, tuned on its tuning set
        )
    shutil.copyfile(tmp / "predictions" / f"{primary}.parquet", tmp / "predictions.parquet")


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _run_json(cohort, bundle, source, fractions, seeds, methods, settings, primary, n_bootstrap) -> dict:
    single = len(fractions) == 1 and len(seeds) == 1
    y_train = cohort.y("train")
    notes = [
        "Every method is judged on the same held-out patients, whom pre-training never saw.",
        f"Metrics are for the largest label fraction ({fractions[-1]:g}), averaged over seeds {list(seeds)}; "
        f"the 95% intervals come from resampling held-out patients ({n_bootstrap:,} bootstrap draws, "
        "BCa intervals).",
        "F1 flags a patient at each model's own threshold, the one maximising F1 on its tuning-set "
        "predictions (0.5 where the tuning labels lack a class); metrics.json states it beside F1.",
    ]
    if cohort.unknown_share > UNKNOWN_SHARE_WARNING:
        notes.append(
            f"{cohort.unknown_share:.0%} of the data's claims events have codes the model's vocabulary "
            "does not hold; the models read without them (were the data coded differently? --adapt "
            "rebuilds the code table for this site)."
        )
    if len(fractions) > 1 or fractions[0] < 1:
        notes.append(
            "A label fraction applies to the tuning labels too (early stopping and model selection "
            "see only that share), as a study with that few labels would."
        )
    if not single:
        notes.append("ROC and calibration curves show the first seed's models at the largest fraction.")
    return {
        "kind": "finetune" if single else "efficiency",
        "title": f"{cohort.name.replace('_', ' ')}: pre-trained Claim-PT against baselines",
        "created": now(),
        "clinfm_version": __version__,
        "task": {"name": cohort.name, "type": "binary", "labels": str(cohort.labels_path)},
        "data": {
            "n_train": cohort.parts["train"].height,
            "train_positives": int(y_train.sum()),
            "n_tuning": cohort.parts["tuning"].height,
            "n_test": cohort.parts["held_out"].height,
            "test_positives": int(cohort.y("held_out").sum()),
        },
        "methods": {m: METHOD_DESCRIPTIONS[m] for m in methods},
        "primary_method": primary,
        "config": {
            "checkpoint": str(source),
            "model": bundle.model.config.to_dict(),
            "tokenizer": bundle.tokenizer.to_dict(),
            "finetune": settings.finetune.to_dict(),
            "from_scratch": settings.from_scratch.to_dict(),
            "fractions": list(fractions),
            "seeds": list(seeds),
        },
        "notes": notes,
    }


def finetune(
    data: str | os.PathLike,
    labels: str | os.PathLike,
    from_checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    strategy: str = "full",
    baselines: bool = True,
    settings: MethodSettings | None = None,
    overwrite: bool = False,
    resume: bool = True,
    adapt: bool = False,
) -> Path:
    """Fine-tune on all train labels; compare with the baselines; save the fine-tuned model in ``model/``.

    ``adapt``: the data come from another site; the model is first moved to its codes (claims.transfer).
    """
    settings = settings or MethodSettings()
    settings = MethodSettings(settings.finetune.replace(strategy=strategy), settings.from_scratch)
    methods = METHODS if baselines else ("pretrained",)
    return efficiency(
        data,
        labels,
        from_checkpoint,
        out,
        fractions=(1.0,),
        seeds=(seed,),
        methods=methods,
        settings=settings,
        overwrite=overwrite,
        resume=resume,
        adapt=adapt,
        save_model=True,
    )


# ----------------------------------------------------------------------------- using a model


def _model_folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "model" if (path / "model" / "config.json").exists() else path


def load_model(path: str | os.PathLike) -> ClaimsModel:
    """A checkpoint folder, or a fine-tuning run folder holding one in ``model/``."""
    return ClaimsModel.load(_model_folder(path))


def decision_threshold(path: str | os.PathLike) -> float:
    """The threshold a fine-tuned model decides at: the one ``finetune`` chose on its tuning set
    (max F1), saved in its ``config.json``; 0.5 for a checkpoint saved without one."""
    from clinfm.evaluate.metrics import DEFAULT_THRESHOLD
    from clinfm.train.checkpoint import read_config

    threshold = read_config(_model_folder(path)).get("threshold")
    return DEFAULT_THRESHOLD if threshold is None else float(threshold)


def _write_parquet_atomic(frame: pl.DataFrame, out: Path, overwrite: bool) -> Path:
    if out.exists() and not overwrite:
        raise InputError("output already exists; choose another path or pass overwrite", path=out)
    if out.exists() and out.is_dir():
        raise InputError("is a folder; name a .parquet file", path=out)
    return write_parquet_atomic(frame, out)


def predict_labels(
    from_model: str | os.PathLike,
    data: str | os.PathLike,
    labels: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> Path:
    """Probabilities of a fine-tuned model for every label row, in the meds-evaluation columns.

    ``predicted_boolean_value`` is the decision at the model's tuned threshold (:func:`decision_threshold`).
    ``boolean_value`` is copied from the labels when they have it (so the file can be scored), and
    left empty when they do not.
    """
    from clinfm.evaluate.predictions import write_predictions

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("output already exists; choose another path or pass overwrite", path=out)
    bundle = load_model(from_model)
    if bundle.trained_for != "classify":
        raise InputError(
            "this checkpoint was only pre-trained: its classification head is untrained; "
            "fine-tune it first (clinfm finetune) and predict with the run's model/",
            path=from_model,
        )
    frame = read_labels(labels)
    events = scan_events(data)
    has_value = "boolean_value" in frame.columns and frame["boolean_value"].null_count() == 0
    check_labels(events, frame, path=labels, value="boolean_value" if has_value else None)
    probabilities = predict(bundle.model, bundle.dataset(scan_shards(data), frame), "classify").numpy()
    y = frame["boolean_value"].to_numpy() if has_value else None  # unknown outcomes stay empty
    return write_predictions(
        out,
        subject_id=frame["subject_id"].to_numpy(),
        prediction_time=frame["prediction_time"].to_numpy(),
        y=y,
        p=probabilities,
        threshold=decision_threshold(from_model),
    )


def embed(
    from_model: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Patient embeddings (the model's patient vector) to Parquet: one row per subject, or per label row.

    Every visit up to the label's prediction time (without labels, the whole history) is input, the
    last one included, whatever the preset holds out for fine-tuning.
    """
    bundle = load_model(from_model)
    events = scan_events(data)
    frame = None
    if labels is not None:
        frame = read_labels(labels)
        check_labels(events, frame, path=labels, value=None)
    dataset = bundle.dataset(scan_shards(data), frame, hold_out=False)  # every visit, the last included
    vectors = predict(bundle.model, dataset, "embed").numpy().astype(np.float32)
    packed = dataset.packed
    table = pl.DataFrame(
        {
            "subject_id": packed.subject_id,
            "prediction_time": pl.Series(packed.prediction_time).cast(pl.Datetime("us")),
            "embedding": pl.Series(vectors.tolist(), dtype=pl.Array(pl.Float32, vectors.shape[1])),
        }
    )
    return _write_parquet_atomic(table, Path(out), overwrite)


def _diagnosis_categories(categories: CategoryMap) -> np.ndarray:
    """The columns of diagnosis groupers (CCS, CCSR) that Recall@k is scored on, as in autoDiag;
    every category when the vocabulary has no ICD diagnoses (then say so in the run)."""
    grouped = [i for i, name in enumerate(categories.names) if name.startswith(("CCS/", "CCSR/"))]
    return np.asarray(grouped or range(len(categories)), dtype=np.int64)


def _category_space(categories: CategoryMap, scored: np.ndarray) -> str:
    if len(scored) < len(categories):
        return "diagnosis categories (CCS / CCSR)"
    return "categories (no ICD-9-CM / ICD-10-CM diagnoses in the vocabulary: every category is scored)"


NEXT_VISIT_METHODS = ("pretrained", "fine_tuned", "cold_start")
NEXT_VISIT_DESCRIPTIONS = {
    "pretrained": "the pre-trained model's next-visit head as it is, with no tuning",
    "fine_tuned": "the pre-trained model tuned on next-visit prediction (all layers)",
    "cold_start": "the same architecture trained on next-visit prediction from random weights",
}


def next_visit(
    data: str | os.PathLike,
    from_checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_train: int = 10_000,
    seed: int = 0,
    settings: MethodSettings | None = None,
    n_bootstrap: int = 1000,
    overwrite: bool = False,
    resume: bool = True,
) -> Path:
    """Next-visit category prediction, the paper's autoDiag: Recall@5/10/30 on held-out patients.

    Each held-out patient's last kept visit is the target and the visits before it the input.
    Tuning uses at most ``max_train`` train patients (the notebook used a 10k subset).
    """
    from clinfm.evaluate.metrics import multilabel_metrics

    out = check_output(out, overwrite)
    bundle = load_model(from_checkpoint)
    data, from_checkpoint = Path(data).resolve(), Path(from_checkpoint).resolve()
    events = scan_events(data)
    splits = bundle.splits.assign(data, events)
    settings = settings or MethodSettings()
    with progress.status("tokenizing"):
        test, train, val = (
            bundle.dataset(_split_shards(data, splits, (name,)), hold_out=True)
            for name in ("held_out", "train", "tuning")
        )
    if len(test) == 0:
        raise InputError("no held-out patient has two visits with known codes: nothing to test on", path=data)
    rng = np.random.default_rng(seed)
    train = train.subset(np.sort(rng.permutation(len(train))[:max_train]))
    recorded = {"data": data, "checkpoint": from_checkpoint, "max_train": max_train, "seed": seed}
    recorded |= {"finetune": settings.finetune.to_dict(), "from_scratch": settings.from_scratch.to_dict()}
    scores = {"pretrained": predict(bundle.model, test, "nextvisit").numpy()}
    with work_dir(out, recorded, resume) as work:
        for method in progress.track(NEXT_VISIT_METHODS[1:], "next-visit models"):
            torch.manual_seed(seed)
            if method == "fine_tuned":
                model, config = clone(bundle.model), settings.finetune.replace(seed=seed)
            else:
                model, config = bundle.model.fresh_copy(), settings.from_scratch.replace(seed=seed)
            fit(model, "nextvisit", train, val, config, work, name=f"nextvisit-{method}")
            scores[method] = predict(model, test, "nextvisit").numpy()
    if not is_global_zero():
        return out
    scored = _diagnosis_categories(bundle.categories)
    targets = test.nvp_targets()[:, scored]
    table = {
        m: {
            k: e.to_dict()
            for k, e in multilabel_metrics(targets, s[:, scored], n_bootstrap=n_bootstrap).items()
        }
        for m, s in scores.items()
    }
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_json_atomic(
            tmp / "metrics.json",
            {
                "confidence_level": 0.95,
                "n_bootstrap": n_bootstrap,
                "test": {"n": len(test), "categories": len(scored)},
                "methods": table,
            },
        )
        write_json_atomic(
            tmp / "run.json",
            {
                "kind": "nextvisit",
                "title": "Next-visit diagnosis categories (Claim-PT's autoDiag)",
                "created": now(),
                "clinfm_version": __version__,
                "task": {
                    "name": "next_visit",
                    "type": "multilabel",
                    "description": f"the {len(scored)} {_category_space(bundle.categories, scored)} "
                    "of each held-out patient's last visit, from the visits before it",
                },
                "data": {
                    "dataset": str(data),
                    "n_train": len(train),
                    "n_tuning": len(val),
                    "n_test": len(test),
                },
                "methods": NEXT_VISIT_DESCRIPTIONS,
                "primary_method": "fine_tuned",
                "config": {
                    "checkpoint": str(from_checkpoint),
                    "finetune": settings.finetune.to_dict(),
                    "from_scratch": settings.from_scratch.to_dict(),
                    "max_train": max_train,
                },
                "notes": [
                    "Recall@k: the share of the next visit's categories found among the model's k "
                    "most likely.",
                ],
            },
        )
        copy_logs(work, tmp)
        _report(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return out
