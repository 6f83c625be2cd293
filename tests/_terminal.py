"""Running clinfm as a user does: under a pseudo-terminal (rich's live display, as in a real terminal,
which CI never has) or piped (stamped progress lines). Shared by the terminal, CLI and browser tests."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import clinfm

TIMEOUT_S = 300  # per command, on a slow, loaded CI machine


ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase line
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, links
    r"|\x1b[()][0-9A-Za-z]"  # character sets
    r"|\x1b[@-Z\\-_=>78]"  # other two-byte escapes
)


def strip_ansi(text: str) -> str:
    """The text a terminal shows, as lines: escapes removed, carriage returns as line breaks."""
    return ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a command in an xterm 100 columns wide, running this checkout's clinfm."""
    src = str(Path(clinfm.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("CLINFM_DEBUG", "NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", COLUMNS="100", LINES="40", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


class PtyCommand:
    """``python -m clinfm ARGS`` with a pseudo-terminal as its stdin, stdout, stderr and controlling
    terminal (so writing ``\\x03`` to it is Ctrl-C); its output is read as it comes (a full pty buffer
    would block the command)."""

    def __init__(self, args, env: dict[str, str], cwd: Path | None = None):
        self.args = [str(a) for a in args]
        argv = [sys.executable, "-m", "clinfm", *self.args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: a new session whose controlling terminal is the pty
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        _set_size(fd, rows=40, columns=100)
        self.raw = bytearray()
        self.status: int | None = None
        self.eof = False

    @property
    def text(self) -> str:
        return strip_ansi(self.raw.decode("utf-8", errors="replace"))

    def _read(self, wait_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], wait_s)
        if not ready:
            return
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal has ended
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            self.eof = True

    def _reap(self) -> None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def read_until(self, pattern: str, timeout: float) -> re.Match:
        """Read until the screen text matches ``pattern``; fail if the command ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.eof:
            found = re.search(pattern, self.text)
            if found:
                return found
            self._read(0.2)
        found = re.search(pattern, self.text)
        if found:
            return found
        self.kill()
        pytest.fail(f"{pattern!r} never appeared in `clinfm {' '.join(self.args)}`:\n{self.text[-4000:]}")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def finish(self, timeout: float) -> CommandResult:
        """Read to the end of the output and wait for the exit code; past ``timeout`` the command is
        killed and the test fails with its output."""
        deadline = time.monotonic() + timeout
        ended_at = None
        while not self.eof:
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"`clinfm {' '.join(self.args)}` ran past {timeout:.0f} s:\n{self.text[-4000:]}")
            self._read(0.2)
            self._reap()
            if self.status is not None:  # ended; a process it started may still hold the terminal
                ended_at = ended_at or time.monotonic()
                if time.monotonic() - ended_at > 10:
                    break
        os.close(self.fd)
        if self.status is None:
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
        return CommandResult(self.args, self.status, self.text)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the child leads its own session and group
            os.killpg(self.pid, signal.SIGKILL)
        if self.status is None:
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)


def _set_size(fd: int, rows: int, columns: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


@dataclass
class CommandResult:
    args: list[str]
    code: int
    output: str  # what the terminal showed (escapes stripped), or stdout + stderr when piped
    stderr: str = ""

    def ok(self) -> CommandResult:
        """Exit code 0 and no traceback; the output is the failure message otherwise."""
        shown = f"`clinfm {' '.join(self.args)}` (exit code {self.code}):\n{self.output[-6000:]}"
        assert self.code == 0, shown
        assert "Traceback" not in self.output, shown
        return self


def in_terminal(*args, env: dict[str, str], timeout: float = TIMEOUT_S) -> CommandResult:
    return PtyCommand(args, env).finish(timeout)


def piped(*args, env: dict[str, str], timeout: float = TIMEOUT_S) -> CommandResult:
    """The command with stdout and stderr to pipes (CI, nohup): stderr is not a terminal."""
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [sys.executable, "-m", "clinfm", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return CommandResult([str(a) for a in args], done.returncode, done.stdout + done.stderr, done.stderr)
