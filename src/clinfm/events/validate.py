"""Check a MEDS dataset against the `meds` package's own schemas and MEDS's ordering rules."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from flexible_schema.exceptions import SchemaValidationError, TableValidationError

from clinfm.errors import InputError
from clinfm.events.meds import data_files, read_codes, read_dataset_metadata, task_files
from clinfm.vocab.systems import is_known_vocabulary, vocabulary_of

_EXAMPLES = 3


@dataclass
class ValidationReport:
    """What :func:`validate` found: errors break the MEDS contract, warnings do not."""

    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    meds_version: str | None = None
    # Strict: every column in exactly the MEDS type (clinfm validate). Not strict: other widths of a
    # type, which clinfm's readers cast (the check every command runs), pass with a warning.
    strict: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise the first error as an InputError (one line)."""
        if self.errors:
            raise InputError(self.errors[0])


def _schema_problem(err: Exception) -> str:
    return getattr(err, "message", None) or str(err.__cause__ or err)


def _read(read, path: Path, report: ValidationReport):
    """``read(path)`` (a schema or a table), or None, with the error reported, if it cannot be read."""
    try:
        return read(path)
    except (pa.ArrowException, OSError) as err:
        report.errors.append(f"{path}: not a readable Parquet file ({err})")
        return None


def _conforms(schema, arrow, path: Path, report: ValidationReport) -> bool:
    """Whether an Arrow schema or table (None: unreadable) meets a `meds` schema; reports why not."""
    if arrow is None:
        return False
    try:
        schema.validate(arrow)
    except (SchemaValidationError, TableValidationError) as err:
        report.errors.append(f"{path}: {_schema_problem(err)}")
        return False
    return True


def _as_meds_types(arrow, schema, path: Path, report: ValidationReport):
    """Unless the report is strict: an Arrow schema or table with each column whose type is another
    width of the type the `meds` ``schema`` specifies (large_string for string, float64 for float32,
    int32 for int64, timestamps in ns for us) given the MEDS type, with a warning. Polars and pandas
    write those widths, and clinfm's readers cast them (``normalize_events``, ``read_labels``)."""
    if arrow is None or report.strict:
        return arrow
    wanted, fields = schema.schema(), arrow if isinstance(arrow, pa.Schema) else arrow.schema
    relaxed = [
        f.name
        for f in fields
        if f.name in wanted.names
        and f.type != wanted.field(f.name).type
        and _same_kind(f.type, wanted.field(f.name).type)
    ]
    if not relaxed:
        return arrow
    report.warnings.append(
        f"{path}: {', '.join(relaxed)} stored in another width than MEDS says (clinfm casts it)"
    )
    schema = pa.schema([f.with_type(wanted.field(f.name).type) if f.name in relaxed else f for f in fields])
    return schema if isinstance(arrow, pa.Schema) else arrow.cast(schema, safe=False)


def _same_kind(found: pa.DataType, wanted: pa.DataType) -> bool:
    kinds = (_is_text, pa.types.is_integer, pa.types.is_floating)
    if any(kind(found) and kind(wanted) for kind in kinds):
        return True
    naive = pa.types.is_timestamp
    return naive(found) and naive(wanted) and found.tz is None and wanted.tz is None


def _is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def _check_shard(path: Path, report: ValidationReport) -> pl.DataFrame | None:
    """Schema, nulls and ordering of one shard; returns its per-subject summary."""
    schema = _as_meds_types(_read(pq.read_schema, path, report), meds.DataSchema, path, report)
    if not _conforms(meds.DataSchema, schema, path, report):
        return None
    shard = pl.scan_parquet(path).select("subject_id", "time", "code").with_row_index("row", offset=1)
    nulls = shard.filter(pl.col("subject_id").is_null() | pl.col("code").is_null()).head(1).collect()
    if nulls.height:
        column = "subject_id" if nulls["subject_id"][0] is None else "code"
        report.errors.append(f"{path}: row {nulls['row'][0]}: {column} is null; MEDS requires it")
    # Out of order: a subject that reappears after another one, or a time earlier than the last.
    ordered = shard.with_columns(
        new_subject=pl.col("subject_id") != pl.col("subject_id").shift(1),
        earlier=pl.col("time") < pl.col("time").forward_fill().shift(1).over("subject_id"),
        late_static=pl.col("time").is_null() & pl.col("time").shift(1).is_not_null().over("subject_id"),
    )
    runs = ordered.group_by("subject_id").agg(
        runs=pl.col("new_subject").fill_null(True).sum(),
        rows=pl.len(),
    )
    summary = runs.collect()
    # Errors name rows, never subject ids or times: a message may be pasted anywhere.
    if summary.filter(pl.col("runs") > 1).height:
        returns = pl.col("new_subject").fill_null(True)
        again = ordered.filter(returns & (returns.cast(pl.UInt32).cum_sum().over("subject_id") > 1))
        row = again.select("row").head(1).collect().item()
        report.errors.append(
            f"{path}: row {row}: its subject's events already appeared earlier in the shard; MEDS "
            "requires each subject's events together, sorted by time"
        )
    unsorted = ordered.filter(pl.col("earlier") | pl.col("late_static")).head(1).collect()
    if unsorted.height:
        report.errors.append(
            f"{path}: row {unsorted['row'][0]}: time goes backwards for its subject; "
            "MEDS requires each subject's events sorted by time, null-time (static) events first"
        )
    return summary.select("subject_id", "rows").with_columns(shard=pl.lit(str(path)))


