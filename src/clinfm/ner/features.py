"""The feature-based baseline: a linear-chain CRF over hand-made word features (CRFsuite).

It shows what the neural models buy: the same BIO tagging task, but with features a person wrote
(the word, its affixes and shape, medication cue words, and the same for two neighbours each side)
instead of learned sub-word representations.

The model is trained with python-crfsuite (which sklearn-crfsuite wraps). sklearn-crfsuite trains
into a temporary file and recommends pickle to keep a model; we never pickle. Training writes
CRFsuite's own binary model into a temporary folder, the bytes are kept in memory and a Tagger is
opened on them; ``save`` writes those bytes as ``model.crfsuite`` beside a ``config.json``.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pycrfsuite

from clinfm.checks import (
    MAX_LABELS,
    MAX_LENGTH,
    check_fields,
    each,
    flag,
    integer,
    nested,
    number,
    one_of,
    text,
)
from clinfm.errors import InputError
from clinfm.io import atomic_directory
from clinfm.ner.document import ReadReport, Sentence, counting_units, split_long

log = logging.getLogger(__name__)

FORMAT = "clinfm-feature-crf"
VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.crfsuite"
ALGORITHMS = ("lbfgs", "l2sgd", "ap", "pa", "arow")

# Medication cue words, lowercased. They let the CRF generalise from "25 mg PO bid" to a drug or
# dose it has never seen: the words around a medication are a small closed class.
UNIT_WORDS = frozenset((
    "mg", "mcg", "ug", "g", "gm", "gram", "grams", "kg", "ml", "l", "meq", "mmol", "iu", "unit",
    "units", "u", "%", "mg/ml", "mg/kg", "mcg/kg", "mcg/hr", "mg/hr", "tab", "tabs", "tablet",
    "tablets", "cap", "caps", "capsule", "capsules", "puff", "puffs", "drop", "drops", "spray",
    "sprays", "patch",
))  # fmt: skip
ROUTE_WORDS = frozenset((
    "po", "iv", "im", "sc", "sq", "subq", "sl", "pr", "ng", "gt", "inh", "neb", "oral", "orally",
    "mouth", "intravenous", "intravenously", "intramuscular", "subcutaneous", "subcutaneously",
    "topical", "topically", "inhaled", "inhalation", "nebulizer", "sublingual", "sublingually",
    "transdermal", "rectally", "nasal", "intranasal",
))  # fmt: skip
FREQUENCY_WORDS = frozenset((
    "daily", "bid", "tid", "qid", "qd", "qod", "qhs", "hs", "qam", "qpm", "qday", "prn", "weekly",
    "monthly", "nightly", "bedtime", "hourly", "twice", "once", "x1", "stat", "q4h", "q6h", "q8h",
    "q12h", "q24h",
))  # fmt: skip
_FREQUENCY_PATTERN = re.compile(r"q\d+(-\d+)?(h|hr|hrs|hours)?")  # q4h, q4-6h, q6hr
_NUMBER_WITH_UNIT = re.compile(r"\d+(\.\d+)?(mg|mcg|g|ml|units?|meq)")  # "25mg" written as one token
_NEIGHBOURS = (-2, -1, 1, 2)


MIN_WORD_DOCUMENTS = 5  # privacy: a word's identity is a feature only if this many documents hold it


def word_shape(word: str, max_run: int = 4) -> str:
    """Character classes (X upper, x lower, d digit, others kept), runs cut at ``max_run``.

    "Metoprolol" -> "Xxxxx", "25" -> "dd", "b.i.d." -> "x.x.x.", "q6h" -> "xdx". ``max_run=1``
    gives the short shape ("Xx"), which groups words of any length.
    """
    out: list[str] = []
    run = 0
    for char in word:
        kind = "X" if char.isupper() else "x" if char.isalpha() else "d" if char.isdigit() else char
        run = run + 1 if out and out[-1] == kind else 1
        if run <= max_run:
            out.append(kind)
    return "".join(out)


def _length_bucket(word: str) -> str:
    n = len(word)
    return "1" if n == 1 else "2" if n == 2 else "3-4" if n <= 4 else "5-7" if n <= 7 else "8+"


def _token_features(word: str, prefix: str, out: dict[str, object]) -> None:
    """Add the features of one word to ``out``, each key starting with ``prefix``.

    Flags appear only when true: CRFsuite gives an absent attribute weight zero, the same as
    False, and leaving them out keeps the model and the training time small.
    """
    lower = word.lower()
    out[prefix + "lower"] = lower
    out[prefix + "prefix2"] = lower[:2]
    out[prefix + "prefix3"] = lower[:3]
    out[prefix + "suffix2"] = lower[-2:]
    out[prefix + "suffix3"] = lower[-3:]
    out[prefix + "shape"] = word_shape(word)
    out[prefix + "short_shape"] = word_shape(word, max_run=1)
    out[prefix + "length"] = _length_bucket(word)
    flags = {
        "is_title": word.istitle(),
        "is_upper": word.isupper(),
        "is_digit": word.isdigit(),
        "has_digit": any(char.isdigit() for char in word),
        "is_punct": not any(char.isalnum() for char in word),
        "unit": lower in UNIT_WORDS or bool(_NUMBER_WITH_UNIT.fullmatch(lower)),
        "route": lower in ROUTE_WORDS,
        "frequency": lower in FREQUENCY_WORDS or bool(_FREQUENCY_PATTERN.fullmatch(lower)),
    }
    for name, value in flags.items():
        if value:
            out[prefix + name] = True


def word_features(tokens: Sequence[str], i: int) -> dict[str, object]:
    """Features of token ``i``: its own, and those of the tokens at -2..+2 keyed "-1:lower" etc.

    The first token gets "BOS", the last "EOS"; neighbours beyond the sentence add nothing.
    """
    features: dict[str, object] = {"bias": 1.0}
    _token_features(tokens[i], "", features)
    for offset in _NEIGHBOURS:
        j = i + offset
        if 0 <= j < len(tokens):
            _token_features(tokens[j], f"{offset:+d}:", features)
    if i == 0:
        features["BOS"] = True
    if i == len(tokens) - 1:
        features["EOS"] = True
    return features


def _frequent_words(sentences: Sequence[Sentence]) -> set[str]:
    """Lower-cased words found in at least ``MIN_WORD_DOCUMENTS`` documents (sentences, for a
    corpus without document boundaries): the only ones whose identity a saved model may hold."""
    seen: dict[str, set[str]] = {}
    for unit, sentence in zip(counting_units(sentences), sentences, strict=True):
        for token in sentence.tokens:
            seen.setdefault(token.lower(), set()).add(unit)
    return {word for word, units in seen.items() if len(units) >= MIN_WORD_DOCUMENTS}


def _without_rare_words(features: list[dict[str, object]], frequent: set[str]) -> list[dict[str, object]]:
    """Training features without the identity of rare words (a patient's name in one note never
    becomes a weight of the saved model); their shape, affixes and cues stay."""
    return [
        {k: v for k, v in token.items() if not (k.endswith("lower") and v not in frequent)}
        for token in features
    ]


def sentence_features(tokens: Sequence[str]) -> list[dict[str, object]]:
    """The feature dicts of every token of a sentence, in order."""
    return [word_features(tokens, i) for i in range(len(tokens))]


def _tag_pieces(tagger: pycrfsuite.Tagger, sentence: Sentence, cut: ReadReport) -> list[str]:
    # cut without the tags: where gold tags are known, they must not steer a prediction
    pieces = split_long(replace(sentence, tags=None), cut, sentence.document)
    return [tag for piece in pieces for tag in tagger.tag(sentence_features(piece.tokens))]


#: What each saved hyperparameter may hold (clinfm.checks).
HYPERPARAMETER_RULES = {
    "c1": number(0, 1e6),
    "c2": number(0, 1e6),
    "max_iterations": integer(1, MAX_LENGTH),
    "algorithm": one_of(*ALGORITHMS),
    "all_possible_transitions": flag(),
}


class FeatureCRF:
    """A linear-chain CRF over :func:`word_features`, trained with CRFsuite.

    ``c1``/``c2`` are the L1/L2 penalties (L-BFGS; L2-SGD uses only ``c2``; the other algorithms
    neither). ``all_possible_transitions`` also learns weights for label pairs never seen in
    training (e.g. O -> I-Drug), so the model can learn they are unlikely.
    """

    def __init__(
        self,
        c1: float = 0.1,
        c2: float = 0.1,
        max_iterations: int = 100,
        algorithm: str = "lbfgs",
        all_possible_transitions: bool = True,
    ):
        if algorithm not in ALGORITHMS:
            raise InputError(
                f"CRF algorithm {algorithm!r} is unknown; expected one of {', '.join(ALGORITHMS)}"
            )
        self.c1 = c1
        self.c2 = c2
        self.max_iterations = max_iterations
        self.algorithm = algorithm
        self.all_possible_transitions = all_possible_transitions
        self._model: bytes | None = None  # CRFsuite's binary model; the Tagger reads from it
        self._tagger: pycrfsuite.Tagger | None = None

    # ---- training and tagging

    def _trainer_params(self) -> dict[str, object]:
        params: dict[str, object] = {
            "max_iterations": self.max_iterations,
            "feature.possible_transitions": self.all_possible_transitions,
        }
        if self.algorithm == "lbfgs":
            params["c1"] = self.c1
        if self.algorithm in ("lbfgs", "l2sgd"):
            params["c2"] = self.c2
        return params

    def fit(self, sentences: Sequence[Sentence]) -> FeatureCRF:
        """Train on the sentences that have tags (unlabelled ones are skipped, as they carry no signal).

        Like :meth:`predict`, it featurises a sentence longer than ``MAX_SENTENCE_TOKENS`` in pieces
        (:func:`clinfm.ner.document.split_long`; logged), so memory stays bounded by the piece.
        """
        trainer = pycrfsuite.Trainer(algorithm=self.algorithm, verbose=False)
        trainer.set_params(self._trainer_params())
        frequent = _frequent_words(sentences)
        used = 0
        cut = ReadReport()  # the readers split long sentences already; sentences built elsewhere may not be
        for sentence in sentences:
            if sentence.tags is None or len(sentence) == 0:
                continue
            if len(sentence.tags) != len(sentence.tokens):
                raise InputError(
                    f"sentence of {sentence.document!r} has {len(sentence.tokens)} tokens but "
                    f"{len(sentence.tags)} tags; expected one tag per token"
                )
            for piece in split_long(sentence, cut, sentence.document):
                trainer.append(
                    _without_rare_words(sentence_features(piece.tokens), frequent), list(piece.tags)
                )
            used += 1
        cut.log(log)
        if used == 0:
            raise InputError("no sentence has tags; the CRF needs labelled sentences to train on")
        with tempfile.TemporaryDirectory(prefix="clinfm-crf-") as tmp:
            path = Path(tmp) / MODEL_FILE
            trainer.train(str(path))
            self._open(path.read_bytes())
        return self

    def _open(self, model: bytes) -> None:
        tagger = pycrfsuite.Tagger()
        tagger.open_inmemory(model)
        self._model, self._tagger = model, tagger  # keep the bytes alive as long as the Tagger

    def _require_model(self) -> pycrfsuite.Tagger:
        if self._tagger is None:
            raise RuntimeError("FeatureCRF is not trained; call fit() or FeatureCRF.load() first")
        return self._tagger

    def predict(self, sentences: Sequence[Sentence]) -> list[list[str]]:
        """The most likely tag sequence (Viterbi) of each sentence, one longer than
        ``MAX_SENTENCE_TOKENS`` piece by piece (logged)."""
        tagger = self._require_model()
        cut = ReadReport()
        tags = [_tag_pieces(tagger, s, cut) if len(s) else [] for s in sentences]
        cut.log(log)
        return tags

    @property
    def labels(self) -> list[str]:
        """The tags the model knows, sorted."""
        return sorted(self._require_model().labels())

    @property
    def num_parameters(self) -> int:
        """Non-zero weights of the trained model: state features (attribute, label) + transitions.

        CRFsuite stores only the features it generated from the training data (and, with
        ``all_possible_transitions``, every label pair); L1 (``c1``) drives many to exactly zero,
        and those are not counted.
        """
        info = self._require_model().info()
        state = sum(1 for weight in info.state_features.values() if weight != 0)
        transitions = sum(1 for weight in info.transitions.values() if weight != 0)
        return state + transitions

    # ---- saving and loading

    def hyperparameters(self) -> dict[str, object]:
        return {
            "c1": self.c1,
            "c2": self.c2,
            "max_iterations": self.max_iterations,
            "algorithm": self.algorithm,
            "all_possible_transitions": self.all_possible_transitions,
        }

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``config.json`` and ``model.crfsuite`` (CRFsuite's own format) to a new folder atomically."""
        self._require_model()
        assert self._model is not None
        config = {
            "format": FORMAT,
            "version": VERSION,
            "hyperparameters": self.hyperparameters(),
            "labels": self.labels,
        }
        with atomic_directory(directory, overwrite=overwrite) as tmp:
            (tmp / MODEL_FILE).write_bytes(self._model)
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> FeatureCRF:
        """Read a folder written by :meth:`save`; anything else is an InputError."""
        directory = Path(directory)
        config_path, model_path = directory / CONFIG_FILE, directory / MODEL_FILE
        if not config_path.is_file() or not model_path.is_file():
            raise InputError(
                f"is not a feature-CRF model folder; expected {CONFIG_FILE} and {MODEL_FILE}", path=directory
            )
        try:
            config = json.loads(config_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"cannot be read as JSON ({error})", path=config_path) from error
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise InputError(f"field 'format' is not {FORMAT!r}; not a feature-CRF model", path=config_path)
        if config.get("version") != VERSION:
            raise InputError(
                f"field 'version' is {config.get('version')!r}; this clinfm reads version {VERSION}",
                path=config_path,
            )
        check_fields(config, {"labels": each(text(), 1, MAX_LABELS)}, config_path, ignore_unknown=True)
        hyperparameters = nested(config, "hyperparameters", config_path)
        check_fields(
            hyperparameters,
            HYPERPARAMETER_RULES,
            config_path,
            section="hyperparameters",
            required=("algorithm",),
        )
        model = cls(**hyperparameters)
        try:
            model._open(model_path.read_bytes())
        except (OSError, ValueError) as error:
            raise InputError(f"is not a CRFsuite model ({error})", path=model_path) from error
        return model
