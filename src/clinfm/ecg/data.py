"""ECG windows as a dataset the training engine can batch: pairs of one patient's ECGs for PCLR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clinfm.ecg.contrastive import PatientPairSampler
from clinfm.errors import InputError


class ECGPairs(torch.utils.data.Dataset):
    """ECGs (n x leads x samples, float32 mV) with their patients; batches are
    ``{"first": N x leads x samples, "second": ...}``, row i of each from one patient.

    The engine batches it with :meth:`batch_sampler` (a :class:`PatientPairSampler`): training draws
    new pairs each epoch, validation the same pairs every epoch. Batches are not sharded across
    DDP processes (each process draws the same batches).
    """

    def __init__(self, signals: np.ndarray, patient_ids: Sequence[str]):
        if signals.ndim != 3 or len(signals) != len(patient_ids):
            raise InputError(
                f"expected ECGs x leads x samples with one patient id per ECG, got shape {signals.shape} "
                f"and {len(patient_ids)} ids"
            )
        self.signals = np.ascontiguousarray(signals, dtype=np.float32)
        self.patient_ids = [str(p) for p in patient_ids]
        self.lengths = np.full(len(signals), signals.shape[2], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> int:
        return index

    def batch_sampler(self, config, *, train: bool) -> PatientPairSampler:
        return PatientPairSampler(self.patient_ids, config.batch_size, seed=config.seed, fixed=not train)

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        half = len(indices) // 2
        rows = np.asarray(indices)
        return {
            "first": torch.from_numpy(self.signals[rows[:half]]),
            "second": torch.from_numpy(self.signals[rows[half:]]),
        }