def _check_codes(root: Path, used_codes: pl.Series, report: ValidationReport) -> None:
    path = root / meds.code_metadata_filepath
    if not path.exists():
        report.warnings.append(f"{path}: missing; descriptions of codes are unknown")
        return
    schema = _as_meds_types(_read(pq.read_schema, path, report), meds.CodeMetadataSchema, path, report)
    if not _conforms(meds.CodeMetadataSchema, schema, path, report):
        return
    described = read_codes(root)["code"]
    absent = used_codes.filter(~used_codes.is_in(described.implode()))
    if absent.len():
        examples = absent.head(_EXAMPLES).to_list()
        report.warnings.append(f"{path}: {absent.len()} code(s) of the data have no entry, e.g. {examples}")


def _check_vocabularies(used_codes: pl.Series, report: ValidationReport) -> None:
    from clinfm.vocab.icd import CHECKED_VOCABULARIES, is_valid_code

    frame = pl.DataFrame({"code": used_codes}).with_columns(vocabulary=vocabulary_of(pl.col("code")))
    prefixes = frame["vocabulary"].drop_nulls().unique()
    known = [prefix for prefix in prefixes if is_known_vocabulary(prefix)]
    unknown = frame.filter(~pl.col("vocabulary").is_in(known).fill_null(False))
    if unknown.height:
        examples = unknown["code"].head(_EXAMPLES).to_list()
        report.warnings.append(f"{unknown.height} code(s) carry no known vocabulary prefix, e.g. {examples}")
    icd = frame.filter(pl.col("vocabulary").is_in(CHECKED_VOCABULARIES))
    invalid = icd.filter(~is_valid_code(icd["code"]))
    if invalid.height:
        report.warnings.append(
            f"{invalid.height} ICD code(s) are not billable codes of ICD-9-CM v32 / ICD-10-CM FY2024 "
            "(older, retired or header codes), "
            f"e.g. {invalid['code'].head(_EXAMPLES).to_list()}"
        )


def _check_splits(root: Path, subjects: pl.Series, report: ValidationReport) -> None:
    path = root / meds.subject_splits_filepath
    if not path.exists():
        report.warnings.append(f"{path}: missing; clinfm assigns deterministic splits when it needs them")
        return
    table = _as_meds_types(_read(pq.read_table, path, report), meds.SubjectSplitSchema, path, report)
    if not _conforms(meds.SubjectSplitSchema, table, path, report):
        return
    splits = pl.read_parquet(path)
    repeated = splits.with_row_index("row", offset=1).filter(
        (pl.col("split").n_unique().over("subject_id") > 1) & ~pl.col("subject_id").is_first_distinct()
    )
    if repeated.height:
        row = repeated["row"][0]
        report.errors.append(
            f"{path}: row {row}: its subject is also in another split; a subject in two splits would be "
            "trained on and tested on"
        )
    unsplit = subjects.filter(~subjects.is_in(splits["subject_id"].implode()))
    if unsplit.len():
        report.warnings.append(f"{path}: {unsplit.len()} subject(s) of the data are in no split")


