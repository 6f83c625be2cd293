"""From packed samples to padded batches, and the code-to-category map both pre-training heads predict.

A batch is assembled with vectorised NumPy indexing over the packed offsets (no Python loop over
visits or codes), so a DataLoader keeps up with the model on one CPU worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from clinfm.checks import MAX_VOCABULARY, check_fields, each, integer, text
from clinfm.claims.tokenizer import MAX_AGE, PackedVisits, ranges
from clinfm.errors import InputError
from clinfm.vocab.vocabulary import Vocabulary

#: What a saved category map may hold (clinfm.checks); its offsets are checked for order on top.
CATEGORY_RULES = {
    "names": each(text(), 1, MAX_VOCABULARY, unique=True),
    "code_offsets": each(integer(0, 100 * MAX_VOCABULARY), 1, MAX_VOCABULARY + 1),
    "category_ids": each(integer(0, MAX_VOCABULARY - 1), 0, 100 * MAX_VOCABULARY),
}

#: Diagnoses map to these groupers; any other code falls back to its prefix plus the first three
#: characters of its value, as the paper's code falls back to ``code[:5]`` for ``D_xxx`` codes.
GROUPERS = {"ICD9CM/": "CCS", "ICD10CM/": "CCSR"}


@dataclass(frozen=True)
class CategoryMap:
    """Category names and, per vocabulary id, the categories of that code (CSR)."""

    names: tuple[str, ...]
    code_offsets: np.ndarray  # int64 [vocab + 1]
    category_ids: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, vocab: Vocabulary) -> CategoryMap:
        """CCS for ICD-9-CM codes, CCSR for ICD-10-CM codes, the truncated code for anything else."""
        from clinfm.vocab.icd import categories

        codes = pl.DataFrame(
            {"code": list(vocab.codes), "code_id": np.arange(len(vocab.codes)) + len(vocab.special_tokens)}
        )
        grouped = []
        for prefix, scheme in GROUPERS.items():
            if codes["code"].str.starts_with(prefix).any():
                grouped.append(codes.join(categories(scheme).select("code", "category"), on="code"))
        mapped = pl.concat(grouped) if grouped else codes.clear().with_columns(category=pl.lit(""))
        fallback = codes.join(mapped.select("code"), on="code", how="anti").with_columns(
            category=pl.col("code").str.replace(r"^(.*/)([^/]{0,3})[^/]*$", "${1}${2}")
        )
        pairs = pl.concat([mapped.select("code_id", "category"), fallback.select("code_id", "category")])
        names = tuple(sorted(pairs["category"].unique().to_list()))
        return cls.from_pairs(names, pairs["code_id"].to_numpy(), pairs["category"].to_list(), len(vocab))

    @classmethod
    def from_pairs(cls, names, code_ids, categories, vocab_size) -> CategoryMap:
        index = {name: i for i, name in enumerate(names)}
        order = np.argsort(code_ids, kind="stable")
        code_ids = np.asarray(code_ids)[order]
        category_ids = np.array([index[categories[i]] for i in order], dtype=np.int64)
        counts = np.bincount(code_ids, minlength=vocab_size)
        offsets = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(tuple(names), offsets, category_ids)

    def to_json(self) -> dict:
        return {
            "names": list(self.names),
            "code_offsets": self.code_offsets.tolist(),
            "category_ids": self.category_ids.tolist(),
        }

    @classmethod
    def from_json(cls, payload: dict, *, where: object = None) -> CategoryMap:
        """A map read from a file (``where``): lists of the right types and sizes, offsets that rise
        from 0 to the number of category ids, and ids that name a category."""
        check_fields(payload, CATEGORY_RULES, where, required=tuple(CATEGORY_RULES))
        names, offsets, ids = payload["names"], payload["code_offsets"], payload["category_ids"]
        offsets, ids = np.asarray(offsets, dtype=np.int64), np.asarray(ids, dtype=np.int64)
        if offsets[0] != 0 or offsets[-1] != len(ids) or (np.diff(offsets) < 0).any():
            raise InputError(
                f"code_offsets must rise, never falling, from 0 to {len(ids):,} (the number of category_ids)",
                path=where,
            )
        if len(ids) and ids.max() >= len(names):
            raise InputError(
                f"category_ids name category {ids.max():,} but there are {len(names):,} names", path=where
            )
        return cls(tuple(names), offsets, ids)

    def save(self, path) -> None:
        from clinfm.io import write_json_atomic

        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path) -> CategoryMap:
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read the category map: {error}", path=path) from None
        return cls.from_json(payload, where=path)

    def categories_of(self, code_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each code occurrence, its categories: (occurrence index, category id) pairs."""
        starts, ends = self.code_offsets[code_ids], self.code_offsets[code_ids + 1]
        owner, position = ranges(starts, ends - starts)
        return owner, self.category_ids[position]


