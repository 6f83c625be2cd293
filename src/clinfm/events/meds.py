"""Read and write MEDS datasets (0.4; 0.3.3 read too).

A MEDS dataset is a folder::

    data/**/*.parquet              subject_id, time, code, numeric_value, text_value (+ extra columns)
    metadata/dataset.json          dataset name, ETL, meds_version, created_at
    metadata/codes.parquet         code, description, parent_codes
    metadata/subject_splits.parquet subject_id, split
    tasks/<task>.parquet           MEDS labels: subject_id, prediction_time, <type>_value

Every event of a subject lives in one shard, contiguous and sorted by time (static events, with a
null time, first). Readers here are lazy, so a model or a description streams over the shards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import meds
import polars as pl
import pyarrow.parquet as pq

from clinfm import __version__
from clinfm.errors import InputError
from clinfm.io import atomic_directory
from clinfm.progress import track

MEDS_VERSION = meds.__version__

#: The typed core of every event row. Extra columns ride along untouched.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "subject_id": pl.Int64(),
    "time": pl.Datetime("us"),
    "code": pl.String(),
    "numeric_value": pl.Float32(),
    "text_value": pl.String(),
}
CODE_METADATA_SCHEMA: dict[str, pl.DataType] = {
    "code": pl.String(),
    "description": pl.String(),
    "parent_codes": pl.List(pl.String()),
}
LABEL_VALUE_COLUMNS = ("boolean_value", "integer_value", "float_value", "categorical_value")
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "subject_id": pl.Int64(),
    "prediction_time": pl.Datetime("us"),
    "boolean_value": pl.Boolean(),
    "integer_value": pl.Int64(),
    "float_value": pl.Float32(),
    "categorical_value": pl.String(),
}
DEFAULT_SUBJECTS_PER_SHARD = 10_000
#: Shards are sized for about this many events when the writer knows the event count roughly:
#: memory follows the shard, so long histories (MIMIC-IV has thousands per subject) get fewer subjects.
TARGET_EVENTS_PER_SHARD = 2_000_000
#: Code metadata, or a function from the codes the data use to their metadata.
CodeMetadata = pl.DataFrame | Callable[[pl.Series], pl.DataFrame] | None
TASKS_DIR = "tasks"


def data_files(root: str | os.PathLike) -> list[Path]:
    """The dataset's event shards, in a stable order; InputError if there are none."""
    data_dir = Path(root) / meds.data_subdirectory
    files = sorted(data_dir.rglob("*.parquet")) if data_dir.is_dir() else []
    if not files:
        raise InputError("no MEDS event shards; expected data/**/*.parquet", path=root)
    return files


