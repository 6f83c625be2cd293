"""Progress bars for long steps: shown by the CLI (rich, on stderr), silent in library use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_enabled = False


def enabled() -> bool:
    """Whether progress bars are shown (the CLI turns them on for a terminal)."""
    return _enabled


def enable(on: bool = True) -> None:
    """Turn progress display on (the CLI does this) or off."""
    global _enabled
    _enabled = on


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items``, showing a progress bar when enabled."""
    if not _enabled:
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)


@contextmanager
def status(description: str) -> Iterator[None]:
    """A spinner for one step whose length is unknown (a single streaming query)."""
    if not _enabled:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(description):
        yield
