"""MEDS timelines to Claim-PT inputs: each sample a demographic token and a sequence of visits,
each visit a set of codes with a type and a date.

What the paper's code does, and this tokenizer with ``TokenizerConfig.paper()``:
- a visit is a *set* of codes (diagnoses, procedures, drugs); order inside a visit is meaningless;
- visits are grouped by encounter where the source has one (``encounter_id``, or MIMIC-IV's
  ``hadm_id``), otherwise by calendar day;
- the visit type is inpatient (IP), pharmacy (RX) or other (OP), read from the visit's type events
  (``VISIT/INPATIENT``, ``HOSPITAL_ADMISSION//...``, ``VISIT/PHARMACY``); a visit without any is RX
  when every code in it is a drug, else OP;
- codes are diagnoses, procedures and drugs: demographics, visit markers, MIMIC-IV's admission,
  transfer and discharge events, notes and measurements (events with a value) are not input;
- the date is a day index (1..365) counted from the sample's first kept visit;
- at most 30 visits (the first ones) and 10 codes per visit; the last kept visit is held out of
  the input and is the next-visit (NVP) target, in pre-training and fine-tuning alike;
- codes missing from the pre-training vocabulary are dropped.

Everything is computed with Polars and NumPy into flat arrays with offsets (``PackedVisits``); a
batch is assembled from them with vectorised indexing, never a Python loop over events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import polars as pl

from clinfm.checks import MAX_LENGTH, config_from, flag, integer, one_of
from clinfm.errors import InputError
from clinfm.events.labels import events_as_of
from clinfm.vocab.vocabulary import Vocabulary

DAY_US = 86_400_000_000
VISIT_TYPES = ("PAD", "OP", "IP", "RX")  # id 0 pads
OP, IP, RX = 1, 2, 3
SEXES = ("F", "M", "UNKNOWN")
MAX_AGE = 120  # years; ages above are clipped, an unknown age gets MAX_AGE + 1
#: Day indices are stored as int16, so a date vocabulary has at most this many entries.
MAX_DATE_VOCAB = 32_767
#: The demographic vocabulary is shared by age and sex, as in the paper: ages first, then sexes.
DEMOGRAPHIC_VOCAB = MAX_AGE + 2 + len(SEXES)

ENCOUNTER_COLUMNS = ("encounter_id", "hadm_id", "visit_occurrence_id")
#: Codes that describe the record, not care: never model input.
STRUCTURAL_PREFIXES = ("MEDS_BIRTH", "MEDS_DEATH", "GENDER", "VISIT/", "NOTE/")
#: MIMIC-IV's (MEDS_transforms) administrative events: where the patient was, not what was done.
ADMINISTRATIVE_PREFIXES = (
    "HOSPITAL_ADMISSION",
    "HOSPITAL_DISCHARGE",
    "ICU_ADMISSION",
    "ICU_DISCHARGE",
    "ED_REGISTRATION",
    "ED_OUT",
    "TRANSFER_TO",
)
INPATIENT_MARKERS = ("INPATIENT", "HOSPITAL_ADMISSION", "ICU_ADMISSION")
PHARMACY_MARKERS = ("PHARMACY",)
DRUG_PREFIXES = ("RXNORM/", "DRUG/", "NDC/", "ATC/", "MEDICATION//")


@dataclass(frozen=True)
class TokenizerConfig:
    max_visits: int = 30  # visits kept per sample, the held-out target visit included
    max_codes: int = 10  # codes kept per visit (the first ones recorded)
    keep: Literal["first", "last"] = "first"  # which visits survive truncation
    group_visits_by: Literal["encounter", "day"] = "encounter"
    # The paper's x[:-1], in fine-tuning too: the last kept visit is the NVP target, not input.
    # Pre-training and next-visit prediction always hold it out (ClaimsModel.dataset(hold_out=True)).
    hold_out_last_visit: bool = True
    date_vocab: int = 366  # day indices 1..date_vocab-1; 0 pads

    @classmethod
    def paper(cls) -> TokenizerConfig:
        return cls()

    @classmethod
    def modern(cls) -> TokenizerConfig:
        """For prediction at a time: the most recent visits, all of them input when fine-tuning."""
        return cls(max_visits=64, max_codes=32, keep="last", hold_out_last_visit=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, where: object = None, section: str | None = None) -> TokenizerConfig:
        """Settings read from a file (``where``), each checked; fields this version does not know are
        ignored, as they always were."""
        return config_from(cls, values, TOKENIZER_RULES, where, section=section, ignore_unknown=True)

    def __post_init__(self) -> None:
        minimum = 2 if self.hold_out_last_visit else 1
        if self.max_visits < minimum or self.max_codes < 1 or self.date_vocab < 2:
            raise InputError(
                f"max_visits must be at least {minimum}, max_codes at least 1, date_vocab at least 2"
            )
        if self.keep not in ("first", "last") or self.group_visits_by not in ("encounter", "day"):
            raise InputError("keep must be first|last and group_visits_by encounter|day")


#: What each field of saved tokenizer settings may hold (clinfm.checks).
TOKENIZER_RULES = {
    "max_visits": integer(1, MAX_LENGTH),
    "max_codes": integer(1, MAX_LENGTH),
    "keep": one_of("first", "last"),
    "group_visits_by": one_of("encounter", "day"),
    "hold_out_last_visit": flag(),
    "date_vocab": integer(2, MAX_DATE_VOCAB),
}


def claim_code_filter(columns: list[str]) -> pl.Expr:
    """The events that are claims: coded care, not demographics, visit markers, notes or measurements."""
    keep = ~_starts_with_any(STRUCTURAL_PREFIXES + ADMINISTRATIVE_PREFIXES)
    for value in ("numeric_value", "text_value"):
        if value in columns:
            keep &= pl.col(value).is_null()
    return keep & pl.col("time").is_not_null()


def _starts_with_any(prefixes: tuple[str, ...]) -> pl.Expr:
    return pl.any_horizontal([pl.col("code").str.starts_with(p) for p in prefixes])


def _contains_any(markers: tuple[str, ...]) -> pl.Expr:
    return pl.any_horizontal([pl.col("code").str.contains(m, literal=True) for m in markers])


def ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ranges [start, start + length): (which range, flat position) for every element."""
    owner = np.repeat(np.arange(len(lengths)), lengths)
    first = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=first[1:])
    position = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - first[owner] if len(owner) else 0)
    return owner, position.astype(np.int64)


