"""Atomic writes (a crash leaves the old state or the new one, never half), and checked reads."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clinfm.errors import InputError


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


@contextmanager
def atomic_directory(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; move it to ``out`` only if the block succeeds.

    An existing ``out`` is refused unless ``overwrite`` is set (see :func:`check_output`), and even
    then it is replaced only after the new output is complete; if the swap itself fails, the old
    output is put back. Nothing the user had is lost to a failed run.
    """
    out = check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
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
