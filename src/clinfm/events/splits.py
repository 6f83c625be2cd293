"""Deterministic patient-level splits: a subject lands in one split, the same one every time."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import polars as pl

from clinfm.checks import config_from, integer, number, optional
from clinfm.errors import InputError

DEFAULT_FRACTIONS = {"train": 0.8, "tuning": 0.1, "held_out": 0.1}


def _uniform_from_ids(subject_ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per subject id, from the splitmix64 finaliser.

    Unlike Python's or Polars' hash, this is fixed across versions and platforms, so a subject's
    split depends only on its id and the seed, never on which other subjects are present.
    """
    with np.errstate(over="ignore"):
        x = subject_ids.astype(np.uint64) ^ np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def assign_splits(
    subject_ids: pl.Series | np.ndarray | list[int],
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Assign each subject to a split (default 80/10/10 train/tuning/held_out) by a stable hash.

    Returns a ``subject_splits`` frame (subject_id, split). Adding subjects later never moves an
    existing subject to another split.
    """
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    if any(f < 0 for f in fractions.values()) or not np.isclose(sum(fractions.values()), 1.0):
        raise InputError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    ids = np.unique(np.asarray(pl.Series(subject_ids).cast(pl.Int64).to_numpy()))
    u = _uniform_from_ids(ids, seed)
    edges = np.cumsum(list(fractions.values()))
    edges[-1] = 1.0 + 1e-12  # guard the float sum
    index = np.searchsorted(edges, u, side="right")
    names = np.array(list(fractions))
    return pl.DataFrame({"subject_id": ids, "split": names[index]})


@dataclass(frozen=True)
class SplitPolicy:
    """Which patients train, tune and test. Saved in the checkpoint, so fine-tuning tests on
    patients pre-training never saw.

    By default the dataset's own ``subject_splits.parquet`` (stable-hash 80/10/10 when it has none);
    with a ``seed``, a stable-hash split with the given shares instead (e.g. a larger held-out share
    when the data set is small).
    """

    seed: int | None = None
    tuning: float = 0.1
    held_out: float = 0.1

    def assign(self, data: str | os.PathLike, events: pl.LazyFrame) -> pl.DataFrame:
        """(subject_id, split) for every subject of ``events``."""
        from clinfm.events.meds import read_splits

        splits = read_splits(data) if self.seed is None else None
        if splits is None:
            subjects = events.select("subject_id").unique().collect()["subject_id"]
            shares = {
                "train": 1 - self.tuning - self.held_out,
                "tuning": self.tuning,
                "held_out": self.held_out,
            }
            splits = assign_splits(subjects, shares, seed=self.seed or 0)
        return splits.select("subject_id", "split")

    def to_dict(self) -> dict:
        return {"seed": self.seed, "tuning": self.tuning, "held_out": self.held_out}

    @classmethod
    def from_dict(cls, values: dict | None, *, where: object = None) -> SplitPolicy:
        """A policy read from a file (``where``), its fields checked; none at all is the default."""
        return config_from(cls, values or {}, SPLIT_RULES, where, section="splits")

    def __post_init__(self) -> None:
        if not (0 < self.held_out < 1 and 0 <= self.tuning < 1 and self.held_out + self.tuning < 1):
            raise InputError("held-out and tuning shares must lie in (0, 1) and leave patients to train on")


#: What each field of a saved split policy may hold (clinfm.checks).
SPLIT_RULES = {
    "seed": optional(integer(-(2**63), 2**63 - 1)),
    "tuning": number(0, 1, below=True),
    "held_out": number(0, 1, below=True),
}
