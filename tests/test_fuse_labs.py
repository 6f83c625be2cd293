"""MEDFuse's lab branch: lab tokens, the value scaler, and the masked (MAE-style) lab model."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
import torch

from clinfm.fuse.labs import (
    LabEncoderConfig,
    LabTokens,
    MaskedLabModel,
    ValueScaler,
    fit_value_scaler,
    lab_vocabulary,
    masked_mse,
)
from clinfm.fuse.samples import lab_table
from clinfm.train.engine import TrainConfig, fit

T0 = dt.datetime(2020, 1, 1)


def _frame(samples: list[dict[str, float]], subjects: list[int] | None = None) -> pl.DataFrame:
    """A frame shaped like ``lab_table``'s (the columns the lab branch reads): one dict per sample."""
    subjects = subjects if subjects is not None else list(range(len(samples)))
    items = [sorted(s) for s in samples]
    return pl.DataFrame(
        {
            "sample_id": list(range(len(samples))),
            "subject_id": subjects,
            "item": items,
            "value": [[s[i] for i in its] for s, its in zip(samples, items, strict=True)],
            "n_labs": [len(s) for s in samples],
        },
        schema={
            "sample_id": pl.Int64,
            "subject_id": pl.Int64,
            "item": pl.List(pl.String),
            "value": pl.List(pl.Float32),
            "n_labs": pl.UInt32,
        },
    )


def _random_frame(n: int, seed: int = 0, items: int = 6) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        count = int(rng.integers(0, items + 1))
        chosen = rng.choice(items, size=count, replace=False)
        samples.append({f"LAB/{k}": float(rng.normal(10 * k, 1 + k)) for k in chosen})
    return _frame(samples)


def _dataset(frame: pl.DataFrame, min_subjects: int = 1) -> tuple[LabTokens, int]:
    vocab = lab_vocabulary(frame, min_subjects)
    return LabTokens(frame, vocab, fit_value_scaler(frame, vocab)), len(vocab)


def _model(vocab_size: int, seed: int = 0) -> MaskedLabModel:
    torch.manual_seed(seed)
    return MaskedLabModel(vocab_size, LabEncoderConfig.small()).eval()


def test_lab_table_output_feeds_tokens_and_rare_items_map_to_oov():
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 2, 2, 3],
            "time": [T0] * 5,
            "code": ["LOINC/718-7", "LOINC/9999-9", "LOINC/718-7", "LOINC/2345-7", "LOINC/2345-7"],
            "numeric_value": [12.0, 5.0, 14.0, 90.0, 110.0],
        },
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "numeric_value": pl.Float32,
        },
    )
    labels = pl.DataFrame(
        {"subject_id": [1, 2, 3, 4], "prediction_time": [T0 + dt.timedelta(hours=1)] * 4},
        schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")},
    )
    frame = lab_table(events, labels)
    vocab = lab_vocabulary(frame, min_subjects=2)  # LOINC/9999-9: one subject only
    assert vocab.codes == ("LOINC/2345-7", "LOINC/718-7")
    scaler = fit_value_scaler(frame, vocab)
    assert "LOINC/9999-9" not in scaler.mean  # no statistics about a rare test
    batch = LabTokens(frame, vocab, scaler).collate([0, 1, 2, 3])
    row0 = dict(zip(batch["item"][0].tolist(), batch["value"][0].tolist(), strict=True))
    assert row0 == {vocab.id_of("LOINC/718-7"): pytest.approx(-1.0), vocab.unk_id: 0.0}
    assert batch["observed"].sum(dim=1).tolist() == [2, 2, 1, 0]  # subject 4 has no labs


def test_collate_pads_and_marks_padding():
    frame = _frame([{"A": 1.0, "B": 2.0, "C": 3.0}, {}, {"A": 2.0}])
    data, _ = _dataset(frame)
    assert data.lengths.tolist() == [3, 0, 1]
    batch = data.collate([0, 1, 2])
    assert batch["item"].dtype == torch.long and batch["item"].shape == (3, 3)
    assert batch["value"].dtype == torch.float32
    assert batch["observed"].tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert (batch["item"][~batch["observed"]] == 0).all() and (batch["value"][~batch["observed"]] == 0).all()
    assert data.collate([1])["item"].shape == (1, 1)  # only empty samples: still a shape


def test_value_scaler_uses_training_samples_only_and_is_json():
    train = _frame([{"A": 1.0, "B": 5.0}, {"A": 3.0, "B": 5.0}])
    val = _frame([{"A": 100.0}])
    vocab = lab_vocabulary(train, 1)
    scaler = fit_value_scaler(train, vocab)
    assert scaler.mean == {"A": 2.0, "B": 5.0}
    assert scaler.std == {"A": 1.0, "B": 1.0}  # B is constant: std 1, not a division by zero
    restored = ValueScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored == scaler
    # Validation values are standardised with the training statistics, not their own.
    assert LabTokens(val, vocab, restored).collate([0])["value"].item() == pytest.approx(scaler.clip)
    assert LabTokens(_frame([{"A": 4.0}]), vocab, restored).collate([0])["value"].item() == 2.0


