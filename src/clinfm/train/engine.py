"""The one training engine: a model with a ``loss(batch, objective)`` method, trained by Lightning.

Lightning brings devices (CPU, CUDA, MPS), DDP across GPUs and nodes, mixed precision, early stopping
and loggers with no change to the model. What clinfm adds:

- fine-tuning strategies over the model's ``layer_groups()`` (input to output): ``full``, ``probe``
  (everything frozen but the last group, the heads), ``llrd`` (layer-wise learning-rate decay);
- the weights of the best validation epoch are restored at the end (``restore_best_weights``, as
  the paper's Keras code does), kept in memory and in the resume checkpoint; classifiers are ranked
  by validation AUROC (when the tuning set has both classes), everything else by validation loss;
- a resumable run: the state after every epoch is written to ``<work_dir>/resume/<name>/last.ckpt``;
  a rerun continues from it. Batches are drawn from (seed, epoch) and dropout from (seed, step), so a
  resumed run reaches the same weights as one never interrupted. That file is loaded with
  ``weights_only=True`` (tensors and plain values only; never arbitrary pickled objects); released
  checkpoints are safetensors (``clinfm.train.checkpoint``).
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from clinfm import progress
from clinfm.errors import InputError, Terminated
from clinfm.train.sampling import BucketBatchSampler

log = logging.getLogger(__name__)

STRATEGIES = ("full", "probe", "llrd")
OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
SCHEDULES = ("constant", "linear")
LOGGERS = ("csv", "tensorboard", "mlflow", "none")


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 100
    batch_size: int = 100
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 5  # epochs without a better validation score before stopping; None = never
    strategy: str = "full"  # full | probe | llrd
    llrd_decay: float = 0.8  # learning-rate factor per layer group below the top (llrd)
    seed: int = 0
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    distributed: str = "auto"  # Lightning strategy: auto, ddp, fsdp, ...
    precision: str = "auto"  # bf16/16 mixed on CUDA, 32 elsewhere
    logger: str = "csv"
    num_workers: int = 0
    bucket: bool = True  # batch samples of similar length together
    gradient_clip: float | None = None
    momentum: float = 0.9  # sgd only (Nesterov)
    steps_per_epoch: int | None = None  # None: an epoch is one pass; else this many batches, cycling passes
    drop_last: bool = False  # training drops a short final batch (when there is a full one)
    schedule: str = "constant"  # learning rate: constant, or linear decay to 0 over all steps (no warm-up)

    def __post_init__(self) -> None:
        checks = {"strategy": STRATEGIES, "optimizer": OPTIMIZERS, "logger": LOGGERS, "schedule": SCHEDULES}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.max_epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError("max_epochs and batch_size must be at least 1 and lr positive")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise InputError("steps_per_epoch must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> TrainConfig:
        known = {f.name for f in fields(self)}
        return TrainConfig(**{**asdict(self), **{k: v for k, v in changes.items() if k in known}})


@dataclass(frozen=True)
class FitResult:
    epochs: int
    best_score: float | None  # the monitored validation value: AUROC for classifiers, else the loss
    monitor: str
    resumed_from_epoch: int | None
    is_global_zero: bool


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """The optimizer's groups under the fine-tuning strategy (probe freezes all but the heads)."""
    groups = model.layer_groups()
    if config.strategy == "probe":
        for group in groups[:-1]:
            for parameter in group:
                parameter.requires_grad_(False)
        return [{"params": groups[-1], "lr": config.lr}]
    if config.strategy == "llrd":
        top = len(groups) - 1
        return [{"params": g, "lr": config.lr * config.llrd_decay ** (top - i)} for i, g in enumerate(groups)]
    return [{"params": [p for g in groups for p in g], "lr": config.lr}]


