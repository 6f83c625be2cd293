"""An ECG encoder as a folder: ``config.json`` (objective, encoder shape, how windows were prepared)
+ ``model.safetensors``. It holds weights and settings only: no record or patient ids, no signals."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from clinfm.checks import check_field, nested, one_of
from clinfm.ecg.baselines import OBJECTIVES, pretraining_model
from clinfm.ecg.corpus import PrepareSettings
from clinfm.ecg.model import ResNetConfig
from clinfm.errors import InputError
from clinfm.train.checkpoint import load_weights, read_config_of_kind, save_checkpoint

KIND = "ecg-encoder"


def encoder_config_dict(config: ResNetConfig) -> dict:
    return {**dataclasses.asdict(config), "units": [list(unit) for unit in config.units]}


def save_encoder(
    folder: str | os.PathLike,
    model: torch.nn.Module,
    objective: str,
    prepare: PrepareSettings,
    extra: dict | None = None,
) -> Path:
    """Write the pre-trained model (normally into a temporary folder the caller renames into place)."""
    return save_checkpoint(
        folder,
        model,
        {
            "kind": KIND,
            "objective": objective,
            "encoder": encoder_config_dict(model.config),
            "prepare": {**dataclasses.asdict(prepare), "leads": list(prepare.leads), "sampling_rate": None},
            **(extra or {}),
        },
    )


def load_encoder(folder: str | os.PathLike) -> tuple[torch.nn.Module, PrepareSettings, dict]:
    """(model in eval mode, the window preparation it expects, the whole config.json); every setting
    is checked, and then every tensor, before the model is built."""
    folder = Path(folder)
    where = folder / "config.json"
    config = read_config_of_kind(folder, KIND, "an ECG encoder", "clinfm ecg pretrain")
    objective = check_field(config, "objective", one_of(*OBJECTIVES), where)
    encoder = ResNetConfig.from_dict(nested(config, "encoder", where), where=where, section="encoder")
    prepare = PrepareSettings.from_dict(nested(config, "prepare", where), where=where, section="prepare")
    if len(prepare.leads) != encoder.leads:
        raise InputError(
            f"prepare.leads names {len(prepare.leads)} leads but the encoder reads {encoder.leads}: "
            "files from different checkpoints",
            path=where,
        )
    model = load_weights(folder, lambda: pretraining_model(objective, encoder))
    model.eval()
    return model, prepare, config