def test_mask_takes_three_quarters_of_observed_tokens_never_padding():
    data, size = _dataset(_random_frame(64, items=12))
    batch = data.collate(list(range(64)))
    model = _model(size)
    masked = model.draw_mask(batch["observed"], torch.Generator().manual_seed(1))
    counts = batch["observed"].sum(dim=1)
    expected = [0 if n < 2 else min(max(round(0.75 * n), 1), n - 1) for n in counts.tolist()]
    assert masked.sum(dim=1).tolist() == expected
    assert not (masked & ~batch["observed"]).any()
    again = model.draw_mask(batch["observed"], torch.Generator().manual_seed(1))
    assert torch.equal(masked, again)
    assert masked.sum() / counts[counts >= 4].sum() > 0.6  # overall close to the ratio


def test_encoder_sees_only_visible_tokens():
    data, size = _dataset(_random_frame(16, items=12))
    batch = data.collate(list(range(16)))
    model = _model(size)
    widths = []
    hook = model.encoder.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(args[0].shape[1]), with_kwargs=True
    )
    generator = torch.Generator().manual_seed(3)
    masked = model.draw_mask(batch["observed"], torch.Generator().manual_seed(3))
    model.loss(batch, "pretrain", generator)
    hook.remove()
    visible = (batch["observed"] & ~masked).sum(dim=1)
    assert widths == [int(visible.max())]
    assert widths[0] < batch["item"].shape[1]


def test_loss_counts_masked_tokens_only_and_hides_their_values():
    data, size = _dataset(_random_frame(16, items=8))
    batch = data.collate(list(range(16)))
    model = _model(size)
    masked = model.draw_mask(batch["observed"], torch.Generator().manual_seed(5))
    prediction, at = model.reconstruct(batch, masked)
    loss, _ = model.loss(batch, "pretrain", torch.Generator().manual_seed(5))
    assert torch.isfinite(loss)
    by_hand = ((prediction - batch["value"].gather(1, at)) ** 2)[masked.gather(1, at)].mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # A masked token's value never reaches the model: changing it leaves the predictions as they were.
    changed = {**batch, "value": batch["value"] + 7.0 * masked}
    assert torch.allclose(model.reconstruct(changed, masked)[0], prediction, atol=1e-5)
    # The loss's targets at unmasked positions (visible tokens, padding) do not count.
    target = batch["value"].gather(1, at)
    weight = masked.gather(1, at)
    perturbed = torch.where(weight, target, target + 100.0)
    assert masked_mse(prediction, perturbed, weight).item() == pytest.approx(loss.item(), rel=1e-6)
    assert masked_mse(prediction, torch.where(weight, target + 1.0, target), weight).item() != pytest.approx(
        loss.item()
    )


def test_samples_with_fewer_than_two_labs_add_no_loss():
    data, size = _dataset(_frame([{"A": 1.0}, {}, {"B": 2.0}]))
    model = _model(size).train()
    loss, parts = model.loss(data.collate([0, 1, 2]), "pretrain")
    assert loss.item() == 0.0 and parts["masked_tokens"] == 0
    loss.backward()  # still part of the graph: a training step over such a batch does not fail


def test_encode_handles_a_sample_without_labs():
    data, size = _dataset(_frame([{"A": 1.0, "B": 2.0}, {}, {"A": 3.0}]))
    model = _model(size)
    batch = data.collate([0, 1, 2])
    with torch.no_grad():
        embedding = model.encode(batch)
        assert torch.equal(model.predict(batch, "embed"), embedding)
    assert embedding.shape == (3, LabEncoderConfig.small().dim)
    assert torch.isfinite(embedding).all()
    assert (embedding[1] == 0).all() and (embedding[0] != 0).any() and (embedding[2] != 0).any()


def test_layer_groups_cover_every_parameter_once():
    model = _model(10)
    grouped = [id(p) for group in model.layer_groups() for p in group]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert len(model.layer_groups()) == LabEncoderConfig.small().layers + 3


def _pair_frame(n: int, seed: int) -> pl.DataFrame:
    """Items A and B with B = 2 x A: the hidden one of the pair is predictable from the visible one."""
    rng = np.random.default_rng(seed)
    a = rng.normal(5.0, 2.0, n)
    return _frame([{"A": float(x), "B": float(2 * x)} for x in a])


def _mean_loss(model: MaskedLabModel, data: LabTokens) -> float:
    model.eval()
    with torch.no_grad():
        batch = data.collate(list(range(len(data))))
        return model.loss(batch, "pretrain", torch.Generator().manual_seed(0))[0].item()


def test_pretraining_learns_that_b_is_twice_a(tmp_path):
    train_frame, val_frame = _pair_frame(256, 0), _pair_frame(64, 1)
    vocab = lab_vocabulary(train_frame, 1)
    scaler = fit_value_scaler(train_frame, vocab)
    train, val = LabTokens(train_frame, vocab, scaler), LabTokens(val_frame, vocab, scaler)
    model = _model(len(vocab))
    before = _mean_loss(model, val)
    config = TrainConfig(max_epochs=5, batch_size=16, optimizer="adam", lr=1e-3, patience=None, logger="none")
    fit(model, "pretrain", train, val, config, tmp_path)
    after = _mean_loss(model, val)
    assert after < 0.5 * before and after < 0.3
