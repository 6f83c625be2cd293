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


def _check_shard(path: Path, report: ValidationReport) -> pl.DataFrame | None:
    """Schema, nulls and ordering of one shard; returns its per-subject summary."""
    if not _conforms(meds.DataSchema, _read(pq.read_schema, path, report), path, report):
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
        first_row=pl.col("row").min(),
    )
    summary = runs.collect()
    split_subjects = summary.filter(pl.col("runs") > 1)
    if split_subjects.height:
        subject = split_subjects.sort("first_row")["subject_id"][0]
        report.errors.append(
            f"{path}: subject {subject}'s events are not contiguous; MEDS requires each subject's "
            "events together, sorted by time"
        )
    unsorted = ordered.filter(pl.col("earlier") | pl.col("late_static")).head(1).collect()
    if unsorted.height:
        report.errors.append(
            f"{path}: row {unsorted['row'][0]}: time goes backwards for subject {unsorted['subject_id'][0]}; "
            "MEDS requires each subject's events sorted by time, null-time (static) events first"
        )
    return summary.select("subject_id", "rows").with_columns(shard=pl.lit(str(path)))


def _check_codes(root: Path, used_codes: pl.Series, report: ValidationReport) -> None:
    path = root / meds.code_metadata_filepath
    if not path.exists():
        report.warnings.append(f"{path}: missing; descriptions of codes are unknown")
        return
    if not _conforms(meds.CodeMetadataSchema, _read(pq.read_schema, path, report), path, report):
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
    if not _conforms(meds.SubjectSplitSchema, _read(pq.read_table, path, report), path, report):
        return
    splits = pl.read_parquet(path)
    repeated = splits.group_by("subject_id").agg(n=pl.col("split").n_unique()).filter(pl.col("n") > 1)
    if repeated.height:
        report.errors.append(f"{path}: subject {repeated['subject_id'][0]} is in more than one split")
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
        if not _conforms(meds.LabelSchema, table, path, report):
            continue
        labelled = pl.from_arrow(table.select(["subject_id"]))["subject_id"]
        strangers = labelled.filter(~labelled.is_in(subjects.implode()))
        if strangers.len():
            report.warnings.append(f"task {name}: {strangers.len()} label(s) for subjects not in the data")


def validate(root: str | os.PathLike) -> ValidationReport:
    """Validate a MEDS dataset (0.4, or 0.3.3 as MEDS_transforms writes it).

    Errors: a data shard, ``codes.parquet``, ``subject_splits.parquet`` or a label file that breaks
    the `meds` schemas; null subject ids or codes; a subject split across shards or not contiguous;
    events out of time order; a subject in two splits. Warnings: codes missing from
    ``codes.parquet``, codes without a known vocabulary prefix, ICD codes not in the code sets.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("not a directory; expected a MEDS dataset folder", path=root)
    report = ValidationReport(root=root)
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
        report.errors.append(f"{root}: subject {in_two['subject_id'][0]} has events in more than one shard")
    if report.errors:
        return report
    subjects = per_subject["subject_id"].unique()
    used_codes = pl.scan_parquet(data_files(root)).select(pl.col("code").unique()).collect()["code"]
    _check_codes(root, used_codes, report)
    _check_vocabularies(used_codes, report)
    _check_splits(root, subjects, report)
    _check_tasks(root, subjects, report)
    return report
