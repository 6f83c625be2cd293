"""Concept embeddings: encoders (default MiniLM, tiny BERT, fake endpoint), cache, texts, CLI."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from clinfm.concepts import (
    EmbeddingCache,
    HFEncoder,
    OpenAIEncoder,
    code_texts,
    embed_texts,
    load_encoder,
    negated,
    neighbors,
)
from clinfm.concepts.cli import concepts_app
from clinfm.errors import InputError

ASTHMA9, ASTHMA10, HYPERTENSION = "ICD9CM/493.90", "ICD10CM/J45.909", "ICD10CM/I10"


def test_default_encoder_offline_puts_asthma_near_asthma(monkeypatch):
    from clinfm.vocab.icd import descriptions

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_encoder(None)
    assert encoder.name == "sentence-transformers:all-MiniLM-L6-v2" and encoder.dim == 384
    texts = code_texts([ASTHMA9, ASTHMA10, HYPERTENSION])
    assert texts["source"].to_list() == ["vocab"] * 3
    assert texts["text"][0] == descriptions().filter(pl.col("code") == ASTHMA9)["description"][0]
    vectors = encoder.encode(texts["text"].to_list())
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert neighbors(ASTHMA9, texts["code"], vectors, k=2)["code"].to_list() == [ASTHMA10, HYPERTENSION]


def _tiny_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["asthma", "fever", "cough", "not", "unspecified", "essential", "hypertension", "pain", "chest"]
    folder.mkdir()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=5 + len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def test_hf_encoder_cls_and_mean_on_a_tiny_bert(tmp_path):
    folder = _tiny_bert(tmp_path / "bert")
    texts = ["asthma", "chest pain acute", "not fever cough", "hypertension"]
    cls, mean = load_encoder(f"hf:{folder}"), load_encoder(f"hf:{folder}#mean")
    assert isinstance(cls, HFEncoder) and cls.pooling == "cls" and mean.pooling == "mean"
    assert cls.name.startswith("hf-cls:") and cls.name != mean.name and cls.dim == 32
    a, b = cls.encode(texts, batch_size=3), mean.encode(texts, batch_size=3)
    assert a.shape == b.shape == (4, 32) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert not np.allclose(a, b)
    assert np.allclose(cls.encode(texts[::-1])[::-1], a, atol=1e-5)  # batching does not change rows


def test_unknown_or_unavailable_encoder_says_how_to_fix(tmp_path):
    with pytest.raises(InputError, match="unknown encoder"):
        load_encoder("word2vec:foo")
    with pytest.raises(InputError, match="pass its folder: --encoder hf:/path/to/model"):
        load_encoder("hf:clinfm-test/not-a-model-anywhere")
    with pytest.raises(InputError, match="not a folder"):
        load_encoder(f"hf:{tmp_path}/missing/model")


class _FakeEndpoint(BaseHTTPRequestHandler):
    """An OpenAI-style /embeddings server: scripted failures, reversed ``data``, settable dimension."""

    def do_POST(self):
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state["requests"].append({"auth": self.headers.get("Authorization"), **body})
        if state["fail"]:
            self.send_response(state["fail"].pop(0))
            if state.get("retry_after") is not None:
                self.send_header("Retry-After", state["retry_after"])
            self.end_headers()
            return
        dim = state["dims"].pop(0) if state["dims"] else 3
        data = [{"index": i, "embedding": _fake_vector(t, dim)} for i, t in enumerate(body["input"])]
        payload = json.dumps({"data": data[::-1], "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def _fake_vector(text: str, dim: int = 3) -> list[float]:
    return [1.0, float(len(text)), float(ord(text[0]))] + [0.0] * (dim - 3)


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEndpoint)
    server.state = {"requests": [], "fail": [], "dims": []}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _openai(server, **options) -> OpenAIEncoder:
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    options = {"batch_size": 2, "backoff_s": 0.01, "max_rps": 1000, "max_tries": 3, **options}
    return load_encoder(
        {"kind": "openai", "model": "emb-small", "url": url, "api_key_env": "FAKE_KEY", **options}
    )


def test_endpoint_batches_orders_retries_and_keeps_the_key_off_plain_http(endpoint, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    endpoint.state["fail"] = [429, 500]
    encoder = _openai(endpoint)
    texts = ["asthma", "fever", "cough", "chest pain", "rash"]
    vectors = encoder.encode(texts)
    requests = endpoint.state["requests"]
    assert len(requests) == 2 + 3  # two retried failures, then ceil(5 / 2) batches
    assert [len(r["input"]) for r in requests[2:]] == [2, 2, 1]
    assert all(r["auth"] is None and r["model"] == "emb-small" for r in requests)  # http: no key sent
    expected = np.array([_fake_vector(t) for t in texts], np.float32)
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True))
    assert encoder.dim == 3 and encoder.name.startswith("openai:http://127.0.0.1")


def test_endpoint_waits_as_long_as_retry_after_asks(endpoint, monkeypatch):
    from clinfm.concepts import encoders

    waits = []
    monkeypatch.setattr(encoders.time, "sleep", waits.append)
    endpoint.state["fail"], endpoint.state["retry_after"] = [429], "7"
    _openai(endpoint, max_rps=0).encode(["a"])
    assert waits == [7.0]  # not the 0.01 s backoff
    endpoint.state["fail"], endpoint.state["retry_after"] = [503], "Wed, 21 Oct 2026 07:28:00 GMT"
    waits.clear()
    _openai(endpoint, max_rps=0).encode(["a"])
    assert waits == [0.01]  # a date is not understood: our own backoff


def test_endpoint_dimension_change_is_an_input_error(endpoint):
    endpoint.state["dims"] = [3, 5]
    with pytest.raises(InputError, match="5-d vectors, expected 3-d"):
        _openai(endpoint).encode(["a", "b", "c"])


def test_failing_endpoint_keeps_the_batches_done_before(endpoint, tmp_path):
    encoder, cache = _openai(endpoint), EmbeddingCache(tmp_path / "cache")
    texts = ["a1", "b22", "c333", "d4444", "e5"]
    endpoint.state["fail"] = []
    original = encoder._request

    def fail_after_two(batch):
        if len(endpoint.state["requests"]) >= 2:
            endpoint.state["fail"] = [503] * 5
        return original(batch)

    encoder._request = fail_after_two
    with pytest.raises(InputError, match="kept failing after 3 tries"):
        embed_texts(encoder, texts, cache=cache, chunk=2)
    encoder._request = original
    endpoint.state["fail"], endpoint.state["requests"] = [], []
    vectors = embed_texts(encoder, texts, cache=cache, chunk=2)
    assert [r["input"] for r in endpoint.state["requests"]] == [["e5"]]  # the first 4 came from the cache
    assert vectors.shape == (5, 3)


class _Counting:
    """A deterministic encoder that counts the texts it is asked for."""

    name, dim = "counting:v1", 4

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64):
        self.seen += texts
        raw = np.array([[1.0, len(t), t.count("a"), ord(t[0])] for t in texts], np.float32)
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def test_cache_embeds_each_distinct_text_once_and_keeps_order(tmp_path):
    encoder, cache = _Counting(), EmbeddingCache(tmp_path)
    texts = ["banana", "apple", "banana", "cherry", "apple"]
    first = embed_texts(encoder, texts, cache=cache, chunk=2)
    assert sorted(encoder.seen) == ["apple", "banana", "cherry"]
    encoder.seen.clear()
    second = embed_texts(encoder, ["cherry", *texts, "date"], cache=cache)
    assert encoder.seen == ["date"]
    assert np.array_equal(second[1:-1], first) and np.array_equal(second[0], first[3])
    assert np.array_equal(first, encoder.encode(texts))
    assert not list(tmp_path.rglob("*.tmp"))
    assert embed_texts(encoder, [], cache=False).shape == (0, 4)


def test_code_texts_prefers_csv_then_dataset_then_vocab_then_code(tmp_path, caplog):
    dataset = tmp_path / "meds"
    (dataset / "metadata").mkdir(parents=True)
    pl.DataFrame(
        {"code": ["LOCAL/1", ASTHMA9, "LOCAL/2"], "description": ["site asthma", "dataset asthma", ""]}
    ).write_parquet(dataset / "metadata" / "codes.parquet")
    csv = tmp_path / "mine.csv"
    csv.write_text("code,description\nLOCAL/1,my asthma\n")
    codes = ["LOCAL/1", ASTHMA9, HYPERTENSION, "LOCAL/2", "LOCAL/9", "LOCAL/1"]
    with caplog.at_level("INFO", logger="clinfm.concepts.texts"):
        frame = code_texts(codes, dataset=dataset, csv=csv)
    assert frame["code"].to_list() == codes[:5]
    assert frame["source"].to_list() == ["csv", "dataset", "vocab", "code", "code"]
    assert frame["text"].to_list()[:2] == ["my asthma", "dataset asthma"]
    assert frame["text"].to_list()[3:] == ["LOCAL/2", "LOCAL/9"]
    assert "2 of 5 codes have no description" in caplog.text
    assert code_texts(["LOCAL/1"], dataset=dataset)["text"].to_list() == ["site asthma"]
    bad = tmp_path / "bad.csv"
    bad.write_text("code,title\nA,b\n")
    with pytest.raises(InputError, match="missing \\['description'\\]"):
        code_texts(["A"], csv=bad)


def test_negated_texts():
    assert negated(["Fever", "Cough"]) == ["Not Fever", "Not Cough"]
    assert negated(pl.Series("text", ["Fever"])).to_list() == ["Not Fever"]


def _cli():
    app = typer.Typer()
    app.add_typer(concepts_app, name="concepts")
    return app


def _embed(codes, out, *options) -> list[str]:
    """``clinfm concepts embed`` arguments."""
    return ["concepts", "embed", "--codes", str(codes), "--out", str(out), *map(str, options)]


def test_cli_embed_then_neighbors(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text(f"{ASTHMA9}\n{ASTHMA10}\n{HYPERTENSION}\nLOCAL/xyz\n\n{ASTHMA9}\n")
    out = tmp_path / "emb.parquet"
    args = _embed(codes, out, "--cache", tmp_path / "c")
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert frame.columns == ["code", "text", "source", "embedding"]
    assert frame.schema["embedding"] == pl.Array(pl.Float32, 384) and frame.height == 4
    again = CliRunner().invoke(_cli(), args)
    assert again.exit_code == 2 and "already exists" in again.output
    result = CliRunner().invoke(
        _cli(), ["concepts", "neighbors", ASTHMA9, "--embeddings", str(out), "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.index(ASTHMA10) < result.output.index(HYPERTENSION)


def test_cli_neighbors_across_two_sites_files(tmp_path):
    site_a, site_b = tmp_path / "a.txt", tmp_path / "b.txt"
    site_a.write_text(f"{ASTHMA9}\n{HYPERTENSION}\n")
    site_b.write_text(f"{ASTHMA10}\n{HYPERTENSION}\n")  # a code both sites have is listed once
    files = []
    for codes in (site_a, site_b):
        files.append(codes.with_suffix(".parquet"))
        assert CliRunner().invoke(_cli(), _embed(codes, files[-1], "--cache", tmp_path / "c")).exit_code == 0
    args = ["concepts", "neighbors", ASTHMA9, "--embeddings", str(files[0]), "--embeddings", str(files[1])]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "/" in line and "nearest" not in line]
    assert ASTHMA10 in lines[0] and "file" in result.output  # the other site's asthma first
    assert sum(HYPERTENSION in line for line in lines) == 1


def test_cli_bad_encoder_is_one_error_line(tmp_path):
    codes = tmp_path / "codes.txt"
    codes.write_text("A\n")
    result = CliRunner().invoke(_cli(), _embed(codes, tmp_path / "o.parquet", "--encoder", "x:y"))
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "unknown encoder" in errors[0], result.output


def test_cli_embed_reads_every_code_of_a_meds_folder(tmp_path):
    import datetime as dt

    dataset = tmp_path / "meds"
    (dataset / "data").mkdir(parents=True)
    (dataset / "metadata").mkdir()
    pl.DataFrame({"code": ["LOCAL/flu"], "description": ["Influenza"]}).write_parquet(
        dataset / "metadata" / "codes.parquet"
    )
    pl.DataFrame(
        {
            "subject_id": [1, 1, 2],
            "time": [dt.datetime(2020, 1, 1)] * 3,
            "code": [ASTHMA10, "LOCAL/x", ASTHMA10],
        }
    ).write_parquet(dataset / "data" / "0.parquet")
    out = tmp_path / "emb.parquet"
    result = CliRunner().invoke(_cli(), _embed(dataset, out, "--no-cache"))
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out).sort("code")
    assert frame["code"].to_list() == [ASTHMA10, "LOCAL/flu", "LOCAL/x"]
    assert frame["source"].to_list() == ["vocab", "dataset", "code"]


def test_the_key_goes_only_to_https_endpoints(monkeypatch):
    from clinfm.concepts.encoders import OpenAIEncoder

    monkeypatch.setenv("FAKE_KEY", "sk-test")
    sent = {}

    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b'{"data": [{"index": 0, "embedding": [1.0, 0.0]}]}'

    def fake_urlopen(request, timeout):
        sent[request.full_url] = request.get_header("Authorization")
        return Answer()

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    for url in ("https://example.invalid/v1", "http://example.invalid/v1"):
        OpenAIEncoder("m", url, api_key_env="FAKE_KEY", max_rps=0).encode(["x"])
    assert sent == {
        "https://example.invalid/v1/embeddings": "Bearer sk-test",
        "http://example.invalid/v1/embeddings": None,
    }
