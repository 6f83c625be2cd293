"""Progress of long commands: one display, owned by clinfm.

Three modes:

- ``live`` (the CLI, stderr a terminal): one rich live display for the whole command. Nested steps
  (a demo section -> pre-training -> epochs) are rows of that one display, indented by depth;
  a finished step leaves one line above it (``✓ tokenizing  4.2 s``). Log records print above the
  display too, so nothing tears it.
- ``plain`` (the CLI, stderr piped: CI, ``nohup``, a notebook's log): one line per step started and
  finished, per item of a slow loop and per epoch, each stamped with the time since the command
  began, so a long command is never silent for long.
- ``off`` (library use): nothing is shown.

Libraries never draw their own bars: the training engine turns Lightning's off and reports epochs
here through :class:`EpochProgress`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
MODES = ("off", "live", "plain")
PLAIN_EVERY_S = 2.0  # a plain loop prints an item's line only if this long has passed since the last
LIVE_LINE_AFTER_S = 1.0  # a finished step leaves a line above the live display if it took this long


class _Display:
    """The state of the one display: its mode, when the command began, and the live rows."""

    def __init__(self) -> None:
        self.mode = "off"
        self.began = time.monotonic()
        self.depth = 0
        self.progress = None  # rich.progress.Progress while a live step is open
        self.console = None

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.began)
        return f"{seconds // 60:3d}:{seconds % 60:02d}"

    def terminal(self):
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True)
        return self.console

    def line(self, text: str) -> None:
        """One line for the user: above the live display, or stamped on stderr."""
        if self.mode == "live":
            self.terminal().print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(f"[{self.elapsed()}] {text}\n")
            sys.stderr.flush()

    def open(self, description: str, total: float | None) -> int:
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.terminal(),
                transient=True,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self.progress.start()
        return self.progress.add_task("  " * self.depth + description, total=total)

    def close(self, task: int) -> None:
        self.progress.remove_task(task)
        if self.depth == 0:
            self.progress.stop()
            self.progress = None


_display = _Display()


def mode() -> str:
    return _display.mode


def enabled() -> bool:
    """Whether progress is shown at all (the CLI turns it on)."""
    return _display.mode != "off"


def enable(on: bool = True) -> None:
    """Show progress as a command does: a live display when stderr is a terminal, plain lines if not."""
    set_mode(("live" if sys.stderr.isatty() else "plain") if on else "off")


def set_mode(new: str) -> None:
    if new not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {new!r}")
    stop()
    _display.mode = new
    _display.began = time.monotonic()


def stop() -> None:
    """Close the live display, if one is open (an interrupted command, before its last line)."""
    if _display.progress is not None:
        _display.progress.stop()
        _display.progress = None
    _display.depth = 0


def note(text: str) -> None:
    """A line for the user that keeps the display intact (log records come this way too)."""
    if _display.mode == "off":
        sys.stderr.write(text + "\n")
    else:
        _display.line(text)


def _seconds(began: float) -> str:
    seconds = time.monotonic() - began
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


@contextmanager
def step(description: str, total: float | None = None, *, announce: bool = True) -> Iterator[callable]:
    """One step of a command, possibly nested in another; yields ``advance(n=1)``.

    Live: a row of the display (a bar when ``total`` is known, else a pulse) while it runs, and a
    line when it is done. Plain: a line when it starts and one when it is done, with its time.
    ``announce=False`` keeps the row but prints no lines (an epoch, which reports itself).
    """
    if _display.mode == "off":
        yield lambda n=1: None
        return
    began = time.monotonic()
    if _display.mode == "plain":
        if announce:
            _display.line(f"{description} ...")
        yield lambda n=1: None
        if announce:
            _display.line(f"{description}: done in {_seconds(began)}")
        return
    task = _display.open(description, total)
    _display.depth += 1
    try:
        yield lambda n=1: _display.progress.advance(task, n)
    finally:
        _display.depth -= 1
        _display.close(task)
    if announce and time.monotonic() - began >= LIVE_LINE_AFTER_S:
        _display.line(f"{'  ' * _display.depth}✓ {description}  {_seconds(began)}")


@contextmanager
def status(description: str) -> Iterator[None]:
    """A step whose length is unknown (a single streaming query)."""
    with step(description):
        yield


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` as one step; plain output names each item done when the loop is slow."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with step(description, total) as advance:
        last_line = time.monotonic()
        for done, item in enumerate(items, start=1):
            yield item
            advance()
            slow = time.monotonic() - last_line >= PLAIN_EVERY_S
            if _display.mode == "plain" and (slow or done == total):
                _display.line(f"{description}: {done}/{total if total is not None else '?'}")
                last_line = time.monotonic()


class LogToDisplay(logging.Handler):
    """Log records as lines of the display (a plain handler would write through the live rows)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            note(self.format(record))
        except Exception:  # a log line must never end a command
            self.handleError(record)