class VisitBatches(torch.utils.data.Dataset):
    """Samples by index; ``collate`` turns a list of indices into one padded batch of tensors.

    The batch holds ``codes`` [B, V, C], ``visit_type``, ``visit_date``, ``visit_days_before``,
    ``visit_age`` [B, V], ``visit_mask`` [B, V], ``age`` and ``sex`` [B], the targets ``cp_target``
    [B, V, categories] (each input visit's own categories) and ``nvp_target`` [B, categories] (the
    held-out visit's), and ``label`` [B] when labels are given.
    """

    def __init__(
        self,
        packed: PackedVisits,
        categories: CategoryMap,
        labels: np.ndarray | None = None,
        rows: np.ndarray | None = None,
    ):
        self.packed = packed
        self.categories = categories
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.rows = np.arange(len(packed)) if rows is None else np.asarray(rows, dtype=np.int64)

    def subset(self, rows: np.ndarray) -> VisitBatches:
        """A view of some samples (e.g. a label fraction) sharing the packed arrays."""
        return VisitBatches(
            self.packed, self.categories, self.labels, self.rows[np.asarray(rows, dtype=np.int64)]
        )

    def joined(self, other: VisitBatches) -> VisitBatches:
        """These samples and ``other``'s in one dataset (both tokenized with the same vocabulary)."""
        packed = PackedVisits.concat([self.packed.take(self.rows), other.packed.take(other.rows)])
        return VisitBatches(packed, self.categories, np.concatenate([self.label_values, other.label_values]))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def label_values(self) -> np.ndarray | None:
        """The labels of these samples (None without labels): the engine picks its monitor by them."""
        return None if self.labels is None else self.labels[self.rows]

    def __getitem__(self, index: int) -> int:
        return index

    @property
    def lengths(self) -> np.ndarray:
        return self.packed.visits_per_sample[self.rows]

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        p = self.packed
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        batch, n_cat = len(rows), len(self.categories)
        visit_starts = p.sample_visit_offsets[rows]
        visit_counts = p.sample_visit_offsets[rows + 1] - visit_starts
        sample_of_visit, visits = ranges(visit_starts, visit_counts)
        slot = visits - visit_starts[sample_of_visit]
        code_starts = p.visit_code_offsets[visits]
        code_counts = p.visit_code_offsets[visits + 1] - code_starts
        visit_of_code, code_positions = ranges(code_starts, code_counts)
        code_slot = code_positions - code_starts[visit_of_code]
        width_v = max(int(visit_counts.max(initial=0)), 1)
        width_c = max(int(code_counts.max(initial=0)), 1)

        codes = np.zeros((batch, width_v, width_c), dtype=np.int64)
        code_ids = p.codes[code_positions].astype(np.int64)
        codes[sample_of_visit[visit_of_code], slot[visit_of_code], code_slot] = code_ids
        out = {"codes": codes, "visit_mask": np.zeros((batch, width_v), dtype=bool)}
        out["visit_mask"][sample_of_visit, slot] = True
        for name, dtype in (
            ("visit_type", np.int64),
            ("visit_date", np.int64),
            ("visit_days_before", np.float32),
            ("visit_age", np.float32),
        ):
            column = np.zeros((batch, width_v), dtype=dtype)
            column[sample_of_visit, slot] = getattr(p, name)[visits]
            out[name] = column
        out["age"] = np.clip(p.age[rows], 0, MAX_AGE + 1).astype(np.int64)
        out["sex"] = p.sex[rows].astype(np.int64)

        cp = np.zeros((batch, width_v, n_cat), dtype=np.float32)
        occurrence, category = self.categories.categories_of(code_ids)
        owner_visit = visit_of_code[occurrence]
        cp[sample_of_visit[owner_visit], slot[owner_visit], category] = 1.0
        out["cp_target"] = cp
        out["nvp_target"] = self._nvp_target(rows, n_cat)
        if self.labels is not None:
            out["label"] = self.labels[rows]
        return {name: torch.from_numpy(value) for name, value in out.items()}

    def nvp_targets(self) -> np.ndarray:
        """The held-out visit's categories for every sample, [samples, categories]."""
        return self._nvp_target(self.rows, len(self.categories))

    def _nvp_target(self, rows: np.ndarray, n_cat: int) -> np.ndarray:
        p = self.packed
        starts = p.target_code_offsets[rows]
        sample, positions = ranges(starts, p.target_code_offsets[rows + 1] - starts)
        occurrence, category = self.categories.categories_of(p.target_codes[positions].astype(np.int64))
        target = np.zeros((len(rows), n_cat), dtype=np.float32)
        target[sample[occurrence], category] = 1.0
        return target
