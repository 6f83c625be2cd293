"""An ECG encoder as a folder: ``config.json`` (objective, encoder shape, how windows were prepared)
+ ``model.safetensors``. It holds weights and settings only: no record or patient ids, no signals."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from clinfm.ecg.baselines import pretraining_model
from clinfm.ecg.corpus import PrepareSettings
from clinfm.ecg.model import ResNetConfig
from clinfm.train.checkpoint import load_weights, read_config_of_kind, save_checkpoint

KIND = "ecg-encoder"


def encoder_config_dict(config: ResNetConfig) -> dict:
    return {**dataclasses.asdict(config), "units": [list(unit) for unit in config.units]}


def encoder_config_from(payload: dict) -> ResNetConfig:
    return ResNetConfig(**{**payload, "units": tuple(tuple(unit) for unit in payload["units"])})


def prepare_settings_from(payload: dict) -> PrepareSettings:
    return PrepareSettings(**{**payload, "leads": tuple(payload["leads"])})


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
    """(model in eval mode, the window preparation it expects, the whole config.json)."""
    folder = Path(folder)
    config = read_config_of_kind(folder, KIND, "an ECG encoder", "clinfm ecg pretrain")
    model = pretraining_model(config["objective"], encoder_config_from(config["encoder"]))
    load_weights(folder, model)
    model.eval()
    return model, prepare_settings_from(config["prepare"]), config
