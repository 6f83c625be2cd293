"""PCLR through the shared training engine: pair batches of one patient's ECGs, and a fit that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfm.ecg.data import ECGPairs
from clinfm.ecg.model import PRESETS, PCLRModel
from clinfm.errors import InputError
from clinfm.train.engine import TrainConfig, fit, make_loader


def _patients(n_patients: int = 24, ecgs: int = 3, seed: int = 0) -> ECGPairs:
    """Each patient's ECGs share a frequency and lead gains; each ECG has its own phase and noise."""
    config = PRESETS["small"]
    rng = np.random.default_rng(seed)
    time = np.linspace(0, 1, config.samples)
    signals, patients = [], []
    for p in range(n_patients):
        frequency, gains = rng.uniform(3, 30), rng.uniform(0.5, 1.5, size=(config.leads, 1))
        for _ in range(ecgs):
            wave = np.sin(2 * np.pi * frequency * time + rng.uniform(0, 2 * np.pi))
            signals.append(gains * wave + 0.1 * rng.normal(size=(config.leads, config.samples)))
            patients.append(f"p{p}")
    return ECGPairs(np.stack(signals).astype(np.float32), patients)


def test_batches_pair_two_different_ecgs_of_one_patient():
    data = _patients()
    loader = make_loader(data, TrainConfig(batch_size=8), train=True)
    for indices in loader.batch_sampler:
        first, second = indices[:8], indices[8:]
        assert all(
            data.patient_ids[a] == data.patient_ids[b] and a != b for a, b in zip(first, second, strict=True)
        )
        assert len({data.patient_ids[a] for a in first}) == 8
    batch = next(iter(loader))
    assert batch["first"].shape == batch["second"].shape == (8, 12, PRESETS["small"].samples)


def test_validation_pairs_stay_the_same_across_epochs():
    sampler = _patients().batch_sampler(TrainConfig(batch_size=8), train=False)
    before = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == before


def test_pclr_fit_through_the_engine_lowers_the_contrastive_loss(tmp_path):
    torch.manual_seed(0)
    model = PCLRModel(PRESETS["small"])
    train, val = _patients(seed=0), _patients(seed=1)
    batch = val.collate(next(iter(val.batch_sampler(TrainConfig(batch_size=8), train=False))))
    model.eval()
    with torch.no_grad():
        before = float(model.loss(batch, "pretrain")[0])
    config = TrainConfig(max_epochs=4, batch_size=8, optimizer="adam", lr=1e-3, patience=None, logger="none")
    fit(model, "pretrain", train, val, config, tmp_path)
    model.eval()
    with torch.no_grad():
        after = float(model.loss(batch, "pretrain")[0])
    assert after < before


def test_mismatched_ids_are_one_clear_error():
    with pytest.raises(InputError, match="one patient id per ECG"):
        ECGPairs(np.zeros((3, 12, 64), dtype=np.float32), ["a", "b"])
