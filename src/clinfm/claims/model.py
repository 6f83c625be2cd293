"""Claim-PT (Zeng, Lin, Liu, arXiv:2106.13095): a transformer over a patient's visits of claims codes.

    visit_v   = sum_c E_code[c] + E_date[date_v] + E_type[type_v]          (a visit is a set of codes)
    x         = [E_demo[age] + E_demo[sex], visit_1, ..., visit_V]          (demographic token first)
    h         = TransformerEncoder(x)                                       (padded visits masked)
    patient   = W_p h_0                                                     (patient embedding)
    NVP head  = sigmoid(W_nvp patient)       -> categories of the held-out next visit
    CP head   = sigmoid(W_cp h_v)            -> categories of visit v itself
    cls head  = sigmoid(w2 relu(W1 patient)) -> the fine-tuning label

Pre-training minimises BCE(CP) + BCE(NVP) + 0 * BCE(cls); the classification head exists from the
start, so fine-tuning changes nothing in the architecture. ``ClaimPTConfig.paper`` is the paper's
code: 1 layer, 2 heads, width 100, FFN 100, no biases, post-LN, no dropout, and the CP loss averaged
over padded visits too (Keras' BCE does that). ``ClaimPTConfig.modern`` is for users with more data:
pre-LN, more layers, continuous time-before-prediction and age embeddings, dropout, and an optional
masked-code objective (BEHRT / Med-BERT style: hidden codes are predicted from their visit's state).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clinfm.checks import (
    MAX_FEED_FORWARD,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_VOCABULARY,
    MAX_WIDTH,
    config_from,
    flag,
    integer,
    number,
    one_of,
)
from clinfm.claims.tokenizer import DEMOGRAPHIC_VOCAB, MAX_AGE, MAX_DATE_VOCAB, VISIT_TYPES
from clinfm.errors import InputError

OBJECTIVES = ("pretrain", "classify", "nextvisit")
CODE_EMBEDDINGS = ("id", "frozen", "projected", "finetuned")


@dataclass(frozen=True)
class ClaimPTConfig:
    vocab_size: int
    n_categories: int
    preset: str = "paper"
    d_model: int = 100
    n_layers: int = 1
    n_heads: int = 2
    d_ff: int = 100
    cls_hidden: int = 100
    bias: bool = False
    norm_first: bool = False
    dropout: float = 0.0
    date_vocab: int = 366
    time_embedding: bool = False  # continuous days-before-prediction and age at each visit
    masked_code_prob: float = 0.0  # share of input codes hidden and predicted (0 = off, as in the paper)
    cp_loss_over_padding: bool = True  # the paper's Keras BCE averages padded visits in as well
    mask_token_id: int = 2
    cp_weight: float = 1.0
    nvp_weight: float = 1.0
    cls_weight: float = 0.0  # 0 in pre-training, as in the paper
    # How a code becomes a vector (CODE_EMBEDDINGS): learned per code id (the paper), or from a text
    # embedding of its description (``concept_dim`` wide), which lets a model read codes it never saw.
    code_embedding: str = "id"
    concept_dim: int = 0

    @classmethod
    def paper(cls, vocab_size: int, n_categories: int, **overrides) -> ClaimPTConfig:
        return cls(vocab_size, n_categories, **overrides)

    @classmethod
    def modern(cls, vocab_size: int, n_categories: int, **overrides) -> ClaimPTConfig:
        values = dict(
            preset="modern",
            d_model=128,
            n_layers=4,
            n_heads=4,
            d_ff=512,
            cls_hidden=128,
            bias=True,
            norm_first=True,
            dropout=0.1,
            time_embedding=True,
            masked_code_prob=0.15,
            cp_loss_over_padding=False,
        )
        values.update(overrides)
        return cls(vocab_size, n_categories, **values)

    @classmethod
    def preset_named(cls, name: str, vocab_size: int, n_categories: int, **overrides) -> ClaimPTConfig:
        presets = {"paper": cls.paper, "modern": cls.modern}
        if name not in presets:
            raise InputError(f"unknown preset {name!r}; expected one of {', '.join(presets)}")
        return presets[name](vocab_size, n_categories, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, where: object = None, section: str | None = None) -> ClaimPTConfig:
        """A config read from a file (``where``): every field checked before a model is built from it."""
        return config_from(cls, values, CLAIM_PT_RULES, where, section=section)

    def __post_init__(self) -> None:
        if self.code_embedding not in CODE_EMBEDDINGS:
            known = ", ".join(CODE_EMBEDDINGS)
            raise InputError(f"unknown code embedding {self.code_embedding!r}; expected one of {known}")
        if self.code_embedding != "id" and self.concept_dim < 1:
            raise InputError(f"code embedding {self.code_embedding!r} needs concept vectors (concept_dim)")
        if self.d_model % self.n_heads:
            raise InputError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.time_embedding and self.d_model % 2:
            # sinusoid() pairs a sine with each cosine: an odd width would not add up.
            raise InputError(f"time_embedding needs an even d_model, got {self.d_model}")
        if self.masked_code_prob > 0 and not 0 <= self.mask_token_id < self.vocab_size:
            raise InputError(
                f"mask_token_id ({self.mask_token_id}) must be a token id below {self.vocab_size}"
            )


#: What each field of a saved ClaimPTConfig may hold (clinfm.checks).
CLAIM_PT_RULES = {
    "vocab_size": integer(1, MAX_VOCABULARY),
    "n_categories": integer(1, MAX_VOCABULARY),  # at most one category per code
    "preset": one_of("paper", "modern"),
    "d_model": integer(1, MAX_WIDTH),
    "n_layers": integer(1, MAX_LAYERS),
    "n_heads": integer(1, MAX_HEADS),
    "d_ff": integer(1, MAX_FEED_FORWARD),
    "cls_hidden": integer(1, MAX_FEED_FORWARD),
    "bias": flag(),
    "norm_first": flag(),
    "dropout": number(0, 1, below=True),
    "date_vocab": integer(2, MAX_DATE_VOCAB),
    "time_embedding": flag(),
    "masked_code_prob": number(0, 1, below=True),
    "cp_loss_over_padding": flag(),
    "mask_token_id": integer(0, MAX_VOCABULARY),
    "cp_weight": number(0, 1e6),
    "nvp_weight": number(0, 1e6),
    "cls_weight": number(0, 1e6),
    "code_embedding": one_of(*CODE_EMBEDDINGS),
    "concept_dim": integer(0, MAX_WIDTH),
}


class SelfAttention(nn.Module):
    def __init__(self, config: ClaimPTConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.out = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).unbind(2)
        # Fused attention; padded keys are masked out (the paper adds -1e7 to their logits).
        attended = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """Attention and a ReLU feed-forward, each with a residual; LayerNorm after (paper) or before."""

    def __init__(self, config: ClaimPTConfig):
        super().__init__()
        self.norm_first = config.norm_first
        self.attention = SelfAttention(config)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff, bias=config.bias),
            nn.ReLU(),
            nn.Linear(config.d_ff, config.d_model, bias=config.bias),
        )
        self.norm1 = nn.LayerNorm(config.d_model)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.norm1(x), mask))
            return x + self.dropout(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


def sinusoid(values: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal features of a continuous value (days, years), as positional encodings use."""
    frequencies = torch.exp(
        torch.arange(0, width, 2, device=values.device, dtype=torch.float32) * (-math.log(10_000.0) / width)
    )
    angles = values.float()[..., None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class CodeEmbedding(nn.Module):
    """A code's vector: learned per code id (``id``, the paper's), or made from the text embedding
    of the code's description (``concepts``, one row per vocabulary id, special tokens zero) by a
    fixed random projection (``frozen``), a trained one (``projected``), or a trained one plus a
    learned per-code correction that starts at zero (``finetuned``).

    With concept vectors a code never seen in training still lands where its description puts it:
    a model pre-trained on ICD-9-CM reads ICD-10-CM once ``set_concepts`` is given the new codes.
    """

    def __init__(self, vocab_size: int, width: int, mode: str = "id", concept_dim: int = 0):
        super().__init__()
        self.mode = mode
        if mode == "id":
            self.table = nn.Embedding(vocab_size, width, padding_idx=0)  # padding id 0 embeds to zeros
            return
        self.register_buffer("concepts", torch.zeros(vocab_size, concept_dim))
        self.projection = nn.Linear(concept_dim, width, bias=False)  # no bias: padding stays zero
        if mode == "frozen":
            nn.init.orthogonal_(self.projection.weight)  # a random projection with orthonormal rows
            self.projection.weight.requires_grad_(False)
        if mode == "finetuned":
            self.correction = nn.Embedding(vocab_size, width, padding_idx=0)
            nn.init.zeros_(self.correction.weight)

    def set_concepts(self, vectors: torch.Tensor) -> None:
        """The text embeddings of the vocabulary's codes, row per id (special tokens: zeros)."""
        if self.mode == "id" or vectors.shape != self.concepts.shape:
            raise ValueError(f"concept vectors of shape {tuple(vectors.shape)} do not fit this embedding")
        self.concepts.copy_(vectors)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.mode == "id":
            return self.table(codes)
        vectors = self.projection(F.embedding(codes, self.concepts))
        return vectors + self.correction(codes) if self.mode == "finetuned" else vectors


class VisitEmbedding(nn.Module):
    """A visit as one vector: the sum of its codes' embeddings (a set: order and padding do not
    count) plus the embeddings of its date index and its type."""

    def __init__(
        self, vocab_size: int, date_vocab: int, width: int, code_mode: str = "id", concept_dim: int = 0
    ):
        super().__init__()
        self.code = CodeEmbedding(vocab_size, width, code_mode, concept_dim)
        self.date = nn.Embedding(date_vocab, width, padding_idx=0)
        self.visit_type = nn.Embedding(len(VISIT_TYPES), width, padding_idx=0)  # not .type: Module has one

    def forward(self, codes: torch.Tensor, date: torch.Tensor, visit_type: torch.Tensor) -> torch.Tensor:
        return self.code(codes).sum(dim=2) + self.date(date) + self.visit_type(visit_type)


class ClaimPT(nn.Module):
    def __init__(self, config: ClaimPTConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.visit_embedding = VisitEmbedding(
            config.vocab_size, config.date_vocab, d, config.code_embedding, config.concept_dim
        )
        self.demographic_embedding = nn.Embedding(DEMOGRAPHIC_VOCAB, d)  # ages then sexes, one table
        if config.time_embedding:
            self.time_projection = nn.Linear(d, d)
            self.age_projection = nn.Linear(d, d)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d) if config.norm_first else nn.Identity()
        self.patient_embedding = nn.Linear(d, d)
        self.nvp_head = nn.Linear(d, config.n_categories)
        self.cp_head = nn.Linear(d, config.n_categories)
        self.cls_head = nn.Sequential(
            nn.Linear(d, config.cls_hidden), nn.ReLU(), nn.Linear(config.cls_hidden, 1)
        )
        if config.masked_code_prob > 0:
            self.code_head = nn.Linear(d, config.vocab_size)

    def _visits(self, batch: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
        visits = self.visit_embedding(codes, batch["visit_date"], batch["visit_type"])
        if self.config.time_embedding:
            d = self.config.d_model
            visits = visits + self.time_projection(sinusoid(torch.log1p(batch["visit_days_before"]), d))
            visits = visits + self.age_projection(sinusoid(batch["visit_age"].nan_to_num(0.0), d))
        return visits

    def encode(self, batch: dict[str, torch.Tensor], codes: torch.Tensor | None = None) -> torch.Tensor:
        """Contextual states [B, 1 + V, d]: the demographic token, then one per visit."""
        codes = batch["codes"] if codes is None else codes
        sex_ids = batch["sex"] + MAX_AGE + 2
        demographic = self.demographic_embedding(batch["age"]) + self.demographic_embedding(sex_ids)
        x = torch.cat([demographic[:, None], self._visits(batch, codes)], dim=1)
        mask = self.token_mask(batch)
        keep = mask[..., None].to(x.dtype)
        x = x * keep
        for block in self.blocks:
            x = block(x, mask) * keep  # padded query rows are zeroed, as in the paper
        return self.final_norm(x) * keep

    @staticmethod
    def token_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["visit_mask"]
        return torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

    def forward(self, batch: dict[str, torch.Tensor], codes: torch.Tensor | None = None) -> dict:
        states = self.encode(batch, codes)
        patient = self.patient_embedding(states[:, 0])
        return {
            "states": states,
            "patient": patient,
            "nvp_logits": self.nvp_head(patient),
            "cp_logits": self.cp_head(states[:, 1:]),
            "cls_logit": self.cls_head(patient).squeeze(-1),
        }

    def _mask_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = (codes > 0) & (torch.rand(codes.shape, device=codes.device) < self.config.masked_code_prob)
        return codes.masked_fill(hidden, self.config.mask_token_id), hidden

    def _cp_loss(self, out: dict, batch: dict) -> torch.Tensor:
        loss = F.binary_cross_entropy_with_logits(out["cp_logits"], batch["cp_target"], reduction="none")
        if self.config.cp_loss_over_padding:
            return loss.mean()
        visits = batch["visit_mask"].to(loss.dtype)
        return (loss.mean(-1) * visits).sum() / visits.sum().clamp(min=1)

    def loss(self, batch: dict[str, torch.Tensor], objective: str) -> tuple[torch.Tensor, dict]:
        """The objective's loss and the parts worth logging."""
        if objective == "classify":
            out = self(batch)
            loss = F.binary_cross_entropy_with_logits(out["cls_logit"], batch["label"])
            return loss, {}
        if objective == "nextvisit":
            out = self(batch)
            return F.binary_cross_entropy_with_logits(out["nvp_logits"], batch["nvp_target"]), {}
        if objective != "pretrain":
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        codes, hidden = batch["codes"], None
        if self.training and self.config.masked_code_prob > 0:
            codes, hidden = self._mask_codes(codes)
        out = self(batch, codes)
        parts = {
            "cp_loss": self._cp_loss(out, batch),
            "nvp_loss": F.binary_cross_entropy_with_logits(out["nvp_logits"], batch["nvp_target"]),
        }
        loss = self.config.cp_weight * parts["cp_loss"] + self.config.nvp_weight * parts["nvp_loss"]
        if self.config.cls_weight and "label" in batch:
            loss = loss + self.config.cls_weight * F.binary_cross_entropy_with_logits(
                out["cls_logit"], batch["label"]
            )
        else:  # the paper's BCE(cls) * 0: the head takes part (DDP expects every parameter used)
            loss = loss + 0.0 * sum(p.sum() for p in self.cls_head.parameters())
        if hidden is not None:
            visit_states = out["states"][:, 1:][:, :, None].expand(-1, -1, codes.shape[2], -1)[hidden]
            if hidden.any():
                parts["masked_code_loss"] = F.cross_entropy(
                    self.code_head(visit_states), batch["codes"][hidden]
                )
                loss = loss + parts["masked_code_loss"]
            else:
                loss = loss + 0.0 * sum(p.sum() for p in self.code_head.parameters())
        return loss, parts

    def fresh_copy(self) -> ClaimPT:
        """The same architecture with new random weights, keeping the code vectors' text embeddings
        (they are data, not learned): the cold start of a concept-embedding model reads codes too."""
        fresh = ClaimPT(self.config)
        if self.config.code_embedding != "id":
            fresh.visit_embedding.code.set_concepts(self.visit_embedding.code.concepts)
        return fresh

    def reset_classifier(self) -> None:
        """Fresh random weights for the classification head (it is never trained in pre-training:
        each fine-tuning seed should start from its own draw, not the checkpoint's one)."""
        for layer in self.cls_head:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
        """Probabilities: the label's for ``classify``, the next visit's categories for ``nextvisit``."""
        out = self(batch)
        if objective == "classify":
            return torch.sigmoid(out["cls_logit"])
        if objective == "nextvisit":
            return torch.sigmoid(out["nvp_logits"])
        if objective == "embed":
            return out["patient"]
        raise ValueError(f"nothing to predict for objective {objective!r}")

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from input to output: embeddings, each block, then the heads.

        Fine-tuning strategies use this order: a probe trains only the last group, layer-wise decay
        gives each group below the top a smaller learning rate.
        """
        heads = ("nvp_head", "cp_head", "cls_head", "code_head")
        inputs = ("visit_embedding", "demographic_embedding", "time_projection", "age_projection")
        by_module = [(name.split(".")[0], p) for name, p in self.named_parameters()]
        groups = [[p for module, p in by_module if module in inputs]]
        groups += [list(block.parameters()) for block in self.blocks]
        groups[-1] += [*self.final_norm.parameters(), *self.patient_embedding.parameters()]
        groups.append([p for module, p in by_module if module in heads])
        return groups
