"""MEDFuse targets from MEDS: per hospital admission, which diagnosis groups (CCS) it was coded with.

One sample per hospital admission (MIMIC-style MEDS: ``HOSPITAL_ADMISSION//<type>//<location>``
at admission, ``HOSPITAL_DISCHARGE//<location>`` at discharge, the diagnoses at discharge; or
clinfm's MIMIC-III converter: ``VISIT/INPATIENT`` at admission, the diagnoses at discharge):

* ``prediction_time`` is the admission time plus ``hours_after_admission``, but always strictly
  before the stay ends: ``min(admission + hours, end - 1 microsecond)``, where ``end`` is the
  earlier of the discharge and the admission's first diagnosis event. So a model predicting at that
  time never sees the discharge or the codes it predicts. A stay shorter than the hours is
  *clipped* (counted);
* one boolean column per diagnosis group: does the admission's diagnosis list hold a code of that
  group. The columns are the ``top`` groups with the most admissions (ties: the lower category
  number), among those with at least ``min_count`` admissions; or the ``groups`` named (by category,
  ``"CCS/108"``, or by column name); ``exclude`` names groups never chosen among the top (e.g. the
  V-code groups ``CCS/257`` "Other aftercare" or ``CCS/259`` "Residual codes", which are among the
  most frequent in MIMIC-IV but are not diseases). A column is named by a filesystem-safe slug of
  its category and description, ``ccs_108_congestive_heart_failure_nonhypertensive`` (at most 64
  characters); the report maps names to categories and descriptions;
* rows are sorted by ``subject_id`` and ``prediction_time``, as MEDS label files are. Two
  admissions of one subject with the same prediction time (overlapping stays) become one sample
  whose groups are the union of theirs (counted), so a sample is one (subject, time) pair.

Diagnoses are linked to admissions by ``hadm_id`` (or ``encounter_id``) when the admission events
carry one, else by time: an admission ends at the first discharge at or after it, and the
diagnoses of its subject stamped at exactly that discharge time are its diagnoses. An admission
with no diagnosis is dropped (counted).

Diagnosis codes are recognised in two spellings: ``DIAGNOSIS//ICD//9//4280`` and
``DIAGNOSIS//ICD//10//I509`` (MEDS_transforms MIMIC-IV, undotted), and ``ICD9CM/428.0`` /
``ICD10CM/I50.9`` (clinfm's vocabularies, dotted or not). Other ``DIAGNOSIS//`` codes are counted
as not recognised. Grouping (``scheme``):

* ``"ccs"`` (default): ICD-9-CM codes go to their single-level CCS category; ICD-10-CM codes are
  first mapped to ICD-9-CM through the CMS GEM (ICD-10-CM -> ICD-9-CM) and then to CCS, so the
  diagnoses of ICD-9 and ICD-10 admissions land in one category system. The GEM's plain entries
  are alternatives, so a code takes the category most of its targets fall in (``I10`` -> 401.0,
  401.1, 401.9 -> CCS 98, not malignant 401.0's CCS 99); the parts of a combination entry are all
  kept (``E11.52`` -> 250.70 + 443.81 + 785.4), so such a code may count in several groups
  (reported);
* ``"ccsr"``: the other way round, ICD-10-CM codes to their default CCSR category, ICD-9-CM codes
  through the GEM ICD-9-CM -> ICD-10-CM first (same rule). The package has no CCSR names, so a
  CCSR column is named by its category only (``ccsr_cir019``).

A code the vocabulary tables cannot place (not a valid code of the FY2015 ICD-9-CM / FY2023-2024
ICD-10-CM releases, or without a GEM entry) has no group; :class:`TargetReport` counts those
events and their share.

:func:`write_task` writes the labels as one MEDS label file per group, ``<folder>/<name>.parquet``
(``subject_id``, ``prediction_time``, ``boolean_value``), plus ``groups.json`` with each group's
category and description: the layout :func:`clinfm.fuse.samples.disease_labels` reads when the
folder is ``<root>/tasks/<task>``. :func:`read_task` reads such a folder back by its path.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clinfm.errors import InputError
from clinfm.fuse.samples import Selector, select_events, task_folder_labels
from clinfm.io import replace_directory

#: Codes of hospital admissions (MEDS_transforms MIMIC-IV; clinfm's MIMIC-III converter).
ADMISSION_PREFIXES: tuple[str, ...] = ("HOSPITAL_ADMISSION//", "VISIT/INPATIENT")
#: Codes of hospital discharges.
DISCHARGE_PREFIXES: tuple[str, ...] = ("HOSPITAL_DISCHARGE//",)
#: Columns that name an admission, in order of preference.
ADMISSION_KEYS: tuple[str, ...] = ("hadm_id", "encounter_id")
#: Grouping schemes: (the vocabulary grouped directly, its grouper, the other vocabulary).
SCHEMES: dict[str, tuple[str, str, str]] = {
    "ccs": ("ICD9CM", "CCS", "ICD10CM"),
    "ccsr": ("ICD10CM", "CCSR", "ICD9CM"),
}
GROUPS_FILE = "groups.json"
GROUPS_FORMAT = "clinfm-diagnosis-groups"
GROUPS_VERSION = 1

_DIAGNOSIS = r"^(?:DIAGNOSIS//ICD//(?P<meds>9|10)//(?P<meds_code>.+)|(?P<vocab>ICD9CM|ICD10CM)/(?P<code>.+))$"
_SLUG_LENGTH = 64
_ONE_US = pl.duration(microseconds=1)


@dataclass
class TargetReport:
    """What building the diagnosis-group targets found."""

    scheme: str = "ccs"
    admission_key: str | None = None  # the column that linked diagnoses, or None (by discharge time)
    admissions: int = 0  # admissions found
    admissions_without_diagnoses: int = 0  # dropped
    admissions_clipped: int = 0  # stays shorter than the hours: prediction time just before the end
    admissions_merged: int = 0  # admissions folded into another of the same subject and prediction time
    samples: int = 0
    diagnoses_without_admission: int = 0  # recognised diagnosis events no admission claimed
    unrecognised_diagnoses: int = 0  # DIAGNOSIS// events that are not ICD-9-CM or ICD-10-CM
    diagnosis_events: int = 0  # distinct (admission, code) pairs of the kept admissions
    diagnosis_events_without_group: int = 0
    distinct_codes: int = 0
    distinct_codes_without_group: int = 0
    codes_mapped_through_gem: int = 0  # distinct codes of the other vocabulary, mapped via the GEM
    codes_in_several_groups: int = 0  # distinct codes that count in more than one group
    groups_seen: int = 0  # groups with at least one admission
    positives: dict[str, int] = field(default_factory=dict)  # column name -> admissions
    categories: dict[str, str] = field(default_factory=dict)  # column name -> category (CCS/108)
    descriptions: dict[str, str] = field(default_factory=dict)  # column name -> description

    @property
    def share_without_group(self) -> float:
        """The share of diagnosis events (of kept admissions) whose code has no group."""
        return self.diagnosis_events_without_group / self.diagnosis_events if self.diagnosis_events else 0.0

    def lines(self) -> list[str]:
        """One sentence per count."""
        link = f"by {self.admission_key}" if self.admission_key else "by discharge time"
        out = [
            f"{self.admissions:,} hospital admissions were found; diagnoses were linked to them {link}.",
            f"{self.admissions_without_diagnoses:,} admissions had no diagnosis code and were dropped.",
        ]
        if self.admissions_merged:
            out.append(
                f"{self.admissions_merged:,} admissions shared a subject and prediction time with another "
                "and were merged into it."
            )
        out.append(f"{self.samples:,} samples were built, one per admission.")
        if self.admissions_clipped:
            out.append(
                f"{self.admissions_clipped:,} stays were shorter than the prediction delay; their prediction "
                "time was set just before discharge."
            )
        if self.diagnoses_without_admission:
            out.append(f"{self.diagnoses_without_admission:,} diagnosis events belonged to no admission.")
        if self.unrecognised_diagnoses:
            out.append(
                f"{self.unrecognised_diagnoses:,} diagnosis events were not ICD-9-CM or ICD-10-CM codes "
                "and were ignored."
            )
        out.append(
            f"{self.diagnosis_events_without_group:,} of {self.diagnosis_events:,} diagnoses "
            f"({self.share_without_group:.1%}) have no {self.scheme.upper()} group; "
            f"{self.distinct_codes_without_group:,} of {self.distinct_codes:,} distinct codes."
        )
        if self.codes_mapped_through_gem:
            out.append(
                f"{self.codes_mapped_through_gem:,} distinct codes were mapped to the other ICD revision "
                "through the GEMs first."
            )
        if self.codes_in_several_groups:
            out.append(f"{self.codes_in_several_groups:,} distinct codes count in more than one group.")
        out.append(f"{len(self.positives):,} of {self.groups_seen:,} groups seen were kept as targets.")
        for name, n in self.positives.items():
            share = n / self.samples if self.samples else 0.0
            out.append(f"{name} ({self.descriptions[name]}): {n:,} positive admissions ({share:.1%}).")
        return out


# ----------------------------------------------------------------------------------------------
# Groups


def slug(text: str, *, length: int = _SLUG_LENGTH) -> str:
    """A filesystem-safe lower-case name: letters and digits joined by single underscores."""
    words = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if len(words) <= length:
        return words
    return words[:length].rsplit("_", 1)[0] if "_" in words[:length] else words[:length]


def _column_name(category: str, description: str | None) -> str:
    """``CCS/108`` + ``Congestive heart failure; nonhypertensive`` -> ``ccs_108_congestive_heart_...``."""
    return slug(f"{category} {description or ''}")


def _group_table(scheme: str) -> pl.DataFrame:
    """Every category of the scheme: category, description, name (its column name)."""
    from clinfm.vocab.icd import categories

    grouper = SCHEMES[scheme][1]
    table = (
        categories(grouper)
        .group_by("category", maintain_order=True)
        .agg(pl.col("category_description").drop_nulls().first())
        .with_columns(pl.col("category_description").fill_null(pl.col("category")))
    )
    names = [
        _column_name(c, None if d == c else d)
        for c, d in zip(table["category"], table["category_description"], strict=True)
    ]
    number = pl.col("category").str.extract(r"(\d+)$").cast(pl.Int64)
    return table.select(
        "category",
        description="category_description",
        name=pl.Series(names, dtype=pl.String),
        order=number,
    )


def _bridged_groups(codes: pl.Series, source: str, target: str, grouper: str) -> pl.DataFrame:
    """DataFrame[code, category] for ``source`` codes grouped through the GEM ``source -> target``.

    A GEM's plain entries are alternatives (I10 -> 401.0, 401.1 or 401.9: one of them, not all), so
    a code takes the category most of them fall in (401.x: essential hypertension, CCS 98, not
    malignant 401.0's CCS 99; ties: the lower category number). A code with only combination
    entries needs every choice list of its first scenario (E11.52 -> 250.70 + 443.81 + 785.4), so
    each choice list contributes its most common category. A code without any GEM entry, or whose
    targets have no category, keeps a null category.
    """
    from clinfm.vocab.icd import DOTTERS, categories, gem

    body = pl.col("code").str.replace(r"^[^/]*/", "")
    frame = (
        pl.DataFrame({"code": codes})
        .unique()
        .with_columns(key=pl.concat_str(pl.lit(f"{source}/"), DOTTERS[source](body)))
    )
    groups = categories(grouper).select(target_code="code", category="category").unique("target_code")
    rows = (
        frame.join(gem(source, target), left_on="key", right_on="source_code")
        .join(groups, on="target_code", how="inner")
        .with_columns(plain=pl.col("combination").not_().any().over("code"))
        .filter(
            pl.when(pl.col("plain"))
            .then(pl.col("combination").not_())
            .otherwise(pl.col("scenario") == pl.col("scenario").min().over("code"))
        )
    )
    order = pl.col("category").str.extract(r"(\d+)$").cast(pl.Int64)
    votes = (
        rows.group_by("code", "choice_list", "category")
        .agg(n=pl.col("target_code").n_unique())
        .sort(["code", "choice_list", "n", order, "category"], descending=[False, False, True, False, False])
        .unique(["code", "choice_list"], keep="first", maintain_order=True)
        .select("code", "category")
    )
    return frame.select("code").join(votes, on="code", how="left").unique()


def _code_groups(codes: pl.DataFrame, scheme: str) -> tuple[pl.DataFrame, int]:
    """DataFrame[code, category] (null category: none) for distinct clinfm codes, and how many
    codes went through the GEM."""
    from clinfm.vocab.icd import map_codes

    direct, grouper, other = SCHEMES[scheme]
    code = pl.col("code")
    mine = codes.filter(code.str.starts_with(f"{direct}/"))["code"]
    theirs = codes.filter(code.str.starts_with(f"{other}/"))["code"]
    grouped = map_codes(mine, direct, grouper).rename({"mapped": "category"})
    through = _bridged_groups(theirs, other, direct, grouper)
    return pl.concat([grouped, through]).unique(), theirs.n_unique()


# ----------------------------------------------------------------------------------------------
# Admissions and their diagnoses


def _admission_key(events: pl.LazyFrame, admissions: pl.Expr) -> str | None:
    names = events.collect_schema().names()
    for key in ADMISSION_KEYS:
        if key in names:
            has = events.filter(admissions).select(pl.col(key).is_not_null().any()).collect().item()
            if has:
                return key
    return None


def _diagnoses(events: pl.LazyFrame, key: str | None) -> tuple[pl.DataFrame, int]:
    """Recognised diagnosis events: subject_id, time, key, code (as ICD9CM/... or ICD10CM/...);
    and the number of DIAGNOSIS// events not recognised."""
    parts = pl.col("code").str.extract_groups(_DIAGNOSIS)
    vocabulary = (
        pl.when(parts.struct.field("meds") == "9")
        .then(pl.lit("ICD9CM"))
        .when(parts.struct.field("meds") == "10")
        .then(pl.lit("ICD10CM"))
        .otherwise(parts.struct.field("vocab"))
    )
    body = pl.coalesce(parts.struct.field("meds_code"), parts.struct.field("code")).str.strip_chars()
    candidates = events.filter(
        pl.col("code").str.starts_with("DIAGNOSIS//") | pl.col("code").str.contains(r"^ICD(?:9|10)CM/")
    ).select(
        "subject_id",
        pl.col("time").cast(pl.Datetime("us")),
        (pl.col(key) if key else pl.lit(None, pl.Int64)).alias("_key"),
        dx=pl.concat_str(vocabulary, pl.lit("/"), body),
    )
    frame = candidates.collect()
    recognised = frame.filter(pl.col("dx").is_not_null() & pl.col("time").is_not_null())
    return recognised.rename({"dx": "code"}), frame.height - recognised.height


def _stays(events: pl.LazyFrame, key: str | None, admissions: pl.Expr, discharges: pl.Expr) -> pl.DataFrame:
    """One row per admission: _admission (its number), subject_id, admitted, _key, discharged."""
    keyed = pl.col(key) if key else pl.lit(None, pl.Int64)
    admitted = (
        events.filter(admissions & pl.col("time").is_not_null())
        .select("subject_id", admitted=pl.col("time").cast(pl.Datetime("us")), _key=keyed)
        .unique()
        .sort("subject_id", "admitted", "_key", nulls_last=True)
        .with_row_index("_admission")
        .collect()
    )
    left = events.filter(discharges & pl.col("time").is_not_null()).select(
        "subject_id", discharged=pl.col("time").cast(pl.Datetime("us")), _key=keyed
    )
    if key:
        ends = left.group_by("_key").agg(pl.col("discharged").min()).collect()
        return admitted.join(ends, on="_key", how="left")
    ends = left.select("subject_id", "discharged").unique().sort("subject_id", "discharged").collect()
    return admitted.sort("admitted").join_asof(  # sorted on the time, so within each subject too
        ends.sort("discharged"),
        left_on="admitted",
        right_on="discharged",
        by="subject_id",
        strategy="forward",
        check_sortedness=False,
    )


def _linked(stays: pl.DataFrame, diagnoses: pl.DataFrame, key: str | None) -> pl.DataFrame:
    """Diagnoses with their admission: _admission, code, time."""
    if key:
        return diagnoses.join(stays.select("_admission", "_key"), on="_key", how="inner")
    by_time = stays.select("_admission", "subject_id", time="discharged").drop_nulls("time")
    return diagnoses.join(by_time, on=["subject_id", "time"], how="inner")


def diagnosis_group_labels(
    events: pl.LazyFrame | pl.DataFrame,
    *,
    top: int = 10,
    hours_after_admission: float = 24.0,
    min_count: int = 1,
    groups: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    scheme: str = "ccs",
    admissions: Selector = ADMISSION_PREFIXES,
    discharges: Selector = DISCHARGE_PREFIXES,
) -> tuple[pl.DataFrame, list[str], TargetReport]:
    """Per hospital admission, whether it was coded with each of the chosen diagnosis groups.

    Returns the labels (``subject_id``, ``prediction_time`` and one boolean column per group), the
    column names in order and a :class:`TargetReport` (which also maps each name to its category
    and description). ``scheme`` is ``"ccs"`` or ``"ccsr"``; ``admissions`` and ``discharges``
    select those events (code prefixes or a Polars expression). See the module docstring for every
    rule.
    """
    if scheme not in SCHEMES:
        raise InputError(f"unknown grouping scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    try:
        hours = float(hours_after_admission)
    except (TypeError, ValueError):
        hours = math.nan
    if not math.isfinite(hours) or hours < 0:
        raise InputError(f"hours_after_admission must be a finite number >= 0, got {hours_after_admission}")
    if groups is None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InputError(f"top must be a whole number >= 1, got {top!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise InputError(f"min_count must be a whole number >= 1, got {min_count!r}")
    events = events.lazy()
    names = events.collect_schema().names()
    missing = [c for c in ("subject_id", "time", "code") if c not in names]
    if missing:
        raise InputError(f"events lack the column(s) {missing}; MEDS events need subject_id, time, code")
    is_admission, is_discharge = select_events(admissions), select_events(discharges)

    key = _admission_key(events, is_admission)
    report = TargetReport(scheme=scheme, admission_key=key)
    stays = _stays(events, key, is_admission, is_discharge)
    if stays.is_empty():
        raise InputError(
            "no hospital admissions found: no event has an admission code (e.g. HOSPITAL_ADMISSION//)"
        )
    report.admissions = stays.height
    if key is None and stays["discharged"].is_null().all():
        raise InputError(
            "the admissions carry no hadm_id/encounter_id and no discharge event follows them: "
            "the diagnoses cannot be linked to an admission"
        )
    diagnoses, report.unrecognised_diagnoses = _diagnoses(events, key)
    if diagnoses.is_empty():
        raise InputError(
            "no diagnosis codes found: expected DIAGNOSIS//ICD//9|10//<code> or ICD9CM/, ICD10CM/ codes"
        )
    diagnoses = diagnoses.with_row_index("_dx")
    linked = _linked(stays, diagnoses, key)
    report.diagnoses_without_admission = diagnoses.height - linked["_dx"].n_unique()
    if linked.is_empty():
        raise InputError("no diagnosis code belongs to any admission (by hadm_id or discharge time)")

    # Samples: admissions with at least one diagnosis; prediction time strictly before the end.
    first_dx = linked.group_by("_admission").agg(first_dx=pl.col("time").min())
    stays = stays.join(first_dx, on="_admission", how="inner")
    report.admissions_without_diagnoses = report.admissions - stays.height
    end = pl.min_horizontal("discharged", "first_dx")
    delayed = pl.col("admitted") + pl.duration(microseconds=round(hours * 3_600_000_000))
    stays = stays.with_columns(
        clipped=delayed >= end, prediction_time=pl.min_horizontal(delayed, end - _ONE_US)
    )
    report.admissions_clipped = int(stays["clipped"].sum())

    # Codes -> groups.
    pairs = linked.select("_admission", "code").unique()
    mapping, report.codes_mapped_through_gem = _code_groups(pairs.select("code").unique(), scheme)
    per_code = mapping.group_by("code").agg(pl.col("category").drop_nulls())
    report.distinct_codes = per_code.height
    report.distinct_codes_without_group = per_code.filter(pl.col("category").list.len() == 0).height
    report.codes_in_several_groups = per_code.filter(pl.col("category").list.len() > 1).height
    report.diagnosis_events = pairs.height
    report.diagnosis_events_without_group = pairs.join(
        per_code.filter(pl.col("category").list.len() == 0), on="code", how="semi"
    ).height

    # One sample per (subject, prediction time): overlapping admissions are merged.
    stays = stays.with_columns(_sample=pl.col("_admission").min().over("subject_id", "prediction_time"))
    report.admissions_merged = stays.height - stays["_sample"].n_unique()
    hits = (
        pairs.join(mapping.drop_nulls("category"), on="code")
        .join(stays.select("_admission", "_sample"), on="_admission")
        .select("_sample", "category")
        .unique()
    )
    table = _group_table(scheme)
    counts = (
        hits.group_by("category")
        .agg(n=pl.len())
        .join(table, on="category", how="left")
        .sort(["n", "order", "category"], descending=[True, False, False])
    )
    report.groups_seen = counts.height
    if groups is None:
        dropped = _named_groups(exclude, table)["category"] if exclude else pl.Series([], dtype=pl.String)
        chosen = counts.filter(
            (pl.col("n") >= min_count) & ~pl.col("category").is_in(dropped.to_list())
        ).head(top)
        if chosen.is_empty():
            raise InputError(f"no diagnosis group has at least {min_count} admissions")
    else:
        chosen = _named_groups(groups, table).join(counts.select("category", "n"), on="category", how="left")
        chosen = chosen.with_columns(pl.col("n").fill_null(0))

    samples = (
        stays.filter(pl.col("_admission") == pl.col("_sample"))
        .select("_sample", pl.col("subject_id").cast(pl.Int64), "prediction_time")
        .sort("subject_id", "prediction_time")
    )
    report.samples = samples.height
    wide = (
        hits.join(chosen.select("category", "name"), on="category")
        .with_columns(value=pl.lit(True))
        .pivot(on="name", index="_sample", values="value")
    )
    labels_names = chosen["name"].to_list()
    labels = samples.join(wide, on="_sample", how="left", maintain_order="left").select(
        "subject_id",
        "prediction_time",
        *[
            (pl.col(n) if n in wide.columns else pl.lit(None, pl.Boolean)).fill_null(False).alias(n)
            for n in labels_names
        ],
    )
    report.positives = {n: int(labels[n].sum()) for n in labels_names}
    report.categories = dict(zip(chosen["name"], chosen["category"], strict=True))
    report.descriptions = dict(zip(chosen["name"], chosen["description"], strict=True))
    return labels, labels_names, report


def _named_groups(groups: Sequence[str], table: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``table`` for groups named by category (``CCS/108``) or column name, in order."""
    if isinstance(groups, str):
        groups = [groups]
    if not groups:
        raise InputError("an empty list of groups selects no target")
    rows = []
    for group in dict.fromkeys(groups):
        match = table.filter((pl.col("category") == group) | (pl.col("name") == group))
        if match.is_empty():
            example = table["category"][0]
            raise InputError(f"unknown diagnosis group {group!r}; name a category such as {example!r}")
        rows.append(match.head(1))
    return pl.concat(rows)


# ----------------------------------------------------------------------------------------------
# Task folders


def _is_task_folder(folder: Path) -> bool:
    """A folder write_task may replace: only label files and groups.json (or nothing)."""
    return all(p.is_file() and (p.suffix == ".parquet" or p.name == GROUPS_FILE) for p in folder.iterdir())


def write_task(
    folder: str | os.PathLike,
    labels: pl.DataFrame,
    names: Sequence[str],
    descriptions: Mapping[str, str],
    *,
    categories: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one MEDS label file per group, ``<folder>/<name>.parquet``, and ``groups.json``.

    The folder is built beside its target and renamed into place, so a crash leaves the old task or
    the new one. An existing non-empty folder is replaced only with ``overwrite``, and only if it
    holds nothing but label files and ``groups.json``.
    """
    from clinfm.events.meds import write_labels

    folder = Path(folder)
    names = list(names)
    if not names:
        raise InputError("no groups to write")
    missing = [c for c in ("subject_id", "prediction_time", *names) if c not in labels.columns]
    if missing:
        raise InputError(f"the labels lack the column(s) {missing}")
    for name in names:
        if name != slug(name, length=len(name)) or name == Path(GROUPS_FILE).stem:
            raise InputError(f"group name {name!r} is not a file-safe slug (lower-case letters, digits, _)")
    no_description = [n for n in names if n not in descriptions]
    if no_description:
        raise InputError(f"no description for the group(s) {no_description}")
    if labels.select("subject_id", "prediction_time").is_duplicated().any():
        raise InputError(
            "two samples share a subject and prediction time; MEDS label files cannot tell them apart"
        )
    nonempty = folder.exists() and (not folder.is_dir() or any(folder.iterdir()))
    if nonempty and not overwrite:
        raise InputError("task folder already exists; choose another path or pass overwrite", path=folder)
    if nonempty and not (folder.is_dir() and _is_task_folder(folder)):
        raise InputError(
            "exists and is not a task folder (label files and groups.json); refusing to replace it",
            path=folder,
        )

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for name in names:
            frame = labels.select("subject_id", "prediction_time", pl.col(name).alias("boolean_value"))
            write_labels(tmp / f"{name}.parquet", frame)
        groups = [
            {
                "name": n,
                "category": (categories or {}).get(n),
                "description": descriptions[n],
            }
            for n in names
        ]
        payload = {"format": GROUPS_FORMAT, "version": GROUPS_VERSION, "groups": groups}
        (tmp / GROUPS_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, folder)
    return folder


def read_task(folder: str | os.PathLike) -> tuple[pl.DataFrame, list[str], dict[str, str]]:
    """A task folder written by :func:`write_task` (or any folder of binary label files sharing
    their samples): the labels, the names (in ``groups.json`` order when it lists them all, else
    sorted) and name -> description (the name itself when ``groups.json`` is absent)."""
    folder = Path(folder)
    labels, names = task_folder_labels(folder)
    descriptions = {n: n for n in names}
    listing = folder / GROUPS_FILE
    if listing.is_file():
        try:
            groups = json.loads(listing.read_text())["groups"]
            described = {g["name"]: g.get("description") or g["name"] for g in groups}
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"not a readable groups file ({err})", path=listing) from None
        ordered = [g["name"] for g in groups]
        if sorted(ordered) == sorted(names):
            names = ordered
        descriptions.update({n: d for n, d in described.items() if n in descriptions})
    return labels.select("subject_id", "prediction_time", *names), names, {n: descriptions[n] for n in names}


__all__ = [
    "ADMISSION_PREFIXES",
    "DISCHARGE_PREFIXES",
    "SCHEMES",
    "TargetReport",
    "diagnosis_group_labels",
    "read_task",
    "slug",
    "write_task",
]
