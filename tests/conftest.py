"""Shared fixtures: two small synthetic sites, one coded in ICD-9-CM and one in ICD-10-CM."""

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