def normalize_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """Cast the core columns to the MEDS types, add missing optional ones, keep extras after them."""
    names = events.collect_schema().names()
    missing = [c for c in ("subject_id", "time", "code") if c not in names]
    if missing:
        raise InputError(f"events lack the required MEDS column(s) {missing}")
    core = [
        (pl.col(name) if name in names else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in EVENT_SCHEMA.items()
    ]
    extras = [c for c in names if c not in EVENT_SCHEMA]
    return events.select(*core, *extras)


def scan_events(root: str | os.PathLike, *, columns: list[str] | None = None) -> pl.LazyFrame:
    """All events of a MEDS dataset as one lazy frame with the core columns typed.

    Shards may differ in their extra columns (MEDS allows it); missing ones read as null.
    ``columns`` restricts the read to those columns (the core ones are always kept). A dataset that
    breaks the MEDS contract is refused first (:func:`clinfm.events.validate.require_valid`).
    """
    _require_valid(root)
    scans = [pl.scan_parquet(path) for path in data_files(root)]
    events = pl.concat(scans, how="diagonal_relaxed") if len(scans) > 1 else scans[0]
    events = normalize_events(events)
    if columns is not None:
        keep = list(EVENT_SCHEMA) + [c for c in columns if c not in EVENT_SCHEMA]
        events = events.select(keep)
    return events


def scan_shards(root: str | os.PathLike) -> list[pl.LazyFrame]:
    """Each event shard as its own lazy frame, core columns typed: for work done shard by shard
    (MEDS keeps a subject's events in one shard), so memory follows a shard, not the data set."""
    _require_valid(root)
    return [normalize_events(pl.scan_parquet(path)) for path in data_files(root)]


def _require_valid(root: str | os.PathLike) -> None:
    from clinfm.events.validate import require_valid  # validate reads through this module

    require_valid(root)


def read_dataset_metadata(root: str | os.PathLike) -> dict:
    """``metadata/dataset.json`` as a dict; empty when absent (MEDS makes every field optional)."""
    path = Path(root) / meds.dataset_metadata_filepath
    if not path.exists():
        return {}
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON (line {err.lineno}: {err.msg})", path=path) from None
    if not isinstance(metadata, dict):
        raise InputError(f"expected a JSON object, got a {type(metadata).__name__}", path=path)
    return metadata


def read_codes(root: str | os.PathLike) -> pl.DataFrame:
    """``metadata/codes.parquet`` (code, description, parent_codes, extras); empty when absent."""
    path = Path(root) / meds.code_metadata_filepath
    if not path.exists():
        return pl.DataFrame(schema=CODE_METADATA_SCHEMA)
    return pl.read_parquet(path)


def read_splits(root: str | os.PathLike) -> pl.DataFrame | None:
    """``metadata/subject_splits.parquet``, or None when the dataset has none."""
    path = Path(root) / meds.subject_splits_filepath
    return pl.read_parquet(path) if path.exists() else None


def task_files(root: str | os.PathLike) -> dict[str, Path]:
    """Label files under ``tasks/`` by task name (``tasks/a/b.parquet`` is task ``a/b``)."""
    tasks_dir = Path(root) / TASKS_DIR
    if not tasks_dir.is_dir():
        return {}
    return {
        path.relative_to(tasks_dir).with_suffix("").as_posix(): path
        for path in sorted(tasks_dir.rglob("*.parquet"))
    }


def read_labels(path: str | os.PathLike) -> pl.DataFrame:
    """A MEDS label file, with its value columns typed.

    MEDS 0.3.3 label files carry every value column, mostly all-null; 0.4 forbids nulls in the
    value columns, so all-null ones are dropped here and the file reads the same either way.
    """
    try:
        labels = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"not a readable Parquet label file ({_first_line(err)})", path=path) from None
    for required in ("subject_id", "prediction_time"):
        if required not in labels.columns:
            raise InputError(f"label file lacks the column {required!r}", path=path)
    if labels.height:  # an empty file keeps its columns: nothing says they are unused
        labels = labels.drop(
            [c for c in LABEL_VALUE_COLUMNS if c in labels.columns and labels[c].is_null().all()]
        )
    _check_label_keys(labels, path)
    try:
        return labels.with_columns(
            pl.col(c).cast(LABEL_SCHEMA[c]) for c in labels.columns if c in LABEL_SCHEMA
        )
    except pl.exceptions.PolarsError as err:
        raise InputError(f"label columns of the wrong type ({_first_line(err)})", path=path) from None


def _check_label_keys(labels: pl.DataFrame, path: object) -> None:
    """Refuse label keys a cast would silently change: an empty subject or time, a fractional
    subject id (cast to an integer it would name another patient), or a time zone (cast to MEDS's
    naive times it would shift the prediction time, letting later events in)."""
    rows = labels.with_row_index("row", offset=1)
    for column in ("subject_id", "prediction_time"):
        empty = rows.filter(pl.col(column).is_null())
        if empty.height:
            many = f" (and {empty.height - 1} more rows)" if empty.height > 1 else ""
            raise InputError(f"row {empty['row'][0]}: {column} is empty{many}", path=path)
    subject = labels.schema["subject_id"]
    if subject.is_float():
        fractional = rows.filter(
            ~pl.col("subject_id").is_finite() | (pl.col("subject_id").round() != pl.col("subject_id"))
        )
        if fractional.height:
            raise InputError(
                f"row {fractional['row'][0]}: subject_id is not a whole number; MEDS ids are integers",
                path=path,
            )
    when = labels.schema["prediction_time"]
    if isinstance(when, pl.Datetime) and when.time_zone is not None:
        raise InputError(
            f"prediction_time carries the time zone {when.time_zone}; MEDS times are naive local times, "
            "like the events'. Convert them first, e.g. "
            "pl.col('prediction_time').dt.convert_time_zone(<the events' zone>).dt.replace_time_zone(None)",
            path=path,
        )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def write_table(frame: pl.DataFrame, schema, path: Path) -> None:
    """Write a frame as parquet with the exact Arrow types of a `meds` schema (via a temp file).

    Polars writes strings as large_string; the MEDS schemas want string for code and friends,
    so tables go through ``schema.align`` (which casts and checks) and pyarrow.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(schema.align(frame.to_arrow()), tmp)
    tmp.replace(path)


def _extension_columns(columns: list[str]) -> dict[str, list[str]]:
    """MEDS 0.4's declaration of clinfm's extra columns: encounter_id joins back to the source's
    encounters; unit qualifies a numeric value's code."""
    declared = {"raw_source_id_columns": ["encounter_id"], "code_modifier_columns": ["unit"]}
    return {
        key: [c for c in names if c in columns]
        for key, names in declared.items()
        if set(names) & set(columns)
    }


