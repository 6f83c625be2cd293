"""The code vocabulary a model is trained with, and the minimum-patient-count policy behind it.

A code enters a vocabulary only if at least ``min_subjects`` DISTINCT subjects have it. The
vocabulary is saved with every checkpoint, so a code seen in one or a few patients, however many
times, would otherwise tell whoever receives the checkpoint that some patient of the training
site had that (rare) code. The saved file holds the codes and the threshold only: no counts, no
subject ids, and the codes are in code order, so not even their frequency ranking leaks.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clinfm.checks import MAX_VOCABULARY, Rule, check_fields, each, flag, integer, located, text
from clinfm.errors import InputError
from clinfm.io import read_json_document, write_json_atomic
from clinfm.vocab.systems import check_vocabulary, vocabulary_of

#: A code must be seen in at least this many distinct subjects to enter a vocabulary.
DEFAULT_MIN_SUBJECTS = 10
#: The lowest threshold a vocabulary saved with a model may have: 1 would keep every code, even one
#: seen in a single patient. Loading a model refuses a vocabulary claiming less, or not counted at all.
MIN_SAVED_SUBJECTS = 2

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
MASK_TOKEN = "[MASK]"
#: Special tokens come first, so [PAD] is id 0.
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, UNK_TOKEN, MASK_TOKEN)

FORMAT = "clinfm-vocabulary"
VERSION = 1

#: What ``codes=`` accepts: a filter on the events, or vocabulary prefixes to keep.
CodeFilter = pl.Expr | str | Iterable[str] | None


def _check_min_subjects(min_subjects: object, *, where: object = None) -> int:
    # bool is an int subclass; True would silently mean 1.
    if isinstance(min_subjects, bool) or not isinstance(min_subjects, int) or min_subjects < 1:
        raise InputError(f"min_subjects must be an integer >= 1, got {min_subjects!r}", path=where)
    return min_subjects


def _code_filter(codes: CodeFilter) -> pl.Expr | None:
    """The row filter for ``codes=``: an expression as given, or the codes of the named vocabularies."""
    if codes is None or isinstance(codes, pl.Expr):
        return codes
    prefixes = [codes] if isinstance(codes, str) else list(codes)
    wanted = [check_vocabulary(prefix, where="codes") for prefix in prefixes]
    return vocabulary_of(pl.col("code")).str.to_uppercase().is_in(wanted)


def subject_counts(events: pl.LazyFrame | pl.DataFrame, codes: CodeFilter = None) -> pl.DataFrame:
    """DataFrame[code, n_subjects]: how many distinct subjects have each code, sorted by code.

    For local reporting only: these counts must never be saved with a model.
    """
    return subject_counts_query(events, codes).sort("code").collect(engine="streaming")


def subject_counts_query(events: pl.LazyFrame | pl.DataFrame, codes: CodeFilter = None) -> pl.LazyFrame:
    """The lazy query behind :func:`subject_counts`, to combine with others in one collect."""
    lazy = events.lazy()
    missing = {"subject_id", "code"} - set(lazy.collect_schema().names())
    if missing:
        raise InputError(f"events lack column(s) {', '.join(sorted(missing))}; expected subject_id and code")
    lazy = lazy.select("subject_id", "code").drop_nulls()
    row_filter = _code_filter(codes)
    if row_filter is not None:
        lazy = lazy.filter(row_filter)
    return lazy.group_by("code").agg(pl.col("subject_id").n_unique().alias("n_subjects"))


def rare_codes(
    events: pl.LazyFrame | pl.DataFrame, min_subjects: int = DEFAULT_MIN_SUBJECTS, codes: CodeFilter = None
) -> pl.Series:
    """The codes the policy keeps out of a vocabulary: seen in fewer than ``min_subjects`` subjects."""
    min_subjects = _check_min_subjects(min_subjects)
    counts = subject_counts(events, codes)
    return counts.filter(pl.col("n_subjects") < min_subjects).get_column("code")


@dataclass(frozen=True)
class Vocabulary:
    """Token ids: the special tokens first (``[PAD]`` = 0 by default), then the codes in code order.

    ``len()`` and ``in`` count the special tokens too: ``len(vocab)`` is the embedding size.
    """

    codes: tuple[str, ...]
    min_subjects: int = DEFAULT_MIN_SUBJECTS
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS
    #: True when the codes were counted against ``min_subjects`` (``from_events``); a vocabulary
    #: listed by hand was not, and ``save`` refuses it unless told otherwise.
    counted: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", tuple(self.codes))
        object.__setattr__(self, "special_tokens", tuple(self.special_tokens))
        _check_min_subjects(self.min_subjects)
        if UNK_TOKEN not in self.special_tokens:
            raise InputError(f"special_tokens must include {UNK_TOKEN}: unknown codes are encoded as it")
        tokens = self.tokens
        if not all(isinstance(token, str) and token for token in tokens):
            raise InputError("vocabulary tokens must be non-empty strings")
        if len(set(tokens)) != len(tokens):
            raise InputError("vocabulary tokens must be unique (codes and special tokens together)")

    @classmethod
    def from_events(
        cls,
        events: pl.LazyFrame | pl.DataFrame,
        min_subjects: int = DEFAULT_MIN_SUBJECTS,
        codes: CodeFilter = None,
        special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS,
    ) -> Vocabulary:
        """The codes of ``events`` (columns subject_id, code) seen in at least ``min_subjects`` subjects.

        ``codes`` narrows the codes considered: a Polars filter expression on the events, or one or
        more vocabulary prefixes (``"ICD10CM"``, ``["ICD9CM", "ICD10CM"]``).
        """
        min_subjects = _check_min_subjects(min_subjects)
        counts = subject_counts(events, codes)
        specials = tuple(special_tokens)
        # A code spelled like a special token could not get an id of its own; the special one wins.
        kept = counts.filter((pl.col("n_subjects") >= min_subjects) & ~pl.col("code").is_in(specials))
        return cls(tuple(kept.get_column("code").to_list()), min_subjects, specials, counted=True)

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order."""
        return self.special_tokens + self.codes

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    @functools.cached_property
    def _token_series(self) -> pl.Series:
        return pl.Series("token", self.tokens, dtype=pl.String)

    @functools.cached_property
    def _id_series(self) -> pl.Series:
        return pl.int_range(len(self.tokens), dtype=pl.Int64, eager=True)

    def __len__(self) -> int:
        return len(self.special_tokens) + len(self.codes)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def id_of(self, token: str) -> int:
        """The id of one token; InputError if it is not in the vocabulary."""
        if token not in self._index:
            raise InputError(f"{token!r} is not in the vocabulary")
        return self._index[token]

    @property
    def unk_id(self) -> int:
        return self._index[UNK_TOKEN]

    def encode(self, codes: pl.Series) -> pl.Series:
        """Int64 ids of ``codes``; codes not in the vocabulary (and nulls) get the ``[UNK]`` id."""
        return pl.select(self.encode_expr(pl.lit(codes))).to_series().alias(codes.name)

    def encode_expr(self, codes: pl.Expr) -> pl.Expr:
        """``encode`` as a Polars expression, for lazy queries."""
        return codes.cast(pl.String).replace_strict(
            self._token_series, self._id_series, default=self.unk_id, return_dtype=pl.Int64
        )

    def decode(self, ids: pl.Series) -> pl.Series:
        """The tokens of ``ids``; an id outside the vocabulary gives null."""
        tokens = ids.cast(pl.Int64).replace_strict(
            self._id_series, self._token_series, default=None, return_dtype=pl.String
        )
        return tokens.alias(ids.name)

    def save(self, path: str | os.PathLike, *, allow_uncounted: bool = False) -> None:
        """Write the vocabulary as JSON, atomically. Only the threshold and the tokens are stored.

        A vocabulary not built by ``from_events`` never had its codes counted, so the
        minimum-patient-count policy cannot vouch for it: saving it needs ``allow_uncounted=True``,
        and the file then says ``"counted": false``.
        """
        if not self.counted and not allow_uncounted:
            raise InputError(
                "this vocabulary was not built from data, so no minimum patient count was applied; "
                "build it with Vocabulary.from_events, or pass allow_uncounted=True",
                path=path,
            )
        if self.counted:
            check_saved_min_subjects(self.min_subjects)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "counted": self.counted,
            "min_subjects": self.min_subjects,
            "special_tokens": list(self.special_tokens),
            "codes": list(self.codes),
        }
        write_json_atomic(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike, *, of_model: bool = False) -> Vocabulary:
        """Read a vocabulary saved by ``save``; InputError for anything else, or a threshold below 1.

        ``of_model=True`` for the vocabulary a model was saved with: it must say it was counted
        (built from data) at a threshold of at least ``MIN_SAVED_SUBJECTS``, as every clinfm model's
        is. A file claiming less would bring codes of single patients in with the model.
        """
        path = Path(path)
        payload = read_json_document(path, format=FORMAT, version=VERSION, what="a clinfm vocabulary")
        rules = MODEL_VOCABULARY_RULES if of_model else VOCABULARY_RULES
        required = ("min_subjects", "special_tokens", "codes") + (("counted",) if of_model else ())
        check_fields(payload, rules, path, required=required, ignore_unknown=True)
        with located(path):
            return cls(
                tuple(payload["codes"]),
                payload["min_subjects"],
                tuple(payload["special_tokens"]),
                counted=payload.get("counted") is True,
            )


