"""The text each code is embedded from, and nearest codes in an embedding space.

A code's text comes from the most specific source that has one: the user's own CSV, then the
dataset's ``metadata/codes.parquet``, then the ICD descriptions shipped with clinfm, and only then
the code string itself (which an encoder can barely place, so those codes are counted and logged).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import polars as pl

from clinfm.errors import InputError

log = logging.getLogger(__name__)
SOURCES = ("csv", "dataset", "vocab")


def _read_csv(path: str | os.PathLike) -> pl.DataFrame:
    """The user's (code, description) CSV; InputError naming the file when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such CSV file of code descriptions", path=path)
    frame = pl.read_csv(path, infer_schema=False)
    missing = {"code", "description"} - set(frame.columns)
    if missing:
        raise InputError(f"needs columns code,description; missing {sorted(missing)}", path=path)
    return frame.select("code", "description")


def _dataset_descriptions(dataset: str | os.PathLike) -> pl.DataFrame:
    from clinfm.events.meds import read_codes

    codes = read_codes(dataset)
    if "description" not in codes.columns:
        return pl.DataFrame(schema={"code": pl.String, "description": pl.String})
    return codes.select(pl.col("code").cast(pl.String), pl.col("description").cast(pl.String))


def _vocab_descriptions() -> pl.DataFrame:
    from clinfm.vocab.icd import descriptions

    return descriptions().select("code", "description")


def _usable(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows with a non-blank description, one per code (the first)."""
    text = pl.col("description").str.strip_chars()
    return frame.filter(text.str.len_chars() > 0).with_columns(text).unique("code", keep="first")


def code_texts(
    codes: list[str], *, dataset: str | os.PathLike | None = None, csv: str | os.PathLike | None = None
) -> pl.DataFrame:
    """(code, text, source) for each distinct code, in first-seen order.

    ``source`` is "csv", "dataset", "vocab" or "code" (no description found: the code itself).
    """
    frame = pl.DataFrame({"code": codes}, schema={"code": pl.String}).unique(maintain_order=True)
    tables = {
        "csv": _read_csv(csv) if csv is not None else None,
        "dataset": _dataset_descriptions(dataset) if dataset is not None else None,
        "vocab": _vocab_descriptions(),
    }
    text, source = pl.lit(None, pl.String), pl.lit(None, pl.String)
    for name in reversed(SOURCES):  # built inside out, so the first source wins
        if tables[name] is None:
            continue
        described = _usable(tables[name]).rename({"description": name})
        frame = frame.join(
            described, on="code", how="left", maintain_order="left"
        )  # rows stay the codes' order
        text = pl.when(pl.col(name).is_not_null()).then(pl.col(name)).otherwise(text)
        source = pl.when(pl.col(name).is_not_null()).then(pl.lit(name)).otherwise(source)
    frame = frame.select(
        "code", text.fill_null(pl.col("code")).alias("text"), source.fill_null("code").alias("source")
    )
    fallback = int((frame["source"] == "code").sum())
    if fallback:
        log.info(
            "%d of %d codes have no description; their code string is embedded instead",
            fallback,
            frame.height,
        )
    return frame


def negated(texts: list[str] | pl.Series) -> list[str] | pl.Series:
    """The paper's text for an absent finding: "Not " + the finding's text."""
    if isinstance(texts, pl.Series):
        return ("Not " + texts).alias(texts.name)
    return [f"Not {text}" for text in texts]


def neighbors(code: str, codes: list[str] | pl.Series, vectors: np.ndarray, k: int = 10) -> pl.DataFrame:
    """The ``k`` codes nearest to ``code`` by cosine similarity (itself excluded), nearest first."""
    codes = pl.Series("code", codes, dtype=pl.String)
    hits = np.flatnonzero((codes == code).to_numpy())
    if not len(hits):
        raise InputError(f"code {code!r} is not among the {len(codes)} embedded codes")
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    cosine = vectors @ vectors[hits[0]] / np.maximum(norms * norms[hits[0]], 1e-12)
    cosine[hits] = -np.inf
    k = max(0, min(k, len(codes) - len(hits)))
    top = np.argpartition(-cosine, k - 1)[:k] if k else np.array([], dtype=np.int64)
    top = top[np.argsort(-cosine[top], kind="stable")]
    return pl.DataFrame({"code": codes.gather(top), "cosine": cosine[top].astype(np.float32)})
