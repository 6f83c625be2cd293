"""Checkpoints as a folder, like Hugging Face's save_pretrained: ``config.json`` + ``model.safetensors``
(+ the vocabulary and other JSON files the model needs). Never pickle.

A checkpoint holds weights, settings and the (minimum-count) vocabulary: no subject ids, no counts,
no data. Loading checks every tensor's name, shape, dtype and values against the model the config
describes (the config itself is checked by its reader, ``clinfm.checks``), so a checkpoint of another
preset or vocabulary, or a tampered one, is refused in one line instead of half-loading.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from clinfm import __version__
from clinfm.errors import InputError
from clinfm.io import read_json_document, write_json_atomic

FORMAT = "clinfm-checkpoint"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(
    folder: str | os.PathLike, model: torch.nn.Module, config: dict, files: dict | None = None
) -> Path:
    """Write ``config`` (with format and version), the weights and extra JSON ``files`` into ``folder``.

    ``folder`` is normally a temporary directory that the caller renames into place (``clinfm.io``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    for name, payload in (files or {}).items():
        write_json_atomic(folder / name, payload)
    write_json_atomic(
        folder / CONFIG_FILE,
        {"format": FORMAT, "version": VERSION, "clinfm_version": __version__, **config},
    )
    return folder


def read_config(folder: str | os.PathLike) -> dict:
    """The checkpoint's ``config.json``; InputError if the folder is not a clinfm checkpoint."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if (folder / "metadata" / "dataset.json").exists():
        raise InputError(
            "is a MEDS dataset, not a checkpoint (pass a folder from clinfm pretrain)", path=folder
        )
    if not folder.is_dir():
        raise InputError(
            "no checkpoint folder here (expected config.json and model.safetensors)", path=folder
        )
    config = read_json_document(path, format=FORMAT, version=VERSION, what="a clinfm checkpoint config")
    return config


def read_config_of_kind(folder: str | os.PathLike, kind: str, what: str, made_by: str) -> dict:
    """``read_config`` for a checkpoint that must be of ``kind`` (e.g. a lab encoder, ``what``, from
    ``made_by``, a command); any other clinfm checkpoint is refused in one line."""
    config = read_config(folder)
    if config.get("kind") != kind:
        raise InputError(
            f"is a clinfm checkpoint of kind {config.get('kind', 'claims')!r}, not {what} "
            f"(pass a folder from {made_by})",
            path=folder,
        )
    return config


def load_weights(folder: str | os.PathLike, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The model ``build`` makes (from a config already checked), with the weights of ``model.safetensors``.

    Every tensor must match the model by name, shape and dtype (float32 unless the model itself keeps
    another, as batch norm's counters) and hold finite values. The model is first built on the meta
    device, which allocates nothing, and compared with the file: a config describing a model bigger
    than its weights is refused before the real one is built, so loading never takes more memory
    than the file and the model it holds. So ``build`` runs twice and must only construct: anything it
    needs from disk (a language model to fine-tune) is loaded before and passed in.
    """
    path = Path(folder) / WEIGHTS_FILE
    try:
        state = load_file(path)  # safetensors: tensors only, never pickle
    except (OSError, SafetensorError, ValueError) as error:
        raise InputError(
            f"not a readable safetensors file ({str(error).splitlines()[0]})", path=path
        ) from None
    with torch.device("meta"):
        expected = build().state_dict()
    _check_weights(state, expected, path)
    model = build()
    model.load_state_dict(state)
    return model


def _check_weights(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(
            f"weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "a checkpoint of another preset or architecture",
            path=path,
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise InputError(
                f"{name} has shape {tuple(tensor.shape)} but the config says {tuple(expected[name].shape)}: "
                "the weights and config.json (or the vocabulary) come from different models",
                path=path,
            )
        if tensor.dtype != expected[name].dtype:
            # load_state_dict would cast silently: float64 weights are not what was trained.
            raise InputError(
                f"{name} is {_dtype(tensor)}, expected {_dtype(expected[name])}: weights edited or "
                "saved by another program",
                path=path,
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{name} holds NaN or infinite values: the weights are corrupt", path=path)


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
