"""A prepared ECG set: every window of a corpus, resampled to the model's length, in one array on disk.

``clinfm ecg prepare`` (and every command given raw records) reads records one at a time, cuts
them into fixed windows (10 s by default, the paper's), picks and orders the leads, interpolates
each window onto the model's sample count and appends it to ``signals.npy``, so neither preparing
nor training ever holds a corpus in memory: training reads the rows of each batch from the
memory-mapped array. The folder::

    ecg_set.json   settings, counts, skipped records and windows (with the reason)
    signals.npy    float32, windows x leads x samples, millivolts (np.load(..., mmap_mode="r"))
    windows.csv    one row per window: window, record_id, patient_id, source, start_s,
                   sampling_rate, rhythm (the annotation in force; empty when none or mixed)

Records whose sampling rates differ are fine: each window is resampled from its own rate. A record
that cannot be read (missing or truncated signal file, unknown format) is skipped and counted when
it is one of many, and an error when it is the only one; windows with NaN are skipped and counted;
flat leads (a lead off) are kept and counted.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import struct
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from clinfm import progress
from clinfm.checks import MAX_LENGTH, config_from, each, flag, integer, number, one_of, optional, text
from clinfm.ecg.header import check_sampling_rate
from clinfm.ecg.records import (
    LEADS_12,
    PAPER_SAMPLES,
    PAPER_SECONDS,
    Record,
    check_numeric,
    find_records,
    header_fields,
    quality_problems,
    read_records,
    resample,
    select_leads,
    window_label,
    windows,
)
from clinfm.errors import InputError
from clinfm.io import read_csv_rows, write_json_atomic

log = logging.getLogger(__name__)

SET_FILE = "ecg_set.json"
SIGNALS_FILE = "signals.npy"
WINDOWS_FILE = "windows.csv"
RECORDS_FILE = "records.jsonl"  # one line per record: its ids and header fields (Age, Sex, Dx, ...)
FORMAT = "clinfm-ecg-set"
VERSION = 1
WINDOW_COLUMNS = ("window", "record_id", "patient_id", "source", "start_s", "sampling_rate", "rhythm")
_HEADER_BYTES = 128  # room for any 3-d shape; rewritten in place once the window count is known
SHOWN_SKIPS = 20  # skipped records listed by name in ecg_set.json (all are counted)


@dataclass(frozen=True)
class PrepareSettings:
    """How records become model inputs. ``leads`` are taken in this order; a lead a record lacks is
    a row of zeros (``missing_leads="zeros"``) or makes the record a counted skip (``"skip"``)."""

    seconds: float = PAPER_SECONDS
    samples: int = PAPER_SAMPLES
    leads: tuple[str, ...] = LEADS_12
    missing_leads: str = "zeros"
    center: bool = False  # subtract each lead's median per window (PCLR does no such thing)
    sampling_rate: float | None = None  # for .npy records, which carry none

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.samples < 1:
            raise InputError(
                f"window seconds and samples must be positive, got {self.seconds}, {self.samples}"
            )
        if self.missing_leads not in ("zeros", "skip"):
            raise InputError(f"missing leads must be 'zeros' or 'skip', not {self.missing_leads!r}")
        if not self.leads:
            raise InputError("give at least one lead")
        if self.sampling_rate is not None:  # given for .npy records: wrong for all of them, so say it once
            check_sampling_rate(self.sampling_rate, None, field="--sampling-rate")

    @classmethod
    def from_dict(cls, values: dict, *, where: object = None, section: str | None = None) -> PrepareSettings:
        """Settings read from a file (``where``), every field checked."""
        return config_from(cls, values, PREPARE_RULES, where, section=section, convert={"leads": tuple})


#: What each field of saved PrepareSettings may hold (clinfm.checks).
PREPARE_RULES = {
    "seconds": number(0.01, 86_400),
    "samples": integer(1, MAX_LENGTH),
    "leads": each(text(), 1, 1024, unique=True),
    "missing_leads": one_of("zeros", "skip"),
    "center": flag(),
    "sampling_rate": optional(number(1, 1e6)),
}


@dataclass
class PrepareReport:
    records: int = 0
    windows: int = 0
    patients: int = 0
    skipped_records: int = 0
    skipped_windows: Counter = field(default_factory=Counter)
    flat_lead_records: int = 0
    short_records: int = 0
    sampling_rates: Counter = field(default_factory=Counter)
    skips: list[dict] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What a user should know, one sentence each."""
        out = [f"{self.windows} windows from {self.records} records of {self.patients} patients"]
        if self.skipped_records:
            out.append(f"{self.skipped_records} records skipped (unreadable or without the leads asked for)")
        if self.short_records:
            out.append(f"{self.short_records} records shorter than one window (no windows)")
        for why, n in sorted(self.skipped_windows.items()):
            out.append(f"{n} windows skipped: {why}")
        if self.flat_lead_records:
            out.append(f"{self.flat_lead_records} records with a flat lead (kept)")
        if len(self.sampling_rates) > 1:
            rates = ", ".join(f"{rate:g} Hz x {n}" for rate, n in sorted(self.sampling_rates.items()))
            out.append(f"sampling rates differ ({rates}); each window is resampled from its own")
        return out


