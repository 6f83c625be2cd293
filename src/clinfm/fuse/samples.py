"""MEDFuse inputs from MEDS: per sample, the lab results and the notes known at prediction time.

A *sample* is one row of a MEDS label table (``subject_id``, ``prediction_time``, ...). Its
``sample_id`` is the label's row number, as in :func:`clinfm.events_as_of`, which is the only way
events reach a sample here. So a sample sees exactly the events **at or before** its
``prediction_time`` (an event at exactly ``prediction_time`` is included, as the MEDS label schema
says); nothing later ever enters. Static events (null time) are not labs or notes and are ignored.

Which events are labs and which are notes (``labs=`` and ``notes=``): a tuple of code prefixes, or
any Polars boolean expression over the event columns. The defaults fit what clinfm writes and reads:

* labs, :data:`LAB_PREFIXES`: ``LOINC/`` (the synthetic cohorts, MIMIC-III items D_LABITEMS maps,
  OMOP MEASUREMENT with CONCEPT), ``LAB/`` (MIMIC-III items without a LOINC code, and the
  MEDS_transforms MIMIC-IV codes ``LAB//<itemid>//<unit>``; note that the MIMIC-IV demo files
  chart events such as vital signs under ``LAB//`` too) and ``LOCAL_LAB/`` (a site's own, as in
  docs/data.md's CSV mapping);
* notes, :data:`NOTE_PREFIXES`: ``NOTE/`` (``NOTE/PROGRESS``, ``NOTE/ED``, ``NOTE/DISCHARGE`` in
  the synthetic cohorts, ``NOTE/<CATEGORY>`` from MIMIC-III, ``NOTE/OMOP_<class>`` from OMOP),
  with the text in ``text_value``; a note row without text is ignored.

Labs (:func:`lab_table`), one row per sample, every sample kept, in label order:

* the item is the code; MEDS_transforms codes with the unit as a last ``//`` part
  (``LAB//50912//mg/dL``) give the item ``LAB//50912`` and that unit (``unit_from_code``);
  otherwise the unit is the ``unit`` column where the data has one. ``UNK``, ``N/A`` and empty
  units mean "unknown" (null);
* the value is ``numeric_value``; where that is null or not finite, ``text_value`` parsed as a
  number (``parse_text``, counted); otherwise the row is dropped and counted (text that is not a
  number, e.g. ``"<0.5"`` or ``"Positive"``, or no value at all). A dropped row never hides an
  older numeric value of the same item;
* units: an item seen in more than one (known) unit keeps the rows of its most frequent unit
  among the distinct lab events the samples see (ties: the alphabetically first), or of the unit
  that ``units={item: unit}`` fixes (e.g. one chosen on the training split); rows in other units
  are dropped, and the item, its units and their counts are reported. Rows of unknown unit are
  kept: nothing says they disagree;
* within the optional look-back ``window`` (a timedelta: events with
  ``prediction_time - window <= time <= prediction_time``), the **most recent** value of each item
  (a tie in time keeps the later row of the file);
* columns ``sample_id``, ``subject_id``, ``prediction_time``, then per sample the lists ``item``
  (sorted), ``value`` (Float32), ``unit``, ``time`` (when measured) and ``age`` (a Duration:
  ``prediction_time - time``), and ``n_labs``. An item never measured is simply absent
  (missingness is information: the model sees no token); a sample without any lab has empty
  lists and is counted. ``frame.explode(["item", "value", "unit", "time", "age"])`` gives the
  long form (Polars drops samples without labs there unless ``empty_as_null=True``).

Notes (:func:`note_table`), one row per sample, every sample kept, in label order: ``sample_id``,
``subject_id``, ``prediction_time``, ``text`` (the visible notes in time order, joined by a blank
line; ``""`` when none) and ``n_notes``. With ``sections``, only those sections of a note are kept:
a heading is a line starting (after spaces) with a name of letters, digits and ``/ & ( ) , ' -``
followed by ``:`` (``CHIEF COMPLAINT:``, ``History of Present Illness:``), matched to ``sections``
case-insensitively with spaces collapsed; a section runs to the next heading and keeps its heading
line. A note without any heading is kept whole and counted; a note with headings but none of the
named sections contributes nothing (counted; it still counts in ``n_notes``).

Counts (:class:`SampleReport`) are of distinct events, however many samples see one.
:func:`assemble` builds both tables and the report in one call.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clinfm.errors import InputError
from clinfm.events.labels import events_as_of

#: Code prefixes of lab results in the MEDS clinfm writes and reads (see the module docstring).
LAB_PREFIXES: tuple[str, ...] = ("LOINC/", "LAB/", "LOCAL_LAB/")
#: Code prefixes of clinical notes.
NOTE_PREFIXES: tuple[str, ...] = ("NOTE/",)
#: Units that mean "unknown" (MEDS_transforms writes ``UNK``; MIMIC-IV has ``N/A``).
UNKNOWN_UNITS: tuple[str, ...] = ("", "UNK", "N/A", "NA", "NONE", "NULL", "?")
#: The sections MEDFuse is reported to keep (chief complaint, present illness, medical history,
#: medication on admission), as MIMIC-III discharge summaries head them.
MEDFUSE_SECTIONS: tuple[str, ...] = (
    "chief complaint",
    "history of present illness",
    "past medical history",
    "medications on admission",
)
#: The multi-label task of the synthetic cohorts: ``tasks/diseases/<condition>.parquet``.
DISEASES_TASK = "diseases"

HEADING = r"[A-Za-z][A-Za-z0-9 /&(),'\-]{0,59}"
NOTE_SEPARATOR = "\n\n"
_SECTION_MARK = "\x1f"  # ASCII unit separator: never in clinical text

Selector = Sequence[str] | pl.Expr
Labels = pl.DataFrame | pl.LazyFrame


@dataclass
class SampleReport:
    """What sample assembly found; ``None`` where the table that counts it was not built."""

    samples: int = 0
    samples_without_labs: int | None = None
    samples_without_notes: int | None = None
    lab_values_used: int | None = None  # distinct lab events kept, before "most recent per item"
    non_numeric_labs_dropped: int | None = None  # text that is not a number
    empty_labs_dropped: int | None = None  # neither a number nor text
    labs_parsed_from_text: int | None = None
    unit_conflicts: dict[str, dict[str, int]] = field(default_factory=dict)  # item -> unit -> events
    kept_units: dict[str, str] = field(default_factory=dict)  # item -> the unit kept, items in conflict
    item_units: dict[str, str] = field(default_factory=dict)  # item -> the unit kept, every item with one
    unit_conflict_labs_dropped: int | None = None
    notes_used: int | None = None
    notes_without_headings: int | None = None
    notes_without_named_sections: int | None = None

    def lines(self) -> list[str]:
        """One sentence per count."""
        out = [f"{self.samples:,} samples were assembled."]
        if self.samples_without_labs is not None:
            out.append(f"{self.samples_without_labs:,} samples have no lab result before prediction time.")
        if self.lab_values_used is not None:
            out.append(f"{self.lab_values_used:,} lab results were visible and usable.")
        if self.non_numeric_labs_dropped is not None:
            out.append(f"{self.non_numeric_labs_dropped:,} lab values were not numbers and were dropped.")
        if self.empty_labs_dropped is not None:
            out.append(f"{self.empty_labs_dropped:,} lab results had no value at all and were dropped.")
        if self.labs_parsed_from_text:
            out.append(f"{self.labs_parsed_from_text:,} lab values were read from their text.")
        if self.unit_conflict_labs_dropped is not None:
            out.append(
                f"{len(self.unit_conflicts):,} lab items came in more than one unit; "
                f"{self.unit_conflict_labs_dropped:,} results in a minority unit were dropped."
            )
        for item, units in sorted(self.unit_conflicts.items()):
            seen = ", ".join(f"{unit} ({n:,})" for unit, n in sorted(units.items(), key=lambda u: -u[1]))
            out.append(f"Lab item {item} has units {seen}; {self.kept_units[item]} was kept.")
        if self.samples_without_notes is not None:
            out.append(f"{self.samples_without_notes:,} samples have no note before prediction time.")
        if self.notes_used is not None:
            out.append(f"{self.notes_used:,} notes were visible.")
        if self.notes_without_headings is not None:
            out.append(f"{self.notes_without_headings:,} notes had no section headings and were kept whole.")
        if self.notes_without_named_sections is not None:
            out.append(
                f"{self.notes_without_named_sections:,} notes had headings but none of the named sections."
            )
        return out


@dataclass
class FusionInputs:
    """The two tables of :func:`assemble` and what building them found."""

    labs: pl.DataFrame
    notes: pl.DataFrame
    report: SampleReport


def select_events(selector: Selector) -> pl.Expr:
    """A boolean expression for a tuple of code prefixes, or the expression itself."""
    if isinstance(selector, pl.Expr):
        return selector
    if isinstance(selector, str):
        selector = (selector,)
    prefixes = list(selector)
    if not prefixes:
        raise InputError("an empty list of code prefixes selects no events")
    expr = pl.lit(False)
    for prefix in prefixes:
        expr = expr | pl.col("code").str.starts_with(prefix)
    return expr


def _samples(labels: Labels) -> pl.DataFrame:
    labels = labels.lazy()
    names = labels.collect_schema().names()
    for required in ("subject_id", "prediction_time"):
        if required not in names:
            raise InputError(f"labels lack the column {required!r}")
    if "sample_id" in names:
        raise InputError(
            "labels already have a sample_id column; drop or rename it: samples are numbered here"
        )
    return (
        labels.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))
        .with_row_index("sample_id")
        .collect()
    )


def _visible(
    events: pl.LazyFrame | pl.DataFrame,
    samples: pl.DataFrame,
    selector: Selector,
    columns: list[str],
    window: dt.timedelta | None,
) -> pl.LazyFrame:
    """The selected events each sample may see (via events_as_of), each with a stable event id."""
    events = events.lazy()
    names = events.collect_schema().names()
    keep = ["subject_id", "time", "code", *[c for c in columns if c in names]]
    chosen = (
        events.filter(pl.col("subject_id").is_in(samples["subject_id"].unique().implode()))
        .filter(select_events(selector) & pl.col("time").is_not_null())
        .select(keep)
        .with_columns(*[pl.lit(None, pl.String).alias(c) for c in columns if c not in names])
        .with_row_index("_event")
    )
    visible = events_as_of(chosen, samples.select("subject_id", "prediction_time"))
    if window is not None:
        if window < dt.timedelta(0):
            raise InputError(f"the look-back window must not be negative, got {window}")
        visible = visible.filter(pl.col("time") >= pl.col("prediction_time") - pl.lit(window))
    return visible


def _empty_list(name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name).fill_null(pl.lit([], dtype=pl.List(dtype)))


def lab_table(
    events: pl.LazyFrame | pl.DataFrame,
    labels: Labels,
    *,
    window: dt.timedelta | None = None,
    labs: Selector = LAB_PREFIXES,
    parse_text: bool = True,
    unit_from_code: bool = True,
    units: Mapping[str, str] | None = None,
    report: SampleReport | None = None,
) -> pl.DataFrame:
    """Per sample, the most recent value of each lab item at or before prediction time.

    See the module docstring for the columns and every rule; ``report``, when given, receives the
    counts.
    """
    samples = _samples(labels)
    visible = _visible(events, samples, labs, ["numeric_value", "text_value", "unit"], window)
    unknown = [u.upper() for u in UNKNOWN_UNITS]
    parts = pl.col("code").str.split("//")
    split = unit_from_code & (parts.list.len() >= 3)
    code_unit = pl.when(split).then(parts.list.last())
    unit = pl.coalesce(pl.col("unit").cast(pl.String), code_unit).str.strip_chars()
    numeric = pl.col("numeric_value").cast(pl.Float64)
    parsed = pl.col("text_value").str.strip_chars().cast(pl.Float64, strict=False)
    rows = visible.select(
        "_event",
        "sample_id",
        "subject_id",
        "prediction_time",
        "time",
        item=pl.when(split).then(parts.list.slice(0, parts.list.len() - 1).list.join("//")).otherwise("code"),
        unit=pl.when(unit.str.to_uppercase().is_in(unknown)).then(None).otherwise(unit),
        value=pl.when(numeric.is_finite())
        .then(numeric)
        .when(pl.lit(parse_text) & parsed.is_finite())
        .then(parsed),
        from_text=~numeric.is_finite().fill_null(False) & pl.lit(parse_text) & parsed.is_finite(),
        has_text=pl.col("text_value").str.strip_chars().str.len_chars() > 0,
    ).collect()

    events_seen = rows.unique("_event", keep="first")
    dropped = events_seen.filter(pl.col("value").is_null())
    usable = rows.filter(pl.col("value").is_not_null())
    distinct = usable.unique("_event", keep="first")
    # Units: per item, the events of each known unit; the most frequent (or the fixed one) is kept.
    counts = (
        distinct.filter(pl.col("unit").is_not_null())
        .group_by("item", "unit")
        .agg(n=pl.len())
        .sort(["item", "n", "unit"], descending=[False, True, False])
    )
    kept = counts.group_by("item", maintain_order=True).agg(kept=pl.col("unit").first())
    if units:
        fixed = pl.DataFrame(
            {"item": list(units), "fixed": list(units.values())},
            schema={"item": pl.String, "fixed": pl.String},
        )
        kept = (
            kept.join(fixed, on="item", how="full", coalesce=True)
            .select("item", kept=pl.coalesce("fixed", "kept"))
            .filter(pl.col("kept").is_not_null())
        )
    usable = usable.join(kept, on="item", how="left")
    wrong_unit = (
        pl.col("unit").is_not_null() & pl.col("kept").is_not_null() & (pl.col("unit") != pl.col("kept"))
    )
    conflict_dropped = usable.filter(wrong_unit)["_event"].n_unique()
    usable = usable.filter(~wrong_unit)

    latest = (
        usable.sort(["sample_id", "item", "time", "_event"])
        .unique(["sample_id", "item"], keep="last", maintain_order=True)
        .select(
            "sample_id",
            "item",
            pl.col("value").cast(pl.Float32),
            "unit",
            "time",
            age=pl.col("prediction_time") - pl.col("time"),
        )
        .group_by("sample_id", maintain_order=True)
        .agg(pl.all())
    )
    table = samples.join(latest, on="sample_id", how="left", maintain_order="left").with_columns(
        _empty_list("item", pl.String()),
        _empty_list("value", pl.Float32()),
        _empty_list("unit", pl.String()),
        _empty_list("time", pl.Datetime("us")),
        _empty_list("age", pl.Duration("us")),
    )
    table = table.with_columns(n_labs=pl.col("item").list.len())

    if report is not None:
        # An item is in conflict when it has a known unit other than the one kept.
        counts = counts.join(kept, on="item", how="left")
        odd = counts.filter(pl.col("unit") != pl.col("kept"))["item"].unique()
        ambiguous = counts.filter(pl.col("item").is_in(odd)).select("item", "unit", "n")
        conflicts: dict[str, dict[str, int]] = {}
        for item, unit_name, n in ambiguous.iter_rows():  # one row per (item, unit) in conflict: few
            conflicts.setdefault(item, {})[unit_name] = n
        kept_map = dict(kept.filter(pl.col("item").is_in(list(conflicts))).iter_rows())
        report.samples = samples.height
        report.samples_without_labs = int((table["n_labs"] == 0).sum())
        report.lab_values_used = usable["_event"].n_unique()
        report.non_numeric_labs_dropped = int(dropped["has_text"].fill_null(False).sum())
        report.empty_labs_dropped = dropped.height - report.non_numeric_labs_dropped
        report.labs_parsed_from_text = int(distinct["from_text"].sum())
        report.unit_conflicts = conflicts
        report.kept_units = kept_map
        report.item_units = dict(kept.iter_rows())
        report.unit_conflict_labs_dropped = conflict_dropped
    return table


def _normal_heading(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def note_table(
    events: pl.LazyFrame | pl.DataFrame,
    labels: Labels,
    *,
    sections: Sequence[str] | None = None,
    window: dt.timedelta | None = None,
    notes: Selector = NOTE_PREFIXES,
    report: SampleReport | None = None,
) -> pl.DataFrame:
    """Per sample, the notes at or before prediction time, joined in time order.

    ``sections`` keeps only the named sections of notes with headings (e.g.
    :data:`MEDFUSE_SECTIONS`); see the module docstring for the rules. ``report``, when given,
    receives the counts.
    """
    samples = _samples(labels)
    visible = (
        _visible(events, samples, notes, ["text_value"], window)
        .filter(pl.col("text_value").is_not_null())
        .select("_event", "sample_id", "time", text=pl.col("text_value"))
    )
    # Each distinct note is sectioned once, then shared by every sample that sees it.
    distinct = visible.select("_event", "text").unique("_event", keep="first")
    heading = rf"(?m)^[ \t]*({HEADING}):"
    distinct = distinct.with_columns(has_headings=pl.col("text").str.contains(heading)).collect()
    without_named = None
    if sections is not None:
        wanted = [" ".join(s.lower().rstrip(":").split()) for s in sections]
        chunks = (
            distinct.filter("has_headings")
            .select(
                "_event",
                chunk=pl.col("text").str.replace_all(heading, _SECTION_MARK + "$0").str.split(_SECTION_MARK),
            )
            .explode("chunk")
            .with_columns(name=_normal_heading(pl.col("chunk").str.extract(rf"^[ \t]*({HEADING}):", 1)))
            .filter(pl.col("name").is_in(wanted))
            .group_by("_event", maintain_order=True)
            .agg(kept=pl.col("chunk").str.strip_chars().str.join("\n"))
        )
        distinct = distinct.join(chunks, on="_event", how="left").with_columns(
            text=pl.when("has_headings").then(pl.col("kept")).otherwise("text")
        )
        without_named = int((distinct["has_headings"] & distinct["kept"].is_null()).sum())
    per_sample = (
        visible.select("_event", "sample_id", "time")
        .collect()
        .join(distinct.select("_event", "text"), on="_event", how="left")
        .sort(["sample_id", "time", "_event"])
        .group_by("sample_id", maintain_order=True)
        .agg(n_notes=pl.len(), text=pl.col("text").drop_nulls().str.join(NOTE_SEPARATOR))
    )
    table = (
        samples.join(per_sample, on="sample_id", how="left", maintain_order="left")
        .with_columns(pl.col("text").fill_null(""), pl.col("n_notes").fill_null(0).cast(pl.UInt32))
        .select("sample_id", "subject_id", "prediction_time", "text", "n_notes")
    )
    if report is not None:
        report.samples = samples.height
        report.samples_without_notes = int((table["n_notes"] == 0).sum())
        report.notes_used = distinct.height
        report.notes_without_headings = int((~distinct["has_headings"]).sum())
        report.notes_without_named_sections = without_named
    return table


def assemble(
    events: pl.LazyFrame | pl.DataFrame,
    labels: Labels,
    *,
    window: dt.timedelta | None = None,
    sections: Sequence[str] | None = None,
    labs: Selector = LAB_PREFIXES,
    notes: Selector = NOTE_PREFIXES,
    units: Mapping[str, str] | None = None,
) -> FusionInputs:
    """Both tables of the same samples (rows aligned by ``sample_id``) and one report.

    ``window`` limits the labs only: every note before prediction time is kept (call
    :func:`note_table` with its own ``window`` to limit them too)."""
    report = SampleReport()
    lab = lab_table(events, labels, window=window, labs=labs, units=units, report=report)
    note = note_table(events, labels, sections=sections, notes=notes, report=report)
    return FusionInputs(lab, note, report)


def disease_labels(root: str | os.PathLike, task: str = DISEASES_TASK) -> tuple[pl.DataFrame, list[str]]:
    """The multi-label task ``tasks/<task>/<name>.parquet`` of a dataset: see :func:`task_folder_labels`."""
    folder = Path(root) / "tasks" / task
    if not (folder.is_dir() and any(folder.glob("*.parquet"))):
        raise InputError(f"no label files under tasks/{task}/", path=root)
    return task_folder_labels(folder)


def task_folder_labels(folder: str | os.PathLike) -> tuple[pl.DataFrame, list[str]]:
    """A folder of binary MEDS label files, one per disease, sharing their samples, as one frame:
    ``subject_id``, ``prediction_time`` and one boolean column per disease, in the label files' row
    order; and the disease names (the file names, sorted)."""
    from clinfm.events.meds import read_labels

    folder = Path(folder)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise InputError("no label files in the task folder", path=folder)
    names = [f.stem for f in files]
    frames = [read_labels(f) for f in files]
    base = frames[0].select("subject_id", "prediction_time")
    for file, frame in zip(files, frames, strict=True):
        if "boolean_value" not in frame.columns:
            raise InputError("a disease label file needs a boolean_value column", path=file)
        if not frame.select("subject_id", "prediction_time").equals(base):
            raise InputError(
                f"the samples differ from those of {names[0]}: the diseases must share prediction times",
                path=file,
            )
    return base.with_columns(
        pl.Series(n, f["boolean_value"]) for n, f in zip(names, frames, strict=True)
    ), names


__all__ = [
    "DISEASES_TASK",
    "LAB_PREFIXES",
    "MEDFUSE_SECTIONS",
    "NOTE_PREFIXES",
    "UNKNOWN_UNITS",
    "FusionInputs",
    "SampleReport",
    "assemble",
    "disease_labels",
    "lab_table",
    "note_table",
    "select_events",
    "task_folder_labels",
]
