"""Binary prediction files in the meds-evaluation schema, so any MEDS tool can score a clinfm run.

The schema is meds-evaluation's (kamilest/meds-evaluation, README "Prediction schema" and
``src/meds_evaluation/schema.py``): ``subject_id`` int64, ``prediction_time`` timestamp[us],
``boolean_value`` bool (the label), ``predicted_boolean_value`` bool and
``predicted_boolean_probability`` float64. meds-evaluation needs the first three and at least one
of the two prediction columns, and allows (but ignores) extra columns; clinfm always writes all
five and nothing else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clinfm.errors import InputError

PREDICTION_SCHEMA = pa.schema(
    [
        ("subject_id", pa.int64()),
        ("prediction_time", pa.timestamp("us")),
        ("boolean_value", pa.bool_()),
        ("predicted_boolean_value", pa.bool_()),
        ("predicted_boolean_probability", pa.float64()),
    ]
)
REQUIRED_COLUMNS = ("subject_id", "prediction_time", "boolean_value")
PREDICTION_COLUMNS = ("predicted_boolean_value", "predicted_boolean_probability")


def _arrow(values: object, type_: pa.DataType, name: str, path: Path) -> pa.Array:
    """One column with exactly ``type_``: Polars and NumPy inputs are converted, never re-guessed."""
    try:
        if isinstance(values, pl.Series):
            array = values.to_arrow()
        elif isinstance(values, pa.ChunkedArray | pa.Array):
            array = values
        elif isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
            array = pa.array(values.astype("datetime64[us]"))
        else:
            array = pa.array(np.asarray(values) if type_ != pa.timestamp("us") else list(values))
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_timestamp(array.type) and array.type.tz is not None:
            raise InputError(f"{name} is timezone-aware ({array.type.tz}); MEDS times are naive", path=path)
        array = array.cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise InputError(f"{name} cannot be stored as {type_}: {err}", path=path) from err
    if array.null_count:
        raise InputError(f"{name} has {array.null_count} missing values; every row needs one", path=path)
    return array


def _check_probabilities(p: np.ndarray, path: Path) -> None:
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    if bad.size:
        raise InputError(
            f"predicted probabilities must be in [0, 1]; row {bad[0]} holds {p[bad[0]]} "
            f"({bad.size} such rows); apply a sigmoid or softmax to raw scores first",
            path=path,
        )


def _check_labels(y: np.ndarray, path: Path) -> None:
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be 0/1 or booleans; found {np.unique(y)[:5].tolist()}", path=path)


def write_predictions(
    path: str | os.PathLike,
    *,
    subject_id: object,
    prediction_time: object,
    y: object | None,
    p: object,
    threshold: float = 0.5,
) -> Path:
    """Write one binary task's predictions as a meds-evaluation parquet file, atomically.

    ``predicted_boolean_value`` is ``p >= threshold``. ``y=None`` (samples whose outcome is not
    known yet) leaves ``boolean_value`` empty rather than inventing one. The file appears complete
    or not at all: it is written beside ``path`` under a temporary name and renamed into place.
    """
    path = Path(path)
    p = np.asarray(p, dtype=np.float64)
    known = y is not None
    y = np.asarray(y) if known else np.zeros(len(p), dtype=bool)
    lengths = {
        "subject_id": len(subject_id),
        "prediction_time": len(prediction_time),
        "y": len(y),
        "p": len(p),
    }
    if len(set(lengths.values())) != 1:
        raise InputError(f"columns differ in length: {lengths}; give one value per prediction", path=path)
    _check_labels(y, path)
    _check_probabilities(p, path)
    table = pa.Table.from_arrays(
        [
            _arrow(subject_id, pa.int64(), "subject_id", path),
            _arrow(prediction_time, pa.timestamp("us"), "prediction_time", path),
            pa.array(y.astype(bool)) if known else pa.nulls(len(p), pa.bool_()),
            pa.array(p >= threshold),
            pa.array(p),
        ],
        schema=PREDICTION_SCHEMA,
    )
    _write_atomic(table, path)
    return path


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_predictions(path: str | os.PathLike) -> pl.DataFrame:
    """Read a predictions file, checking the columns meds-evaluation needs are there."""
    path = Path(path)
    if not path.exists():
        raise InputError("predictions file not found", path=path)
    try:
        frame = pl.read_parquet(path)
    except Exception as err:  # a corrupt or non-parquet file: say so in one line
        raise InputError(f"not a readable parquet file: {err}", path=path) from err
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing or not any(c in frame.columns for c in PREDICTION_COLUMNS):
        raise InputError(
            f"missing columns {missing or list(PREDICTION_COLUMNS)}; a predictions file needs "
            f"{list(REQUIRED_COLUMNS)} and one of {list(PREDICTION_COLUMNS)}",
            path=path,
        )
    return frame
