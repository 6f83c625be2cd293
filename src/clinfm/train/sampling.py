"""Batches of similar length, so little of each batch is padding; sharded across DDP processes."""

from __future__ import annotations

import numpy as np
import torch


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Shuffle, cut into pools of ``pool`` batches, sort each pool by length, batch, shuffle batches.

    Deterministic from (seed, epoch): a run resumed at an epoch sees the batches it would have seen.
    Under DDP each process takes every ``world_size``-th batch (the batch count is cut to a multiple
    of the world size, so every process runs the same number of steps); with ``shard=False`` every
    process sees them all, as validation and prediction need.

    ``steps``: an epoch of exactly that many batches, the next ones of an endless stream of
    shuffled passes (the "endless iterator, N iterations per epoch" some papers train with).
    ``drop_last``: a short final batch of each pass is dropped, unless the data hold no full batch.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool: int = 50,
        bucket: bool = True,
        shard: bool = True,
        steps: int | None = None,
        drop_last: bool = False,
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = pool
        self.bucket = bucket
        self.shard = shard  # False: every process sees every batch (validation, prediction)
        self.steps = steps
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if self.shard and torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _batches(self) -> list[np.ndarray]:
        if self.steps is None:
            return self._pass(np.random.default_rng([self.seed, self.epoch]))
        # One endless stream of passes, each shuffled by (seed, pass); epoch e is its batches
        # [e * steps, (e + 1) * steps), so a resumed run continues the stream where it stopped.
        per_pass = self._per_pass()
        if not per_pass:
            return []
        first, offset = divmod(self.epoch * self.steps, per_pass)
        batches: list[np.ndarray] = []
        for index in range(first, first + 2 + self.steps // per_pass):
            batches += self._pass(np.random.default_rng([self.seed, index]))
        return batches[offset : offset + self.steps]

    def _per_pass(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        if self.drop_last and n > 1 and len(self.lengths) % self.batch_size:
            n -= 1
        return n

    def _pass(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        if self.bucket:
            span = self.batch_size * self.pool
            pools = [order[i : i + span] for i in range(0, len(order), span)]
            order = np.concatenate([p[np.argsort(self.lengths[p], kind="stable")] for p in pools] or [order])
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        rank, world = self._world()
        batches = self._batches()
        usable = len(batches) - len(batches) % world if len(batches) >= world else len(batches)
        for batch in batches[rank:usable:world]:
            yield batch.tolist()
        if self.shuffle:
            self.epoch += 1  # without set_epoch (plain loops) the next pass still reshuffles

    def __len__(self) -> int:
        _, world = self._world()
        n = self._per_pass()
        if self.steps is not None and n:
            n = self.steps
        return n // world if n >= world else n
