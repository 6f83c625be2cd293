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

from clinfm.checks import check_fields, nested, number, one_of, optional, shown, text
from clinfm.claims.batches import CategoryMap, VisitBatches
from clinfm.claims.model import OBJECTIVES, ClaimPT, ClaimPTConfig
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
        """The model in ``folder``; every file is checked, then every tensor, before the model is built."""
        folder = Path(folder)
        where = folder / "config.json"
        config = read_config(folder)
        if config.get("model") != MODEL_NAME:
            raise InputError(f"a {shown(config.get('model'))} checkpoint, not Claim-PT", path=where)
        check_fields(config, SETTINGS_RULES, where, ignore_unknown=True)
        vocab = Vocabulary.load(folder / VOCABULARY_FILE, of_model=True)
        categories = CategoryMap.load(folder / CATEGORIES_FILE)
        model_values = nested(config, "model_config", where)
        model_config = ClaimPTConfig.from_dict(model_values, where=where, section="model_config")
        tokenizer_values = nested(config, "tokenizer", where, optional=True) or {}
        tokenizer = TokenizerConfig.from_dict(tokenizer_values, where=where, section="tokenizer")
        splits = SplitPolicy.from_dict(nested(config, "splits", where, optional=True), where=where)
        encoder = nested(config, "encoder", where, optional=True) or {}
        check_fields(encoder, ENCODER_RULES, where, section="encoder")
        _check_agreement(folder, model_config, tokenizer, vocab, categories)
        model = load_weights(folder, lambda: ClaimPT(model_config))
        trained_for = config.get("trained_for", "pretrain")
        return cls(
            model, vocab, categories, tokenizer, trained_for, splits, encoder.get("spec"), encoder.get("name")
        )


#: The top-level settings of a Claim-PT config.json this module reads (clinfm.checks); the model,
#: tokenizer and split settings are checked by their own classes.
SETTINGS_RULES = {
    "trained_for": one_of(*OBJECTIVES),
    "threshold": optional(number(0, 1)),
}
ENCODER_RULES = {"spec": optional(text()), "name": optional(text())}


def _check_agreement(
    folder: Path,
    config: ClaimPTConfig,
    tokenizer: TokenizerConfig,
    vocab: Vocabulary,
    categories: CategoryMap,
) -> None:
    """The files of one checkpoint describe one model: the same tokens, categories and dates."""
    if (config.vocab_size, config.n_categories) != (len(vocab), len(categories)):
        raise InputError(
            f"the model embeds {config.vocab_size} tokens and {config.n_categories} "
            f"categories but its files list {len(vocab)} and {len(categories)}: files from different "
            "checkpoints",
            path=folder,
        )
    if len(categories.code_offsets) != len(vocab) + 1:
        raise InputError(
            f"the category map covers {len(categories.code_offsets) - 1} tokens but the vocabulary has "
            f"{len(vocab)}: files from different checkpoints",
            path=folder / CATEGORIES_FILE,
        )
    if tokenizer.date_vocab > config.date_vocab:
        raise InputError(
            f"tokenizer.date_vocab ({tokenizer.date_vocab}) exceeds the model's date_vocab "
            f"({config.date_vocab}): files from different checkpoints",
            path=folder / "config.json",
        )
