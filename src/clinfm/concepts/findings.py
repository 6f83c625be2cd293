"""Findings tables: present / absent / missing per sample, and the vectors each finding's state reads as.

The concept-embedding paper (Gao et al., arXiv:2409.13893) describes every emergency visit by a row
of clinical findings, each present (P), absent (A) or missing (M), and reads "finding" as the text
embedding of the finding's name and "Not finding" as that of "Not " + name. Here the row is built
from a MEDS dataset at each label's ``prediction_time``: a finding is *present* when an event with
its code occurs at or before that time, *absent* when the only such events are negated (a
``text_value`` such as "absent", "negative" or "no": how an NLP system's negated mentions are
stored; any other ``text_value``, such as "present" or "P", is a mention), and *missing* otherwise
(also when the only events say so: "M", "missing", "unknown"). Claims data never state absence,
so there missing and absent coincide, which is what the paper's "M to A" preprocessing makes of
them anyway.

A table holds token ids into a vector table whose row 0 is the zero vector: finding ``j`` present is
``1 + 2j``, absent ``2 + 2j``; missing is the absent token (the paper's mapping) or the zero row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from clinfm.errors import InputError

PRESENT, ABSENT, MISSING = 1, 2, 0
MISSING_POLICIES = ("absent", "zero")  # the paper maps M to A; "zero" keeps missing as no signal
NEGATIONS = (
    "absent",
    "a",
    "negated",
    "negative",
    "neg",
    "no",
    "none",
    "not present",
    "not detected",
    "false",
    "denied",
)
#: Values that say nothing about the finding (MIMIC-IV's lab text holds some): the event is dropped.
UNKNOWNS = ("m", "missing", "unknown", "not recorded", "not done", "pending", "hold", "cancelled", "___", "")


def finding_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """(subject_id, time, code, negated) for every event that can be a finding.

    Measurements (a ``numeric_value``) are not findings; a ``text_value`` that negates the code (see
    ``NEGATIONS``) marks the finding absent, one that says it is unknown (``UNKNOWNS``) is dropped,
    any other is a mention.
    """
    from clinfm.claims.tokenizer import ADMINISTRATIVE_PREFIXES, STRUCTURAL_PREFIXES

    columns = events.collect_schema().names()
    prefixes = STRUCTURAL_PREFIXES + ADMINISTRATIVE_PREFIXES  # demographics, visit markers, notes
    keep = ~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in prefixes])
    keep &= pl.col("time").is_not_null()
    if "numeric_value" in columns:
        keep &= pl.col("numeric_value").is_null()
    negated = pl.lit(False)
    if "text_value" in columns:
        text = pl.col("text_value").str.strip_chars().str.to_lowercase()
        negated = text.is_in(list(NEGATIONS)).fill_null(False)
        keep &= ~text.is_in(list(UNKNOWNS)).fill_null(False)
    return events.filter(keep).select("subject_id", "time", "code", negated.alias("negated"))


def choose_findings(
    events: pl.LazyFrame,
    train: pl.DataFrame,
    *,
    min_subjects: int,
    max_findings: int,
    prefixes: Sequence[str] | None = None,
) -> list[str]:
    """The findings a site's table has: the codes most training patients have (present or absent)
    by their samples' prediction times, at least ``min_subjects`` of them (rare codes are never a
    column), at most ``max_findings``; only codes starting with one of ``prefixes`` when given
    (e.g. ``["ICD9CM/", "ICD10CM/"]``). ``train`` holds the training labels (subject_id,
    prediction_time): what is recorded after a prediction never decides the columns."""
    from clinfm.vocab.vocabulary import subject_counts

    candidates = finding_events(events)
    if prefixes:
        candidates = candidates.filter(
            pl.any_horizontal([pl.col("code").str.starts_with(p) for p in prefixes])
        )
    # A patient has a code by some training prediction iff it is recorded by their latest one.
    latest = train.group_by("subject_id").agg(pl.col("prediction_time").max()).lazy()
    visible = candidates.join(latest, on="subject_id").filter(pl.col("time") <= pl.col("prediction_time"))
    counts = subject_counts(visible.select("subject_id", "code"))
    kept = counts.filter(pl.col("n_subjects") >= min_subjects).sort(
        ["n_subjects", "code"], descending=[True, False]
    )
    if kept.height == 0:
        among = f" among codes starting {', '.join(prefixes)}" if prefixes else ""
        raise InputError(f"no finding{among} is seen in at least {min_subjects} training patients: no table")
    return kept["code"].head(max_findings).to_list()


def findings_table(events: pl.LazyFrame, samples: pl.DataFrame, findings: Sequence[str]) -> np.ndarray:
    """int8 [samples, findings]: PRESENT, ABSENT or MISSING at each sample's prediction_time.

    ``samples`` has subject_id and prediction_time (a label file's rows). Nothing after
    prediction_time is ever read (``events_as_of``).
    """
    from clinfm.events.labels import events_as_of

    wanted = pl.DataFrame({"code": list(findings)}, schema={"code": pl.String}).with_row_index("column")
    seen = finding_events(events).join(wanted.lazy(), on="code", how="inner")
    states = (
        events_as_of(seen, samples.select("subject_id", "prediction_time"))
        .group_by("sample_id", "column")
        .agg((~pl.col("negated")).any().alias("present"))
        .collect(engine="streaming")
    )
    table = np.full((samples.height, len(findings)), MISSING, dtype=np.int8)
    rows = states["sample_id"].to_numpy().astype(np.int64)
    columns = states["column"].to_numpy().astype(np.int64)
    table[rows, columns] = np.where(states["present"].to_numpy(), PRESENT, ABSENT)
    return table


def token_ids(table: np.ndarray, missing: str = "absent") -> np.ndarray:
    """The vector-table row each cell reads (see the module docstring)."""
    if missing not in MISSING_POLICIES:
        raise InputError(f"missing must be one of {', '.join(MISSING_POLICIES)}, not {missing!r}")
    column = np.arange(table.shape[1], dtype=np.int64)
    ids = np.where(table == PRESENT, 1 + 2 * column, 2 + 2 * column)
    if missing == "zero":
        ids = np.where(table == MISSING, 0, ids)
    return ids.astype(np.int64)


def onehot_vectors(findings: Sequence[str], space: Sequence[str]) -> np.ndarray:
    """The paper's one-hot baseline: an identity over ``space``'s finding states; a finding outside
    ``space`` (another site's code) reads as zeros, which is why one-hot models cannot transfer
    across coding systems."""
    position = {code: k for k, code in enumerate(space)}
    vectors = np.zeros((1 + 2 * len(findings), 2 * len(space)), dtype=np.float32)
    for j, code in enumerate(findings):
        if code in position:
            vectors[1 + 2 * j, 2 * position[code]] = 1.0
            vectors[2 + 2 * j, 2 * position[code] + 1] = 1.0
    return vectors


def text_vectors(findings: Sequence[str], encoder, data: str | os.PathLike | None) -> np.ndarray:
    """Each finding's text ("finding") and its negation ("Not finding") through ``encoder`` (a
    loaded :class:`clinfm.concepts.TextEncoder`); texts from the dataset's codes.parquet, the ICD
    tables, else the code itself."""
    from clinfm.concepts import code_texts, embed_texts, negated

    texts = code_texts(list(findings), dataset=data)["text"].to_list()
    if len(texts) != len(findings):
        raise InputError("findings must be distinct codes")
    both = np.asarray(embed_texts(encoder, texts + negated(texts)), dtype=np.float32)
    vectors = np.zeros((1 + 2 * len(findings), both.shape[1]), dtype=np.float32)
    vectors[1::2] = both[: len(findings)]
    vectors[2::2] = both[len(findings) :]
    return vectors


class FindingsData(torch.utils.data.Dataset):
    """Token-id rows of a findings table and their labels, in the shape the training engine reads."""

    def __init__(self, tokens: np.ndarray, labels: np.ndarray):
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.label_values = np.asarray(labels, dtype=np.float32)
        self.lengths = np.full(len(self.tokens), self.tokens.shape[1], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {
            "tokens": torch.from_numpy(self.tokens[indices]),
            "label": torch.from_numpy(self.label_values[indices]),
        }

    def subset(self, rows: np.ndarray) -> FindingsData:
        return FindingsData(self.tokens[rows], self.label_values[rows])

    def joined(self, other: FindingsData) -> FindingsData:
        """Two sites' samples together (tables over the same findings)."""
        if other.tokens.shape[1] != self.tokens.shape[1]:
            raise ValueError("findings tables over different findings cannot be joined")
        return FindingsData(
            np.concatenate([self.tokens, other.tokens]),
            np.concatenate([self.label_values, other.label_values]),
        )
