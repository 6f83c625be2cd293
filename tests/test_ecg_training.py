"""ECG datasets (single windows, pairs of one patient's ECGs, memmaps read by row) and PCLR training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfm.ecg.data import ECGPairs, ECGWindows
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


def _memmap(tmp_path, dtype=np.float32, n: int = 10, samples: int = 64) -> np.memmap:
    """An N x 12 x samples .npy on disk whose row i is filled with the value i, opened read-only."""
    path = tmp_path / "signals.npy"
    writer = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, 12, samples))
    writer[:] = np.arange(n, dtype=dtype)[:, None, None]
    writer.flush()
    del writer
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_windows_on_a_memmap_read_only_the_batch_rows(tmp_path, dtype):
    signals = _memmap(tmp_path, dtype)
    data = ECGWindows(signals, [f"p{i // 2}" for i in range(10)], labels=[i % 2 for i in range(10)])
    assert data.signals is signals  # not copied into memory, not even to float32
    assert isinstance(data.signals, np.memmap)
    batch = data.collate([7, 2, 5])
    assert set(batch) == {"ecg", "label"}
    assert batch["ecg"].dtype == torch.float32 and batch["ecg"].shape == (3, 12, 64)
    assert batch["ecg"][:, 0, 0].tolist() == [7.0, 2.0, 5.0]
    assert batch["label"].dtype == torch.float32 and batch["label"].tolist() == [1.0, 0.0, 1.0]
    assert data.label_values.tolist() == [i % 2 for i in range(10)]
    assert data.lengths.tolist() == [64] * 10 and len(data) == 10


def test_windows_without_labels_and_through_the_engine_loader(tmp_path):
    data = ECGWindows(_memmap(tmp_path), [f"p{i}" for i in range(10)])
    assert data.label_values is None
    batches = list(make_loader(data, TrainConfig(batch_size=4, bucket=False), train=False))
    assert [set(b) for b in batches] == [{"ecg"}] * 3
    assert torch.cat([b["ecg"][:, 0, 0] for b in batches]).tolist() == [float(i) for i in range(10)]


def test_windows_bad_labels_are_one_clear_error():
    signals = np.zeros((3, 12, 64), dtype=np.float32)
    with pytest.raises(InputError, match="one label per ECG"):
        ECGWindows(signals, ["a", "b", "c"], labels=[0, 1])
    with pytest.raises(InputError, match="finite"):
        ECGWindows(signals, ["a", "b", "c"], labels=[0, float("nan"), 1])
    with pytest.raises(InputError, match="one patient id per ECG"):
        ECGWindows(signals, ["a", "b"])


def test_pairs_keep_a_memmap_and_read_its_rows(tmp_path):
    signals = _memmap(tmp_path, np.float64)
    data = ECGPairs(signals, [f"p{i // 2}" for i in range(10)])
    assert data.signals is signals
    batch = data.collate([0, 2, 1, 3])
    assert batch["first"].dtype == torch.float32
    assert batch["first"][:, 0, 0].tolist() == [0.0, 2.0] and batch["second"][:, 0, 0].tolist() == [1.0, 3.0]
