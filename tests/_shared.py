"""Where the real data sets live: ../shared/data beside the repository (not in a user's clone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the real data set at {path} (../shared/data is not in a user's clone)")
    return path


PROGRESS_LINE = re.compile(r"^\[\s*\d+:\d\d\] ")  # a piped command's progress: "[  0:12] tokenizing ..."


def message_lines(text: str) -> list[str]:
    """The non-empty lines of a command's output that are not progress lines."""
    return [line for line in text.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
