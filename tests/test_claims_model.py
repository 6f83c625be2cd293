"""Claim-PT model: the paper's architecture, padding and set invariance, and the objectives' losses.

Batches come from a hand-made MEDS frame through the real tokenizer and collate, so what is tested is
what training sees. Models are tiny and built with a fixed seed; comparisons are made in eval mode.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clinfm.claims.batches import CategoryMap, VisitBatches
from clinfm.claims.model import ClaimPT, ClaimPTConfig
from clinfm.claims.tokenizer import TokenizerConfig, tokenize
from clinfm.vocab.vocabulary import Vocabulary

CODES = ("CPT4/90658", "CPT4/99213", "ICD9CM/250.00", "ICD9CM/493.90", "RXNORM/745679", "RXNORM/860975")
VOCAB = Vocabulary(codes=CODES, counted=False)
CATEGORIES = CategoryMap.build(VOCAB)  # CPT4/906, CPT4/992, CCS/49, CCS/128, RXNORM/745, RXNORM/860
PRESETS = ("paper", "modern")


def meds(rows) -> pl.DataFrame:
    """Rows (subject_id, time or None, code, encounter_id)."""
    return pl.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "time": [None if r[1] is None else datetime.fromisoformat(r[1]) for r in rows],
            "code": [r[2] for r in rows],
            "numeric_value": [None] * len(rows),
            "text_value": [None] * len(rows),
            "encounter_id": [r[3] for r in rows],
        },
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "numeric_value": pl.Float32,
            "text_value": pl.String,
            "encounter_id": pl.Int64,
        },
    )


@pytest.fixture(scope="module")
def dataset() -> VisitBatches:
    """Subject 1: one input visit of one code (short).  Subject 2: three input visits of up to three
    codes (long).  Each has a held-out last visit, and a label (1 and 0)."""
    events = meds(
        [
            (1, "2000-05-01 00:00", "MEDS_BIRTH", None),
            (1, None, "GENDER/F", None),
            (1, "2020-01-01 10:00", "ICD9CM/493.90", 1),
            (1, "2020-02-01 10:00", "RXNORM/745679", 2),
            (2, "1980-05-01 00:00", "MEDS_BIRTH", None),
            (2, None, "GENDER//M", None),
            (2, "2020-01-01 10:00", "ICD9CM/250.00", 3),
            (2, "2020-01-01 10:00", "CPT4/99213", 3),
            (2, "2020-01-01 10:00", "RXNORM/860975", 3),
            (2, "2020-01-03 10:00", "ICD9CM/493.90", 4),
            (2, "2020-01-03 10:00", "RXNORM/745679", 4),
            (2, "2020-01-20 10:00", "CPT4/90658", 5),
            (2, "2020-03-01 10:00", "ICD9CM/250.00", 6),
        ]
    )
    packed = tokenize(events, VOCAB, TokenizerConfig.paper())
    assert packed.visits_per_sample.tolist() == [1, 3]
    return VisitBatches(packed, CATEGORIES, labels=np.array([1.0, 0.0]))


@pytest.fixture(scope="module")
def batch(dataset) -> dict[str, torch.Tensor]:
    return dataset.collate([0, 1])


def make_model(preset: str, **overrides) -> ClaimPT:
    torch.manual_seed(0)
    config = ClaimPTConfig.preset_named(preset, len(VOCAB), len(CATEGORIES), **overrides)
    return ClaimPT(config).eval()


# ---------------------------------------------------------------------------------------------------
# Architecture


def test_paper_preset_is_the_papers_architecture():
    model = make_model("paper")
    config = model.config
    assert (config.n_layers, config.n_heads, config.d_model, config.d_ff) == (1, 2, 100, 100)
    assert config.dropout == 0.0 and not config.norm_first and config.cp_loss_over_padding
    assert config.masked_code_prob == 0.0 and config.cls_weight == 0.0
    assert len(model.blocks) == 1
    block = model.blocks[0]
    linears = [block.attention.qkv, block.attention.out, block.feed_forward[0], block.feed_forward[2]]
    assert all(layer.bias is None for layer in linears)
    assert [tuple(layer.weight.shape) for layer in linears] == [
        (300, 100),
        (100, 100),
        (100, 100),
        (100, 100),
    ]
    assert isinstance(block.feed_forward[1], nn.ReLU)
    assert isinstance(model.final_norm, nn.Identity)
    assert not hasattr(model, "code_head")


def test_paper_block_is_post_layer_norm(batch):
    model = make_model("paper")
    block = model.blocks[0]
    x = torch.randn(2, 4, 100)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    after_attention = block.norm1(x + block.attention(x, mask))
    expected = block.norm2(after_attention + block.feed_forward(after_attention))
    torch.testing.assert_close(block(x, mask), expected)


def test_forward_shapes_and_zeroed_padding(batch):
    model = make_model("paper")
    with torch.no_grad():
        out = model(batch)
    n_cat = len(CATEGORIES)
    assert batch["codes"].shape == (2, 3, 3)
    assert out["states"].shape == (2, 4, 100)
    assert out["patient"].shape == (2, 100)
    assert out["nvp_logits"].shape == (2, n_cat)
    assert out["cp_logits"].shape == (2, 3, n_cat)
    assert out["cls_logit"].shape == (2,)
    # Sample 0 has one visit: its two padded visit states are zero, their CP logits the bias alone.
    assert out["states"][0, 2:].abs().max() == 0
    torch.testing.assert_close(out["cp_logits"][0, 1:], model.cp_head.bias.expand(2, -1))


@pytest.mark.parametrize("preset", PRESETS)
def test_predict(batch, preset):
    model = make_model(preset)
    with torch.no_grad():
        out = model(batch)
    probability = model.predict(batch, "classify")
    assert probability.shape == (2,) and ((probability > 0) & (probability < 1)).all()
    torch.testing.assert_close(probability, torch.sigmoid(out["cls_logit"]))
    torch.testing.assert_close(model.predict(batch, "nextvisit"), torch.sigmoid(out["nvp_logits"]))
    torch.testing.assert_close(model.predict(batch, "embed"), out["patient"])
    with pytest.raises(ValueError, match="nothing to predict"):
        model.predict(batch, "pretrain")


# ---------------------------------------------------------------------------------------------------
# Invariances


@pytest.mark.parametrize("preset", PRESETS)
def test_padding_does_not_change_a_sample(dataset, preset):
    model = make_model(preset)
    alone, together = dataset.collate([0]), dataset.collate([0, 1])
    assert alone["codes"].shape == (1, 1, 1) and together["codes"].shape == (2, 3, 3)
    with torch.no_grad():
        out_alone, out_together = model(alone), model(together)
    torch.testing.assert_close(out_together["patient"][:1], out_alone["patient"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_together["states"][:1, :2], out_alone["states"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_together["nvp_logits"][:1], out_alone["nvp_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_together["cls_logit"][:1], out_alone["cls_logit"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_visit_is_a_set_order_of_codes_does_not_matter(batch, preset):
    model = make_model(preset)
    permuted = dict(batch, codes=batch["codes"][:, :, [2, 0, 1]])
    assert not torch.equal(permuted["codes"], batch["codes"])
    with torch.no_grad():
        out, out_permuted = model(batch), model(permuted)
    for name in ("states", "patient", "nvp_logits", "cp_logits", "cls_logit"):
        torch.testing.assert_close(out_permuted[name], out[name], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Losses


def test_pretraining_loss_does_not_depend_on_the_classification_head(batch):
    model = make_model("paper")
    loss, parts = model.loss(batch, "pretrain")
    torch.testing.assert_close(loss, parts["cp_loss"] + parts["nvp_loss"])
    with torch.no_grad():
        for parameter in model.cls_head.parameters():
            parameter.normal_(0.0, 5.0)
    torch.testing.assert_close(model.loss(batch, "pretrain")[0], loss)
    model.zero_grad()
    model.loss(batch, "pretrain")[0].backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.cls_head.parameters())
    assert model.nvp_head.weight.grad.abs().max() > 0 and model.cp_head.weight.grad.abs().max() > 0


def test_classify_loss_uses_only_the_label(batch):
    model = make_model("paper")
    loss, parts = model.loss(batch, "classify")
    assert parts == {}
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(model(batch)["cls_logit"], batch["label"])
    torch.testing.assert_close(loss, expected)
    other_targets = dict(batch, cp_target=1 - batch["cp_target"], nvp_target=1 - batch["nvp_target"])
    torch.testing.assert_close(model.loss(other_targets, "classify")[0], loss)
    flipped = dict(batch, label=1 - batch["label"])
    assert not torch.allclose(model.loss(flipped, "classify")[0], loss)


def test_nextvisit_loss_is_the_nvp_bce(batch):
    model = make_model("paper")
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(model(batch)["nvp_logits"], batch["nvp_target"])
    torch.testing.assert_close(model.loss(batch, "nextvisit")[0], expected)
    with pytest.raises(ValueError, match="unknown objective"):
        model.loss(batch, "mlm")


@pytest.mark.parametrize(("preset", "over_padding"), [("paper", True), ("modern", False)])
def test_cp_loss_over_padding_paper_versus_masked_modern(batch, preset, over_padding):
    model = make_model(preset)
    assert model.config.cp_loss_over_padding is over_padding
    with torch.no_grad():
        per_category = F.binary_cross_entropy_with_logits(
            model(batch)["cp_logits"], batch["cp_target"], reduction="none"
        )
    per_visit = per_category.mean(-1)  # [2, 3]; sample 0 has 2 padded visits
    # Paper (Keras BCE): the mean over all 6 visit slots.  Modern: over the 4 real visits only.
    over_all = per_visit.sum() / 6
    over_real = (per_visit[0, 0] + per_visit[1].sum()) / 4
    assert not torch.allclose(over_all, over_real)
    _, parts = model.loss(batch, "pretrain")
    torch.testing.assert_close(parts["cp_loss"], over_all if over_padding else over_real)


def test_modern_masked_code_objective_in_train_mode_only(batch):
    model = make_model("modern")
    assert model.config.masked_code_prob == 0.15
    codes_before = batch["codes"].clone()
    loss_a, parts_a = model.loss(batch, "pretrain")
    loss_b, _ = model.loss(batch, "pretrain")
    assert set(parts_a) == {"cp_loss", "nvp_loss"}
    torch.testing.assert_close(loss_a, loss_b)  # eval: no masking, no dropout

    model.train()
    torch.manual_seed(1)
    for _ in range(20):  # 7 real codes hidden with p = 0.15: some draw hides at least one
        loss, parts = model.loss(batch, "pretrain")
        if "masked_code_loss" in parts:
            break
    assert "masked_code_loss" in parts and parts["masked_code_loss"] > 0
    torch.testing.assert_close(loss, parts["cp_loss"] + parts["nvp_loss"] + parts["masked_code_loss"])
    assert torch.equal(batch["codes"], codes_before)  # the batch is not masked in place


def test_masked_code_loss_by_hand_when_every_code_is_hidden(batch):
    model = make_model("modern", masked_code_prob=1.0, dropout=0.0).train()
    _, parts = model.loss(batch, "pretrain")
    codes = batch["codes"]
    hidden = codes > 0
    masked = codes.masked_fill(hidden, VOCAB.id_of("[MASK]"))
    states = model(batch, masked)["states"][:, 1:]  # [B, V, d]
    visit_of_code = states[:, :, None].expand(-1, -1, codes.shape[2], -1)[hidden]
    expected = F.cross_entropy(model.code_head(visit_of_code), codes[hidden])
    torch.testing.assert_close(parts["masked_code_loss"], expected)


# ---------------------------------------------------------------------------------------------------
# Layer groups


@pytest.mark.parametrize("preset", PRESETS)
def test_layer_groups_cover_every_parameter_once_heads_last(preset):
    model = make_model(preset)
    groups = model.layer_groups()
    assert len(groups) == 1 + model.config.n_layers + 1
    flat = [id(p) for group in groups for p in group]
    assert len(flat) == len(set(flat))
    assert set(flat) == {id(p) for p in model.parameters()}
    heads = [model.nvp_head, model.cp_head, model.cls_head]
    if preset == "modern":
        heads.append(model.code_head)
    assert {id(p) for p in groups[-1]} == {id(p) for head in heads for p in head.parameters()}
    embeddings = [model.visit_embedding, model.demographic_embedding]
    assert {id(p) for p in groups[0]} >= {id(p) for layer in embeddings for p in layer.parameters()}
