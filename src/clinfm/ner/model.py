"""Taggers: an encoder, a per-token linear head, and optionally a CRF (Belkadi et al. 2023).

Four models from two choices, as in the paper:

- encoder: ``transformer`` = a DistilBERT-config encoder initialised at random and trained from
  scratch (the paper's TransformerCRF), or ``bert`` = any pre-trained Hugging Face encoder
  fine-tuned (BERT-CRF; offline default all-MiniLM-L6-v2);
- head: ``apt`` = dropout 0.2 -> linear -> per-token cross-entropy, or ``crf`` = the same linear
  emissions scored by a linear-chain CRF (loss mean(log Z - gold score), Viterbi decoding).

The head sees every sub-word (no CLS/SEP, as the paper's tokenisation adds none).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from torch import nn

from clinfm.checks import (
    MAX_FEED_FORWARD,
    MAX_HEADS,
    MAX_LABELS,
    MAX_LAYERS,
    MAX_LENGTH,
    MAX_VOCABULARY,
    MAX_WIDTH,
    Rule,
    check_fields,
    config_from,
    each,
    integer,
    number,
    one_of,
    optional,
    text,
)
from clinfm.errors import InputError
from clinfm.ner.crf import CRF
from clinfm.pretrained import downloads_allowed, offline_huggingface

MODELS = ("transformer-crf", "transformer-apt", "bert-crf", "bert-apt")
HEADS = ("crf", "apt")

#: The from-scratch encoder's sizes. ``paper``: DistilBertConfig's defaults with the vocabulary of
#: distilbert-base-cased (28,996), 65.2M parameters with 19 labels as the paper's Table I;
#: ``small``: a CPU-sized encoder (2 layers, 256 wide) for quick runs and the demo.
SCRATCH_PRESETS = {
    "paper": {"vocab_size": 28996, "dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072},
    "small": {"vocab_size": 8000, "dim": 256, "n_layers": 2, "n_heads": 4, "hidden_dim": 1024},
}

#: The paper's final training settings per model (batch, epochs, learning rate; AdamW, linear
#: decay, no warm-up). Its BERT rows are bert-base-cased; the pre-trained encoder here is any.
PAPER_TRAINING = {
    "transformer-crf": {"batch_size": 8, "max_epochs": 4, "lr": 1e-4},
    "transformer-apt": {"batch_size": 14, "max_epochs": 4, "lr": 1e-4},
    "bert-crf": {"batch_size": 14, "max_epochs": 3, "lr": 5e-5},
    "bert-apt": {"batch_size": 8, "max_epochs": 3, "lr": 5e-5},
}
PAPER_MAX_LENGTH = 180  # sub-words per sequence
APT_DROPOUT = 0.2


def split_model_name(name: str) -> tuple[str, str]:
    """``"transformer-crf"`` -> ("transformer", "crf"); one line for an unknown name."""
    if name not in MODELS:
        raise InputError(f"unknown NER model {name!r}; choose one of {', '.join(MODELS)} (or feature-crf)")
    encoder, _, head = name.partition("-")
    return encoder, head


@dataclass(frozen=True)
class TaggerConfig:
    """What rebuilds a tagger: its labels, head and the encoder's Hugging Face config."""

    labels: tuple[str, ...]  # "O", "B-Drug", "I-Drug", ...: the index is the class id
    head: str  # crf | apt
    encoder_config: dict  # the Hugging Face config (model_type and sizes), enough to rebuild it
    encoder_source: str  # "scratch" or the pre-trained model it started from
    dropout: float = APT_DROPOUT
    max_length: int = PAPER_MAX_LENGTH

    def to_dict(self) -> dict:
        return {**asdict(self), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, payload: dict, *, where: object = None, section: str | None = None) -> TaggerConfig:
        """A config read from a file (``where``): every field, and the sizes in the encoder's Hugging
        Face config, checked before an encoder is built from it."""
        config = config_from(cls, payload, TAGGER_RULES, where, section=section, convert={"labels": tuple})
        encoder_section = f"{section}.encoder_config" if section else "encoder_config"
        check_fields(
            config.encoder_config, ENCODER_RULES, where, section=encoder_section, ignore_unknown=True
        )
        return config