_PER_SAMPLE = ("age", "sex", "subject_id", "prediction_time")
_PER_VISIT = ("visit_type", "visit_date", "visit_days_before", "visit_age")


@dataclass
class PackedVisits:
    """Samples as flat arrays with offsets (CSR): sample -> visits -> codes.

    ``subject_id`` and ``prediction_time`` stay in memory to join predictions back; they are never
    written into a checkpoint.
    """

    sample_visit_offsets: np.ndarray  # int64 [samples + 1]
    visit_code_offsets: np.ndarray  # int64 [visits + 1]
    codes: np.ndarray  # int32 vocabulary ids
    visit_type: np.ndarray  # int8, VISIT_TYPES ids
    visit_date: np.ndarray  # int16 day index, 1..date_vocab-1
    visit_days_before: np.ndarray  # float32 days from the visit to the sample's reference time
    visit_age: np.ndarray  # float32 age in years at the visit (NaN when the birth date is unknown)
    target_code_offsets: np.ndarray  # int64 [samples + 1] into target_codes: the held-out visit
    target_codes: np.ndarray  # int32
    age: np.ndarray  # int16 age id at the reference time
    sex: np.ndarray  # int8 SEXES id
    subject_id: np.ndarray  # int64
    prediction_time: np.ndarray  # datetime64[us]; NaT in pre-training

    def __len__(self) -> int:
        return len(self.subject_id)

    @property
    def visits_per_sample(self) -> np.ndarray:
        return np.diff(self.sample_visit_offsets)

    @property
    def n_events(self) -> int:
        return len(self.codes) + len(self.target_codes)

    def take(self, rows: np.ndarray) -> PackedVisits:
        """The samples ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.sample_visit_offsets[rows]
        _, visits = ranges(starts, self.sample_visit_offsets[rows + 1] - starts)
        code_starts = self.visit_code_offsets[visits]
        code_counts = self.visit_code_offsets[visits + 1] - code_starts
        target_starts = self.target_code_offsets[rows]
        target_counts = self.target_code_offsets[rows + 1] - target_starts
        return PackedVisits(
            sample_visit_offsets=_offsets(self.sample_visit_offsets[rows + 1] - starts),
            visit_code_offsets=_offsets(code_counts),
            codes=self.codes[ranges(code_starts, code_counts)[1]],
            target_code_offsets=_offsets(target_counts),
            target_codes=self.target_codes[ranges(target_starts, target_counts)[1]],
            **{name: getattr(self, name)[visits] for name in _PER_VISIT},
            **{name: getattr(self, name)[rows] for name in _PER_SAMPLE},
        )

    @classmethod
    def concat(cls, parts: list[PackedVisits]) -> PackedVisits:
        """Samples of several packs, one after the other."""

        def offsets(name: str) -> np.ndarray:
            return _offsets(np.concatenate([np.diff(getattr(p, name)) for p in parts]))

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return cls(
            sample_visit_offsets=offsets("sample_visit_offsets"),
            visit_code_offsets=offsets("visit_code_offsets"),
            target_code_offsets=offsets("target_code_offsets"),
            codes=joined("codes"),
            target_codes=joined("target_codes"),
            **{name: joined(name) for name in _PER_VISIT + _PER_SAMPLE},
        )


def _samples(events: pl.LazyFrame, labels: pl.DataFrame | None) -> pl.LazyFrame:
    """Event rows tagged with ``sample_id``: one sample per label, or one per subject to pre-train."""
    if labels is not None:
        return events_as_of(events, labels.select("subject_id", "prediction_time"))
    # Sorted like events_as_of's output, so "the first codes recorded" means the same in both modes.
    return events.with_columns(
        sample_id=pl.col("subject_id").rank("dense").cast(pl.Int64) - 1,
        prediction_time=pl.lit(None, dtype=pl.Datetime("us")),
    ).sort(["sample_id", "time"], nulls_last=False, maintain_order=True)


def _demographics(events: pl.LazyFrame) -> pl.LazyFrame:
    """Per subject: birth time and sex (from MEDS_BIRTH and GENDER codes, e.g. GENDER/F or GENDER//F)."""
    sex = pl.col("code").str.extract(r"^GENDER/+([A-Za-z]+)").str.to_uppercase().str.slice(0, 1)
    return events.group_by("subject_id").agg(
        birth=pl.col("time").filter(pl.col("code") == "MEDS_BIRTH").min(),
        sex=sex.drop_nulls().first(),
    )


def _visit_key(columns: list[str], config: TokenizerConfig) -> tuple[list[pl.Expr], list[str]]:
    """Encounter id where the source has one (else the calendar day); the day alone if asked."""
    encounter = next((c for c in ENCOUNTER_COLUMNS if c in columns), None)
    day = pl.col("time").dt.epoch("us") // DAY_US
    if config.group_visits_by == "encounter" and encounter is not None:
        enc = pl.col(encounter).cast(pl.Int64)
        return [enc.alias("visit_encounter"), pl.when(enc.is_null()).then(day).alias("visit_day")], [
            encounter
        ]
    return [pl.lit(None, dtype=pl.Int64).alias("visit_encounter"), day.alias("visit_day")], []


def _visits(events: pl.LazyFrame, vocab: Vocabulary, config: TokenizerConfig, columns) -> pl.LazyFrame:
    """One row per (sample, visit): time, type, and its known codes (first recorded, at most max_codes)."""
    key_exprs, _ = _visit_key(columns, config)
    keyed = events.filter(pl.col("time").is_not_null()).with_columns(key_exprs)
    keys = ["sample_id", "visit_encounter", "visit_day"]
    types = keyed.group_by(keys).agg(
        inpatient=_contains_any(INPATIENT_MARKERS).any(),
        pharmacy=_contains_any(PHARMACY_MARKERS).any(),
        typed=_starts_with_any(("VISIT/", *ADMINISTRATIVE_PREFIXES)).any(),
    )
    claims = keyed.filter(claim_code_filter(columns)).with_columns(
        code_id=vocab.encode_expr(pl.col("code")), drug=_starts_with_any(DRUG_PREFIXES)
    )
    claims = claims.filter(pl.col("code_id") != vocab.unk_id)  # unseen codes are dropped, as in the paper
    visits = claims.group_by(keys).agg(
        time=pl.col("time").min(),
        codes=pl.col("code_id").unique(maintain_order=True).head(config.max_codes),
        all_drugs=pl.col("drug").all(),
    )
    visit_type = (
        pl.when(pl.col("inpatient"))
        .then(IP)
        .when(pl.col("pharmacy") | (pl.col("all_drugs") & ~pl.col("typed").fill_null(False)))
        .then(RX)
        .otherwise(OP)
    )
    return visits.join(types, on=keys, how="left", nulls_equal=True).select(
        "sample_id", "time", "codes", visit_type.cast(pl.Int8).alias("visit_type"), "visit_encounter"
    )


def _truncate(visits: pl.LazyFrame, config: TokenizerConfig) -> pl.LazyFrame:
    """Keep max_visits per sample (first or last, in time order) and number them."""
    # Two encounters can start at the same minute: their ids break the tie, so the same visits
    # survive truncation on every run.
    visits = visits.sort(["sample_id", "time", "visit_type", "visit_encounter"], nulls_last=True)
    n = pl.len().over("sample_id").cast(pl.Int64)  # unsigned n - max_visits would wrap around
    position = pl.int_range(pl.len()).over("sample_id")
    kept = position < config.max_visits if config.keep == "first" else position >= n - config.max_visits
    visits = visits.filter(kept)
    return visits.with_columns(
        position=pl.int_range(pl.len()).over("sample_id"), n_visits=pl.len().over("sample_id").cast(pl.Int64)
    )


def tokenize(
    events: pl.LazyFrame | pl.DataFrame | Sequence[pl.LazyFrame],
    vocab: Vocabulary,
    config: TokenizerConfig,
    labels: pl.DataFrame | None = None,
) -> PackedVisits:
    """Pack MEDS events into Claim-PT samples.

    With ``labels`` (subject_id, prediction_time), one sample per label row, in label order, from the
    events at or before its prediction_time only (a label with no visible visit keeps an empty
    sample). Without labels, one sample per subject (pre-training); subjects with too few visits for
    an input and a held-out target are left out.

    ``events`` may be a list of shards (``clinfm.events.meds.scan_shards``): MEDS keeps each subject
    in one shard, so shards are packed one at a time and memory follows the largest shard, not the
    data set.
    """
    if isinstance(events, list | tuple):
        return _tokenize_shards(events, vocab, config, labels)
    return _tokenize_frame(events, vocab, config, labels)


def _tokenize_shards(shards, vocab, config, labels) -> PackedVisits:
    if labels is None:
        parts = [_tokenize_frame(shard, vocab, config) for shard in shards]
        return PackedVisits.concat(parts) if parts else _tokenize_frame(_empty(), vocab, config)
    numbered = labels.with_row_index("label_row")
    parts, label_rows = [], []
    for shard in shards:
        subjects = shard.select("subject_id").unique().collect()
        mine = numbered.join(subjects, on="subject_id", how="semi")
        if mine.height:
            parts.append(_tokenize_frame(shard, vocab, config, mine.drop("label_row")))
            label_rows.append(mine["label_row"].to_numpy())
    absent = numbered.filter(~pl.col("label_row").is_in(np.concatenate(label_rows or [[]]).tolist()))
    if absent.height:  # subjects without any event: empty samples, like a label with no visible visit
        parts.append(_tokenize_frame(_empty(), vocab, config, absent.drop("label_row")))
        label_rows.append(absent["label_row"].to_numpy())
    return PackedVisits.concat(parts).take(np.argsort(np.concatenate(label_rows), kind="stable"))


def _empty() -> pl.LazyFrame:
    return pl.LazyFrame(schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String})


