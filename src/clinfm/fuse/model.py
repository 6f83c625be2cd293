"""MEDFuse's disentangled fusion of lab tests and clinical notes, for multi-label disease prediction.

The paper's code is not public (PAPERS.md section 4); what is known, and what this module does:

* **Modality inputs.** Labs: the lab branch's encoder (:class:`clinfm.fuse.labs.MaskedLabModel`,
  pre-trained by masked lab-test modelling, fine-tuned here) gives one state per observed lab token.
  Notes: one vector per note chunk from a language model (frozen and cached, or fine-tuned through
  ``note_encoder``). Each side is projected to ``dim`` and becomes a token sequence A (labs) and
  B (notes). A sample without labs or without notes gets one learned "missing" token on that side,
  so attention is defined and the model predicts from what is there.
* **Specific parts**: ``S_A = SelfAttn(A)``, ``S_B = SelfAttn(B)`` (one transformer layer each), each
  mean-pooled to ``s_a`` and ``s_b``.
* **Joint part**: the Kronecker (outer) product of the two pooled modality embeddings,
  ``vec(a ⊗ b)`` with ``a`` and ``b`` first reduced to ``kronecker_dim`` each (a 128 x 128 outer
  product would be 16,384 wide), projected to ``dim``: C.
* **Shared part**: ``S_C = CrossAttn(query = C, keys/values = [S_A ; S_B])``, pooled to ``s_c``.
* **MI loss**: ``weight * max(0, vCLUB(concat(s_a, s_b), s_c))`` (:mod:`clinfm.fuse.club`), q
  trained alternately on detached representations with its own optimiser; the penalty pushes specific
  and shared information apart. Weight 0.1 (MEDFuse). The clamp at 0 is ours: an estimate below 0
  is q's error, and without the clamp the model learns to exploit it.
* **Output**: ``concat(f_A(s_a), s_c, f_B(s_b))`` through a linear layer to one logit per disease;
  multi-label binary cross-entropy.

Ablation switches (``FusionConfig.fusion``): ``disentangled`` (the above), ``concat`` (``[s_a ; s_b]``
straight to the classifier: no joint part, no cross-attention, no MI loss), ``labs`` and ``notes``
(one branch alone). ``mi_weight = 0`` removes the MI loss; whether the lab encoder starts from
masked pre-training is the caller's choice (a fresh :class:`MaskedLabModel` otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from clinfm.checks import MAX_FEED_FORWARD, MAX_HEADS, MAX_WIDTH, config_from, integer, number, one_of
from clinfm.errors import InputError
from clinfm.fuse.club import CLUB, DEFAULT_WEIGHT
from clinfm.fuse.labs import MaskedLabModel

FUSIONS = ("disentangled", "concat", "labs", "notes")


@dataclass(frozen=True)
class FusionConfig:
    fusion: str = "disentangled"  # disentangled | concat | labs | notes
    dim: int = 128
    heads: int = 4
    kronecker_dim: int = 16
    dropout: float = 0.1
    mi_weight: float = DEFAULT_WEIGHT
    club_hidden: int = 128
    club_lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")
        if self.dim % self.heads:
            raise InputError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if self.mi_weight < 0:
            raise InputError(f"mi_weight must be >= 0, got {self.mi_weight}")

    @property
    def uses_labs(self) -> bool:
        return self.fusion != "notes"

    @property
    def uses_notes(self) -> bool:
        return self.fusion != "labs"

    @property
    def uses_mi(self) -> bool:
        return self.fusion == "disentangled" and self.mi_weight > 0

    @classmethod
    def small(cls, **changes) -> FusionConfig:
        """A tiny model for CPU tests and the demo."""
        return cls(
            **{"dim": 32, "heads": 2, "kronecker_dim": 8, "club_hidden": 32, "dropout": 0.0, **changes}
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, where: object = None, section: str | None = None) -> FusionConfig:
        """A config read from a file (``where``): every field checked before a model is built."""
        return config_from(cls, values, FUSION_RULES, where, section=section)


#: What each field of a saved FusionConfig may hold (clinfm.checks).
FUSION_RULES = {
    "fusion": one_of(*FUSIONS),
    "dim": integer(1, MAX_WIDTH),
    "heads": integer(1, MAX_HEADS),
    "kronecker_dim": integer(1, 1024),  # the outer product is kronecker_dim squared wide
    "dropout": number(0, 1, below=True),
    "mi_weight": number(0, 1e6),
    "club_hidden": integer(1, MAX_FEED_FORWARD),
    "club_lr": number(0, 10),
}


def _attention_layer(dim: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)


def _pool(states: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weight = valid.unsqueeze(-1).to(states.dtype)
    return (states * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)


class Modality(nn.Module):
    """A projected token sequence with a learned token standing in for an absent modality."""

    def __init__(self, input_dim: int, dim: int):
        super().__init__()
        self.projection = nn.Linear(input_dim, dim)
        self.missing = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.missing, std=0.02)

    def forward(self, states: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x L x dim tokens, B x L valid); rows with no valid token get the missing token in slot 0."""
        tokens = self.projection(states)
        absent = ~valid.any(dim=1)
        if absent.any():
            tokens = tokens.clone()
            tokens[absent, 0] = self.missing.to(tokens.dtype)
            valid = valid.clone()
            valid[absent, 0] = True
        return tokens, valid


