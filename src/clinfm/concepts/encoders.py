"""Text encoders for concept descriptions: one interface, three kinds, all offline unless configured.

Every encoder returns L2-normalised float32 rows, so a dot product is the cosine similarity and
vectors from different encoders are never mixed by accident: each has a stable ``name`` that keys the
embedding cache.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from clinfm.errors import InputError
from clinfm.pretrained import default_text_model_path, downloads_allowed, offline_huggingface

log = logging.getLogger(__name__)

DEFAULT_NAME = "sentence-transformers:all-MiniLM-L6-v2"
SPEC_HELP = "use 'default', 'st:<id-or-path>', 'hf:<id-or-path>[#cls|#mean]' or 'openai:<model>@<url>'"
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into unit-length vectors; ``name`` identifies the model for the cache."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0).astype(np.float32)


def _source(id_or_path: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, is it a local folder); folders resolved, for the cache key."""
    path = Path(id_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    if id_or_path.startswith((".", "/", "~")) or os.sep in id_or_path.strip("/").replace("/", "", 1):
        raise InputError("is not a folder with model weights", path=id_or_path)
    return id_or_path, False


def _not_offline(spec: str, id_or_path: str, err: Exception) -> InputError:
    """The error for a model that is neither a folder nor in the offline cache, saying how to fix it."""
    return InputError(
        f"encoder {spec!r}: {id_or_path!r} is not a local folder and not in the offline Hugging Face cache "
        f"({type(err).__name__}); download it where you have network (huggingface-cli download {id_or_path}) "
        f"and pass its folder: --encoder {spec.split(':', 1)[0]}:/path/to/model"
    )


class SentenceTransformerEncoder:
    """A sentence-transformers model (the default: all-MiniLM-L6-v2, shipped as a Python package)."""

    def __init__(self, id_or_path: str, *, name: str | None = None, device: str = "cpu"):
        offline_huggingface()
        from sentence_transformers import SentenceTransformer

        source, local = _source(id_or_path)
        try:
            self.model = SentenceTransformer(source, device=device, local_files_only=not downloads_allowed())
        except (OSError, ValueError) as err:
            if local:
                raise InputError(f"cannot load a sentence-transformers model: {err}", path=source) from err
            raise _not_offline(f"st:{id_or_path}", id_or_path, err) from err
        self.name = name or f"sentence-transformers:{source}"
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self._dim = int(get_dim())

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Encode with the model's own pooling, then normalise (a model without a Normalize module too)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return normalise(vectors)


class HFEncoder:
    """A plain Hugging Face encoder (BERT family): the CLS vector, as in the paper, or the mean of tokens."""

    def __init__(self, id_or_path: str, *, pooling: str = "cls", max_length: int = 512, device: str = "cpu"):
        if pooling not in ("cls", "mean"):
            raise InputError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        offline_huggingface()
        from transformers import AutoModel, AutoTokenizer

        source, local = _source(id_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=not downloads_allowed())
            self.model = (
                AutoModel.from_pretrained(source, local_files_only=not downloads_allowed()).to(device).eval()
            )
        except (OSError, ValueError) as err:
            if local:
                raise InputError(f"cannot load a Hugging Face encoder: {err}", path=source) from err
            raise _not_offline(f"hf:{id_or_path}", id_or_path, err) from err
        self.pooling, self.device = pooling, device
        self.max_length = min(max_length, int(getattr(self.tokenizer, "model_max_length", max_length)))
        self.name = f"hf-{pooling}:{source}"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Batches of similar length (less padding), pooled, normalised and put back in input order."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        order = np.argsort([len(text) for text in texts], kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._pool([texts[i] for i in rows])
        return normalise(out)

    def _pool(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0].float().cpu().numpy()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()


@dataclass
class OpenAIEncoder:
    """An OpenAI-compatible ``/embeddings`` endpoint (OpenAI, Azure, vLLM, Ollama, TEI...).

    Only ever called when a user configures it. Standard library only: batched requests, a rate
    limit, and exponential backoff on 429/5xx/connection errors; a key from the environment variable
    ``api_key_env`` when it is set (local servers need none).
    """

    model: str
    url: str
    api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = 256
    max_tries: int = 6
    max_rps: float = 5.0
    backoff_s: float = 1.0
    timeout_s: float = 60.0
    expected_dim: int | None = None

    def __post_init__(self):
        self.url = self.url.rstrip("/")
        self.name = f"openai:{self.url}#{self.model}"
        self._dim = self.expected_dim
        self._last_request = -float("inf")

    @property
    def dim(self) -> int:
        """Known after the first response (or from ``expected_dim``); asks the endpoint once if not."""
        if self._dim is None:
            self.encode(["dimension probe"])
        return int(self._dim)

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        size = batch_size or self.batch_size
        if not texts:
            return np.zeros((0, self._dim or 0), np.float32)
        parts = [self._request(list(texts[i : i + size])) for i in range(0, len(texts), size)]
        return normalise(np.concatenate(parts))

    def _request(self, texts: list[str]) -> np.ndarray:
        """One batch, retried on transient failures; rows ordered by the response's ``index``."""
        body = json.dumps({"model": self.model, "input": texts}).encode()
        last: Exception | None = None
        wait: float | None = None  # the server's Retry-After, else exponential backoff
        for attempt in range(self.max_tries):
            if attempt:
                time.sleep(min(wait if wait is not None else self.backoff_s * 2 ** (attempt - 1), 60.0))
            wait = None
            try:
                return self._parse(self._post(body), len(texts))
            except urllib.error.HTTPError as err:
                if err.code not in _RETRY_STATUS:
                    detail = err.read(300).decode(errors="replace").replace("\n", " ")
                    raise InputError(f"embeddings endpoint {self.url} answered {err.code}: {detail}") from err
                last, wait = err, _retry_after(err)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                last = err
            log.info(
                "embeddings endpoint %s failed (%s); try %d of %d",
                self.url,
                last,
                attempt + 1,
                self.max_tries,
            )
        raise InputError(f"embeddings endpoint {self.url} kept failing after {self.max_tries} tries: {last}")

    def _post(self, body: bytes) -> dict:
        if self.max_rps > 0:
            wait = self._last_request + 1.0 / self.max_rps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_request = time.monotonic()
        headers = {"Content-Type": "application/json"}
        # A key travels only over https: a plain-http URL (a local server) gets none, so a mistyped
        # endpoint cannot receive it in clear text.
        if self.url.startswith("https://") and (key := os.environ.get(self.api_key_env)):
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.url}/embeddings", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise InputError(f"embeddings endpoint {self.url} did not answer JSON: {raw[:120]!r}") from None

    def _parse(self, payload: dict, n: int) -> np.ndarray:
        """Vectors in input order; a count or dimension that differs from before is an InputError."""
        try:
            data = sorted(payload["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"embeddings endpoint {self.url}: unexpected response ({err!r})") from err
        if vectors.ndim != 2 or len(vectors) != n:
            raise InputError(
                f"embeddings endpoint {self.url} returned {len(data)} vectors for {n} texts "
                "(or vectors of differing lengths)"
            )
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise InputError(
                f"embeddings endpoint {self.url} returned {vectors.shape[1]}-d vectors, "
                f"expected {self._dim}-d as before; check the model name"
            )
        self._dim = vectors.shape[1]
        return vectors


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    """Seconds the server asks us to wait (a Retry-After header in seconds), if it says."""
    value = err.headers.get("Retry-After") if err.headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def load_encoder(spec: str | dict | None = None) -> TextEncoder:
    """An encoder from a spec string or a small config dict (see ``SPEC_HELP``).

    ``None``/``"default"``: all-MiniLM-L6-v2 from its package; ``"st:<id-or-path>"``;
    ``"hf:<id-or-path>[#cls|#mean]"`` (CLS pooling by default, as in the paper);
    ``"openai:<model>@<url>"`` or ``{"kind": "openai", "model": ..., "url": ..., ...}``.
    Local models are loaded once per process.
    """
    if isinstance(spec, dict):
        return _from_dict(spec)
    spec = (spec or "default").strip()
    if spec == "default":
        return _cached_local("st", str(default_text_model_path()), DEFAULT_NAME)
    kind, _, rest = spec.partition(":")
    if kind == "openai" and "@" in rest:
        model, _, url = rest.partition("@")
        return OpenAIEncoder(model=model, url=url)
    if kind in ("st", "hf") and rest:
        return _cached_local(kind, rest, None)
    raise InputError(f"unknown encoder {spec!r}; {SPEC_HELP}")


def _from_dict(config: dict) -> TextEncoder:
    config = dict(config)
    kind = config.pop("kind", None)
    if kind == "openai":
        try:
            return OpenAIEncoder(**config)
        except TypeError as err:
            raise InputError(f"openai encoder config: {err}") from err
    if kind in ("st", "hf", "default") and (kind == "default" or "path" in config):
        spec = "default" if kind == "default" else f"{kind}:{config['path']}"
        if kind == "hf" and "pooling" in config:
            spec += f"#{config['pooling']}"
        return load_encoder(spec)
    raise InputError(f"unknown encoder config {config!r} (kind {kind!r}); {SPEC_HELP}")


@functools.lru_cache(maxsize=4)
def _cached_local(kind: str, rest: str, name: str | None) -> TextEncoder:
    if kind == "st":
        return SentenceTransformerEncoder(rest, name=name)
    target, _, pooling = rest.rpartition("#") if "#" in rest else (rest, "", "cls")
    return HFEncoder(target, pooling=pooling)
