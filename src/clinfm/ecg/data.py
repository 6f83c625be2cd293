"""ECG windows as datasets the training engine can batch: single ECGs, and pairs of one patient's ECGs.

``signals`` may be an ``np.memmap`` (or ``np.load(..., mmap_mode="r")``) of N x leads x samples:
the datasets keep it as given and read only a batch's rows, as float32, in ``collate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clinfm.ecg.contrastive import PatientPairSampler
from clinfm.errors import InputError


def _check_signals(signals: np.ndarray, patient_ids: Sequence[str]) -> None:
    if signals.ndim != 3 or len(signals) != len(patient_ids):
        raise InputError(
            f"expected ECGs x leads x samples with one patient id per ECG, got shape {signals.shape} "
            f"and {len(patient_ids)} ids"
        )


def _rows(signals: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
    """The ECGs at ``indices`` as a float32 tensor; a memmap is read for those rows only."""
    return torch.from_numpy(np.asarray(signals[np.asarray(indices, dtype=np.int64)], dtype=np.float32))


class ECGWindows(torch.utils.data.Dataset):
    """Single ECGs (n x leads x samples, mV) with their patients and, optionally, one label each.

    Batches are ``{"ecg": B x leads x samples}`` plus ``"label"`` (B, float32) when labels were
    given: what every ECG model's ``predict`` reads, and what CLOCS, the autoencoder and the
    supervised models train on. ``label_values`` (the labels, or None) tells the engine whether a
    classifier's tuning set has both classes.
    """

    def __init__(
        self, signals: np.ndarray, patient_ids: Sequence[str], labels: Sequence[float] | None = None
    ):
        _check_signals(signals, patient_ids)
        self.signals = signals  # kept as given: a memmap stays on disk
        self.patient_ids = [str(p) for p in patient_ids]
        self.label_values = None if labels is None else np.asarray(labels, dtype=np.float32)
        if self.label_values is not None:
            if self.label_values.shape != (len(signals),):
                raise InputError(
                    f"expected one label per ECG ({len(signals)}), got shape {self.label_values.shape}"
                )
            if not np.isfinite(self.label_values).all():
                raise InputError("labels must be finite; drop the ECGs without a label first")
        self.lengths = np.full(len(signals), signals.shape[2], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = {"ecg": _rows(self.signals, indices)}
        if self.label_values is not None:
            batch["label"] = torch.from_numpy(self.label_values[np.asarray(indices, dtype=np.int64)])
        return batch


class ECGPairs(torch.utils.data.Dataset):
    """ECGs (n x leads x samples, mV) with their patients; batches are
    ``{"first": N x leads x samples, "second": ...}``, row i of each from one patient.

    The engine batches it with :meth:`batch_sampler` (a :class:`PatientPairSampler`): training draws
    new pairs each epoch, validation the same pairs every epoch (in batches no larger than its
    patients allow). With ``record_ids``, a pair is two windows of different recordings. Batches
    are not sharded across DDP processes (each process draws the same batches).
    """

    def __init__(
        self, signals: np.ndarray, patient_ids: Sequence[str], record_ids: Sequence[str] | None = None
    ):
        _check_signals(signals, patient_ids)
        if record_ids is not None and len(record_ids) != len(patient_ids):
            raise InputError(f"{len(record_ids)} record ids for {len(patient_ids)} ECGs")
        self.signals = signals  # kept as given: a memmap stays on disk
        self.patient_ids = [str(p) for p in patient_ids]
        self.record_ids = None if record_ids is None else [str(r) for r in record_ids]
        self.lengths = np.full(len(signals), signals.shape[2], dtype=np.int64)

    @property
    def pair_patients(self) -> int:
        """Patients with two or more ECGs (recordings): those that can form a positive pair."""
        records = self.record_ids if self.record_ids is not None else range(len(self.patient_ids))
        recordings: dict[str, set] = {}
        for patient, record in zip(self.patient_ids, records, strict=True):
            recordings.setdefault(patient, set()).add(record)
        return sum(len(r) >= 2 for r in recordings.values())

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> int:
        return index

    def batch_sampler(self, config, *, train: bool) -> PatientPairSampler:
        size = config.batch_size if train else min(config.batch_size, self.pair_patients)
        return PatientPairSampler(
            self.patient_ids, size, seed=config.seed, fixed=not train, record_ids=self.record_ids
        )

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        half = len(indices) // 2
        return {"first": _rows(self.signals, indices[:half]), "second": _rows(self.signals, indices[half:])}
