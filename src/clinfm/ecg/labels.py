"""Labels for ECG windows: a CSV keyed by record or patient, a column of the windows table (such as
``rhythm``), or a field of the records' headers (a Challenge header's ``Age``, ``Sex``, ``Dx``).

A label is named ``COLUMN`` (numbers: 0/1 makes a binary task, anything else a regression) or
``COLUMN=VALUE`` (binary: 1 where the column equals VALUE, 0 where it holds another value). Windows
without a value (a patient missing from the CSV, an empty cell, a window whose rhythm changes
inside it) are left out of that label's probe, and counted.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinfm.errors import InputError

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
    """(key column, {key: {column: value}}) from a labels CSV with a record_id or patient_id column."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            columns = reader.fieldnames or []
            key = next((k for k in KEYS if k in columns), None)
            if key is None:
                raise InputError(
                    f"line 1: no record_id or patient_id column (columns: {', '.join(columns) or 'none'})",
                    path=path,
                )
            table = {}
            for line, row in enumerate(reader, start=2):
                if row[key] in table:
                    raise InputError(f"line {line}: {key} {row[key]!r} appears twice", path=path)
                table[row[key]] = row
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the labels CSV: {error}", path=path) from None
    return key, table


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
