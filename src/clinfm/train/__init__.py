"""The one training engine (Lightning), fine-tuning strategies, and checkpoints as folders."""

from clinfm.train.checkpoint import load_weights, read_config, save_checkpoint
from clinfm.train.engine import STRATEGIES, FitResult, TrainConfig, fit, predict

__all__ = [
    "STRATEGIES",
    "FitResult",
    "TrainConfig",
    "fit",
    "load_weights",
    "predict",
    "read_config",
    "save_checkpoint",
]
