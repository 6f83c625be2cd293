"""An on-disk embedding cache, so a vocabulary is embedded once per encoder.

Layout: ``<folder>/<sha256(encoder name)[:16]>/`` holds ``encoder.json`` (name, dim) and Parquet
shards of (key, embedding) where key = sha256(encoder name NUL text). Shards are only ever added,
each through a temporary file and a rename, so an encoder that fails half-way (an endpoint that
stops answering) keeps every batch already written, and a crash never leaves half a shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import polars as pl

from clinfm import progress
from clinfm.concepts.encoders import TextEncoder
from clinfm.errors import InputError
from clinfm.io import write_json_atomic, write_parquet_atomic

CHUNK = 1024  # texts per encode call and shard: the most a failure can lose
_EMPTY = pl.DataFrame(schema={"key": pl.String, "embedding": pl.List(pl.Float32)})


def default_cache_dir() -> Path:
    """``$CLINFM_CACHE`` if set, else ``~/.cache/clinfm/embeddings``."""
    env = os.environ.get("CLINFM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clinfm" / "embeddings"


def text_keys(encoder_name: str, texts: list[str]) -> list[str]:
    """sha256 of (encoder name, text): a key that never mixes two encoders' vectors."""
    prefix = encoder_name.encode() + b"\0"
    return [hashlib.sha256(prefix + text.encode()).hexdigest() for text in texts]


class EmbeddingCache:
    """Vectors by (encoder name, text) under one folder; see the module docstring for the layout."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()

    def _dir(self, encoder_name: str) -> Path:
        return self.folder / hashlib.sha256(encoder_name.encode()).hexdigest()[:16]

    def lookup(self, encoder_name: str, keys: list[str]) -> pl.DataFrame:
        """The cached (key, embedding) rows among ``keys`` (each key at most once)."""
        shards = sorted(self._dir(encoder_name).glob("shard-*.parquet"))
        if not shards or not keys:
            return _EMPTY
        wanted = pl.LazyFrame({"key": keys}).unique()
        return (
            pl.scan_parquet(shards).join(wanted, on="key", how="semi").unique("key", keep="first").collect()
        )

    def append(self, encoder_name: str, keys: list[str], vectors: np.ndarray) -> None:
        """Add one shard atomically; a dimension unlike the cached one is refused."""
        folder = self._dir(encoder_name)
        info = folder / "encoder.json"
        dim = int(vectors.shape[1])
        if info.exists():
            cached = json.loads(info.read_text()).get("dim")
            if cached != dim:
                raise InputError(
                    f"encoder {encoder_name} now gives {dim}-d vectors but its cache holds {cached}-d ones; "
                    "remove that cache folder",
                    path=folder,
                )
        else:
            write_json_atomic(info, {"encoder": encoder_name, "dim": dim})
        frame = pl.DataFrame(
            {"key": keys, "embedding": pl.Series(vectors.astype(np.float32)).cast(pl.Array(pl.Float32, dim))}
        )
        write_parquet_atomic(frame, folder / f"shard-{uuid.uuid4().hex}.parquet")


def _unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts in first-seen order and, for each input, its row among them."""
    frame = pl.DataFrame({"text": texts}, schema={"text": pl.String}).with_row_index("row")
    firsts = frame.unique("text", keep="first", maintain_order=True).with_row_index("slot")
    inverse = frame.join(firsts.select("text", "slot"), on="text", how="left").sort("row")["slot"]
    return firsts["text"].to_list(), inverse.to_numpy()


def _as_cache(cache: EmbeddingCache | str | os.PathLike | bool) -> EmbeddingCache | None:
    if cache is True:
        return EmbeddingCache()
    if cache is False or cache is None:
        return None
    return cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)


def embed_texts(
    encoder: TextEncoder,
    texts: list[str],
    *,
    cache: EmbeddingCache | str | os.PathLike | bool = True,
    batch_size: int = 64,
    chunk: int = CHUNK,
    description: str = "embedding",
) -> np.ndarray:
    """Unit vectors [len(texts), dim] in input order, encoding each distinct text not yet cached once.

    ``cache``: True for the default folder, a folder or an :class:`EmbeddingCache`, False for none.
    Misses are encoded ``chunk`` at a time and each chunk is written before the next starts.
    """
    distinct, inverse = _unique(list(texts))
    store = _as_cache(cache)
    keys = pl.DataFrame({"key": text_keys(encoder.name, distinct)}, schema={"key": pl.String})
    vectors, missing = _cached(store, encoder.name, keys.with_row_index("slot"), len(distinct))
    key_list = keys["key"].to_list()
    starts = range(0, len(missing), chunk)
    for start in progress.track(starts, description, total=len(starts)):
        rows = missing[start : start + chunk]
        block = encoder.encode([distinct[i] for i in rows], batch_size=batch_size)
        if vectors is None:
            vectors = np.zeros((len(distinct), block.shape[1]), np.float32)
        if block.shape[1] != vectors.shape[1]:
            raise InputError(
                f"encoder {encoder.name} gave {block.shape[1]}-d vectors, expected {vectors.shape[1]}-d"
            )
        vectors[rows] = block
        if store:
            store.append(encoder.name, [key_list[i] for i in rows], block)
    if vectors is None:
        return np.zeros((0, encoder.dim), np.float32)
    return vectors[inverse]


def _cached(
    store: EmbeddingCache | None, name: str, keys: pl.DataFrame, n: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """(vectors [n, dim] with the cached rows filled, or None if none are; the slots still missing)."""
    found = store.lookup(name, keys["key"].to_list()) if store else _EMPTY
    found = found.join(keys, on="key")
    missing = keys.join(found, on="key", how="anti")["slot"].to_numpy()
    if not found.height:
        return None, missing
    stacked = np.asarray(found["embedding"].to_numpy(), dtype=np.float32).reshape(found.height, -1)
    vectors = np.zeros((n, stacked.shape[1]), np.float32)
    vectors[found["slot"].to_numpy()] = stacked
    return vectors, missing
