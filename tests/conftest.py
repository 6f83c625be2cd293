"""Shared fixtures: two small synthetic sites, one coded in ICD-9-CM and one in ICD-10-CM, and one
``clinfm demo --quick`` run in a terminal (its console, folders and reports are checked by the CLI,
terminal and browser tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def site_icd9(tmp_path_factory) -> Path:
    from clinfm import synthesize

    return synthesize(
        tmp_path_factory.mktemp("sites") / "site_a", patients=600, site="site_a", coding="icd9", seed=1
    )


@pytest.fixture(scope="session")
def site_icd10(tmp_path_factory) -> Path:
    from clinfm import synthesize

    return synthesize(
        tmp_path_factory.mktemp("sites") / "site_b", patients=600, site="site_b", coding="icd10", seed=1
    )


DEMO_TIMEOUT_S = 900  # the quick demo takes under 2 min on 2 idle cores; CI machines can be loaded


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """``clinfm demo --quick`` run once, under a pseudo-terminal: (its output folder, its result)."""
    from _terminal import command_env, in_terminal

    base = tmp_path_factory.mktemp("quick-demo")
    env = command_env(CLINFM_CACHE=str(base / "embedding-cache"))
    out = base / "demo"
    args = ("demo", "--quick", "--out", out)  # as the README runs it: its test sets are sized for that
    return out, in_terminal(*args, env=env, timeout=DEMO_TIMEOUT_S)
