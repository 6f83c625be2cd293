"""Claim-PT with concept embeddings: code vectors from descriptions, and a model moved to another site."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest
import torch

from clinfm.claims import recipes, transfer
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.claims.model import CODE_EMBEDDINGS, ClaimPT, ClaimPTConfig
from clinfm.errors import InputError
from clinfm.events.meds import scan_shards
from clinfm.train.engine import TrainConfig

TINY = TrainConfig(max_epochs=1, batch_size=64, optimizer="adam", lr=1e-3, patience=None, logger="none")
DIM = 16


def fake_concept_vectors(vocab, encoder, data):
    """A stand-in text encoder: a fixed vector per code string (the real ones are tested in test_concepts)."""
    rows = np.zeros((len(vocab), DIM), dtype=np.float32)
    for i, code in enumerate(vocab.codes, start=len(vocab.special_tokens)):
        seed = int(hashlib.sha256(code.encode()).hexdigest()[:8], 16)
        rows[i] = np.random.default_rng(seed).normal(size=DIM)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9), "fake-encoder"


@pytest.fixture(autouse=True)
def _fake_encoder(monkeypatch):
    monkeypatch.setattr(transfer, "concept_vectors", fake_concept_vectors)


@pytest.mark.parametrize("mode", CODE_EMBEDDINGS)
def test_each_code_embedding_mode(mode):
    config = ClaimPTConfig.paper(10, 4, code_embedding=mode, concept_dim=0 if mode == "id" else DIM)
    model = ClaimPT(config)
    code = model.visit_embedding.code
    if mode != "id":
        code.set_concepts(torch.randn(10, DIM).index_fill_(0, torch.tensor([0, 1, 2]), 0.0))
    vectors = code(torch.tensor([[0, 3, 4]]))
    assert torch.equal(vectors[0, 0], torch.zeros(100))  # padding embeds to zeros in every mode
    trainable = {name for name, p in code.named_parameters() if p.requires_grad}
    expected = {
        "id": {"table.weight"},
        "frozen": set(),
        "projected": {"projection.weight"},
        "finetuned": {"projection.weight", "correction.weight"},
    }[mode]
    assert trainable == expected
    if mode == "finetuned":  # the correction starts at zero: the text vectors decide at first
        assert torch.equal(code.correction.weight, torch.zeros_like(code.correction.weight))


def test_an_icd9_model_reads_an_icd10_site(site_icd9, site_icd10, tmp_path):
    checkpoint = recipes.pretrain(
        site_icd9, tmp_path / "ckpt", train=TINY, min_subjects=5, code_embedding="projected"
    )
    source = ClaimsModel.load(checkpoint)
    assert source.encoder_name == "fake-encoder" and source.model.config.concept_dim == DIM
    moved = transfer.move_to_site(source, site_icd10, min_subjects=10)
    assert all(not code.startswith("ICD9CM/") for code in moved.vocab.codes)
    assert any(code.startswith("ICD10CM/") for code in moved.vocab.codes)
    carried = moved.model.state_dict()
    for name, tensor in source.model.state_dict().items():
        if not name.startswith(transfer.SITE_SPECIFIC):
            assert torch.equal(tensor, carried[name]), name  # the transformer and heads come along
    expected, _ = fake_concept_vectors(moved.vocab, None, site_icd10)
    assert np.allclose(moved.model.visit_embedding.code.concepts.numpy(), expected)
    labels = site_icd10 / "tasks" / "asthma_exacerbation_180d.parquet"
    quick = recipes.MethodSettings(TINY, TINY)
    run = recipes.finetune(
        site_icd10, labels, checkpoint, tmp_path / "run", settings=quick, baselines=False, adapt=True
    )
    assert (
        json.loads((run / "metrics.json").read_text())["methods"]["pretrained"]["brier"]["value"] is not None
    )
    assert ClaimsModel.load(run / "model").vocab.codes == moved.vocab.codes


def test_a_code_id_model_cannot_read_another_coding_system(site_icd9, site_icd10, tmp_path):
    """Code ids mean nothing at a site coded otherwise: its diagnoses are all unknown, and moving the
    model gives them fresh random vectors (what a concept-embedding model avoids)."""
    checkpoint = recipes.pretrain(site_icd9, tmp_path / "ckpt", train=TINY, min_subjects=5)
    bundle = ClaimsModel.load(checkpoint)
    diagnoses = [
        shard.filter(pl.col("code").str.starts_with("ICD10CM/")) for shard in scan_shards(site_icd10)
    ]
    with pytest.raises(InputError, match="none of the data's codes"):
        bundle.dataset(diagnoses)
    moved = transfer.move_to_site(bundle, site_icd10, min_subjects=10)
    assert moved.model.config.code_embedding == "id"
    assert not set(moved.vocab.codes) & {c for c in bundle.vocab.codes if c.startswith("ICD")}


def test_the_default_encoder_gives_claim_pt_its_code_vectors(site_icd9, tmp_path, monkeypatch):
    """The real path: descriptions of the vocabulary's codes through the embedded MiniLM (offline)."""
    monkeypatch.undo()  # no fake encoder here
    monkeypatch.setenv("CLINFM_CACHE", str(tmp_path / "cache"))
    from clinfm.vocab.vocabulary import Vocabulary

    vocab = Vocabulary(("ICD9CM/493.90", "ICD10CM/J45.909", "ICD10CM/I10"), counted=False)
    vectors, name = transfer.concept_vectors(vocab, None, None)
    assert name == "sentence-transformers:all-MiniLM-L6-v2" and vectors.shape == (6, 384)
    assert not vectors[:3].any()  # special tokens embed to zeros
    asthma9, asthma10, hypertension = vectors[3:]
    assert asthma9 @ asthma10 > asthma9 @ hypertension


