"""The one error type a user sees: bad input, described in one line."""

from __future__ import annotations


class InputError(Exception):
    """Input the user can fix: a missing table, a wrong column, an unparseable date.

    The message is a single line naming the file, the row or column, and what was expected.
    The CLI prints it and exits with code 2, without a traceback.
    """

    def __init__(self, message: str, *, path: object | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: ``kill``, a scheduler's time limit, ``docker stop``).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it and every
    cleanup on the way out runs: resumable state is kept, half-written output removed. The CLI
    turns it into one line and exit code 143.
    """
