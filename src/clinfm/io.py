"""Atomic writes (a crash leaves the old state or the new one, never half), one run per output, and
checked reads."""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clinfm.errors import InputError

log = logging.getLogger(__name__)


def _clinfm_output(path: Path) -> bool:
    """A folder clinfm may replace: a MEDS dataset, a clinfm run, checkpoint, demo or prepared ECG set,
    or an empty folder."""
    markers = (
        "metadata/dataset.json",
        "summary.json",
        "run.json",
        "model.safetensors",
        "model.crfsuite",
        "ecg_set.json",
    )
    return path.is_dir() and (any((path / marker).exists() for marker in markers) or not any(path.iterdir()))


def check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``, and even then anything but a clinfm output.

    Checked first, before any work is done, so a user's folder is never replaced by mistake.
    """
    out = Path(out).resolve()
    if out == Path.cwd().resolve() or out in Path.cwd().resolve().parents:
        raise InputError("is the current folder (or holds it); name a new folder for the output", path=out)
    if out.exists() and not overwrite:
        raise InputError("output already exists; choose another path or pass overwrite", path=out)
    if out.exists() and not _clinfm_output(out):
        raise InputError(
            "exists and is not a MEDS dataset or clinfm output; refusing to replace it", path=out
        )
    return out


# Outputs this process holds (resolved path -> [lock file, depth]): a converter holds its OUT while
# staging, then again while writing it.
_held: dict[Path, list] = {}


@contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold ``out`` for the length of a run: a second clinfm run into the same output is refused
    while this one lasts (both would report success and the last rename would win), and what a
    killed earlier run left beside it is cleared first (:func:`_clear_leftovers`). Re-entrant."""
    out = Path(out).resolve()
    if out in _held:
        _held[out][1] += 1
        try:
            yield out
        finally:
            _held[out][1] -= 1
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_name(f".{out.name}.lock")
    handle = _lock_file(lock, out)
    _held[out] = [handle, 1]
    try:
        _clear_leftovers(out)
        yield out
    finally:
        del _held[out]
        lock.unlink(missing_ok=True)
        handle.close()


def _lock_file(lock: Path, out: Path):
    """An open, exclusively locked ``lock`` file; the file must still be the one at that path once
    locked (a finishing run unlinks it, and a lock on an unlinked file would guard nothing)."""
    for _ in range(10):
        handle = open(lock, "a")  # noqa: SIM115 - held open for the run, closed by output_lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError(
                "another clinfm run is writing this output now; wait for it to finish or choose another path",
                path=out,
            ) from None
        try:
            if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()
    raise InputError("could not take the output's lock file; is another run starting?", path=lock)


def _clear_leftovers(out: Path) -> None:
    """Remove what a killed run into ``out`` left beside it: its temporary and staging folders
    (named after ``out``, so no other output's are touched), and put back an old output that a
    run killed between the two renames of :func:`replace_directory` had moved aside."""
    leftover = re.compile(rf"\.{re.escape(out.name)}\.(?:[a-z0-9_]{{8}}\.tmp|staging-[a-z0-9_]{{8}})")
    stale = [p for p in out.parent.iterdir() if leftover.fullmatch(p.name) and p.is_dir()]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        log.info("removed %d folder(s) left beside %s by an interrupted run", len(stale), out)
    old = out.with_name(f".{out.name}.old")
    if old.is_dir() and not out.exists():
        old.rename(out)
        log.warning("put back %s: a run replacing it was stopped after moving it aside", out)
    elif old.is_dir():
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; move it to ``out`` only if the block succeeds.

    An existing ``out`` is refused unless ``overwrite`` is set (see :func:`check_output`), and even
    then it is replaced only after the new output is complete; if the swap itself fails, the old
    output is put back. Nothing the user had is lost to a failed run. ``out`` is held for the run
    (:func:`output_lock`), and checked again before the swap in case something else wrote it.
    """
    out = check_output(out, overwrite)
    with output_lock(out):
        check_output(out, overwrite)  # again, held: an output a killed run had moved aside is back
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            yield tmp
            check_output(out, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_directory(tmp, out)


def replace_directory(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an old ``out`` is put back if the move fails."""
    if not out.exists():
        tmp.rename(out)
        return
    trash = out.with_name(f".{out.name}.old")
    shutil.rmtree(trash, ignore_errors=True)
    out.rename(trash)
    try:
        tmp.rename(out)
    except OSError:
        trash.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def write_json_atomic(path: str | os.PathLike, payload: object) -> None:
    """Write JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def write_parquet_atomic(
    frame, path: str | os.PathLike, *, metadata: dict[bytes, bytes] | None = None
) -> Path:
    """Write a Polars frame as Parquet through a temporary file and a rename, with ``metadata``
    added to the file's schema (e.g. which encoder made its vectors)."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.to_arrow()
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_json_document(path: str | os.PathLike, *, format: str, version: int, what: str) -> dict:
    """A JSON file clinfm wrote (a vocabulary, a checkpoint config): InputError naming the file
    unless it is readable, of this ``format`` and of this ``version``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {what}: {error}", path=path) from None
    if not isinstance(payload, dict) or payload.get("format") != format:
        raise InputError(f"not {what} (expected format {format!r})", path=path)
    if payload.get("version") != version:
        raise InputError(f"unsupported {what} version {payload.get('version')!r}", path=path)
    return payload


def read_csv_rows(
    path: str | os.PathLike, *, what: str
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The column names and rows of a UTF-8 CSV, each row with its line number.

    One InputError naming the file and line when it cannot be read, has no header, names a column
    twice, or has a row with more or fewer fields than the header (csv.DictReader would fill the
    missing ones with None and hide the extra ones). Blank lines are skipped.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: Excel's byte-order mark
            reader = csv.reader(file)
            columns = next(reader, [])
            if not columns:
                raise InputError(f"line 1: no header line (expected the {what}'s column names)", path=path)
            repeated = next((c for c in columns if columns.count(c) > 1), None)
            if repeated is not None:
                raise InputError(f"line 1: column {repeated!r} appears twice", path=path)
            rows = [(reader.line_num, fields) for fields in reader if fields]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the {what}: {error}", path=path) from None
    for line, fields in rows:
        if len(fields) != len(columns):
            raise InputError(
                f"line {line}: {len(fields)} field{'s' * (len(fields) != 1)}, expected {len(columns)} "
                f"({_listed(columns)})",
                path=path,
            )
    return columns, [(line, dict(zip(columns, fields, strict=True))) for line, fields in rows]


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + f", ... ({len(names) - limit} more)" if len(names) > limit else shown