def write_events(frame: pl.DataFrame, path: Path) -> None:
    """Write one shard of events; refuse null subject ids or codes, which MEDS forbids."""
    for column in ("subject_id", "code"):
        if frame[column].null_count():
            raise InputError(f"{frame[column].null_count()} event(s) have a null {column}; MEDS requires one")
    write_table(frame, meds.DataSchema, path)


def sort_events(events: pl.LazyFrame) -> pl.LazyFrame:
    """MEDS order: a subject's events together and by time, static (null-time) events first."""
    return events.sort(["subject_id", "time", "code"], nulls_last=False, maintain_order=True)


def _write_shards(events: pl.LazyFrame, data_dir: Path, subjects: pl.Series, subjects_per_shard: int) -> None:
    """Write events as shards of about ``subjects_per_shard`` whole subjects each.

    Shards are ranges of subject ids cut from ``subjects``; a subject of the events missing from
    ``subjects`` still lands in the range that holds its id, so no event is dropped. One shard is
    sorted and written directly. For more, events stream once into per-shard staging files
    (bounded memory whatever the input size), then each is sorted on its own.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    ordered = subjects.unique().sort()
    boundaries = ordered.gather_every(subjects_per_shard, offset=subjects_per_shard)
    if boundaries.is_empty():
        write_events(sort_events(events).collect(engine="streaming"), data_dir / "0.parquet")
        return
    staging = data_dir.parent / ".staging"
    # Binning streams in constant memory (a literal search_sorted grows with the data). Rows without
    # a subject id get a bin of their own, so they are found below instead of silently dropped.
    orphan_bin = boundaries.len() + 1
    shard = pl.col("subject_id").bin_intervals(boundaries, labels=False).fill_null(orphan_bin)
    events.with_columns(shard=shard).sink_parquet(
        pl.PartitionBy(staging, key="shard", include_key=False), mkdir=True
    )
    if (staging / f"shard={orphan_bin}").exists():
        raise InputError("some events have a null subject_id; MEDS requires one")
    for index in track(range(boundaries.len() + 1), "Sorting shards", total=boundaries.len() + 1):
        parts = sorted((staging / f"shard={index}").glob("*.parquet"))
        if parts:
            write_events(sort_events(pl.scan_parquet(parts)).collect(), data_dir / f"{index}.parquet")
    shutil.rmtree(staging)


def shard_size(subjects: int, expected_events: int | None) -> int:
    """Subjects per shard: about TARGET_EVENTS_PER_SHARD events, at most DEFAULT_SUBJECTS_PER_SHARD."""
    if not expected_events or not subjects:
        return DEFAULT_SUBJECTS_PER_SHARD
    per_subject = max(expected_events / subjects, 1.0)
    return max(1, min(DEFAULT_SUBJECTS_PER_SHARD, int(TARGET_EVENTS_PER_SHARD / per_subject)))


def write_dataset(
    out: str | os.PathLike,
    events: pl.LazyFrame | pl.DataFrame,
    *,
    dataset_name: str,
    etl_name: str = "clinfm",
    codes: CodeMetadata = None,
    splits: pl.DataFrame | None = None,
    tasks: Mapping[str, pl.DataFrame] | None = None,
    subjects: pl.Series | None = None,
    subjects_per_shard: int | None = None,
    expected_events: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a MEDS 0.4 dataset to ``out`` atomically and return its path.

    ``codes`` is a frame with at least a ``code`` column, or a function that receives the codes
    the data use and returns one; codes without an entry get one with a null description, so every
    code appears in ``codes.parquet`` as MEDS requires. ``subjects`` (e.g. the ids of a PATIENTS
    table) saves a pass over the events to find them. ``subjects_per_shard`` defaults to
    :func:`shard_size` of ``expected_events`` (a rough count, such as the source rows). Without
    ``splits``, deterministic patient-level splits are assigned (see :func:`assign_splits`).
    """
    events = normalize_events(events.lazy())
    with atomic_directory(out, overwrite=overwrite) as tmp:
        if subjects is None:
            subjects = events.select(pl.col("subject_id").unique()).collect()["subject_id"]
        if subjects_per_shard is None:
            subjects_per_shard = shard_size(subjects.n_unique(), expected_events)
        _write_shards(events, tmp / meds.data_subdirectory, subjects, subjects_per_shard)
        finish_dataset(
            tmp, dataset_name=dataset_name, etl_name=etl_name, codes=codes, splits=splits, tasks=tasks
        )
    return Path(out)