def _check_tasks(root: Path, subjects: pl.Series, report: ValidationReport) -> None:
    from clinfm.events.meds import LABEL_VALUE_COLUMNS

    for name, path in task_files(root).items():
        table = _read(pq.read_table, path, report)
        if table is None:
            continue
        # MEDS 0.3.3 wrote every value column, unused ones all null; 0.4 forbids those nulls.
        unused = [
            c for c in LABEL_VALUE_COLUMNS if c in table.column_names and table[c].null_count == len(table)
        ]
        if report.meds_version and report.meds_version.startswith("0.3"):
            table = table.drop_columns(unused)
        table = _as_meds_types(table, meds.LabelSchema, path, report)
        if not _conforms(meds.LabelSchema, table, path, report):
            continue
        labelled = pl.from_arrow(table.select(["subject_id"]))["subject_id"]
        strangers = labelled.filter(~labelled.is_in(subjects.implode()))
        if strangers.len():
            report.warnings.append(f"task {name}: {strangers.len()} label(s) for subjects not in the data")


def validate(root: str | os.PathLike) -> ValidationReport:
    """Validate a MEDS dataset (0.4, or 0.3.3 as MEDS_transforms writes it): :func:`check_dataset`
    with its warnings."""
    return check_dataset(root, warnings=True)


def check_dataset(root: str | os.PathLike, *, warnings: bool = True, strict: bool = True) -> ValidationReport:
    """Check a MEDS dataset (0.4, or 0.3.3 as MEDS_transforms writes it).

    Errors: a data shard, ``codes.parquet``, ``subject_splits.parquet`` or a label file that breaks
    the `meds` schemas; null subject ids or codes; a subject split across shards or not contiguous;
    events out of time order; a subject in two splits. Warnings: codes missing from
    ``codes.parquet``, codes without a known vocabulary prefix, ICD codes not in the code sets.
    Without ``warnings`` (every command's check) neither the codes (the slow part) nor the label
    files under ``tasks/`` are checked: a command checks the label file it reads. Not ``strict``,
    other widths of the MEDS types (float64 values, ns times, large_string codes) pass with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a directory; expected a MEDS dataset folder", path=root)
    report = ValidationReport(root=root, strict=strict)
    metadata = read_dataset_metadata(root)
    report.meds_version = metadata.get("meds_version")
    if not metadata:
        report.warnings.append(f"{root / meds.dataset_metadata_filepath}: missing or empty")
    else:
        try:
            meds.DatasetMetadataSchema.validate(metadata)
        except (SchemaValidationError, TableValidationError) as err:
            report.errors.append(f"{root / meds.dataset_metadata_filepath}: {_schema_problem(err)}")

    summaries = [s for s in (_check_shard(path, report) for path in data_files(root)) if s is not None]
    if not summaries:
        return report
    per_subject = pl.concat(summaries)
    in_two = per_subject.group_by("subject_id").agg(pl.col("shard").n_unique()).filter(pl.col("shard") > 1)
    if in_two.height:
        shards = per_subject.filter(pl.col("subject_id") == in_two["subject_id"][0])["shard"].sort()
        report.errors.append(
            f"{root}: a subject has events in more than one shard ({', '.join(shards)}); MEDS keeps each "
            "subject in one"
        )
    if report.errors:
        return report
    subjects = per_subject["subject_id"].unique()
    if warnings:
        used_codes = pl.scan_parquet(data_files(root)).select(pl.col("code").unique()).collect()["code"]
        _check_codes(root, used_codes, report)
        _check_vocabularies(used_codes, report)
    _check_splits(root, subjects, report)
    if warnings:  # a command checks the label file it reads (read_labels), not every task's
        _check_tasks(root, subjects, report)
    return report


# Datasets already found valid in this process, by their files' sizes and times: a command that
# reads one dataset several times (the demo, a transfer's two sites) checks it once.
_valid: set[tuple] = set()


def require_valid(root: str | os.PathLike) -> None:
    """Refuse, with its first error on one line, a dataset that breaks the MEDS contract.

    Every command that trains on or reports from a MEDS dataset calls this (through
    :func:`clinfm.events.meds.scan_events`): a subject in two splits would leak test patients into
    training, and unsorted or split subjects would give wrong histories. Warnings are left to
    ``clinfm validate``, which also lists every problem, not only the first.
    """
    root = Path(root)
    stamp = _stamp(root)
    if stamp in _valid:
        return
    report = check_dataset(root, warnings=False, strict=False)
    if report.errors:
        first = report.errors[0].strip().splitlines()[0]
        raise InputError(f"{first} (clinfm validate {root} lists every problem)")
    _valid.add(stamp)


def _stamp(root: Path) -> tuple:
    files = [*data_files(root), root / meds.subject_splits_filepath]
    return (str(root.resolve()), *((str(f), *_size_and_time(f)) for f in files))


def _size_and_time(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)
