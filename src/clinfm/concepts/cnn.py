"""The concept-embedding paper's "1-D CNN" over a findings table (Gao et al., arXiv:2409.13893).

Each finding's state is looked up in a frozen vector table (text embeddings of "finding" and "Not
finding", or the one-hot baseline), the embedding dimension is the convolution's channel axis:
Conv1d(dim -> 100, kernel 1) -> ReLU -> max over findings -> dropout 0.5 -> Linear(100 -> 2),
trained with cross-entropy. A kernel of 1 projects each finding alone and the max pools over them,
so the model does not depend on which findings a site has or their order: moving it to another site
only swaps the vector table (:meth:`FindingsCNN.set_vectors`), which is how the paper transfers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clinfm.train.engine import TrainConfig

#: The paper's training: SGD 1e-3, Nesterov momentum 0.9, weight decay 1e-3, batch 32, 50 epochs of
#: 100 iterations from an endless loader dropping short batches; the checkpoint kept is the best
#: validation AUROC (no early stopping).
PAPER_TRAINING = TrainConfig(
    max_epochs=50,
    batch_size=32,
    optimizer="sgd",
    lr=1e-3,
    momentum=0.9,
    weight_decay=1e-3,
    patience=None,
    steps_per_epoch=100,
    drop_last=True,
    bucket=False,
)
#: Transfer tuning at the target: ten times the source's learning rate, all layers or the head only.
PAPER_TUNING = PAPER_TRAINING.replace(lr=1e-2)
#: The seeds the paper trains in sequence, keeping the one best checkpoint by validation AUROC.
PAPER_SEEDS = (215, 401, 114514)


@dataclass(frozen=True)
class CNNConfig:
    dim: int  # the vector table's width (the encoder's dimension, or 2 x findings for one-hot)
    filters: int = 100
    kernel: int = 1
    dropout: float = 0.5
    n_classes: int = 2


class FindingsCNN(nn.Module):
    """Frozen finding vectors -> Conv1d -> ReLU -> max over findings -> dropout -> linear."""

    def __init__(self, config: CNNConfig, vectors: torch.Tensor):
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(config.dim, config.filters, config.kernel)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.filters, config.n_classes)
        self.register_buffer("vectors", torch.empty(0, config.dim))  # a buffer: never trained
        self.set_vectors(vectors)

    def set_vectors(self, vectors: torch.Tensor) -> None:
        """Read another table (another site's findings): the learned layers stay as they are."""
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.config.dim:
            raise ValueError(f"vectors must be [tokens, {self.config.dim}], not {list(vectors.shape)}")
        self.vectors = vectors.to(self.conv.weight.device)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.config.kernel == 1:
            # The same numbers as convolving the looked-up vectors, computed on the table instead:
            # its few distinct rows (two per finding) are projected once per step, not once per cell.
            projected = nn.functional.linear(self.vectors, self.conv.weight[:, :, 0], self.conv.bias)
            filtered = nn.functional.embedding(tokens, projected)  # (batch, findings, filters)
            pooled = filtered.max(dim=1).values
        else:
            filtered = self.conv(self.vectors[tokens].permute(0, 2, 1))  # dim is the channel axis
            pooled = filtered.max(dim=2).values
        # ReLU after the max: the same value (ReLU is monotone) on far fewer numbers.
        return self.fc(self.dropout(torch.relu(pooled)))

    def loss(self, batch: dict, objective: str) -> tuple[torch.Tensor, dict]:
        logits = self(batch["tokens"])
        return nn.functional.cross_entropy(logits, batch["label"].long()), {}

    def predict(self, batch: dict, objective: str) -> torch.Tensor:
        return torch.softmax(self(batch["tokens"]), dim=-1)[:, 1]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Convolution, then the final layer (a ``probe`` tunes the final layer only: the paper's
        freeze variant)."""
        return [list(self.conv.parameters()), list(self.fc.parameters())]

    def fresh_copy(self) -> FindingsCNN:
        """Untrained weights, the same vector table."""
        return FindingsCNN(self.config, self.vectors.cpu())