def test_data_coded_otherwise_is_flagged(site_icd9, site_icd10, tmp_path):
    checkpoint = recipes.pretrain(site_icd9, tmp_path / "ckpt", train=TINY, min_subjects=5)
    bundle = ClaimsModel.load(checkpoint)
    same_site = recipes.unknown_code_share(bundle, pl.scan_parquet(site_icd9 / "data" / "*.parquet"))
    other_site = recipes.unknown_code_share(bundle, pl.scan_parquet(site_icd10 / "data" / "*.parquet"))
    assert same_site < recipes.UNKNOWN_SHARE_WARNING < other_site


def test_a_cold_start_keeps_the_code_vectors_of_its_descriptions():
    config = ClaimPTConfig.paper(10, 4, code_embedding="projected", concept_dim=DIM)
    model = ClaimPT(config)
    model.visit_embedding.code.set_concepts(torch.randn(10, DIM))
    fresh = model.fresh_copy()
    assert torch.equal(fresh.visit_embedding.code.concepts, model.visit_embedding.code.concepts)
    assert not torch.equal(
        fresh.visit_embedding.code.projection.weight, model.visit_embedding.code.projection.weight
    )


def test_the_transfer_protocols_on_a_tiny_pair(site_icd9, site_icd10, tmp_path):
    from clinfm.claims.cross_site import PROTOCOLS, transfer

    out = transfer(
        site_icd9,
        site_icd10,
        "asthma_exacerbation_180d",
        tmp_path / "xfer",
        fractions=(0.5, 1.0),
        seeds=(0,),
        settings=TINY,
        min_subjects=5,
        held_out=0.4,
        n_bootstrap=50,
    )
    points = json.loads((out / "efficiency.json").read_text())["points"]
    methods = {p["method"] for p in points}
    assert methods == {f"{e}/{p}" for e in ("ids", "text") for p in PROTOCOLS}
    shared = [p["metrics"]["auroc"]["per_seed"] for p in points if p["method"] == "text/shared"]
    assert shared[0] == shared[1]  # no target label is used: the same model at every share
    record = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert record["data"]["n_test"] == metrics["test"]["n"]
    assert (out / "report.html").exists()
    for method, scores in metrics["methods"].items():  # F1 at each model's tuned threshold, stated
        where = "source site's tuning set" if method.endswith("/shared") else "tuning set"
        assert scores["f1"]["threshold_source"] in (
            f"{where}, max F1",
            f"default 0.5: the {where} lacks a class",
        )


def test_unknown_protocols_are_refused(site_icd9, site_icd10, tmp_path):
    from clinfm.claims.cross_site import transfer

    with pytest.raises(InputError, match="unknown protocols"):
        transfer(site_icd9, site_icd10, "asthma_exacerbation_180d", tmp_path / "x", protocols=("magic",))
