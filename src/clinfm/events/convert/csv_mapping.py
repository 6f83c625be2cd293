"""A site's own extract to MEDS, described by a small YAML mapping.

.. code-block:: yaml

    dataset_name: my_clinic          # optional
    tables:
      - file: patients.csv           # relative to SRC
        subject_id: patient_id
        time: birth_date
        time_format: "%m/%d/%Y"      # optional; ISO dates and date-times are accepted by default
        code_value: MEDS_BIRTH       # a fixed code for every row ...
      - file: diagnoses.csv
        subject_id: patient_id
        time: visit_date
        code: dx                     # ... or a column of codes
        code_prefix: ICD10CM         # the vocabulary; undotted ICD codes are dotted
        encounter_id: visit_id       # optional
      - file: labs.csv
        subject_id: patient_id
        time: taken_at
        code: test_code
        code_prefix: LOINC
        numeric_value: result        # optional
        text_value: comment          # optional
        unit: units                  # optional

``code_prefix`` must be a known vocabulary (see :data:`clinfm.vocab.systems.KNOWN_VOCABULARIES`) or
``LOCAL_<NAME>`` for codes only the site uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clinfm.errors import InputError
from clinfm.events.convert.tables import (
    DATETIME,
    DATETIME_FORMATS,
    INTEGER,
    NUMBER,
    TEXT,
    Column,
    SourceTable,
    date_or_time,
    event_frame,
    needed,
    stage_tables,
    staging_area,
)
from clinfm.events.meds import write_dataset
from clinfm.io import check_output
from clinfm.vocab.icd import DOTTERS, code_metadata
from clinfm.vocab.systems import check_vocabulary


class TableMapping(BaseModel):
    """How one file of the extract becomes events."""

    model_config = ConfigDict(extra="forbid")

    file: str
    subject_id: str
    time: str | None = None
    time_format: str | None = None
    code: str | None = None
    code_value: str | None = None
    code_prefix: str | None = None
    numeric_value: str | None = None
    text_value: str | None = None
    encounter_id: str | None = None
    unit: str | None = None
    separator: str | None = None

    @field_validator("separator")
    @classmethod
    def _one_character(cls, separator: str | None) -> str | None:
        if separator is not None and (len(separator) != 1 or separator in '"\r\n'):
            raise ValueError(f"expected one character such as ',' ';' or '\\t' (a tab), got {separator!r}")
        return separator

    @model_validator(mode="after")
    def _one_code_source(self) -> TableMapping:
        if (self.code is None) == (self.code_value is None):
            raise ValueError("give exactly one of 'code' (a column) or 'code_value' (a fixed code)")
        if self.code is not None and self.code_prefix is None:
            raise ValueError("'code' needs a 'code_prefix' naming its vocabulary, e.g. ICD10CM or LOCAL_LAB")
        return self


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_name: str | None = None
    tables: list[TableMapping] = Field(min_length=1)


def load_mapping(path: str | os.PathLike) -> Mapping:
    """Read and check a mapping file; any problem is one line naming the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError("mapping file not found", path=path) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start}); save the mapping as UTF-8", path=path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise InputError(f"{where}not valid YAML ({getattr(err, 'problem', err)})", path=path) from None
    try:
        mapping = Mapping.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InputError(f"{field}: {first['msg']}", path=path) from None
    for index, table in enumerate(mapping.tables):
        if table.code_prefix is not None:
            table.code_prefix = check_vocabulary(
                table.code_prefix, where=f"{path}: tables.{index}.code_prefix"
            )
        if table.code_value is not None and not table.code_value.startswith("MEDS_"):
            prefix = table.code_value.split("/", 1)[0] if "/" in table.code_value else ""
            check_vocabulary(prefix, where=f"{path}: tables.{index}.code_value")
    return mapping


def _spec(table: TableMapping) -> dict[str, Column]:
    """The typed columns a mapped file provides, named as MEDS names them."""
    formats = (table.time_format,) if table.time_format else DATETIME_FORMATS
    columns = {"subject_id": needed(INTEGER, sources=(table.subject_id.lower(),))}
    if table.time:
        columns["time"] = needed(DATETIME, sources=(table.time.lower(),), formats=formats)
    kinds = {"code": TEXT, "numeric_value": NUMBER, "text_value": TEXT, "encounter_id": INTEGER, "unit": TEXT}
    for name, kind in kinds.items():
        source = getattr(table, name)
        if source:
            columns[name] = Column(kind, required=True, sources=(source.lower(),))
    return columns


def _table_events(src: Path, table: TableMapping, staging: Path) -> tuple[pl.LazyFrame, int]:
    """A mapped file's events, and its row count."""
    path = src / table.file
    if not path.exists():
        raise InputError("file named in the mapping not found", path=path)
    source = SourceTable(path, _spec(table), separator=table.separator, needs_rows=True)
    stage_tables([source], staging)
    if table.code_value is not None:
        code = pl.lit(table.code_value)
    else:
        raw = pl.col("code")
        dot = DOTTERS.get(table.code_prefix)
        if dot is not None:  # claims extracts usually drop the dot; MEDS codes keep it
            raw = pl.when(raw.str.contains(".", literal=True)).then(raw).otherwise(dot(raw))
        code = table.code_prefix + "/" + raw
    optional = {
        name: pl.col(name)
        for name in ("numeric_value", "text_value", "encounter_id", "unit")
        if name in source.spec
    }
    # A date without a time of day is known by the end of that day (a midnight counts as a date).
    time = date_or_time(pl.col("time"), pl.col("time")) if table.time else pl.lit(None)
    events = source.frame.select(event_frame(pl.col("subject_id"), time, code, **optional))
    return events.filter(pl.col("code").is_not_null()), source.rows()


def convert_csv(
    src: str | os.PathLike,
    out: str | os.PathLike,
    mapping: str | os.PathLike,
    *,
    subjects_per_shard: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the CSV files in ``src`` that ``mapping`` (a YAML file) describes to MEDS at ``out``."""
    spec = load_mapping(mapping)
    check_output(out, overwrite)
    with staging_area(out, overwrite) as staging:
        converted = [_table_events(Path(src), table, staging) for table in spec.tables]
        return write_dataset(
            out,
            pl.concat([events for events, _ in converted]),
            dataset_name=spec.dataset_name or Path(src).name,
            etl_name="clinfm.convert_csv",
            codes=code_metadata,
            subjects_per_shard=subjects_per_shard,
            expected_events=sum(rows for _, rows in converted),
            overwrite=overwrite,
        )
