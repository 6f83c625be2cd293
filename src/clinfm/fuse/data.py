"""Fusion samples as one dataset: lab tokens, note vectors (or note tokens to fine-tune on) and labels.

Batches carry ``item`` / ``value`` / ``observed`` (:class:`clinfm.fuse.labs.LabTokens`),
``note_vectors`` (B x C x D, one row per note chunk, at most ``max_chunks`` per sample) with
``note_valid`` (B x C), and ``labels`` (B x diseases, float). A sample without notes has no valid
chunk; one without labs has no observed token: the model stands in a learned "missing" token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clinfm.errors import InputError
from clinfm.fuse.labs import LabTokens


class NoteVectors:
    """Per-sample sequences of chunk vectors: rows ``offsets[i]:offsets[i+1]`` of ``chunks`` are sample
    i's (the note branch's ``chunks`` / ``offsets``); ``max_chunks`` keeps the first ones of each."""

    def __init__(self, chunks: np.ndarray, offsets: np.ndarray, max_chunks: int | None = None):
        if len(offsets) < 1 or offsets[-1] != len(chunks):
            raise InputError("note chunk offsets do not match the chunk vectors")
        self.chunks = np.asarray(chunks, np.float32)
        self.offsets = np.asarray(offsets, np.int64)
        counts = np.diff(self.offsets)
        self.counts = np.minimum(counts, max_chunks) if max_chunks else counts

    @classmethod
    def pooled(cls, vectors: np.ndarray, has_note: np.ndarray) -> NoteVectors:
        """One vector per sample with a note (none for those without)."""
        keep = np.asarray(has_note, bool)
        offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        return cls(np.asarray(vectors, np.float32)[keep], offsets)

    @property
    def dim(self) -> int:
        return int(self.chunks.shape[1])

    def __len__(self) -> int:
        return len(self.counts)

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        width = max(1, int(max((self.counts[i] for i in indices), default=0)))
        vectors = np.zeros((len(indices), width, self.dim), np.float32)
        for row, i in enumerate(indices):
            start = self.offsets[i]
            vectors[row, : self.counts[i]] = self.chunks[start : start + self.counts[i]]
        valid = np.arange(width)[None, :] < self.counts[np.asarray(indices, np.int64)][:, None]
        return {"note_vectors": torch.from_numpy(vectors), "note_valid": torch.from_numpy(valid)}


class SampleRows:
    """Some samples of a per-sample source (``NoteVectors``, ``NoteTokens``), without copying it."""

    def __init__(self, source, rows: np.ndarray):
        self.source, self.rows = source, np.asarray(rows, np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return self.source.collate(self.rows[np.asarray(indices, np.int64)].tolist())


class FusionSamples(torch.utils.data.Dataset):
    """Samples of the fusion task; any modality may be absent (``None``) for single-branch models.

    ``notes`` is a :class:`NoteVectors` (frozen note encoder) or any object with ``__len__`` and
    ``collate(indices) -> dict`` (e.g. tokenised note chunks for fine-tuning the note encoder).
    """

    def __init__(self, labs: LabTokens | None, notes, labels: np.ndarray):
        self.labels = np.asarray(labels, np.float32)
        if self.labels.ndim != 2:
            raise InputError(f"fusion labels must be (samples x diseases), got shape {self.labels.shape}")
        for name, part in (("lab", labs), ("note", notes)):
            if part is not None and len(part) != len(self.labels):
                raise InputError(f"{len(part)} {name} samples for {len(self.labels)} label rows")
        self.labs, self.notes = labs, notes
        # Batches group samples with similar numbers of lab tokens (less padding).
        self.lengths = labs.lengths if labs is not None else np.ones(len(self.labels), np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        batch = {"labels": torch.from_numpy(self.labels[np.asarray(indices, np.int64)])}
        if self.labs is not None:
            batch.update(self.labs.collate(indices))
        if self.notes is not None:
            batch.update(self.notes.collate(indices))
        return batch


__all__ = ["FusionSamples", "NoteVectors", "SampleRows"]
