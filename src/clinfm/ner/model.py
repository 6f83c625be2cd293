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
    def from_dict(cls, payload: dict) -> TaggerConfig:
        return cls(**{**payload, "labels": tuple(payload["labels"])})


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
    return AutoModel.from_config(AutoConfig.for_model(model_type, **settings))


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