def _tokenize_frame(
    events: pl.LazyFrame | pl.DataFrame, vocab: Vocabulary, config: TokenizerConfig, labels=None
) -> PackedVisits:
    events = events.lazy()
    columns = events.collect_schema().names()
    samples = _samples(events, labels)
    visits = _truncate(_visits(samples, vocab, config, columns), config).collect()
    sample_info = _sample_info(samples, events, labels)
    if config.hold_out_last_visit:
        is_target = visits["position"] == visits["n_visits"] - 1
        targets, inputs = visits.filter(is_target), visits.filter(~is_target)
    else:
        targets, inputs = visits.clear(), visits
    if labels is None:  # pre-training needs an input visit, and a target visit when one is held out
        minimum = 2 if config.hold_out_last_visit else 1
        keep = visits.filter(pl.col("n_visits") >= minimum)["sample_id"].unique()
        sample_info = sample_info.filter(pl.col("sample_id").is_in(keep.implode()))
    return _pack(sample_info, inputs, targets, config)


def _sample_info(samples: pl.LazyFrame, events: pl.LazyFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    if labels is not None:
        info = labels.select("subject_id", "prediction_time").with_row_index("sample_id")
        info = info.with_columns(pl.col("sample_id").cast(pl.Int64))
    else:
        info = samples.select("sample_id", "subject_id", "prediction_time").unique("sample_id").collect()
    return info.join(_demographics(events).collect(), on="subject_id", how="left").sort("sample_id")


def _offsets(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _per_sample(frame: pl.DataFrame, sample_ids: np.ndarray) -> pl.DataFrame:
    """Rows of ``frame`` for the given samples, renumbered 0..n-1 in that order."""
    order = pl.DataFrame({"sample_id": sample_ids, "row": np.arange(len(sample_ids))})
    return frame.join(order, on="sample_id", how="inner").sort(["row", "position"])


def _pack(info: pl.DataFrame, inputs: pl.DataFrame, targets: pl.DataFrame, config) -> PackedVisits:
    sample_ids = info["sample_id"].to_numpy()
    inputs = _per_sample(inputs, sample_ids)
    targets = _per_sample(targets, sample_ids)
    n = len(sample_ids)
    visit_counts = np.bincount(inputs["row"].to_numpy(), minlength=n)
    target_counts = np.bincount(targets["row"].to_numpy(), minlength=n)
    # The reference time: the prediction time, or in pre-training the held-out (or last) visit.
    last_time = (
        pl.concat([inputs.select("row", "time"), targets.select("row", "time")])
        .group_by("row")
        .agg(pl.col("time").max())
    )
    reference = (
        info.with_row_index("row")
        .with_columns(pl.col("row").cast(pl.Int64))
        .join(last_time.with_columns(pl.col("row").cast(pl.Int64)), on="row", how="left")
        .select(pl.coalesce("prediction_time", "time").dt.epoch("us"), "birth", "sex")
    )
    reference_us = reference[:, 0].to_numpy().astype(np.float64)
    birth_us = reference["birth"].dt.epoch("us").to_numpy().astype(np.float64)
    age_years = (reference_us - birth_us) / (365.25 * DAY_US)
    age = np.where(np.isnan(age_years), MAX_AGE + 1, np.clip(np.nan_to_num(age_years), 0, MAX_AGE))
    sex = reference["sex"].replace_strict({"F": 0, "M": 1}, default=2, return_dtype=pl.Int8).to_numpy()

    rows = inputs["row"].to_numpy()
    time_us = inputs["time"].dt.epoch("us").to_numpy().astype(np.float64)
    first_us = np.full(n, np.nan)
    first_rows = np.flatnonzero(inputs["position"].to_numpy() == 0)
    first_us[rows[first_rows]] = time_us[first_rows]
    days = time_us // DAY_US - first_us[rows] // DAY_US  # calendar days, as visits are grouped
    date = 1 + np.clip(days, 0, config.date_vocab - 2)
    code_lists = inputs["codes"]
    return PackedVisits(
        sample_visit_offsets=_offsets(visit_counts),
        visit_code_offsets=_offsets(code_lists.list.len().to_numpy()),
        codes=code_lists.explode().to_numpy().astype(np.int32),
        visit_type=inputs["visit_type"].to_numpy().astype(np.int8),
        visit_date=date.astype(np.int16),
        visit_days_before=((reference_us[rows] - time_us) / DAY_US).astype(np.float32),
        visit_age=((time_us - birth_us[rows]) / (365.25 * DAY_US)).astype(np.float32),
        target_code_offsets=_offsets(np.where(target_counts > 0, _target_lengths(targets, n), 0)),
        target_codes=targets["codes"].explode().to_numpy().astype(np.int32),
        age=np.floor(age).astype(np.int16),
        sex=sex.astype(np.int8),
        subject_id=info["subject_id"].to_numpy().astype(np.int64),
        prediction_time=info["prediction_time"].to_numpy().astype("datetime64[us]"),
    )


def _target_lengths(targets: pl.DataFrame, n: int) -> np.ndarray:
    lengths = np.zeros(n, dtype=np.int64)
    lengths[targets["row"].to_numpy()] = targets["codes"].list.len().to_numpy()
    return lengths