def finish_dataset(
    root: Path,
    *,
    dataset_name: str,
    etl_name: str,
    codes: CodeMetadata = None,
    splits: pl.DataFrame | None = None,
    tasks: Mapping[str, pl.DataFrame] | None = None,
) -> None:
    """Write the metadata and tasks of a dataset whose ``data/`` shards are already in place."""
    from clinfm.events.splits import assign_splits

    written = pl.scan_parquet(root / meds.data_subdirectory / "*.parquet")
    data_codes, subjects = pl.collect_all(
        [written.select(pl.col("code").unique()), written.select(pl.col("subject_id").unique())]
    )
    if callable(codes):
        codes = codes(data_codes["code"])
    write_codes(root, complete_codes(codes, data_codes["code"]))
    write_splits(root, splits if splits is not None else assign_splits(subjects["subject_id"]))
    for name, labels in (tasks or {}).items():
        write_labels(root / TASKS_DIR / f"{name}.parquet", labels)
    metadata = {
        "dataset_name": dataset_name,
        "etl_name": etl_name,
        "etl_version": __version__,
        "meds_version": MEDS_VERSION,
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(),
        **_extension_columns(written.collect_schema().names()),
    }
    (root / meds.dataset_metadata_filepath).write_text(json.dumps(metadata, indent=2) + "\n")


def complete_codes(codes: pl.DataFrame | None, data_codes: pl.Series) -> pl.DataFrame:
    """Code metadata restricted to, and covering, the codes that occur in the data."""
    present = pl.DataFrame({"code": data_codes.cast(pl.String)})
    if codes is None or codes.is_empty():
        codes = pl.DataFrame(schema=CODE_METADATA_SCHEMA)
    for name, dtype in CODE_METADATA_SCHEMA.items():
        codes = (
            codes.with_columns(pl.col(name).cast(dtype))
            if name in codes.columns
            else codes.with_columns(pl.lit(None, dtype=dtype).alias(name))
        )
    codes = codes.unique("code", keep="first", maintain_order=True)
    return (
        present.join(codes, on="code", how="left")
        .sort("code")
        .select(list(CODE_METADATA_SCHEMA) + [c for c in codes.columns if c not in CODE_METADATA_SCHEMA])
    )


def write_codes(root: Path, codes: pl.DataFrame) -> None:
    write_table(codes, meds.CodeMetadataSchema, root / meds.code_metadata_filepath)


def write_splits(root: Path, splits: pl.DataFrame) -> None:
    splits = splits.select(pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String))
    write_table(splits, meds.SubjectSplitSchema, root / meds.subject_splits_filepath)


def write_labels(path: str | os.PathLike, labels: pl.DataFrame) -> Path:
    """Write a MEDS label file: subject_id, prediction_time and the non-null value columns only."""
    path = Path(path)
    keep = ["subject_id", "prediction_time"] + [c for c in LABEL_VALUE_COLUMNS if c in labels.columns]
    labels = labels.select(pl.col(c).cast(LABEL_SCHEMA[c]) for c in keep)
    bad = [c for c in keep if labels[c].null_count()]
    if bad:
        raise InputError(f"label columns {bad} hold nulls; MEDS 0.4 labels may not", path=path)
    write_table(labels.sort(["subject_id", "prediction_time"]), meds.LabelSchema, path)
    return path