class WindowWriter:
    """Appends windows to a .npy file whose header is rewritten with the final count on close."""

    def __init__(self, path: Path, leads: int, samples: int):
        self.path, self.shape, self.count = path, (leads, samples), 0
        self.file = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self.file.write(_npy_header((0, *self.shape)))

    def append(self, window: np.ndarray) -> None:
        if window.shape != self.shape:
            raise ValueError(f"window of shape {window.shape}, expected {self.shape}")
        self.file.write(np.ascontiguousarray(window, dtype="<f4").tobytes())
        self.count += 1

    def finish(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header((self.count, *self.shape)))
        self.file.close()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy version-1.0 header of exactly ``_HEADER_BYTES`` bytes (padded with spaces, as NumPy does)."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
    padding = _HEADER_BYTES - 10 - len(text) - 1
    return (
        b"\x93NUMPY\x01\x00" + struct.pack("<H", _HEADER_BYTES - 10) + text.encode() + b" " * padding + b"\n"
    )


def is_prepared(path: str | os.PathLike) -> bool:
    return (Path(path) / SET_FILE).is_file()


def prepare(
    sources: list[str | os.PathLike], out: str | os.PathLike, settings: PrepareSettings = PrepareSettings()
) -> PrepareReport:
    """Write a prepared set of every record under ``sources`` into the (new, empty) folder ``out``."""
    paths = [path for source in sources for path in find_records(source)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = PrepareReport()
    writer = WindowWriter(out / SIGNALS_FILE, len(settings.leads), settings.samples)
    patients: set[str] = set()
    with (
        open(out / WINDOWS_FILE, "w", newline="", encoding="utf-8") as table,
        open(out / RECORDS_FILE, "w", encoding="utf-8") as headers,
    ):
        rows = csv.writer(table)
        rows.writerow(WINDOW_COLUMNS)
        try:
            for path in progress.track(paths, "preparing ECG records"):
                for record in _records(path, paths, settings, report):
                    before = writer.count
                    for row in _add_windows(record, path, writer, settings, report):
                        rows.writerow(row)
                        patients.add(record.patient_id)
                    if writer.count > before:
                        headers.write(json.dumps(_record_row(record)) + "\n")
        finally:
            writer.finish()
    report.windows, report.patients = writer.count, len(patients)
    if not report.windows:
        raise InputError(
            "no usable 10 s windows in these records: " + "; ".join(report.lines()), path=sources[0]
        )
    write_json_atomic(out / SET_FILE, _set_json(settings, report))
    return report


def _records(path: Path, paths: list[Path], settings: PrepareSettings, report: PrepareReport):
    """The records stored at ``path`` (a .npy may hold several); a bad one among many is a counted skip."""
    try:
        found = read_records(path, sampling_rate=settings.sampling_rate)
    except InputError as error:
        if len(paths) == 1:
            raise
        report.skipped_records += 1
        if len(report.skips) < SHOWN_SKIPS:
            report.skips.append({"record": str(path), "why": str(error)})
        log.warning("skipped: %s", error)
        return []
    return found


def _add_windows(record: Record, path: Path, writer: WindowWriter, settings: PrepareSettings, report):
    """Append the record's usable windows; yield their table rows."""
    if settings.missing_leads == "skip" and _absent_leads(record, settings.leads):
        report.skipped_records += 1
        if len(report.skips) < SHOWN_SKIPS:
            missing = ", ".join(_absent_leads(record, settings.leads))
            report.skips.append({"record": record.record_id, "why": f"lacks leads {missing}"})
        return
    report.records += 1
    report.sampling_rates[record.sampling_rate] += 1
    if any(problem.startswith("flat lead") for problem in quality_problems(record)):
        report.flat_lead_records += 1
    signal = select_leads(record, settings.leads)
    chosen = Record(**{**record.__dict__, "signal": signal, "leads": settings.leads})
    cut = windows(chosen, settings.seconds)
    if not cut:
        report.short_records += 1
    for start, window in cut:
        if not np.isfinite(window).all():
            report.skipped_windows["NaN or infinite values"] += 1
            continue
        window = resample(window, settings.samples)
        if settings.center:
            window = window - np.median(window, axis=1, keepdims=True)
        rhythm = window_label(record, start, round(settings.seconds * record.sampling_rate))
        yield (
            writer.count,
            record.record_id,
            record.patient_id,
            str(path),
            round(start / record.sampling_rate, 3),
            record.sampling_rate,
            (rhythm or "").lstrip("("),
        )
        writer.append(window)


def _record_row(record: Record) -> dict[str, str]:
    """A record's ids and its header's ``key: value`` fields (labels such as a Challenge's Age, Sex, Dx)."""
    return {**header_fields(record), "record_id": record.record_id, "patient_id": record.patient_id}


def read_record_fields(folder: str | os.PathLike) -> dict[str, dict[str, str]]:
    """record_id -> header fields, from a prepared set's (or embeddings folder's) records.jsonl."""
    path = Path(folder) / RECORDS_FILE
    if not path.exists():
        return {}
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError) as error:
        raise InputError(f"unreadable record fields: {error}", path=path) from None
    return {row["record_id"]: row for row in rows}


