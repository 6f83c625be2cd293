"""A tagger as a folder: ``config.json`` + ``model.safetensors`` + ``tokenizer/`` (Hugging Face files).

Everything needed to tag new text offline: the encoder is rebuilt from its stored config (not
fetched), the label map is in the config, and the tokenizer travels with the weights. No corpus
text is stored beyond the tokenizer's sub-word vocabulary (learned with a minimum frequency).
"""

from __future__ import annotations

import os
from pathlib import Path

from clinfm.checks import located, nested
from clinfm.ner.data import load_tokenizer
from clinfm.ner.model import Tagger, TaggerConfig, encoder_from_config
from clinfm.train.checkpoint import load_weights, read_config_of_kind, save_checkpoint

KIND = "ner-tagger"
TOKENIZER_FOLDER = "tokenizer"


def save_tagger(folder: str | os.PathLike, model: Tagger, tokenizer, extra: dict | None = None) -> Path:
    """Write the tagger into ``folder`` (normally a temporary folder the caller renames into place)."""
    folder = Path(folder)
    save_checkpoint(folder, model, {"kind": KIND, "tagger": model.config.to_dict(), **(extra or {})})
    tokenizer.save_pretrained(str(folder / TOKENIZER_FOLDER))
    return folder


def load_tagger(folder: str | os.PathLike) -> tuple[Tagger, object, dict]:
    """(tagger in eval mode, its tokenizer, the whole config.json) from a folder ``save_tagger`` wrote."""
    folder = Path(folder)
    where = folder / "config.json"
    config = read_config_of_kind(folder, KIND, "an NER tagger", "clinfm ner train")
    tagger_config = TaggerConfig.from_dict(nested(config, "tagger", where), where=where, section="tagger")
    with located(where):
        model = load_weights(
            folder, lambda: Tagger(encoder_from_config(tagger_config.encoder_config), tagger_config)
        )
    model.eval()
    return model, load_tokenizer(str(folder / TOKENIZER_FOLDER)), config