def make_optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":  # Keras' RMSprop defaults, which the paper used
        return torch.optim.RMSprop(
            groups, lr=config.lr, alpha=0.9, eps=1e-7, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


class Learner(L.LightningModule):
    """Wraps any model whose ``loss(batch, objective)`` returns (loss, parts to log)."""

    def __init__(self, model: torch.nn.Module, objective: str, config: TrainConfig):
        super().__init__()
        self.model = model
        self.objective = objective
        self.config = config

    def on_train_batch_start(self, batch: dict, batch_index: int) -> None:
        # Dropout and masking draw from a generator seeded by (seed, step, process): a resumed run
        # replays exactly the draws of an uninterrupted one, whatever else touched the global RNG.
        torch.manual_seed((self.config.seed * 1_000_003 + self.global_step) * 1_009 + self.global_rank)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        loss, parts = self.model.loss(batch, self.objective)
        size = len(next(iter(batch.values())))
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        for name, value in parts.items():
            self.log(f"{stage}_{name}", value, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_validation_epoch_start(self) -> None:
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._step(batch, "val")
        if self.objective == "classify":
            self._val_scores.append(self.model.predict(batch, "classify").float())
            self._val_labels.append(batch["label"].float())

    def on_validation_epoch_end(self) -> None:
        """``val_auroc`` for classification: what model selection should rank by when the signal is
        weak, since the tuning loss mostly rewards predicting the base rate."""
        if self.objective != "classify" or not self._val_scores:
            return
        from clinfm.evaluate.metrics import auroc

        scores = torch.cat(self._val_scores).cpu().numpy()  # the whole tuning set (not sharded)
        labels = torch.cat(self._val_labels).cpu().numpy()
        value = auroc(labels.astype(int), scores)
        if value == value:  # defined whenever fit() chose this monitor (the tuning set has both classes)
            self.log("val_auroc", float(value), on_epoch=True, sync_dist=False)

    def configure_optimizers(self):
        optimizer = make_optimizer(parameter_groups(self.model, self.config), self.config)
        if self.config.schedule == "constant":
            return optimizer
        # Linear decay from lr to 0 over the whole run, stepped per batch (Hugging Face's
        # get_linear_schedule_with_warmup with no warm-up, as the TransformerCRF paper trains).
        total = max(1, int(self.trainer.estimated_stepping_batches))
        decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}


class BestWeights(Callback):
    """Keep the weights of the best validation epoch; put them back when training ends."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min"):
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, learner: Learner) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.best_score is None or self.sign * score < self.sign * self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in learner.model.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, learner: Learner) -> None:
        if self.best_state is not None:
            learner.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_state = state["best_state"]


def is_global_zero() -> bool:
    """Whether this process is the one that writes outputs (DDP runs one process per device).

    The process group knows once training started; before, the launchers' variables (torchrun's
    RANK, SLURM's SLURM_PROCID, Lightning's LOCAL_RANK and NODE_RANK) tell.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    for variable in ("RANK", "SLURM_PROCID"):
        if variable in os.environ:
            return os.environ[variable] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def make_loader(dataset, config: TrainConfig, *, train: bool) -> torch.utils.data.DataLoader:
    """Batches of similar length (training: shuffled per epoch), assembled by the dataset's ``collate``.

    A dataset whose batches have a structure of their own (PCLR's pairs of one patient's ECGs)
    provides ``batch_sampler(config, train=...)`` and is batched by it instead.
    """
    if hasattr(dataset, "batch_sampler"):
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=dataset.batch_sampler(config, train=train),
            collate_fn=dataset.collate,
            num_workers=config.num_workers,
            persistent_workers=config.num_workers > 0,
        )
    # Validation is not sharded: every process scores the whole tuning set, so metrics that need
    # all of it (AUROC) come out the same everywhere without gathering uneven pieces.
    sampler = BucketBatchSampler(
        dataset.lengths,
        config.batch_size,
        shuffle=train,
        seed=config.seed,
        bucket=config.bucket,
        shard=train,
        steps=config.steps_per_epoch if train else None,
        drop_last=config.drop_last and train,
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=dataset.collate,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    if config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _strategy(config: TrainConfig, objective: str) -> str:
    # Fine-tuning leaves the pre-training heads idle; DDP must be told, or it stops at the first step.
    if config.distributed == "ddp" and objective != "pretrain":
        return "ddp_find_unused_parameters_true"
    return config.distributed


#: The package each optional logger needs, and the extra that installs it.
_LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def _logger(config: TrainConfig, work_dir: Path, name: str):
    if config.logger == "none":
        return False
    if config.logger in _LOGGER_PACKAGES:
        import importlib.util

        package, extra = _LOGGER_PACKAGES[config.logger]
        if importlib.util.find_spec(package) is None:
            raise InputError(f"--logger {config.logger} needs {package}: pip install 'clinfm[{extra}]'")
    if config.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(work_dir / "logs", name=name, version="")
    if config.logger == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        # A local file store unless the user points MLFLOW_TRACKING_URI somewhere: nothing leaves the machine.
        uri = os.environ.get("MLFLOW_TRACKING_URI", (work_dir / "mlruns").resolve().as_uri())
        return MLFlowLogger(experiment_name=name, tracking_uri=uri)
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(work_dir / "logs", name=name, version="")


def _read_csv_log(work_dir: Path, name: str):
    import polars as pl

    path = work_dir / "logs" / name / "metrics.csv"
    return pl.read_csv(path) if path.exists() else None


def _prepend_csv_log(work_dir: Path, name: str, earlier, resumed: int) -> None:
    """Lightning's CSV logger starts its file afresh on resume: put the epochs before it back."""
    import polars as pl

    path = work_dir / "logs" / name / "metrics.csv"
    later = pl.read_csv(path) if path.exists() else earlier.clear()
    merged = pl.concat([earlier.filter(pl.col("epoch") < resumed), later], how="diagonal_relaxed")
    merged.select(earlier.columns + [c for c in later.columns if c not in earlier.columns]).write_csv(path)


def _resume_epoch(path: Path) -> int | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a run killed while writing leaves a truncated file
        raise InputError(
            f"cannot resume from a damaged checkpoint ({error}); delete it to start over", path=path
        ) from None
    return int(state.get("epoch", -1)) + 1


def _monitor(objective: str, val_data) -> tuple[str, str]:
    """Validation AUROC for a classifier whose tuning set has both classes; the loss otherwise."""
    labels = getattr(val_data, "label_values", None)
    if objective == "classify" and labels is not None and len(set(labels.tolist())) == 2:
        return "val_auroc", "max"
    return "val_loss", "min"


class EpochProgress(Callback):
    """Epochs on clinfm's display (Lightning's own bar stays off): in a terminal a row per epoch
    under the run's row; piped, one line per epoch with its losses and time."""

    def __init__(self, name: str, advance_run) -> None:
        self.name = name
        self.advance_run = advance_run  # one step of the run's bar per finished epoch
        self.epoch_row = ExitStack()
        self.advance_batch = None
        self.began = 0.0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.advance_run(trainer.current_epoch)  # epochs a resumed run already had

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.began = time.monotonic()
        if trainer.is_global_zero:
            total = trainer.num_training_batches
            row = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            total = total if isinstance(total, int) else None
            self.advance_batch = self.epoch_row.enter_context(progress.step(row, total, announce=False))

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if self.advance_batch is not None:
            self.advance_batch()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.epoch_row.close()
        self.advance_batch = None
        self.advance_run()
        if trainer.is_global_zero and progress.mode() == "plain":
            losses = "  ".join(
                f"{key.replace('_', ' ')} {float(value):.4g}"
                for key, value in trainer.callback_metrics.items()
                if key.endswith(("loss", "auroc"))
            )
            epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            progress.note(f"{self.name}: {epoch}  {losses}  ({time.monotonic() - self.began:.1f} s)")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.epoch_row.close()


def _every_epoch(resume_dir: Path) -> ModelCheckpoint:
    """The run's state after each epoch as ``last.ckpt`` (overwritten), to resume from.

    Not ``save_top_k=0, save_last=True``: Lightning 2.6 writes the last checkpoint only when it has
    just written a top-k one, so that never saved anything and an interrupted run started over."""
    return ModelCheckpoint(
        dirpath=resume_dir,
        filename="last",
        monitor=None,
        save_top_k=1,
        save_last=False,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def _lightning_trainer(
    config: TrainConfig, objective: str, work_dir: Path, name: str, callbacks: list[Callback]
) -> L.Trainer:
    return _trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=_strategy(config, objective),
        precision=_precision(config),
        max_epochs=config.max_epochs,
        callbacks=callbacks,
        logger=_logger(config, work_dir, name),
        enable_progress_bar=False,  # clinfm's display shows epochs (EpochProgress)
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # BucketBatchSampler shards batches across processes itself
        log_every_n_steps=1,
        gradient_clip_val=config.gradient_clip,
        default_root_dir=work_dir,
    )


def _trainer(**settings) -> L.Trainer:
    """Lightning's Trainer; settings it cannot use (an unknown accelerator, a GPU that is not there,
    a precision the device lacks) become one line, not a traceback."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(**settings)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as error:
        raise InputError(f"cannot train with these settings: {str(error).splitlines()[0]}") from None


def _quiet_lightning() -> None:
    """Lightning's banners and tips are noise in a clinfm command; its warnings about our choices too."""
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # resuming: see _prepend_csv_log
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`. Skipping val loop.*")  # val_data=None


def fit(
    model: torch.nn.Module,
    objective: str,
    train_data,
    val_data,
    config: TrainConfig,
    work_dir: str | os.PathLike,
    *,
    name: str = "train",
    resume: bool = True,
    callbacks: tuple[Callback, ...] = (),
) -> FitResult:
    """Train ``model`` on ``objective``; validation drives early stopping and the weights kept.

    ``train_data`` / ``val_data`` are datasets with ``lengths`` and ``collate`` (``val_data`` may be
    None: then every epoch runs and the last weights are kept). State for resuming goes under
    ``work_dir``; a rerun with the same ``work_dir`` continues from the last finished epoch.
    """
    work_dir = Path(work_dir)
    _quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    if len(train_data) == 0:
        raise InputError(f"no training samples for {name}: the cohort is empty after filtering")
    monitor, mode = _monitor(objective, val_data)
    best = BestWeights(monitor, mode)
    monitors: list[Callback] = [best]
    if val_data is not None and len(val_data) and config.patience is not None:
        monitors.append(EarlyStopping(monitor=monitor, patience=config.patience, mode=mode))
    resume_dir = work_dir / "resume" / name
    checkpoint = _every_epoch(resume_dir)
    with progress.step(f"training {name}", total=config.max_epochs) as advance_run:
        shown = EpochProgress(name, advance_run)
        trainer = _lightning_trainer(
            config, objective, work_dir, name, [*monitors, checkpoint, shown, *callbacks]
        )
        last = resume_dir / "last.ckpt"
        resumed = _resume_epoch(last) if resume and last.exists() else None
        if resumed is not None:
            log.info("%s: resuming from the end of epoch %d (%s)", name, resumed, last)
        val_loader = (
            make_loader(val_data, config, train=False) if val_data is not None and len(val_data) else None
        )
        earlier_log = (
            _read_csv_log(work_dir, name) if resumed is not None and config.logger == "csv" else None
        )
        model.train()  # a model that was used for prediction comes back in eval mode
        try:
            trainer.fit(
                Learner(model, objective, config),
                make_loader(train_data, config, train=True),
                val_loader,
                ckpt_path=last if resumed is not None else None,
                weights_only=True,
            )
        except SystemExit as stop:
            if isinstance(stop, SIGTERMException):  # Lightning's SIGTERM: a SystemExit without a code
                raise Terminated() from None
            if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1) and ignores further Ctrl-C
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt from None
            raise
    if earlier_log is not None and trainer.is_global_zero:
        _prepend_csv_log(work_dir, name, earlier_log, resumed)
    return FitResult(
        epochs=trainer.current_epoch,
        best_score=best.best_score,
        monitor=monitor,
        resumed_from_epoch=resumed,
        is_global_zero=trainer.is_global_zero,
    )


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, objective: str, *, batch_size: int = 256) -> torch.Tensor:
    """The model's ``predict(batch, objective)`` over a dataset, in dataset order, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    config = TrainConfig(batch_size=batch_size, bucket=False)
    outputs = []
    for batch in make_loader(dataset, config, train=False):  # every sample, in order, on every process
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs.append(model.predict(batch, objective).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def clone(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy, so fine-tuning one task never changes the pre-trained model another task starts from."""
    return copy.deepcopy(model)
