"""Labels for ECG windows: a CSV keyed by record or patient, a column of the windows table (such as
``rhythm``), or a field of the records' headers (a Challenge header's ``Age``, ``Sex``, ``Dx``).

A label is named ``COLUMN`` (numbers: 0/1 makes a binary task, anything else a regression) or
``COLUMN=VALUE`` (binary: 1 where the column equals VALUE, 0 where it holds another value). Windows
without a value (a patient missing from the CSV, an empty cell, a window whose rhythm changes
inside it) are left out of that label's probe, and counted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinfm.errors import InputError
from clinfm.io import read_csv_rows

KEYS = ("record_id", "patient_id")  # a labels CSV joins on the first of these it has


@dataclass(frozen=True)
class Label:
    """One probe target over the windows: values (NaN where missing) and its task."""

    name: str
    values: np.ndarray
    task: str  # binary | regression

    @property
    def known(self) -> np.ndarray:
        return ~np.isnan(self.values)


def read_labels(path: str | os.PathLike) -> tuple[str, dict[str, dict[str, str]]]:
    """(key column, {key: {column: value}}) from a labels CSV with a record_id or patient_id column.

    Every row must hold one field per column and a key of its own; a column of numbers must hold
    finite ones (an empty cell is a missing value). Messages name the line and the column, never a
    cell's value: keys and labels can identify a patient.
    """
    path = Path(path)
    columns, rows = read_csv_rows(path, what="labels CSV")
    key = next((k for k in KEYS if k in columns), None)
    if key is None:
        raise InputError(
            f"line 1: no record_id or patient_id column (columns: {', '.join(columns)})", path=path
        )
    table: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    for line, row in rows:
        if not row[key].strip():
            raise InputError(f"line {line}, column {key}: empty, expected the row's {key}", path=path)
        if row[key] in lines:
            raise InputError(f"line {line}, column {key}: the same as line {lines[row[key]]}", path=path)
        table[row[key]], lines[row[key]] = row, line
    for column in columns:
        if column not in KEYS:
            _check_finite(path, column, rows)
    return key, table


def _check_finite(path: Path, column: str, rows: list[tuple[int, dict[str, str]]]) -> None:
    """In a column of numbers, refuse inf and nan: a probe cannot fit them, and a missing value is
    an empty cell. A column with text in it (M/F, or "Inf" for an inferior infarct) is left alone."""
    cells = [(line, row[column].strip()) for line, row in rows if row[column].strip()]
    if not all(_is_number(cell) for _, cell in cells):
        return
    for line, cell in cells:
        if not math.isfinite(float(cell)):
            raise InputError(
                f"line {line}, column {column}: not a finite number, expected a number "
                "(or an empty cell for a missing value)",
                path=path,
            )


def label_values(
    spec: str,
    windows: list[dict],
    labels: tuple[str, dict[str, dict[str, str]]] | None = None,
    records: dict[str, dict[str, str]] | None = None,
) -> Label:
    """The label ``spec`` (``COLUMN`` or ``COLUMN=VALUE``) for each window, from the labels CSV when
    it has that column, else from the windows table itself (e.g. ``rhythm=AFIB``), else from the
    header fields of each window's record (``records``: record_id -> fields; keys lower-case)."""
    column, _, wanted = spec.partition("=")
    cells = _cells(column, windows, labels, records or {})
    if wanted:
        values = np.array([np.nan if not c else float(c == wanted) for c in cells])
        if not (values == 1).any():
            raise InputError(f"label {spec}: no window has {column} = {wanted!r}")
        return _checked(Label(spec, values, "binary"))
    try:
        values = np.array([float(c) if c else np.nan for c in cells])
    except ValueError:
        example = next(c for c in cells if c and not _is_number(c))
        raise InputError(
            f"label {column}: holds text such as {example!r}; "
            f"name the value to predict, e.g. --label {column}={example}"
        ) from None
    if np.isinf(values).any():  # a labels CSV refuses them on reading; a header field or table may not
        raise InputError(
            f"label {column}: {int(np.isinf(values).sum())} windows have an infinite value, expected numbers"
        )
    known = values[~np.isnan(values)]
    if not len(known):
        raise InputError(f"label {column}: no window has a value")
    return _checked(Label(spec, values, "binary" if np.isin(known, (0, 1)).all() else "regression"))


def _checked(label: Label) -> Label:
    """A binary label needs both classes among the labelled windows."""
    classes = np.unique(label.values[label.known])
    if label.task == "binary" and len(classes) < 2:
        raise InputError(
            f"label {label.name}: every labelled window is {classes[0]:g}; a probe needs both classes"
        )
    return label


def _cells(column: str, windows: list[dict], labels, records: dict[str, dict[str, str]]) -> list[str]:
    if labels is not None:
        key, table = labels
        first = next(iter(table.values()), {})
        if column in first:
            return [(table.get(w[key]) or {}).get(column, "").strip() for w in windows]
    if windows and column in windows[0]:
        return [str(w[column]).strip() for w in windows]
    if any(column.lower() in fields for fields in records.values()):
        return [(records.get(w["record_id"]) or {}).get(column.lower(), "").strip() for w in windows]
    header = {key for fields in records.values() for key in fields}
    available = sorted(
        {*(next(iter(labels[1].values()), {}) if labels else {}), *(windows[0] if windows else {}), *header}
    )
    raise InputError(f"no label column {column!r} (columns: {', '.join(available)})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
