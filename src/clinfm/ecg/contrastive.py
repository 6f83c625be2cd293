"""PCLR's contrastive objective: SimCLR NT-Xent over pairs of ECGs from the same patient.

PCLR (PAPERS.md section 5) uses no augmentation: the two "views" of a positive pair are two
*different* ECGs of one patient, and every other patient's ECG in the batch is a negative.
:func:`nt_xent` is the loss; :class:`PatientPairSampler` builds the batches it expects
(rows ``i`` and ``N + i`` form the positive pair).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clinfm.errors import InputError

#: PCLR's temperature and the value that masks each row's similarity with itself.
PAPER_TEMPERATURE = 0.1
MASK = 1e9


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = PAPER_TEMPERATURE) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy of N positive pairs ``(a[i], b[i])``.

    ``a`` and ``b`` are N x d. Rows are L2-normalised and stacked into ``z = [a; b]`` (2N x d); the
    logits are ``z @ z.T / temperature`` with each row's self-similarity set to ``-1e9``. Row ``i``'s
    target is its pair (``i <-> N + i``); the other 2N - 2 rows are its negatives. The result is

        mean over i < N of CE(row i)  +  mean over i >= N of CE(row i)

    i.e. CE(a -> b) + CE(b -> a), each averaged over its N rows and the two summed, as in PCLR.
    Computed in float32 whatever the input dtype.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(
            f"nt_xent needs two N x d tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -MASK)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    losses = F.cross_entropy(logits, targets, reduction="none")
    return losses[:n].mean() + losses[n:].mean()


class PatientPairSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of ``batch_size`` positive pairs, each two different ECGs of one patient.

    ``patient_ids`` gives the patient of each dataset index (an ECG or a window). Every epoch, each
    eligible patient appears in at most one pair: patients are shuffled, each draws two distinct
    indices of its own, and the pairs are cut into batches of ``batch_size`` distinct patients; the
    last partial batch is dropped. A batch is the index list ``[a_1..a_N, b_1..b_N]``: first ECGs,
    then their partners, the layout :func:`nt_xent` expects (use it as a DataLoader's
    ``batch_sampler`` and split the collated batch into halves).

    With ``record_ids``, the two must come from different recordings (windows of one long recording
    are not two ECGs); without, every index is its own recording. Patients with a single ECG
    (recording) cannot form a positive pair: they are left out, and their number is
    ``skipped_patients``. The draw is a function of ``(seed, epoch)`` only; call :meth:`set_epoch`
    before each epoch for fresh pairs (Lightning does), or pass ``fixed`` for the same pairs always.
    """

    def __init__(
        self,
        patient_ids: Sequence[str],
        batch_size: int,
        *,
        seed: int = 0,
        fixed: bool = False,
        record_ids: Sequence[str] | None = None,
    ):
        if batch_size < 2:
            raise InputError(
                f"batch_size must be at least 2 pairs (each pair needs negatives), got {batch_size}"
            )
        # patient -> record -> indices: a pair is two windows of two different recordings, so two
        # windows cut from one long recording never stand for "two ECGs of the patient"
        records = record_ids if record_ids is not None else range(len(patient_ids))
        by_patient: dict[str, dict[str, list[int]]] = {}
        for index, (patient, record) in enumerate(zip(patient_ids, records, strict=True)):
            by_patient.setdefault(str(patient), {}).setdefault(str(record), []).append(index)
        self.groups = [list(recs.values()) for recs in by_patient.values() if len(recs) >= 2]
        self.skipped_patients = len(by_patient) - len(self.groups)
        if len(self.groups) < 2:
            raise InputError(
                f"contrastive pairs need at least 2 patients with 2+ ECGs each, found {len(self.groups)} "
                f"({self.skipped_patients} patients have a single ECG)"
            )
        if len(self.groups) < batch_size:
            raise InputError(
                f"batch_size {batch_size} exceeds the {len(self.groups)} patients with 2+ ECGs; lower it"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.fixed = fixed  # validation: the same pairs every epoch, so its losses compare
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose pairs :meth:`__iter__` yields (ignored when ``fixed``)."""
        if not self.fixed:
            self.epoch = epoch

    def __len__(self) -> int:
        return len(self.groups) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.groups))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            pairs = [self._pair(self.groups[g], rng) for g in order[start : start + self.batch_size]]
            yield [int(p[0]) for p in pairs] + [int(p[1]) for p in pairs]

    @staticmethod
    def _pair(records: list[list[int]], rng: np.random.Generator) -> tuple[int, int]:
        """A window of each of two different recordings of one patient."""
        first, second = rng.choice(len(records), size=2, replace=False)
        return rng.choice(records[first]), rng.choice(records[second])
