"""Concept embeddings: codes from any site or coding system placed in one semantic space by their text.

The paper (Gao et al., arXiv:2409.13893) embeds each clinical concept's name with a language model
(CLS vector of a BERT, or an OpenAI embedding) and "Not " + name for its absent form, so codes from
sites with different coding habits meet by meaning instead of by a hand-made mapping. This package
gives the pieces: the text for each code (:func:`code_texts`), encoders behind one interface
(:func:`load_encoder`), a disk cache so a vocabulary is embedded once (:func:`embed_texts`) and
nearest-neighbour look-ups (:func:`neighbors`). Nothing here reaches the network unless a user
configures an embeddings endpoint.
"""

from __future__ import annotations

from clinfm.concepts.cache import EmbeddingCache, default_cache_dir, embed_texts
from clinfm.concepts.encoders import (
    DEFAULT_NAME,
    HFEncoder,
    OpenAIEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    load_encoder,
)
from clinfm.concepts.texts import code_texts, negated, neighbors

__all__ = [
    "DEFAULT_NAME",
    "EmbeddingCache",
    "HFEncoder",
    "OpenAIEncoder",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "code_texts",
    "default_cache_dir",
    "embed_texts",
    "load_encoder",
    "negated",
    "neighbors",
]
