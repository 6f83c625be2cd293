"""A Claim-PT checkpoint: the model with everything needed to read new data the same way.

Folder: ``config.json`` (model, tokenizer and training settings; what the weights were last trained
for), ``model.safetensors``, ``vocabulary.json`` (codes seen in at least k patients, nothing else)
and ``categories.json`` (the category space of the pre-training heads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from clinfm.claims.batches import CategoryMap, VisitBatches
from clinfm.claims.model import ClaimPT, ClaimPTConfig
from clinfm.claims.tokenizer import TokenizerConfig, tokenize
from clinfm.errors import InputError
from clinfm.events.splits import SplitPolicy
from clinfm.train.checkpoint import load_weights, read_config, save_checkpoint
from clinfm.vocab.vocabulary import Vocabulary

MODEL_NAME = "claim-pt"
VOCABULARY_FILE = "vocabulary.json"
CATEGORIES_FILE = "categories.json"


@dataclass
class ClaimsModel:
    model: ClaimPT
    vocab: Vocabulary
    categories: CategoryMap
    tokenizer: TokenizerConfig
    trained_for: str = "pretrain"  # the objective the weights were last trained on
    splits: SplitPolicy = field(default_factory=lambda: SplitPolicy())  # who pre-trained; who is held out
    encoder: str | None = None  # the text encoder spec that made the concept vectors (concept modes)
    encoder_name: str | None = None  # its resolved name, to check a new site is embedded the same way

    def dataset(
        self,
        events: pl.LazyFrame | list[pl.LazyFrame],
        labels: pl.DataFrame | None = None,
        y=None,
        *,
        hold_out: bool | None = None,
    ) -> VisitBatches:
        """Tokenize events (up to each label's prediction_time) the way this model was trained.

        ``hold_out=True`` holds every sample's last visit out as the next-visit target, as
        pre-training and next-visit prediction need whatever the preset does for fine-tuning
        (the paper's drops it there too; the modern preset keeps it as input).
        """
        config = self.tokenizer if hold_out is None else replace(self.tokenizer, hold_out_last_visit=hold_out)
        packed = tokenize(events, self.vocab, config, labels)
        if packed.n_events == 0:
            raise InputError(
                "none of the data's codes is in this checkpoint's vocabulary: it was trained on data "
                f"coded differently (its codes look like {', '.join(self.vocab.codes[:3])}); "
                "--adapt rebuilds the code table for this site"
            )
        return VisitBatches(packed, self.categories, y)

    def save(self, folder: str | os.PathLike, **extra) -> Path:
        config = {
            "model": MODEL_NAME,
            "trained_for": self.trained_for,
            "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "encoder": {"spec": self.encoder, "name": self.encoder_name},
            "splits": self.splits.to_dict(),
            **extra,
        }
        folder = save_checkpoint(folder, self.model, config, {CATEGORIES_FILE: self.categories.to_json()})
        self.vocab.save(folder / VOCABULARY_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ClaimsModel:
        folder = Path(folder)
        config = read_config(folder)
        if config.get("model") != MODEL_NAME:
            raise InputError(
                f"a {config.get('model')!r} checkpoint, not Claim-PT", path=folder / "config.json"
            )
        vocab = Vocabulary.load(folder / VOCABULARY_FILE)
        categories = CategoryMap.load(folder / CATEGORIES_FILE)
        model_config = ClaimPTConfig.from_dict(config.get("model_config") or {}, where=folder / "config.json")
        if (model_config.vocab_size, model_config.n_categories) != (len(vocab), len(categories)):
            raise InputError(
                f"the model embeds {model_config.vocab_size} tokens and {model_config.n_categories} "
                f"categories but its files list {len(vocab)} and {len(categories)}: files from different "
                "checkpoints",
                path=folder,
            )
        model = load_weights(folder, ClaimPT(model_config))
        tokenizer = TokenizerConfig.from_dict(config.get("tokenizer") or {})
        splits = SplitPolicy.from_dict(config.get("splits"))
        encoder = config.get("encoder") or {}
        trained_for = config.get("trained_for", "pretrain")
        return cls(
            model, vocab, categories, tokenizer, trained_for, splits, encoder.get("spec"), encoder.get("name")
        )
