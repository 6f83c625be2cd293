"""Tampered checkpoints of every kind are refused in one line naming the file and the field, before
a model is built: settings out of bounds, of the wrong type or missing, garbage JSON, vocabularies
that could hold a single patient's code, NaN, float64 or mis-shaped weights.

Each kind saves one tiny real checkpoint (module fixtures); each case copies it, changes one thing
and loads it. The CLI cases check the user's view: exit code 2, one line, no traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, DistilBertConfig
from typer.testing import CliRunner

from _shared import message_lines
from clinfm.claims.batches import CategoryMap
from clinfm.claims.checkpoint import ClaimsModel
from clinfm.claims.model import ClaimPT, ClaimPTConfig
from clinfm.claims.tokenizer import TokenizerConfig
from clinfm.cli import app
from clinfm.ecg.baselines import pretraining_model
from clinfm.ecg.checkpoint import load_encoder, save_encoder
from clinfm.ecg.corpus import PrepareSettings
from clinfm.ecg.model import ResNetConfig
from clinfm.errors import InputError
from clinfm.fuse.labs import LabEncoderConfig, MaskedLabModel, ValueScaler
from clinfm.fuse.model import FusionConfig, FusionModel
from clinfm.fuse.recipes import (
    InputSettings,
    LabBranch,
    load_fusion,
    load_lab_branch,
    save_fusion,
    save_lab_branch,
)
from clinfm.ner.checkpoint import load_tagger, save_tagger
from clinfm.ner.data import train_wordpiece
from clinfm.ner.document import Sentence
from clinfm.ner.features import FeatureCRF
from clinfm.ner.model import Tagger, TaggerConfig
from clinfm.train.engine import clone
from clinfm.vocab.vocabulary import Vocabulary

DELETE = object()  # set_json's value that removes the field


def set_json(file: str, *keys: str | int, value: object) -> Callable[[Path], tuple[str, ...]]:
    """A tamper that sets (or, with DELETE, removes) one field of a JSON file of the checkpoint; it
    returns what the message must name: the file."""

    def tamper(folder: Path) -> tuple[str, ...]:
        path = folder / file
        payload = json.loads(path.read_text())
        node = payload
        for key in keys[:-1]:
            node = node[key]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        path.write_text(json.dumps(payload))
        return (file,)

    return tamper


def config(*keys: str, value: object) -> Callable[[Path], tuple[str, ...]]:
    return set_json("config.json", *keys, value=value)


def garbage(file: str) -> Callable[[Path], tuple[str, ...]]:
    def tamper(folder: Path) -> tuple[str, ...]:
        (folder / file).write_text("{not json")
        return (file,)

    return tamper


def weight(change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], tuple[str, ...]]:
    """A tamper that changes the first matrix of ``model.safetensors``; the message must name the
    file and the tensor."""

    def tamper(folder: Path) -> tuple[str, ...]:
        path = folder / "model.safetensors"
        state = load_file(path)
        name = next(name for name in sorted(state) if state[name].ndim == 2)
        state[name] = change(state[name]).contiguous()
        save_file(state, path)
        return path.name, name

    return tamper


def _nan(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[0] = float("nan")
    return tensor


NAN, FLOAT64, SHORT = weight(_nan), weight(lambda t: t.double()), weight(lambda t: t[:-1])


# ---------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def claims(tmp_path_factory) -> Path:
    vocab = Vocabulary(("ICD9CM/493.90", "ICD9CM/780.6", "RXNORM/1"), counted=True)
    categories = CategoryMap.from_pairs(("A", "B"), np.array([3, 4, 5]), ["A", "B", "A"], len(vocab))
    config = ClaimPTConfig.paper(len(vocab), len(categories), d_model=8, n_heads=2, d_ff=8, cls_hidden=8)
    model = ClaimsModel(ClaimPT(config), vocab, categories, TokenizerConfig.paper())
    return model.save(tmp_path_factory.mktemp("claims") / "ckpt")


@pytest.fixture(scope="module")
def ecg(tmp_path_factory) -> Path:
    config = ResNetConfig(
        leads=2, samples=64, stem_filters=4, kernel=3, units=((16, 4), (4, 8)), projection=8
    )
    folder = tmp_path_factory.mktemp("ecg") / "ckpt"
    save_encoder(
        folder, pretraining_model("pclr", config), "pclr", PrepareSettings(samples=64, leads=("I", "II"))
    )
    return folder


def _sentences() -> list[Sentence]:
    words, tags = ["Start", "metoprolol", "25", "mg", "daily"], ["O", "B-Drug", "O", "O", "O"]
    offsets = [(i * 12, i * 12 + len(word)) for i, word in enumerate(words)]
    return [Sentence(f"d{i}", tuple(words), tuple(offsets), tuple(tags)) for i in range(10)]


@pytest.fixture(scope="module")
def ner(tmp_path_factory) -> Path:
    tokenizer = train_wordpiece(_sentences(), 100, min_frequency=1)
    sizes = dict(
        vocab_size=len(tokenizer), dim=8, n_layers=1, n_heads=2, hidden_dim=8, max_position_embeddings=32
    )
    encoder = AutoModel.from_config(DistilBertConfig(**sizes))
    config = TaggerConfig(("O", "B-Drug", "I-Drug"), "crf", encoder.config.to_diff_dict(), "scratch")
    folder = tmp_path_factory.mktemp("ner") / "ckpt"
    return save_tagger(folder, Tagger(encoder, config), tokenizer)


@pytest.fixture(scope="module")
def crf(tmp_path_factory) -> Path:
    return FeatureCRF(max_iterations=5).fit(_sentences()).save(tmp_path_factory.mktemp("crf") / "ckpt")


def _lab_branch() -> LabBranch:
    vocab = Vocabulary(("LOINC/1", "LOINC/2"), counted=True)
    scaler = ValueScaler({"LOINC/1": 5.0, "LOINC/2": 1.0}, {"LOINC/1": 2.0, "LOINC/2": 0.5})
    config = LabEncoderConfig(dim=8, layers=1, heads=2, decoder_dim=8, decoder_layers=1, decoder_heads=2)
    return LabBranch(MaskedLabModel(len(vocab), config), vocab, scaler, True, {"LOINC/1": "mg/dL"})


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labs") / "ckpt"
    save_lab_branch(folder, _lab_branch(), {})
    return folder


@pytest.fixture(scope="module")
def fusion(tmp_path_factory) -> Path:
    branch = _lab_branch()
    model = FusionModel(clone(branch.model), 8, 2, FusionConfig.small(dim=8, kronecker_dim=2, club_hidden=8))
    cohort = SimpleNamespace(
        names=["asthma", "otitis"], settings=InputSettings(), note_counts={"encoder": "x"}
    )
    folder = tmp_path_factory.mktemp("fusion") / "ckpt"
    save_fusion(folder, model, branch, cohort, np.array([0.4, 0.6]))
    return folder


LOADERS = {
    "claims": ClaimsModel.load,
    "ecg": load_encoder,
    "ner": load_tagger,
    "crf": FeatureCRF.load,
    "labs": load_lab_branch,
    "fusion": load_fusion,
}


# ---------------------------------------------------------------------------------------- cases


VOCABULARY, LAB_VOCABULARY, CATEGORIES = "vocabulary.json", "lab_vocabulary.json", "categories.json"
#: (checkpoint fixture, tamper, what the message must say besides the file's name)
CASES = [
    # Claim-PT: the model, tokenizer and split settings, the vocabulary and the category map.
    ("claims", config("model_config", "d_model", value=1e9), "model_config.d_model = 1000000000.0"),
    ("claims", config("model_config", "d_model", value=-8), "model_config.d_model = -8, expected an integer"),
    ("claims", config("model_config", "n_layers", value=1e6), "model_config.n_layers = 1000000.0"),
    (
        "claims",
        config("model_config", "n_layers", value=97),
        "n_layers = 97, expected an integer from 1 to 96",
    ),
    ("claims", config("model_config", "n_heads", value=0), "model_config.n_heads = 0"),
    ("claims", config("model_config", "dropout", value="0.1"), 'dropout = "0.1", expected a number'),
    ("claims", config("model_config", "bias", value=1), "model_config.bias = 1, expected true or false"),
    ("claims", config("model_config", "vocab_size", value=DELETE), "vocab_size is missing, expected"),
    ("claims", config("model_config", value="garbage"), 'model_config = "garbage", expected an object'),
    ("claims", config("tokenizer", "max_visits", value=1e9), "tokenizer.max_visits = 1000000000.0"),
    ("claims", config("tokenizer", "max_codes", value=10**9), "tokenizer.max_codes = 1000000000"),
    ("claims", config("tokenizer", "keep", value=["first"]), 'tokenizer.keep = ["first"]'),
    ("claims", config("splits", "held_out", value="0.1"), 'splits.held_out = "0.1"'),
    ("claims", config("threshold", value=7), "threshold = 7"),
    ("claims", garbage("config.json"), "cannot read"),
    ("claims", set_json(VOCABULARY, "min_subjects", value=1), "min_subjects = 1"),
    ("claims", set_json(VOCABULARY, "counted", value=False), "counted = false"),
    ("claims", set_json(VOCABULARY, "counted", value=DELETE), "counted is missing"),
    ("claims", set_json(VOCABULARY, "codes", value=[1, 2, 3]), "codes[0] = 1"),
    ("claims", set_json(CATEGORIES, "names", value=5), "names = 5"),
    ("claims", set_json(CATEGORIES, "code_offsets", value=[0, 0, 0, 2, 1, 2, 3]), "code_offsets must rise"),
    ("claims", set_json(CATEGORIES, "code_offsets", value=[0, 0, 0, 0, 1.5, 2, 3]), "code_offsets[4] = 1.5"),
    ("claims", set_json(CATEGORIES, "category_ids", value=[0, 1, 9]), "category_ids name category 9"),
    # The ECG encoder: its shape, the window preparation and the objective.
    ("ecg", config("encoder", "stem_filters", value=1e9), "encoder.stem_filters = 1000000000.0"),
    ("ecg", config("encoder", "kernel", value=0), "encoder.kernel = 0"),
    ("ecg", config("encoder", "units", value="garbage"), 'encoder.units = "garbage"'),
    ("ecg", config("encoder", "temperature", value=0), "encoder.temperature = 0"),
    ("ecg", config("encoder", "dropout", value="x"), 'encoder.dropout = "x"'),
    ("ecg", config("encoder", value=DELETE), "encoder is missing"),
    ("ecg", config("objective", value=["pclr"]), 'objective = ["pclr"]'),
    ("ecg", config("prepare", "samples", value=10**9), "prepare.samples = 1000000000"),
    ("ecg", config("prepare", "leads", value=[]), "prepare.leads = []"),
    # The NER tagger: labels, head, lengths and the sizes in the encoder's Hugging Face config.
    ("ner", config("tagger", "labels", value="OBI"), 'tagger.labels = "OBI"'),
    ("ner", config("tagger", "head", value="lstm"), 'tagger.head = "lstm"'),
    ("ner", config("tagger", "max_length", value=1e9), "tagger.max_length = 1000000000.0"),
    ("ner", config("tagger", "encoder_config", "n_layers", value=1e6), "encoder_config.n_layers = 1000000.0"),
    ("ner", config("tagger", "encoder_config", "dim", value=-4), "tagger.encoder_config.dim = -4"),
    ("ner", config("tagger", "encoder_config", "dtype", value="float64"), 'encoder_config.dtype = "float64"'),
    ("ner", config("tagger", value=DELETE), "tagger is missing"),
    # The feature CRF: its hyperparameters.
    ("crf", config("hyperparameters", "max_iterations", value="100"), 'max_iterations = "100"'),
    ("crf", config("hyperparameters", "c1", value=float("nan")), "hyperparameters.c1 = NaN"),
    ("crf", config("hyperparameters", "algorithm", value=5), "hyperparameters.algorithm = 5"),
    # The lab encoder: its shape, vocabulary, value scaler and units.
    ("labs", config("encoder", "dim", value=0), "encoder.dim = 0"),
    ("labs", config("encoder", "layers", value=1e6), "encoder.layers = 1000000.0"),
    ("labs", config("encoder", "mask_ratio", value="0.5"), 'encoder.mask_ratio = "0.5"'),
    ("labs", config("units", value=[1]), "units = [1]"),
    ("labs", set_json(LAB_VOCABULARY, "min_subjects", value=1), "min_subjects = 1"),
    ("labs", set_json(LAB_VOCABULARY, "counted", value=False), "counted = false"),
    ("labs", set_json("lab_scaler.json", "std", "LOINC/1", value=0), 'std["LOINC/1"] = 0'),
    ("labs", set_json("lab_scaler.json", "mean", "LOINC/1", value="abc"), 'mean["LOINC/1"] = "abc"'),
    # The fusion model: its layers, inputs, diseases and thresholds, and its lab branch.
    ("fusion", config("fusion", "heads", value=0), "fusion.heads = 0"),
    ("fusion", config("fusion", "kronecker_dim", value=10**9), "fusion.kronecker_dim = 1000000000"),
    ("fusion", config("fusion", "fusion", value=3), "fusion.fusion = 3"),
    ("fusion", config("lab_encoder", "dim", value="8"), 'lab_encoder.dim = "8"'),
    ("fusion", config("note_dim", value=-1), "note_dim = -1"),
    ("fusion", config("diseases", value="asthma"), 'diseases = "asthma"'),
    ("fusion", config("thresholds", value=["a", "b"]), 'thresholds[0] = "a"'),
    ("fusion", config("inputs", "max_chunks", value=1e9), "inputs.max_chunks = 1000000000.0"),
    ("fusion", config("inputs", value=DELETE), "inputs is missing"),
    ("fusion", set_json(LAB_VOCABULARY, "min_subjects", value=1), "min_subjects = 1"),
]
# The weights of every kind that has them: NaN, float64 and a wrong shape.
CASES += [
    (kind, tamper, word)
    for kind in ("claims", "ecg", "ner", "labs", "fusion")
    for tamper, word in ((NAN, "NaN"), (FLOAT64, "is float64, expected float32"), (SHORT, "has shape"))
]


@pytest.mark.parametrize("kind, tamper, expected", CASES, ids=[f"{kind}: {said}" for kind, _, said in CASES])
def test_a_tampered_checkpoint_is_refused_in_one_line(kind, tamper, expected, request, tmp_path):
    folder = Path(shutil.copytree(request.getfixturevalue(kind), tmp_path / "ckpt"))
    named = tamper(folder)
    with pytest.raises(InputError) as error:
        LOADERS[kind](folder)
    message = str(error.value)
    assert "\n" not in message
    for part in (*named, expected):
        assert part in message, message


@pytest.mark.parametrize("kind", ["claims", "ecg", "ner", "crf", "labs", "fusion"])
def test_an_untouched_checkpoint_loads(kind, request):
    LOADERS[kind](request.getfixturevalue(kind))


# ---------------------------------------------------------------------------------------- the CLI

runner = CliRunner()


def _command(kind: str, folder: Path, tmp_path: Path) -> list[str]:
    out = str(tmp_path / "out")
    return {
        "claims": ["embed", "--from", folder, "--data", tmp_path / "data", "--out", f"{out}.parquet"],
        "ecg": ["ecg", "embed", "--model", folder, "--records", tmp_path / "records", "--out", out],
        "ner": ["ner", "predict", "--model", folder, "--in", tmp_path / "texts", "--out", out],
        "fusion": ["fuse", "evaluate", "--model", folder, "--data", tmp_path / "data", "--out", out],
    }[kind]


@pytest.mark.parametrize(
    "kind, tamper, expected",
    [
        ("claims", config("model_config", "n_heads", value=0), "model_config.n_heads = 0"),
        ("ecg", config("encoder", "stem_filters", value="wide"), 'encoder.stem_filters = "wide"'),
        ("ner", NAN, "NaN"),
        ("fusion", set_json(LAB_VOCABULARY, "min_subjects", value=1), "min_subjects = 1"),
    ],
    ids=["claims", "ecg", "ner", "fusion"],
)
def test_the_cli_says_what_is_wrong_in_one_line_with_exit_code_2(kind, tamper, expected, request, tmp_path):
    folder = Path(shutil.copytree(request.getfixturevalue(kind), tmp_path / "ckpt"))
    named = tamper(folder)
    result = runner.invoke(app, [str(part) for part in _command(kind, folder, tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(part in lines[0] for part in (*named, expected)), result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.parquet").exists()
