"""Source tables for the converters: find them, type their columns in one streaming pass, check them.

Each converter declares, per table, the columns it reads and their kind (:class:`Column`). A table
is then read once: every column as text, typed by clinfm, and staged as Parquet together with the
first problem of each row (a value that does not parse, or a required value that is missing). A bad
value is therefore reported with its file, row and column instead of surfacing as a Polars error
deep inside a query, and nothing is written to the output before every table has passed.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from clinfm.errors import InputError
from clinfm.io import check_output, output_lock
from clinfm.progress import status

log = logging.getLogger("clinfm")

_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".parquet")
#: ISO dates and date-times, with or without fractional seconds; "Z" (UTC) accepted, other offsets not.
DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def _expected(kind: str, formats: tuple[str, ...]) -> str:
    if kind == INTEGER:
        return "an integer"
    if formats == DATETIME_FORMATS:
        return "a date or date-time like '2020-01-31 13:45:00'"
    return f"a date matching {' or '.join(repr(f) for f in formats)}"


_DTYPES = {"integer": pl.Int64(), "number": pl.Float64(), "datetime": pl.Datetime("us")}


@dataclass(frozen=True)
class Column:
    """A column a converter reads: its kind, the source column(s) it comes from, and whether it
    must exist in the header (``required``) and hold a value in every row (``not_null``).

    Several sources are coalesced in order (OMOP's ``*_datetime`` then ``*_date``); a ``number``
    that does not parse is kept as null (free-text doses like "1-2"), other kinds are an error.
    """

    kind: str = "text"  # text | integer | number | datetime
    unique: bool = False  # an id that may appear in one row only (a patient, an admission, a concept)
    required: bool = False
    not_null: bool = False
    sources: tuple[str, ...] = ()
    formats: tuple[str, ...] = DATETIME_FORMATS


INTEGER, TEXT, NUMBER, DATETIME = "integer", "text", "number", "datetime"


def needed(kind: str, **options) -> Column:
    """A column that must be in the header and hold a value in every row."""
    return Column(kind, required=True, not_null=True, **options)


def find_table(src: Path, name: str) -> Path | None:
    """``NAME.csv``, ``name.csv.gz``, ... in ``src``, matching the table name in any case."""
    if not src.is_dir():
        raise InputError("not a directory; expected a folder of source tables", path=src)
    wanted = {name.lower() + suffix for suffix in _SUFFIXES}
    matches = sorted(p for p in src.iterdir() if p.name.lower() in wanted)
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise InputError(f"table {name} is there more than once ({names}); keep one", path=src)
    return matches[0] if matches else None


def _header_line(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline()
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"could not read the file ({err})", path=path) from None


def _scan_text(path: Path, separator: str | None) -> tuple[pl.LazyFrame, str]:
    """Every column as text, names lower-cased and stripped; and the separator used."""
    if path.suffix.lower() == ".parquet":
        return pl.scan_parquet(path).select(pl.all().cast(pl.String).name.to_lowercase()), ""
    header = _header_line(path)
    if not header.strip():
        raise InputError("empty file; expected a header line with column names", path=path)
    separator = separator or ("\t" if header.count("\t") > header.count(",") else ",")
    scan = pl.scan_csv(
        path,
        separator=separator,
        infer_schema=False,
        encoding="utf8-lossy",  # a stray Latin-1 byte becomes U+FFFD instead of stopping the run
        with_column_names=lambda names: [n.strip().strip('"').lower() for n in names],
    )
    return scan, separator


def _first_long_row(path: Path, separator: str, width: int) -> tuple[int | None, int]:
    """The first data row (from 1) with more than ``width`` fields, and its field count; read with
    Python's csv module, which follows the same quoting rules, on the rare path only."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    csv.field_size_limit(2**31 - 1)  # a note can exceed the module's 128 KB default
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
            reader = csv.reader(handle, delimiter=separator)
            next(reader, None)
            for row, fields in enumerate(reader, start=1):
                if len(fields) > width:
                    return row, len(fields)
    except (csv.Error, OSError, EOFError, zlib.error):
        pass  # Polars' own message is then the one shown
    return None, 0


def _blank_as_null(text: pl.Expr) -> pl.Expr:
    """Trimmed text; blank as null (``replace("", None)`` would cost a hash table per chunk)."""
    trimmed = text.str.strip_chars()
    return pl.when(trimmed.str.len_bytes() > 0).then(trimmed)


def _typed(kind: str, raw: pl.Expr, formats: tuple[str, ...]) -> pl.Expr:
    if kind == "integer":
        # Ids often arrive as "123.0" from spreadsheet exports: accept integral floats, nothing looser
        # ("123.7", "nan" and "inf" stay unparsed, and so are reported).
        as_float = raw.cast(pl.Float64, strict=False)
        integral = pl.when(as_float.is_finite() & (as_float == as_float.round())).then(as_float)
        return pl.coalesce(raw.cast(pl.Int64, strict=False), integral.cast(pl.Int64, strict=False))
    if kind == "number":
        return raw.cast(pl.Float64, strict=False)
    if kind == "datetime":
        return pl.coalesce([raw.str.to_datetime(fmt, strict=False, time_unit="us") for fmt in formats])
    return raw


class SourceTable:
    """One source table, typed and staged; ``frame`` reads the typed columns by their spec names."""

    def __init__(
        self, path: Path, spec: dict[str, Column], *, separator: str | None = None, needs_rows: bool = False
    ):
        self.path = path
        self.spec = spec
        self.needs_rows = needs_rows
        try:
            self.raw, self.separator = _scan_text(path, separator)
            header = self.raw.collect_schema().names()
        except (pl.exceptions.PolarsError, OSError, EOFError, zlib.error) as err:
            raise InputError(f"could not read the file ({err})", path=path) from None
        required = [name for name, column in spec.items() if column.required]
        missing = ["/".join(self._sources(name)) for name in required if not self._present(name, header)]
        if missing:
            needed = ["/".join(self._sources(name)) for name in required]
            raise InputError(
                f"missing column(s) {', '.join(missing)}; expected at least {', '.join(needed)}", path=path
            )
        self.header = header
        self.failures: list[tuple[str, str]] = []  # (column, what was expected) per check
        self.staged = path  # replaced by the typed Parquet file in stage()
        self.frame = pl.LazyFrame()  # the typed table, once staged

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() == ".parquet"

    def unreadable(self, err: Exception) -> str:
        """Why Polars could not read the file, with the row when it was a ragged one."""
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "more fields" not in reason:
            return reason
        row, fields = _first_long_row(self.path, self.separator, len(self.header))
        if row is None:
            return reason
        return (
            f"row {row} has {fields} fields, the header {len(self.header)}; a value holding the "
            f"separator {self.separator!r} must be quoted"
        )

    def _sources(self, name: str) -> tuple[str, ...]:
        return self.spec[name].sources or (name,)

    def _present(self, name: str, header: list[str]) -> bool:
        return any(source in header for source in self._sources(name))

    def _typed_query(self) -> pl.LazyFrame:
        """Typed columns plus ``_check``, the index of the first failed check of each row.

        Each source column is parsed once; the checks then compare the parsed and the raw columns,
        so checking costs a comparison per value, not a second parse.
        """
        # One parse per (source column, kind): a mapping may read "result" as a number and as text.
        parses = {
            (source, column.kind): column
            for column_name, column in self.spec.items()
            for source in self._sources(column_name)
            if source in self.header
        }
        sources = sorted({source for source, _ in parses})
        raw = {source: _blank_as_null(pl.col(source)) for source in sources}
        parsed = [
            _typed(kind, raw[source], column.formats).alias(f"_parsed_{kind}_{source}")
            for (source, kind), column in parses.items()
        ]
        typed, failures = [], []
        for source, kind in parses:
            if kind in (INTEGER, DATETIME):
                failed = pl.col(source).is_not_null() & pl.col(f"_parsed_{kind}_{source}").is_null()
                failures.append((failed, source, _expected(kind, parses[source, kind].formats)))
        for name, column in self.spec.items():
            present = [
                pl.col(f"_parsed_{column.kind}_{source}")
                for source in self._sources(name)
                if source in self.header
            ]
            dtype = _DTYPES.get(column.kind, pl.String)
            value = pl.coalesce(present) if present else pl.lit(None, dtype=dtype)
            if column.not_null:
                failures.append((value.is_null(), "/".join(self._sources(name)), "a value in every row"))
            typed.append(value.cast(dtype).alias(name))
        self.failures = [(source, expected) for _, source, expected in failures]
        first_failure = pl.min_horizontal(
            [pl.when(failed).then(pl.lit(i, pl.UInt16)) for i, (failed, _, _) in enumerate(failures)]
        )
        return (
            self.raw.with_row_index("_row", offset=1)
            .select("_row", *(raw[s].alias(s) for s in sources), *parsed)
            .select("_row", *typed, (first_failure if failures else pl.lit(None, pl.UInt16)).alias("_check"))
        )

    def stage(self, staging: Path) -> pl.LazyFrame:
        """The lazy sink that types the table into ``staging``; run it with :func:`stage_tables`."""
        target = staging / f"{self.path.name}-{id(self)}.parquet"  # a mapping may read one file twice
        query = self._typed_query()
        self.frame = pl.scan_parquet(target).drop("_row", "_check")
        self.staged = target
        return query.sink_parquet(target, compression="lz4", lazy=True)

    def rows(self) -> int:
        """Rows of the staged table, from its Parquet footer (no read)."""
        return pq.ParquetFile(self.staged).metadata.num_rows

    def first_problem(self) -> pl.LazyFrame:
        return (
            pl.scan_parquet(self.staged)
            .filter(pl.col("_check").is_not_null())
            .select("_row", "_check")
            .head(1)
        )

    def check_unique(self) -> None:
        """Refuse an id repeated where it must identify one row (two PATIENTS rows for one subject)."""
        for name, column in self.spec.items():
            if not column.unique:
                continue
            repeated = (
                pl.scan_parquet(self.staged)
                .select("_row", name)
                .filter(pl.col(name).is_not_null() & ~pl.col(name).is_first_distinct())  # the repeat
                .head(1)
                .collect()
            )
            if repeated.height:
                row, _ = repeated.row(0)
                source = "/".join(self._sources(name))
                raise InputError(
                    f"row {row}, column {source}: the value of an earlier row again; expected each once",
                    path=self.path,
                )

    def raise_problem(self, found: pl.DataFrame) -> None:
        if found.is_empty():
            if self.needs_rows and self.frame.head(1).collect().is_empty():
                raise InputError("table has a header but no rows; expected at least one", path=self.path)
            return
        row, check = found.row(0)
        column, expected = self.failures[check]
        value = None
        if column in self.header:  # rare path: read the offending value back from the source
            offending = self.raw.with_row_index("_row", offset=1).filter(pl.col("_row") == row)
            value = offending.select(_blank_as_null(pl.col(column))).collect().item()
        got = "empty" if value is None else f"got {_shape(value)!r} (its shape: digits as 9, letters as x)"
        raise InputError(f"row {row}, column {column}: {got}, expected {expected}", path=self.path)


def _shape(value: str) -> str:
    """A value's shape, not the value: the failing columns hold ids and dates, which may identify a
    patient in a message pasted into an issue tracker; '05/05/2090' shows as '99/99/9999'."""
    shape = "".join("9" if c.isdigit() else "x" if c.isalpha() else c for c in value[:40])
    return shape + ("..." if len(value) > 40 else "")


# Polars checks a CSV row's field count only when it parses every field: reading a subset of the
# columns, it would read a row with an unquoted separator in a value with its fields shifted.
_EVERY_FIELD = pl.QueryOptFlags(projection_pushdown=False)


def stage_tables(tables: list[SourceTable], staging: Path) -> None:
    """Type every table in one streaming pass each, then raise the first problem found, if any.

    A file Polars cannot parse at all (a row with more fields than the header, an unclosed quote, a
    truncated gzip) is reported with its path, and the row where it can be found, like every other
    problem.
    """
    unreadable = (pl.exceptions.PolarsError, OSError, EOFError, zlib.error)
    text = [table for table in tables if not table.is_parquet]
    parquet = [table for table in tables if table.is_parquet]
    try:
        with status(f"Reading {len(tables)} source table(s)"):
            pl.collect_all([table.stage(staging) for table in text], optimizations=_EVERY_FIELD)
            pl.collect_all([table.stage(staging) for table in parquet])  # in parallel
    except unreadable:
        for table in tables:  # rare path: find which file it was
            try:
                table.stage(staging).collect(optimizations=_EVERY_FIELD)
            except unreadable as err:
                raise InputError(
                    f"could not read the file: {table.unreadable(err)}", path=table.path
                ) from None
        raise
    for table in tables:
        table.raise_problem(table.first_problem().collect())
        table.check_unique()


@contextmanager
def staging_area(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``out`` for typed tables, removed whatever happens; ``out`` is held
    meanwhile, and a folder a killed run left is removed by the next run into the same ``out``.
    ``out`` is checked once held (an old output a killed run had moved aside is back by then)."""
    with output_lock(out) as held:
        check_output(held, overwrite)
        with tempfile.TemporaryDirectory(prefix=f".{held.name}.staging-", dir=held.parent) as staging:
            yield Path(staging)


def open_tables(
    src: str | os.PathLike,
    specs: dict[str, dict[str, Column]],
    staging: Path,
    *,
    required: tuple[str, ...],
) -> dict[str, SourceTable]:
    """Find, type and check the tables named in ``specs`` (table -> columns) that exist in ``src``.

    A missing table listed in ``required`` is an error, and so is one without rows; other missing
    tables are logged and skipped, since real extracts rarely hold every table.
    """
    src = Path(src)
    tables: dict[str, SourceTable] = {}
    absent = []
    for name, spec in specs.items():
        path = find_table(src, name)
        if path is None:
            if name in required:
                looked = ", ".join(name + suffix for suffix in _SUFFIXES)
                raise InputError(
                    f"required table {name} not found (looked for {looked}, in any case)", path=src
                )
            absent.append(name)
            continue
        tables[name] = SourceTable(path, spec, needs_rows=name in required)
    if absent:
        log.info("not in %s (skipped): %s", src, ", ".join(absent))
    stage_tables(list(tables.values()), staging)
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
    """The select list that turns a typed table into MEDS events with clinfm's extra columns."""
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


def drop_untimed(name: str, events: pl.LazyFrame) -> pl.LazyFrame:
    """Events of an optional table without a time: counted in the log and left out (MEDS would
    read a null time as a static fact, true at every moment, which they are not)."""
    count = events.filter(pl.col("time").is_null()).select(pl.len()).collect().item()
    if count:
        log.warning("%s: %d row(s) without a time; skipped", name, count)
    return events.filter(pl.col("time").is_not_null())


def described(descriptions: dict[str, str]) -> pl.DataFrame:
    """A code-metadata frame from a {code: description} dict."""
    return pl.DataFrame({"code": list(descriptions), "description": list(descriptions.values())})


def code_token(text: pl.Expr, default: str) -> pl.Expr:
    """Free text (a note category, a visit type) as the part of a code after the vocabulary."""
    return text.str.to_uppercase().str.replace_all(r"[^A-Z0-9]+", "_").fill_null(default)


def date_or_time(exact: pl.Expr, date: pl.Expr) -> pl.Expr:
    """An event time from a date-time column and a date column, safe against leakage.

    A time of exactly midnight is taken for a date-only value (extracts such as Synthea's fill
    date-times that way), and a date-only value is moved to the end of its day.
    """
    timed = pl.when(exact != exact.dt.truncate("1d")).then(exact)
    return pl.coalesce(timed, end_of_day(pl.coalesce(date, exact)))


def end_of_day(date: pl.Expr) -> pl.Expr:
    """A date-only time moved to the day's last microsecond: known by the end of that day, not before."""
    return date.dt.truncate("1d") + pl.duration(days=1) - pl.duration(microseconds=1)
