"""The feature-based CRF baseline: word features, learning a small task, saving without pickle."""

from __future__ import annotations

import json

import pytest

from clinfm.errors import InputError
from clinfm.ner.document import Document, Sentence
from clinfm.ner.features import FeatureCRF, word_features, word_shape
from clinfm.ner.synth import synthetic_documents
from clinfm.ner.text import to_sentences

TOKENS = ["Started", "metoprolol", "25", "mg", "PO", "bid", "."]


def _sentences(n, seed, **kwargs):
    return [s for d in synthetic_documents(n, seed=seed, **kwargs) for s in to_sentences(d)]


def _accuracy(predicted, sentences):
    pairs = [
        (p, g)
        for tags, s in zip(predicted, sentences, strict=True)
        for p, g in zip(tags, s.tags, strict=True)
    ]
    return sum(p == g for p, g in pairs) / len(pairs)


@pytest.fixture(scope="module")
def trained():
    return FeatureCRF(max_iterations=50).fit(_sentences(200, seed=0))


def test_word_shape():
    assert word_shape("Metoprolol") == "Xxxxx"
    assert word_shape("25") == "dd"
    assert word_shape("b.i.d.") == "x.x.x."
    assert word_shape("Metoprolol", max_run=1) == "Xx"


def test_features_of_a_token_and_its_neighbours():
    features = word_features(TOKENS, 3)  # "mg"
    assert features["lower"] == "mg" and features["unit"] is True and features["shape"] == "xx"
    assert features["suffix2"] == "mg" and features["length"] == "2"
    assert features["-1:lower"] == "25" and features["-1:is_digit"] is True
    assert features["-2:lower"] == "metoprolol" and features["-2:suffix3"] == "lol"
    assert features["+1:route"] is True and features["+2:frequency"] is True
    assert "BOS" not in features and "EOS" not in features and "is_title" not in features


def test_sentence_edges_are_marked_and_have_no_neighbours_beyond():
    first, last = word_features(TOKENS, 0), word_features(TOKENS, len(TOKENS) - 1)
    assert first["BOS"] is True and first["is_title"] is True
    assert not any(key.startswith(("-1:", "-2:")) for key in first)
    assert last["EOS"] is True and last["is_punct"] is True
    assert not any(key.startswith(("+1:", "+2:")) for key in last)
    assert word_features(["q4-6h"], 0).get("frequency") is True


def test_learns_a_small_synthetic_task_even_for_unseen_drugs(trained):
    seen, unseen = _sentences(60, seed=1), _sentences(60, seed=2, held_out_drugs=True)
    assert _accuracy(trained.predict(seen), seen) > 0.97
    assert _accuracy(trained.predict(unseen), unseen) > 0.95
    assert "B-Drug" in trained.labels and "O" in trained.labels
    assert trained.num_parameters > 0


def test_save_and_load_predict_identically_without_pickle(trained, tmp_path):
    sentences = _sentences(30, seed=3)
    folder = trained.save(tmp_path / "crf")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.crfsuite"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "clinfm-feature-crf" and config["version"] == 1
    assert config["labels"] == trained.labels and config["hyperparameters"]["max_iterations"] == 50
    loaded = FeatureCRF.load(folder)
    assert loaded.predict(sentences) == trained.predict(sentences)
    assert loaded.num_parameters == trained.num_parameters
    with pytest.raises(InputError):
        trained.save(folder)  # an existing folder is not replaced without overwrite
    assert FeatureCRF.load(trained.save(folder, overwrite=True)).labels == trained.labels


def test_load_of_a_folder_that_is_not_a_model_is_an_input_error(trained, tmp_path):
    with pytest.raises(InputError, match="not a feature-CRF model folder"):
        FeatureCRF.load(tmp_path)
    folder = trained.save(tmp_path / "crf")
    (folder / "model.crfsuite").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a CRFsuite model"):
        FeatureCRF.load(folder)
    (folder / "config.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="format"):
        FeatureCRF.load(folder)


def test_fit_without_tags_is_an_input_error():
    unlabelled = [Sentence("a", ("Aspirin", "daily"), ((0, 7), (8, 13)))]
    with pytest.raises(InputError, match="no sentence has tags"):
        FeatureCRF().fit(unlabelled)
    with pytest.raises(InputError, match="algorithm"):
        FeatureCRF(algorithm="adam")
    with pytest.raises(RuntimeError, match="not trained"):
        FeatureCRF().predict(unlabelled)


def test_a_rare_name_is_not_a_weight_of_the_saved_model(tmp_path):
    sentences = [s for d in synthetic_documents(200, seed=2) for s in to_sentences(d)]
    name = to_sentences(Document("rare", "Mr Zyxwquorth was given aspirin daily."))[0]
    tagged = Sentence(name.document, name.tokens, name.offsets, ("O",) * len(name.tokens))
    folder = FeatureCRF(max_iterations=20).fit([*sentences, tagged]).save(tmp_path / "crf")
    assert b"zyxwquorth" not in (folder / "model.crfsuite").read_bytes()
    assert b"daily" in (folder / "model.crfsuite").read_bytes()  # a frequent word's identity is kept