def check_saved_min_subjects(min_subjects: int) -> int:
    """``min_subjects`` if a vocabulary counted at it may be saved with a model; check it before
    training, not when the model is saved."""
    if _check_min_subjects(min_subjects) < MIN_SAVED_SUBJECTS:
        raise InputError(
            f"min_subjects {min_subjects} would save codes seen in a single patient with the model; "
            f"use at least {MIN_SAVED_SUBJECTS} (default {DEFAULT_MIN_SUBJECTS})"
        )
    return min_subjects


#: What a saved vocabulary may hold (clinfm.checks) ...
VOCABULARY_RULES = {
    "min_subjects": integer(1, 1_000_000_000),
    "counted": flag(),
    "special_tokens": each(text(), 1, 1000),
    "codes": each(text(), 0, MAX_VOCABULARY),
}
#: ... and a model's: counted, at a threshold no single patient passes.
MODEL_VOCABULARY_RULES = VOCABULARY_RULES | {
    "min_subjects": integer(MIN_SAVED_SUBJECTS, 1_000_000_000).because(
        "a model's vocabulary never holds a code seen in a single patient"
    ),
    "counted": Rule("true", lambda value: value is True).because(
        "a model's vocabulary is built from data, every code counted against min_subjects"
    ),
}


__all__ = [
    "DEFAULT_MIN_SUBJECTS",
    "DEFAULT_SPECIAL_TOKENS",
    "MASK_TOKEN",
    "MIN_SAVED_SUBJECTS",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "Vocabulary",
    "rare_codes",
    "subject_counts",
]
