"""PCLR encoder shapes and size, NT-Xent arithmetic, the patient pair sampler, and a toy training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfm.ecg.contrastive import PatientPairSampler, nt_xent
from clinfm.ecg.model import PRESETS, ECGResNet, PCLRModel, ResNetConfig
from clinfm.errors import InputError


def _unit_outputs(encoder: ECGResNet, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes = []
    hooks = [u.register_forward_hook(lambda m, i, o: shapes.append(tuple(o[0].shape))) for u in encoder.units]
    with torch.no_grad():
        encoder(x)
    for hook in hooks:
        hook.remove()
    return shapes


def test_paper_preset_shapes_and_size():
    torch.manual_seed(0)
    model = PCLRModel(PRESETS["paper"]).eval()
    x = torch.randn(2, 12, 4096)
    assert _unit_outputs(model.encoder, x) == [(2, 128, 1024), (2, 196, 256), (2, 256, 64), (2, 320, 16)]
    with torch.no_grad():
        assert model.representation(x).shape == (2, 320)
        assert model.projection(x).shape == (2, 320)
    trainable = sum(p.numel() for p in model.encoder.parameters() if p.requires_grad)
    with_stats = trainable + sum(b.numel() for n, b in model.encoder.named_buffers() if "running" in n)
    print(f"paper encoder: {trainable} trainable parameters, {with_stats} with BN statistics")
    assert 5_500_000 < trainable < 7_000_000
    assert len(model.layer_groups()) == 6


def test_small_preset_shapes():
    model = PCLRModel(PRESETS["small"]).eval()
    x = torch.randn(3, 12, 1024)
    assert _unit_outputs(model.encoder, x) == [(3, 32, 256), (3, 48, 64), (3, 64, 16), (3, 80, 4)]
    with torch.no_grad():
        assert model.representation(x).shape == (3, 80)
        assert model.projection(x).shape == (3, 80)
        assert torch.equal(model.encoder.embed(x), model.representation(x))


@pytest.mark.parametrize("samples", [1024, 512, 256, 4096])
def test_any_multiple_of_the_downsampling_is_encoded(samples):
    encoder = ECGResNet(PRESETS["small"]).eval()
    assert encoder.downsampling == 256 == ECGResNet(PRESETS["paper"]).downsampling
    with torch.no_grad():
        assert encoder(torch.randn(2, 12, samples)).shape == (2, 80)


@pytest.mark.parametrize("shape", [(2, 8, 1024), (2, 12, 1000), (2, 12, 128), (2, 12, 0), (12, 1024)])
def test_wrong_input_shape(shape):
    model = ECGResNet(PRESETS["small"])
    with pytest.raises(InputError, match=r"12 leads x samples, samples a positive multiple of 256") as error:
        model(torch.randn(*shape))
    assert "\n" not in str(error.value)


def test_features_are_what_the_representation_pools():
    torch.manual_seed(0)
    encoder = ECGResNet(PRESETS["small"]).eval()
    x = torch.randn(3, 12, 1024)
    with torch.no_grad():
        features = encoder.features(x)
        assert features.shape == (3, 80, 4)
        assert torch.equal(encoder(x), features.mean(dim=-1))


def test_config_rejects_non_dividing_units():
    with pytest.raises(InputError):
        ResNetConfig(samples=1000)


def test_nt_xent_hand_computation():
    a = np.array([[1.0, 0.0], [0.6, 0.8]])
    b = np.array([[3.0, 4.0], [0.0, 2.0]])
    t = 0.1
    z = np.concatenate([a, b])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / t
    positive = [2, 3, 0, 1]
    rows = []
    for i in range(4):
        others = [sim[i, j] for j in range(4) if j != i]  # self-similarity masked out
        rows.append(-sim[i, positive[i]] + np.log(np.sum(np.exp(others))))
    expected = np.mean(rows[:2]) + np.mean(rows[2:])
    got = nt_xent(torch.tensor(a), torch.tensor(b), temperature=t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_aligned_lower_and_symmetric():
    torch.manual_seed(0)
    a = torch.randn(16, 8)
    b = a + 0.05 * torch.randn(16, 8)
    aligned = nt_xent(a, b)
    shuffled = nt_xent(a, b[torch.randperm(16)])
    assert aligned < shuffled
    assert nt_xent(b, a).item() == pytest.approx(aligned.item(), rel=1e-6)


def _patients():
    # p0..p5 have 2-4 ECGs each, "solo" has one
    ids = []
    for p, count in enumerate([2, 3, 4, 2, 3, 2]):
        ids += [f"p{p}"] * count
    return [*ids, "solo"]


def _batches(sampler):
    return [list(batch) for batch in sampler]


def test_sampler_pairs():
    ids = _patients()
    sampler = PatientPairSampler(ids, batch_size=3, seed=7)
    assert sampler.skipped_patients == 1
    assert len(sampler) == 2
    batches = _batches(sampler)
    assert len(batches) == 2
    seen_patients = set()
    for batch in batches:
        assert len(batch) == 6 and len(set(batch)) == 6
        first, second = batch[:3], batch[3:]
        patients = [ids[i] for i in first]
        assert len(set(patients)) == 3
        assert all(ids[i] == ids[j] and i != j for i, j in zip(first, second, strict=True))
        assert "solo" not in patients
        seen_patients |= set(patients)
    assert len(seen_patients) == 6  # each eligible patient once per epoch
    every = [i for batch in batches for i in batch]
    assert len(every) == len(set(every))  # no ECG used twice in an epoch


def test_sampler_deterministic_by_seed_and_epoch():
    ids = [f"p{i // 5}" for i in range(100)]  # 20 patients, 5 ECGs each
    one, two = PatientPairSampler(ids, 4, seed=1), PatientPairSampler(ids, 4, seed=1)
    assert _batches(one) == _batches(two)
    first_epoch = _batches(one)
    one.set_epoch(1)
    assert _batches(one) != first_epoch
    two.set_epoch(1)
    assert _batches(one) == _batches(two)
    assert _batches(PatientPairSampler(ids, 4, seed=2)) != first_epoch


def test_sampler_too_few_patients():
    with pytest.raises(InputError, match="at least 2 patients"):
        PatientPairSampler(["a", "a", "b", "c"], batch_size=2)
    with pytest.raises(InputError, match="batch_size"):
        PatientPairSampler(["a", "a", "b", "b"], batch_size=3)


def test_loss_backward_and_training_lowers_it():
    torch.manual_seed(0)
    config = PRESETS["small"]
    model = PCLRModel(config)
    t = torch.linspace(0, 1, config.samples)
    patterns = torch.stack(
        [torch.sin(2 * torch.pi * f * t + p) for f, p in [(3, 0), (7, 1), (13, 2), (21, 3)]]
    )
    base = patterns[:, None, :].expand(4, config.leads, config.samples)
    batch = {"first": base + 0.3 * torch.randn_like(base), "second": base + 0.3 * torch.randn_like(base)}
    loss, parts = model.loss(batch, "contrastive")
    assert parts == {} and loss.ndim == 0
    loss.backward()
    assert all(p.grad is not None for group in model.layer_groups() for p in group)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = loss.item()
    for _ in range(8):
        optimizer.zero_grad()
        loss, _ = model.loss(batch, "contrastive")
        loss.backward()
        optimizer.step()
    final, _ = model.loss(batch, "contrastive")
    assert final.item() < start
    assert model.predict({"ecg": batch["first"]}, "embed").shape == (4, config.representation)
    with pytest.raises(InputError, match="lacks 'ecg'"):
        model.predict(batch, "embed")
    with pytest.raises(InputError):
        model.loss({"first": batch["first"]}, "contrastive")


def test_sampler_pairs_two_recordings_never_two_windows_of_one():
    # patient a: one long recording cut into 4 windows (no pair); b and c: two recordings each
    patients = ["a"] * 4 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2
    records = ["a1"] * 4 + ["b1", "b1", "b2", "c1", "c2", "c2", "d1", "d2"]
    sampler = PatientPairSampler(patients, 2, seed=0, record_ids=records)
    assert sampler.skipped_patients == 1
    for epoch in range(20):
        sampler.set_epoch(epoch)
        for batch in sampler:
            first, second = batch[:2], batch[2:]
            for a, b in zip(first, second, strict=True):
                assert patients[a] == patients[b] != "a" and records[a] != records[b]