class FusionModel(nn.Module):
    """Labs + notes -> one logit per disease (module docstring). ``loss(batch, "multilabel")``."""

    def __init__(
        self,
        lab_model: MaskedLabModel | None,
        note_dim: int,
        n_labels: int,
        config: FusionConfig | None = None,
        note_encoder: nn.Module | None = None,
    ):
        super().__init__()
        self.config = config = config or FusionConfig()
        if config.uses_labs and lab_model is None:
            raise InputError(f"fusion {config.fusion!r} needs a lab model")
        dim = config.dim
        self.lab_model = lab_model if config.uses_labs else None
        self.note_encoder = note_encoder if config.uses_notes else None
        self.note_dim = note_dim
        width = 0
        if config.uses_labs:
            self.labs = Modality(lab_model.config.dim, dim)
            self.lab_attention = _attention_layer(dim, config.heads, config.dropout)
            width += dim
        if config.uses_notes:
            self.notes = Modality(note_dim, dim)
            self.note_attention = _attention_layer(dim, config.heads, config.dropout)
            width += dim
        if config.fusion == "disentangled":
            self.lab_specific = nn.Linear(dim, dim)  # f_A
            self.note_specific = nn.Linear(dim, dim)  # f_B
            self.reduce_labs = nn.Linear(dim, config.kronecker_dim)
            self.reduce_notes = nn.Linear(dim, config.kronecker_dim)
            self.joint = nn.Linear(config.kronecker_dim**2, dim)
            self.cross_attention = nn.MultiheadAttention(dim, config.heads, config.dropout, batch_first=True)
            self.shared_norm = nn.LayerNorm(dim)
            width = 3 * dim
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, n_labels)
        # q(shared | specific) of the MI penalty: trained by its own optimiser, never by the model's.
        self.club = CLUB(2 * dim, dim, hidden=config.club_hidden) if config.uses_mi else None
        self._club_optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------------------------ branches
    def _lab_tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        observed = batch["observed"]
        states = self.lab_model.token_states(batch["item"], batch["value"], observed)
        return self.labs(states, observed)

    def _note_tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.note_encoder is not None:  # fine-tuned: one vector per sample, its chunks averaged
            mask = batch["note_chunk_mask"]
            vectors = self.note_encoder(batch["note_ids"], batch["note_attention"], mask).unsqueeze(1)
            valid = mask.any(dim=1, keepdim=True)
        else:
            vectors, valid = batch["note_vectors"], batch["note_valid"]
        return self.notes(vectors, valid)

    @staticmethod
    def _specific(layer: nn.Module, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return layer(tokens, src_key_padding_mask=~valid)

    def represent(self, batch: dict) -> dict[str, torch.Tensor]:
        """The pooled parts: ``labs`` / ``notes`` (specific), ``shared``, and ``features`` (what the
        classifier reads)."""
        parts: dict[str, torch.Tensor] = {}
        if self.config.uses_labs:
            a, a_valid = self._lab_tokens(batch)
            specific_a = self._specific(self.lab_attention, a, a_valid)
            parts["labs"] = _pool(specific_a, a_valid)
        if self.config.uses_notes:
            b, b_valid = self._note_tokens(batch)
            specific_b = self._specific(self.note_attention, b, b_valid)
            parts["notes"] = _pool(specific_b, b_valid)
        if self.config.fusion == "disentangled":
            outer = torch.einsum(
                "bi,bj->bij", self.reduce_labs(_pool(a, a_valid)), self.reduce_notes(_pool(b, b_valid))
            )
            joint = self.joint(outer.flatten(1)).unsqueeze(1)
            memory = torch.cat([specific_a, specific_b], dim=1)
            padding = ~torch.cat([a_valid, b_valid], dim=1)
            shared, _ = self.cross_attention(
                joint, memory, memory, key_padding_mask=padding, need_weights=False
            )
            parts["shared"] = self.shared_norm(shared.squeeze(1) + joint.squeeze(1))
            parts["features"] = torch.cat(
                [self.lab_specific(parts["labs"]), parts["shared"], self.note_specific(parts["notes"])], dim=1
            )
        else:
            parts["features"] = torch.cat([parts[k] for k in ("labs", "notes") if k in parts], dim=1)
        return parts

    def forward(self, batch: dict) -> torch.Tensor:
        return self.classifier(self.dropout(self.represent(batch)["features"]))

    # ------------------------------------------------------------------------------------ training
    def loss(self, batch: dict, objective: str) -> tuple[torch.Tensor, dict]:
        """Multi-label BCE, plus ``mi_weight`` x vCLUB while training (q stepped first, on detached
        parts). Validation returns the BCE alone, so the weights kept are the best classifier's."""
        if objective != "multilabel":
            raise InputError(f"the fusion model trains on objective 'multilabel', not {objective!r}")
        parts = self.represent(batch)
        logits = self.classifier(self.dropout(parts["features"]))
        bce = F.binary_cross_entropy_with_logits(logits, batch["labels"].to(logits.dtype))
        if self.club is None:
            return bce, {"bce": float(bce.detach())}
        specific = torch.cat([parts["labs"], parts["notes"]], dim=1)
        if self.training:
            self._step_club(specific.detach(), parts["shared"].detach())
        # Clamped at 0: mutual information is never negative, and a negative estimate only means q lags
        # behind; left unclamped, the model learns to drive it ever lower (measured: -2.5 nats within 6
        # epochs, with the classification loss stuck at 1.7x that of the model without the penalty).
        penalty = self.club.mi_penalty(specific, parts["shared"]).clamp(min=0.0)
        logged = {"bce": float(bce.detach()), "club": float(penalty.detach())}
        if not self.training:
            return bce, logged
        return bce + self.config.mi_weight * penalty, logged

    def _step_club(self, specific: torch.Tensor, shared: torch.Tensor) -> None:
        """One step of q(shared | specific) (CLUB's Algorithm 1); its optimiser lives with the model
        because the engine's optimiser must never move q."""
        if self._club_optimizer is None:
            self._club_optimizer = torch.optim.Adam(self.club.parameters(), lr=self.config.club_lr)
        with torch.enable_grad():
            self._club_optimizer.zero_grad()
            self.club.learning_loss(specific.float(), shared.float()).backward()
            self._club_optimizer.step()
            self._club_optimizer.zero_grad(set_to_none=True)  # nothing of q's step lingers in the model's

    def predict(self, batch: dict, objective: str) -> torch.Tensor:
        """B x labels probabilities (``"multilabel"``) or the classifier's input (``"represent"``)."""
        if objective == "represent":
            return self.represent(batch)["features"]
        if objective != "multilabel":
            raise InputError(f"the fusion model predicts 'multilabel' or 'represent', not {objective!r}")
        return torch.sigmoid(self.forward(batch))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Pre-trained encoders first (lab, note), then the fusion layers and the classifier; q of the
        MI penalty is in no group (its own optimiser trains it)."""
        club = {id(p) for p in self.club.parameters()} if self.club is not None else set()
        encoders: list[nn.Parameter] = []
        if self.lab_model is not None:
            encoders += [p for group in self.lab_model.encoder_groups() for p in group]
        if self.note_encoder is not None:
            encoders += [p for p in self.note_encoder.parameters() if p.requires_grad]
        taken = {id(p) for p in encoders} | club
        if self.lab_model is not None:
            taken |= {id(p) for p in self.lab_model.parameters()}  # the decoder is unused here
        if self.note_encoder is not None:
            taken |= {id(p) for p in self.note_encoder.parameters()}
        fusion = [p for p in self.parameters() if id(p) not in taken]
        return [group for group in (encoders, fusion) if group]


__all__ = ["FUSIONS", "FusionConfig", "FusionModel", "Modality"]
