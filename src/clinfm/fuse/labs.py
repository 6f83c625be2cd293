"""MEDFuse's lab branch: masked lab-test modelling, an asymmetric (MAE-style) encoder-decoder.

Input is :func:`clinfm.fuse.samples.lab_table`'s frame: per sample, the most recent value of each
lab item. A sample is a *set* of tokens (item, standardised value); there is no position encoding,
since the items' order (sorted by code) means nothing and the item embedding says which test a
token is.

* Items: a :class:`clinfm.vocab.Vocabulary` (:func:`lab_vocabulary`) keeps an item only when at
  least ``min_subjects`` distinct subjects have it, so a saved model never reveals a rare test.
  Every other item is the one ``[UNK]`` (OOV) token; ``[PAD]`` (id 0) pads.
* Values: standardised per item with the mean and standard deviation of the **training** samples
  (:func:`fit_value_scaler`, a plain JSON-able dict; never pickled), clipped to ``±clip``
  standard deviations so one absurd value cannot dominate the loss. An OOV token's value is set
  to 0 (the mean): the items pooled under ``[UNK]`` have unrelated scales, and fitting their
  statistics would store numbers about rare tests.
* Pre-training (:meth:`MaskedLabModel.loss`, objective ``"pretrain"``): per sample, ``mask_ratio``
  of the observed tokens are hidden; the encoder runs on the visible tokens only; a narrower
  decoder gets the encoded visible tokens plus one mask token per hidden one (a learned vector plus
  the hidden item's embedding, never its value) and predicts the hidden standardised values. The
  loss is the MSE over hidden tokens only.
* Representation (:meth:`MaskedLabModel.encode`, objective ``"embed"``): the encoder over all
  observed tokens, mean-pooled; a sample without labs gets the zero vector (it has nothing to
  pool, and zero is what the pooled sum of no tokens gives; a fusion head can still tell such
  samples apart through ``n_labs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from clinfm.checks import (
    MAX_HEADS,
    MAX_LAYERS,
    MAX_VOCABULARY,
    MAX_WIDTH,
    check_fields,
    config_from,
    integer,
    mapping,
    number,
)
from clinfm.errors import InputError
from clinfm.vocab.vocabulary import DEFAULT_MIN_SUBJECTS, Vocabulary

FORMAT = "clinfm-lab-value-scaler"
VERSION = 1
#: Standardised values are clipped to this many standard deviations.
DEFAULT_CLIP = 10.0


def lab_vocabulary(frame: pl.DataFrame, min_subjects: int = DEFAULT_MIN_SUBJECTS) -> Vocabulary:
    """The lab items of ``frame`` (a ``lab_table``) seen in at least ``min_subjects`` distinct subjects."""
    events = frame.select("subject_id", pl.col("item").alias("code")).explode("code").drop_nulls()
    return Vocabulary.from_events(events, min_subjects)


def _long(frame: pl.DataFrame) -> pl.DataFrame:
    """item, value: one row per lab token, samples in frame order (samples without labs add none)."""
    return frame.select("item", "value").filter(pl.col("item").list.len() > 0).explode(["item", "value"])


@dataclass(frozen=True)
class ValueScaler:
    """Per-item mean and standard deviation of the training values, for the vocabulary's items only."""

    mean: dict[str, float]
    std: dict[str, float]
    clip: float = DEFAULT_CLIP

    def to_dict(self) -> dict:
        """A JSON-able dict (what is saved with a model)."""
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, payload: dict, *, where: object = None) -> ValueScaler:
        """A scaler read from a file (``where``): finite means, positive standard deviations (values
        are divided by them) and a positive clip."""
        if (
            not isinstance(payload, dict)
            or payload.get("format") != FORMAT
            or payload.get("version") != VERSION
        ):
            raise InputError(f"not a {FORMAT} version {VERSION} document", path=where)
        check_fields(payload, SCALER_RULES, where, required=("mean", "std"), ignore_unknown=True)
        mean, std = payload["mean"], payload["std"]
        if set(mean) != set(std):
            raise InputError("a value scaler needs 'mean' and 'std' dicts over the same items", path=where)
        return cls(
            {k: float(v) for k, v in mean.items()},
            {k: float(v) for k, v in std.items()},
            float(payload.get("clip", DEFAULT_CLIP)),
        )

    def arrays(self, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std indexed by token id; special tokens and items without statistics: 0 and 1."""
        mean, std = np.zeros(len(vocab), np.float32), np.ones(len(vocab), np.float32)
        for item in self.mean.keys() & set(vocab.codes):
            index = vocab.id_of(item)
            mean[index], std[index] = self.mean[item], self.std[item]
        return mean, std


def fit_value_scaler(frame: pl.DataFrame, vocab: Vocabulary, clip: float = DEFAULT_CLIP) -> ValueScaler:
    """Mean and standard deviation per vocabulary item over ``frame``: pass the TRAINING samples only.

    A constant item (or one seen once) gets std 1, so its values standardise to 0 instead of
    dividing by zero. Items outside the vocabulary get no statistics (they are OOV anyway).
    """
    stats = (
        _long(frame)
        .filter(pl.col("item").is_in(list(vocab.codes)) & pl.col("value").is_finite())
        .group_by("item")
        .agg(
            pl.col("value").cast(pl.Float64).mean().alias("mean"),
            pl.col("value").cast(pl.Float64).std(ddof=0),
        )
        .sort("item")
    )
    std = [s if s is not None and s > 1e-8 else 1.0 for s in stats["value"].to_list()]
    return ValueScaler(
        dict(zip(stats["item"], stats["mean"], strict=True)), dict(zip(stats["item"], std, strict=True)), clip
    )


#: What a saved value scaler may hold (clinfm.checks).
SCALER_RULES = {
    "mean": mapping(number(-1e12, 1e12), MAX_VOCABULARY),
    "std": mapping(number(1e-12, 1e12), MAX_VOCABULARY),
    "clip": number(1e-3, 1e6),
}


class LabTokens(torch.utils.data.Dataset):
    """Samples of a ``lab_table`` frame as token sets, batched by ``collate``.

    Batches: ``item`` (B x L long, ``[PAD]`` = 0 on padding, ``[UNK]`` for OOV items), ``value``
    (B x L float, standardised; 0 on padding) and ``observed`` (B x L bool, False on padding). L is
    the batch's longest sample, at least 1 so a batch of samples without labs still has a shape.
    """

    def __init__(self, frame: pl.DataFrame, vocab: Vocabulary, scaler: ValueScaler):
        missing = {"item", "value"} - set(frame.columns)
        if missing:
            raise InputError(f"expected a lab_table frame; it lacks {', '.join(sorted(missing))}")
        if vocab.special_tokens[0] != "[PAD]":
            raise InputError("the lab vocabulary must have [PAD] as id 0")
        self.lengths = frame["item"].list.len().fill_null(0).to_numpy().astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        long = _long(frame)
        self.items = vocab.encode(long["item"]).to_numpy().astype(np.int64)
        self.values = self._standardise(long["value"].to_numpy().astype(np.float32), vocab, scaler)

    def _standardise(self, values: np.ndarray, vocab: Vocabulary, scaler: ValueScaler) -> np.ndarray:
        mean, std = scaler.arrays(vocab)
        z = (values - mean[self.items]) / std[self.items]
        z[self.items == vocab.unk_id] = 0.0  # OOV: the pooled items share no scale (module docstring)
        z[~np.isfinite(z)] = 0.0
        return np.clip(z, -scaler.clip, scaler.clip).astype(np.float32)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        width = max(1, int(max((self.lengths[i] for i in indices), default=0)))
        item = np.zeros((len(indices), width), np.int64)
        value = np.zeros((len(indices), width), np.float32)
        for row, i in enumerate(indices):
            start, end = self.offsets[i], self.offsets[i + 1]
            item[row, : end - start] = self.items[start:end]
            value[row, : end - start] = self.values[start:end]
        observed = np.arange(width)[None, :] < self.lengths[np.asarray(indices, np.int64)][:, None]
        return {
            "item": torch.from_numpy(item),
            "value": torch.from_numpy(value),
            "observed": torch.from_numpy(observed),
        }


@dataclass(frozen=True)
class LabEncoderConfig:
    dim: int = 128
    layers: int = 4
    heads: int = 4
    decoder_dim: int = 64
    decoder_layers: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.dim % self.heads or self.decoder_dim % self.decoder_heads:
            raise InputError("dim and decoder_dim must be multiples of their head counts")
        if not 0.0 < self.mask_ratio < 1.0:
            raise InputError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")

    @classmethod
    def from_dict(cls, values: dict, *, where: object = None, section: str | None = None) -> LabEncoderConfig:
        """A config read from a file (``where``): every field checked before an encoder is built."""
        return config_from(cls, values, LAB_ENCODER_RULES, where, section=section)

    @classmethod
    def small(cls) -> LabEncoderConfig:
        """A tiny model for CPU tests."""
        return cls(dim=32, layers=2, heads=2, decoder_dim=16, decoder_layers=1, decoder_heads=2, dropout=0.0)

    def to_dict(self) -> dict:
        return asdict(self)


#: What each field of a saved LabEncoderConfig may hold (clinfm.checks).
LAB_ENCODER_RULES = {
    "dim": integer(1, MAX_WIDTH),
    "layers": integer(1, MAX_LAYERS),
    "heads": integer(1, MAX_HEADS),
    "decoder_dim": integer(1, MAX_WIDTH),
    "decoder_layers": integer(1, MAX_LAYERS),
    "decoder_heads": integer(1, MAX_HEADS),
    "mask_ratio": number(0, 1, below=True),
    "dropout": number(0, 1, below=True),
}


def _stack(dim: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
    # No nested-tensor fast path: it would drop padded positions and change shapes between modes.
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


def _run(stack: nn.TransformerEncoder, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """``stack`` with a key padding mask; a row of padding only attends to its first slot, since a
    fully masked row gives NaN. Such a row's outputs are never used."""
    empty = padding.all(dim=1)
    padding = padding.clone()
    padding[:, 0] &= ~empty
    return stack(tokens, src_key_padding_mask=padding)


def _compact(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices that gather each row's kept positions to the front (B x K, K = most kept, >= 1), and
    which of those slots are real."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    width = max(1, int(keep.sum(dim=1).max()) if keep.numel() else 1)
    order = order[:, :width]
    return order, torch.gather(keep, 1, order)


class MaskedLabModel(nn.Module):
    """The lab encoder with its pre-training decoder (module docstring)."""

    def __init__(self, vocab_size: int, config: LabEncoderConfig | None = None):
        super().__init__()
        self.config = config = config or LabEncoderConfig()
        self.item_embedding = nn.Embedding(vocab_size, config.dim, padding_idx=0)
        self.value_projection = nn.Linear(1, config.dim)
        self.encoder = _stack(config.dim, config.heads, config.layers, config.dropout)
        self.to_decoder = nn.Linear(config.dim, config.decoder_dim)
        self.decoder_item = nn.Linear(config.dim, config.decoder_dim)  # which item a mask token stands for
        self.mask_token = nn.Parameter(torch.zeros(config.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = _stack(config.decoder_dim, config.decoder_heads, config.decoder_layers, config.dropout)
        self.head = nn.Linear(config.decoder_dim, 1)

    def embed(self, item: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return self.item_embedding(item) + self.value_projection(value.unsqueeze(-1))

    def draw_mask(self, observed: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """B x L bool: ``mask_ratio`` of each row's observed tokens (rounded, at least 1, and at
        least one left visible); rows with fewer than 2 tokens get none. Never padding."""
        count = observed.sum(dim=1)
        hidden = torch.round(count.float() * self.config.mask_ratio).long()
        hidden = torch.minimum(hidden.clamp(min=1), count - 1).clamp(min=0)
        noise = torch.rand(observed.shape, generator=generator, device=observed.device)
        noise = noise.masked_fill(~observed, 2.0)  # padding ranks after every observed token
        rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)
        return (rank < hidden.unsqueeze(1)) & observed

    def reconstruct(self, batch: dict, masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted standardised values of the ``masked`` tokens, as B x M with M slots per row, and
        the gather indices (B x M) into the batch's positions; slots beyond a row's count are junk."""
        item, value, observed = batch["item"], batch["value"], batch["observed"]
        visible_at, visible = _compact(observed & ~masked)
        tokens = self.embed(torch.gather(item, 1, visible_at), torch.gather(value, 1, visible_at))
        encoded = _run(self.encoder, tokens, ~visible)  # the encoder never sees a masked token
        hidden_at, hidden = _compact(masked)
        queries = self.mask_token + self.decoder_item(self.item_embedding(torch.gather(item, 1, hidden_at)))
        sequence = torch.cat([self.to_decoder(encoded), queries], dim=1)
        decoded = _run(self.decoder, sequence, ~torch.cat([visible, hidden], dim=1))
        return self.head(decoded[:, visible.shape[1] :]).squeeze(-1), hidden_at

    def loss(
        self, batch: dict, objective: str, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict]:
        if objective != "pretrain":
            raise InputError(f"the lab model trains on objective 'pretrain', not {objective!r}")
        masked = self.draw_mask(batch["observed"], generator)
        prediction, hidden_at = self.reconstruct(batch, masked)
        target = torch.gather(batch["value"], 1, hidden_at)
        loss = masked_mse(prediction, target, torch.gather(masked, 1, hidden_at))
        return loss, {"masked_tokens": float(masked.sum())}

    def token_states(self, item: torch.Tensor, value: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """B x L x dim: the encoder over all observed tokens (rows without labs: junk, never read)."""
        return _run(self.encoder, self.embed(item, value), ~observed)

    def encode(self, batch: dict) -> torch.Tensor:
        """B x dim: the encoder over all observed tokens, mean-pooled; zeros for a sample without labs."""
        observed = batch["observed"]
        encoded = self.token_states(batch["item"], batch["value"], observed)
        weight = observed.unsqueeze(-1).to(encoded.dtype)
        return (encoded * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)

    def predict(self, batch: dict, objective: str) -> torch.Tensor:
        if objective != "embed":
            raise InputError(f"the lab model predicts objective 'embed', not {objective!r}")
        return self.encode(batch)

    def encoder_groups(self) -> list[list[nn.Parameter]]:
        """Token embeddings, each encoder layer, the encoder's norm: what a downstream model fine-tunes."""
        embeddings = [*self.item_embedding.parameters(), *self.value_projection.parameters()]
        return [
            embeddings,
            *[list(layer.parameters()) for layer in self.encoder.layers],
            list(self.encoder.norm.parameters()),
        ]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The encoder's groups, then the whole decoder."""
        decoder = [self.mask_token]
        for part in (self.to_decoder, self.decoder_item, self.decoder, self.head):
            decoder += list(part.parameters())
        return [*self.encoder_groups(), decoder]


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the ``masked`` entries only; 0 (still in the graph) when there are none."""
    weight = masked.to(prediction.dtype)
    return ((prediction - target) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)


__all__ = [
    "LabEncoderConfig",
    "LabTokens",
    "MaskedLabModel",
    "ValueScaler",
    "fit_value_scaler",
    "lab_vocabulary",
    "masked_mse",
]
