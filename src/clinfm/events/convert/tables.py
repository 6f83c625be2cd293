"""Source tables for the converters: find them, scan them lazily, type their columns, check them.

Every source column is read as text and typed here, so a bad value is reported with its file, line
and column instead of surfacing as a Polars error deep inside a query. The checks of a table run
together in one pass (first offending line only), before any output is written.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clinfm.errors import InputError

log = logging.getLogger("clinfm")

_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".parquet")
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def find_table(src: Path, name: str) -> Path | None:
    """``NAME.csv``, ``name.csv.gz``, ... in ``src``, matching the table name in any case."""
    if not src.is_dir():
        raise InputError("not a directory; expected a folder of source tables", path=src)
    wanted = {name.lower() + suffix for suffix in _SUFFIXES}
    matches = sorted(p for p in src.iterdir() if p.name.lower() in wanted)
    return matches[0] if matches else None


def _header_line(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.readline()


@dataclass
class SourceTable:
    """One source table, scanned lazily with lower-case column names, every column as text."""

    path: Path
    frame: pl.LazyFrame
    columns: list[str]
    checks: dict[tuple[str, str], tuple[pl.Expr, pl.Expr]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, required: list[str], *, separator: str | None = None) -> SourceTable:
        if path.suffix == ".parquet":
            frame = pl.scan_parquet(path)
            frame = frame.select(pl.all().cast(pl.String).name.to_lowercase())
            columns = frame.collect_schema().names()
        else:
            header = _header_line(path)
            if not header.strip():
                raise InputError("empty file; expected a header line with column names", path=path)
            separator = separator or ("\t" if header.count("\t") > header.count(",") else ",")
            frame = pl.scan_csv(
                path,
                separator=separator,
                infer_schema=False,
                with_column_names=lambda names: [n.strip().strip('"').lower() for n in names],
                quote_char='"',
            )
            columns = frame.collect_schema().names()
        missing = [c for c in required if c not in columns]
        if missing:
            raise InputError(
                f"missing column(s) {', '.join(missing)}; expected at least {', '.join(required)}",
                path=path,
            )
        return cls(path=path, frame=frame, columns=columns)

    def has(self, column: str) -> bool:
        return column in self.columns

    def col(self, column: str) -> pl.Expr:
        """A source column with blanks as null; a literal null if the table lacks the column."""
        if column not in self.columns:
            return pl.lit(None, dtype=pl.String)
        return pl.col(column).str.strip_chars().replace("", None)

    def _probe(self, raw: pl.Expr | None, parsed: pl.Expr, column: str, expected: str) -> None:
        """Remember a check: ``raw`` present but not parsed, or (``raw`` None) the value missing."""
        failed = parsed.is_null() if raw is None else raw.is_not_null() & parsed.is_null()
        shown = pl.lit(None, pl.String) if raw is None else raw
        self.checks.setdefault((column, expected), (failed, shown))  # the same check asked twice runs once

    def first_problem(self) -> pl.LazyFrame:
        """One pass over the table: for each check, the first failing line and its value."""
        columns = []
        for index, (failed, shown) in enumerate(self.checks.values()):
            columns += [
                pl.col("line").filter(failed).first().alias(f"line_{index}"),
                shown.filter(failed).first().alias(f"value_{index}"),
            ]
        return self.frame.with_row_index("line", offset=2).select(columns)

    def datetime(self, *columns: str, required: bool = False, formats=DATETIME_FORMATS) -> pl.Expr:
        """The first non-null of several date/time columns, parsed with the accepted formats.

        A value that matches no format is an error; so is a missing value when ``required``.
        """
        parsed = []
        for column in columns:
            raw = self.col(column)
            value = pl.coalesce([raw.str.to_datetime(fmt, strict=False, time_unit="us") for fmt in formats])
            self._probe(raw, value, column, f"a date or date-time like {formats[0]!r}")
            parsed.append(value)
        result = pl.coalesce(parsed)
        if required:
            self._probe(None, result, "/".join(columns), "a date in every row")
        return result

    def integer(self, column: str, *, required: bool = False) -> pl.Expr:
        raw = self.col(column)
        # Ids often arrive as "123.0" from spreadsheet exports; accept integral floats.
        value = pl.coalesce(
            raw.cast(pl.Int64, strict=False), raw.cast(pl.Float64, strict=False).cast(pl.Int64)
        )
        self._probe(raw, value, column, "an integer")
        if required:
            self._probe(None, value, column, "an integer in every row")
        return value

    def number(self, column: str) -> pl.Expr:
        """A numeric value; free text here (e.g. a dose of "1-2") is kept as null, not an error."""
        return self.col(column).cast(pl.Float64, strict=False).cast(pl.Float32)

    def check_not_empty(self) -> None:
        if self.frame.head(1).collect().height == 0:
            raise InputError("table has a header but no rows; expected at least one", path=self.path)


def run_probes(tables: list[SourceTable]) -> None:
    """Run every table's checks (one pass per table, tables in parallel); raise the first problem
    of the first table that has one, as a one-line error."""
    checked = [table for table in tables if table.checks]
    for table, found in zip(checked, pl.collect_all([t.first_problem() for t in checked]), strict=True):
        row = found.row(0)
        problems = [(row[2 * i], row[2 * i + 1], key) for i, key in enumerate(table.checks) if row[2 * i] is not None]
        if problems:
            line, value, (column, expected) = min(problems, key=lambda problem: problem[0])
            got = "empty" if value is None else f"got {value!r}"
            raise InputError(f"line {line}, column {column}: {got}, expected {expected}", path=table.path)


def open_tables(
    src: str | os.PathLike,
    specs: dict[str, list[str]],
    *,
    required: tuple[str, ...],
) -> dict[str, SourceTable]:
    """Open the tables named in ``specs`` (name -> required columns) that exist in ``src``.

    A missing table listed in ``required`` is an error; other missing tables are logged and
    skipped, since real extracts rarely hold every table.
    """
    src = Path(src)
    tables: dict[str, SourceTable] = {}
    for name, columns in specs.items():
        path = find_table(src, name)
        if path is None:
            if name in required:
                raise InputError(
                    f"required table {name} not found (looked for {name}.csv or .csv.gz)", path=src
                )
            log.info("table %s not found in %s; skipped", name, src)
            continue
        tables[name] = SourceTable.open(path, columns)
    for name in required:
        tables[name].check_not_empty()
    return tables


def event_frame(
    subject_id: pl.Expr,
    time: pl.Expr,
    code: pl.Expr,
    *,
    numeric_value: pl.Expr | None = None,
    text_value: pl.Expr | None = None,
    encounter_id: pl.Expr | None = None,
    unit: pl.Expr | None = None,
) -> list[pl.Expr]:
    """The select list that turns a source table into MEDS events with clinfm's extra columns."""
    return [
        subject_id.cast(pl.Int64).alias("subject_id"),
        time.cast(pl.Datetime("us")).alias("time"),
        code.cast(pl.String).alias("code"),
        (numeric_value if numeric_value is not None else pl.lit(None))
        .cast(pl.Float32)
        .alias("numeric_value"),
        (text_value if text_value is not None else pl.lit(None)).cast(pl.String).alias("text_value"),
        (encounter_id if encounter_id is not None else pl.lit(None)).cast(pl.Int64).alias("encounter_id"),
        (unit if unit is not None else pl.lit(None)).cast(pl.String).alias("unit"),
    ]


def described(descriptions: dict[str, str]) -> pl.DataFrame:
    """A code-metadata frame from a {code: description} dict."""
    return pl.DataFrame({"code": list(descriptions), "description": list(descriptions.values())})


def subject_ids(table: SourceTable, column: str) -> pl.Series:
    """The subject ids of a table (PATIENTS, PERSON): tells the writer its shards without a pass over events."""
    return table.frame.select(table.integer(column)).collect()[column].drop_nulls()


def end_of_day(date: pl.Expr) -> pl.Expr:
    """A date-only time moved to the day's last microsecond: known by the end of that day, not before."""
    return date + pl.duration(days=1) - pl.duration(microseconds=1)
