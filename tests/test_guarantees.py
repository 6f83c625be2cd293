"""Privacy promises of docs/guarantees.md that no other test module owns: no hub is reached unless the
user allows it, patient-note vectors stay with their dataset, and report pages escape what a run
recorded."""

from __future__ import annotations

import json
import socket

import pytest

from clinfm.errors import InputError


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test, naming where it went."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise AssertionError(f"a network connection was attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_the_hub_stays_offline_whatever_the_environment_says(monkeypatch, no_network):
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    from clinfm.ner.model import pretrained_encoder
    from clinfm.pretrained import ALLOW_DOWNLOAD

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.delenv(ALLOW_DOWNLOAD, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(InputError, match="allow-download"):
        pretrained_encoder("some-org/a-model-not-on-this-machine")
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert no_network == []


def test_allow_download_is_an_explicit_option(monkeypatch):
    from typer.testing import CliRunner

    from clinfm.cli import app
    from clinfm.pretrained import ALLOW_DOWNLOAD, downloads_allowed

    monkeypatch.setenv(ALLOW_DOWNLOAD, "0")  # restored (unset) after the test: the option sets it
    assert not downloads_allowed()
    assert "--allow-download" in CliRunner().invoke(app, ["--help"]).output
    CliRunner().invoke(app, ["--allow-download", "validate", "--help"])
    assert downloads_allowed()


def test_note_vectors_are_cached_beside_their_dataset(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from clinfm.fuse.recipes import NOTE_CACHE, note_cache

    monkeypatch.delenv("CLINFM_CACHE", raising=False)
    assert note_cache(tmp_path, True) == tmp_path / NOTE_CACHE
    assert note_cache(tmp_path, False) is False
    assert note_cache(tmp_path, tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setenv("CLINFM_CACHE", str(tmp_path / "env"))
    assert note_cache(tmp_path, True) is True  # the embedding cache reads $CLINFM_CACHE itself


def test_a_read_only_dataset_gets_no_note_cache(tmp_path, monkeypatch):
    """Permissions are simulated: CI runs as root, for whom a read-only folder is still writable."""
    pytest.importorskip("torch")
    import clinfm.fuse.recipes as recipes

    monkeypatch.delenv("CLINFM_CACHE", raising=False)
    monkeypatch.setattr(recipes.os, "access", lambda path, mode: False)
    assert recipes.note_cache(tmp_path, True) is False
    assert not (tmp_path / recipes.NOTE_CACHE).exists()


def test_report_escapes_every_key_and_value_a_run_recorded(tmp_path):
    from clinfm.report.html import write_report

    run = {
        "kind": "finetune",
        "title": "t",
        "task": {"name": "<b>task</b>", "type": "binary"},
        "data": {"<script>alert(1)</script>": "<img src=x onerror=alert(2)>", "dataset": "<i>d</i>"},
    }
    (tmp_path / "run.json").write_text(json.dumps(run))
    page = write_report(tmp_path).read_text()
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<i>d</i>" not in page
    assert "&lt;script&gt;" in page