#: What each field of a saved TaggerConfig may hold (clinfm.checks).
TAGGER_RULES = {
    "labels": each(text(), 1, MAX_LABELS, unique=True),
    "head": one_of(*HEADS),
    "encoder_config": Rule("an object", lambda value: isinstance(value, dict)),
    "encoder_source": text(),
    "dropout": number(0, 1, below=True),
    "max_length": integer(1, MAX_LENGTH),
}
_WIDTH, _LAYERS, _HEADS = integer(1, MAX_WIDTH), integer(1, MAX_LAYERS), integer(1, MAX_HEADS)
_FEED_FORWARD, _DROPOUT = integer(1, MAX_FEED_FORWARD), number(0, 1, below=True)
#: The settings of a Hugging Face encoder config that decide how much it allocates, under the names
#: the common encoders give them (BERT's, DistilBERT's, GPT-2's); the rest is Hugging Face's to check.
ENCODER_RULES = {
    "model_type": text(),
    "vocab_size": integer(1, MAX_VOCABULARY),
    "max_position_embeddings": integer(1, MAX_LENGTH),
    "type_vocab_size": integer(0, 1000),
    **dict.fromkeys(("hidden_size", "dim", "d_model", "n_embd", "embedding_size"), _WIDTH),
    **dict.fromkeys(("num_hidden_layers", "n_layers", "n_layer"), _LAYERS),
    **dict.fromkeys(("num_attention_heads", "n_heads", "n_head"), _HEADS),
    **dict.fromkeys(("intermediate_size", "hidden_dim"), _FEED_FORWARD),
    **dict.fromkeys(
        ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"), _DROPOUT
    ),
    # The encoder is built in this precision: float64 weights are no tagger clinfm trains.
    **dict.fromkeys(("dtype", "torch_dtype"), optional(one_of("float32", "float16", "bfloat16"))),
}


def scratch_encoder_config(preset: str, vocab_size: int | None = None):
    """The DistilBERT config of a from-scratch encoder (``vocab_size`` overrides the preset's)."""
    offline_huggingface()
    from transformers import DistilBertConfig

    if preset not in SCRATCH_PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(SCRATCH_PRESETS)}")
    sizes = dict(SCRATCH_PRESETS[preset])
    if vocab_size is not None:
        sizes["vocab_size"] = vocab_size
    return DistilBertConfig(**sizes)


def encoder_from_config(config: dict) -> nn.Module:
    """An encoder with random weights from a stored Hugging Face config (weights come next)."""
    offline_huggingface()
    from transformers import AutoConfig, AutoModel

    settings = dict(config)
    model_type = settings.pop("model_type", None)
    if model_type is None:
        raise InputError("the tagger's encoder config has no model_type")
    try:  # the sizes were checked (ENCODER_RULES); what else the config says is Hugging Face's to judge
        return AutoModel.from_config(AutoConfig.for_model(model_type, **settings))
    except (ValueError, TypeError, KeyError) as error:
        raise InputError(
            "the tagger's encoder config does not describe a Hugging Face encoder "
            f"({str(error).splitlines()[0]})"
        ) from None


def pretrained_encoder(path: str) -> nn.Module:
    """A pre-trained Hugging Face encoder from a local folder (or an id already in the local cache)."""
    offline_huggingface()
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(path, local_files_only=not downloads_allowed())
    except (OSError, ValueError) as error:
        raise InputError(
            f"cannot load the encoder {path!r} offline ({str(error).splitlines()[0]}); "
            "pass a local folder holding config.json and the weights (or clinfm --allow-download)"
        ) from None


class Tagger(nn.Module):
    """encoder -> dropout -> linear emissions over the labels -> (CRF | per-token softmax)."""

    def __init__(self, encoder: nn.Module, config: TaggerConfig):
        super().__init__()
        if config.head not in HEADS:
            raise InputError(f"unknown head {config.head!r}; choose crf or apt")
        self.config = config
        self.encoder = encoder
        self.dropout = nn.Dropout(config.dropout)
        self.emission = nn.Linear(encoder.config.hidden_size, len(config.labels))
        self.crf = CRF(len(config.labels)) if config.head == "crf" else None

    def emissions(self, batch: dict) -> torch.Tensor:
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.emission(self.dropout(hidden.last_hidden_state))

    def loss(self, batch: dict, objective: str = "tag") -> tuple[torch.Tensor, dict]:
        scores = self.emissions(batch)
        mask = batch["attention_mask"].bool()
        if self.crf is not None:
            return self.crf.nll(scores, batch["tags"], mask), {}
        # The Apt head: cross-entropy averaged over every real sub-word.
        return nn.functional.cross_entropy(scores[mask].float(), batch["tags"][mask]), {}

    @torch.no_grad()
    def predict(self, batch: dict, objective: str = "tag") -> torch.Tensor:
        """Label ids per sub-word, -1 on padding."""
        scores = self.emissions(batch)
        mask = batch["attention_mask"].bool()
        if self.crf is not None:
            return self.crf.decode(scores, mask)
        return scores.argmax(-1).masked_fill(~mask, -1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Embeddings, then each encoder layer, then the head (for probe and llrd fine-tuning)."""
        layered: dict[int, list[nn.Parameter]] = {}
        for name, parameter in self.encoder.named_parameters():
            match = re.search(r"\blayers?\.(\d+)\.", name)
            if "embeddings." in name:
                index = -1
            elif match:
                index = int(match.group(1))
            else:  # a pooler or final norm sits above the layers
                index = 10_000
            layered.setdefault(index, []).append(parameter)
        groups = [layered[index] for index in sorted(layered)]
        head = list(self.emission.parameters()) + (list(self.crf.parameters()) if self.crf else [])
        return [*groups, head]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