def _absent_leads(record: Record, wanted: tuple[str, ...]) -> list[str]:
    have = {name.lower() for name in record.leads}
    return [name for name in wanted if name.lower() not in have]


def _set_json(settings: PrepareSettings, report: PrepareReport) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "settings": {**asdict(settings), "leads": list(settings.leads)},
        "windows": report.windows,
        "records": report.records,
        "patients": report.patients,
        "skipped_records": report.skipped_records,
        "skipped_windows": dict(report.skipped_windows),
        "short_records": report.short_records,
        "flat_lead_records": report.flat_lead_records,
        "sampling_rates": {f"{rate:g}": n for rate, n in sorted(report.sampling_rates.items())},
        "skips": report.skips,
    }


@dataclass
class ECGSet:
    """A prepared set opened for reading: ``signals`` is memory-mapped, never loaded whole."""

    path: Path
    meta: dict
    signals: np.ndarray
    windows: list[dict]

    @property
    def patient_ids(self) -> np.ndarray:
        return np.array([row["patient_id"] for row in self.windows], dtype=str)

    @property
    def record_ids(self) -> np.ndarray:
        return np.array([row["record_id"] for row in self.windows], dtype=str)

    @property
    def leads(self) -> tuple[str, ...]:
        return tuple(self.meta["settings"]["leads"])

    @property
    def samples(self) -> int:
        return int(self.meta["settings"]["samples"])


def open_set(path: str | os.PathLike) -> ECGSet:
    """Open a folder :func:`prepare` wrote; one clear InputError if it is not one or is damaged."""
    path = Path(path)
    try:
        meta = json.loads((path / SET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"not a prepared ECG set ({SET_FILE}: {error})", path=path) from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(f"not a prepared ECG set of version {VERSION}", path=path / SET_FILE)
    try:
        signals = np.load(path / SIGNALS_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"damaged prepared ECG set: {error}", path=path) from None
    check_numeric(signals, path / SIGNALS_FILE)
    rows = [row for _, row in read_csv_rows(path / WINDOWS_FILE, what="windows table")[1]]
    if signals.ndim != 3 or len(signals) != len(rows) or len(rows) != meta.get("windows"):
        raise InputError(
            f"damaged prepared ECG set: {len(rows)} table rows, signals of shape {signals.shape}", path=path
        )
    return ECGSet(path=path, meta=meta, signals=signals, windows=rows)
