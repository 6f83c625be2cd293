"""Claim-PT across sites: code vectors from concept embeddings, and a model moved to another site's codes.

A checkpoint's code table belongs to its vocabulary. To read a site coded differently (ICD-10-CM
instead of ICD-9-CM, local codes), the model is rebuilt for the new site's vocabulary: everything
that does not depend on which codes exist (visit, date, type and demographic embeddings, the
transformer, the patient and classification heads, a concept projection) is carried over; the code
table is made anew: from the new codes' descriptions through the same text encoder (concept modes),
or at random (``id``, the paper's, which is why code-id models cannot transfer across coding
systems). The pre-training heads, whose outputs are the old site's categories, start afresh.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from clinfm.claims.batches import CategoryMap
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.claims.model import ClaimPT, ClaimPTConfig
from clinfm.claims.tokenizer import TokenizerConfig, claim_code_filter
from clinfm.errors import InputError
from clinfm.events.meds import scan_events
from clinfm.vocab.vocabulary import Vocabulary

#: Weights tied to one vocabulary or category space: never carried to another site's codes.
SITE_SPECIFIC = (
    "visit_embedding.code.table",
    "visit_embedding.code.correction",
    "visit_embedding.code.concepts",
)
SITE_SPECIFIC += ("code_head", "cp_head", "nvp_head")


def concept_vectors(
    vocab: Vocabulary, encoder: str | None, data: str | os.PathLike | None
) -> tuple[np.ndarray, str]:
    """Text embeddings of the vocabulary's code descriptions, a row per token id (special tokens:
    zeros), and the encoder's name. Descriptions come from the dataset's codes.parquet, then the
    ICD tables, else the code itself (see clinfm.concepts)."""
    from clinfm.concepts import code_texts, embed_texts, load_encoder

    text_encoder = load_encoder(encoder)
    texts = code_texts(list(vocab.codes), dataset=data)
    if texts["code"].to_list() != list(vocab.codes):  # a row per id, or every code gets another's vector
        raise RuntimeError("code texts are not in vocabulary order")
    vectors = np.asarray(embed_texts(text_encoder, texts["text"].to_list()), dtype=np.float32)
    rows = np.zeros((len(vocab), vectors.shape[1]), dtype=np.float32)
    rows[len(vocab.special_tokens) :] = vectors
    return rows, text_encoder.name


def new_model(
    vocab: Vocabulary,
    *,
    preset: str = "paper",
    code_embedding: str = "id",
    encoder: str | None = None,
    data: str | os.PathLike | None = None,
    tokenizer: TokenizerConfig | None = None,
    seed: int = 0,
    **overrides,
) -> ClaimsModel:
    """An untrained Claim-PT for ``vocab``: learned code ids, or code vectors from the descriptions'
    text embeddings (``encoder``; descriptions from ``data``'s codes.parquet, then the ICD tables)
    read by ``code_embedding``. ``seed`` fixes the initial weights (after the encoder has run)."""
    from clinfm import progress

    categories = CategoryMap.build(vocab)
    concepts, name = None, None
    if code_embedding != "id":
        with progress.status("embedding code descriptions"):
            concepts, name = concept_vectors(vocab, encoder, data)
    dim = 0 if concepts is None else concepts.shape[1]
    config = ClaimPTConfig.preset_named(
        preset, len(vocab), len(categories), code_embedding=code_embedding, concept_dim=dim, **overrides
    )
    torch.manual_seed(seed)
    model = ClaimPT(config)
    if concepts is not None:
        model.visit_embedding.code.set_concepts(torch.from_numpy(concepts))
    tokenizer = tokenizer or TokenizerConfig.paper()
    return ClaimsModel(model, vocab, categories, tokenizer, encoder=encoder, encoder_name=name)


def site_vocabulary(data: Path, splits: pl.DataFrame, min_subjects: int) -> Vocabulary:
    """The claims codes of a site's training patients, under the minimum-patient-count policy."""
    events = scan_events(data)
    train = splits.filter(pl.col("split") == "train").select("subject_id").lazy()
    claims = events.join(train, on="subject_id", how="semi").filter(
        claim_code_filter(events.collect_schema().names())
    )
    vocab = Vocabulary.from_events(claims, min_subjects=min_subjects)
    if not vocab.codes:
        raise InputError(
            f"no code is seen in at least {min_subjects} training patients: nothing to learn", path=data
        )
    return vocab


def move_to_site(
    bundle: ClaimsModel, data: str | os.PathLike, *, min_subjects: int, seed: int = 0
) -> ClaimsModel:
    """The model rebuilt for ``data``'s codes (see the module docstring); the checkpoint is unchanged."""
    data = Path(data)
    vocab = site_vocabulary(data, bundle.splits.assign(data, scan_events(data)), min_subjects)
    categories = CategoryMap.build(vocab)
    config = replace(bundle.model.config, vocab_size=len(vocab), n_categories=len(categories))
    with torch.random.fork_rng():  # the new code table is seeded without touching the caller's RNG
        torch.manual_seed(seed)
        model = ClaimPT(config)
    carried = {k: v for k, v in bundle.model.state_dict().items() if not k.startswith(SITE_SPECIFIC)}
    # Everything not tied to the vocabulary must carry over whole: a mismatch is a bug, not a choice.
    model.load_state_dict(carried, strict=False)
    if config.code_embedding != "id":
        vectors, name = concept_vectors(vocab, bundle.encoder, data)
        if name != bundle.encoder_name:
            raise InputError(f"the checkpoint's codes were embedded by {bundle.encoder_name}, not {name}")
        model.visit_embedding.code.set_concepts(torch.from_numpy(vectors))
    return ClaimsModel(
        model,
        vocab,
        categories,
        bundle.tokenizer,
        bundle.trained_for,
        bundle.splits,
        bundle.encoder,
        bundle.encoder_name,
    )
