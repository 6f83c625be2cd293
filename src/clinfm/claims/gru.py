"""A GRU over visits: the recurrent baseline trained from scratch on each task.

It reads the same batches as Claim-PT (the same visit embedding: its codes' embeddings summed, plus
its type and date) and ends in the same classification head, so the comparison isolates what
attention and pre-training add.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clinfm.claims.model import VisitEmbedding
from clinfm.claims.tokenizer import DEMOGRAPHIC_VOCAB, MAX_AGE


@dataclass(frozen=True)
class VisitGRUConfig:
    vocab_size: int
    date_vocab: int = 366
    d_model: int = 100
    hidden: int = 100
    dropout: float = 0.0


class VisitGRU(nn.Module):
    def __init__(self, config: VisitGRUConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.visit_embedding = VisitEmbedding(config.vocab_size, config.date_vocab, d)
        self.demographic_embedding = nn.Embedding(DEMOGRAPHIC_VOCAB, config.hidden)
        self.gru = nn.GRU(d, config.hidden, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.cls_head = nn.Linear(config.hidden, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        visits = self.visit_embedding(batch["codes"], batch["visit_date"], batch["visit_type"])
        lengths = batch["visit_mask"].sum(dim=1)
        # Demographics start the recurrence, so a patient without visits still gets a prediction.
        start = self.demographic_embedding(batch["age"]) + self.demographic_embedding(
            batch["sex"] + MAX_AGE + 2
        )
        packed = nn.utils.rnn.pack_padded_sequence(
            visits, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed, start[None].contiguous())
        state = torch.where(lengths[:, None] > 0, last[0], start)
        return self.cls_head(self.dropout(state)).squeeze(-1)

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> tuple[torch.Tensor, dict]:
        if objective != "classify":
            raise ValueError("the GRU baseline is trained for classification only")
        return F.binary_cross_entropy_with_logits(self(batch), batch["label"]), {}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        return torch.sigmoid(self(batch))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return [
            [p for name, p in self.named_parameters() if not name.startswith("cls_head")],
            list(self.cls_head.parameters()),
        ]
