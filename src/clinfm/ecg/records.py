"""ECG records: read WFDB or NumPy waveforms into millivolts, check quality, apply PCLR preprocessing.

WFDB records may keep their samples in a ``.dat`` file or, as in the PhysioNet/CinC Challenges
2020-2021, in a MATLAB v4 ``.mat`` file named in the header with format ``16+24`` (int16 samples
after a 24-byte MATLAB header); wfdb reads both, and :func:`read_wfdb` checks either file first.
:func:`find_records` lists the records under a folder; :func:`read_record` reads one by suffix and
:func:`read_records` every record in a file (a ``.npy`` may hold a batch).

A :class:`Record` holds one recording as a float32 array (leads x samples) in millivolts, as the
design's waveform data contract asks. PCLR (PAPERS.md section 5) interpolates each 10 s, 12-lead
window linearly onto 4,096 samples, with no filtering or normalisation; :func:`resample` does exactly
that and nothing else.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinfm.ecg.header import MAX_SIGNALS, Header, check_agreement, check_sampling_rate, read_header
from clinfm.errors import InputError

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
PAPER_SAMPLES = 4096
PAPER_SECONDS = 10.0

# Bytes per sample of the fixed-size WFDB formats (FLAC formats 508, 516 and 524 vary), for the size check.
BYTES_PER_SAMPLE = {
    "8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
    "310": 4 / 3, "311": 4 / 3,
}  # fmt: skip
FLAT_MV = 1e-3
MIN_WINDOW_SAMPLES = 2  # a window interpolated onto the model's samples needs two ends
_CPSC_NAME = re.compile(r"^data_(\w+?)_(\w+)$")
_HEADER_FIELD = re.compile(r"^\s*([^:=]+?)\s*[:=]\s*(.*?)\s*$")
# MATLAB v4 matrix header: type code, rows, columns, imaginary flag, name length (int32 each).
_MAT4_HEADER = struct.Struct("<5i")
_MAT4_INT16 = 30  # type code 0*1000 + 0*100 + 3*10 + 0: little-endian, int16, full numeric matrix


@dataclass(frozen=True)
class Record:
    """One ECG recording in millivolts.

    ``signal`` is float32, leads x samples. ``annotations`` are (sample index, rhythm label) pairs
    such as ``(0, "(N")`` or ``(5120, "(AFIB")``, sorted by sample; empty when the record has none.
    """

    record_id: str
    patient_id: str
    signal: np.ndarray
    sampling_rate: float
    leads: tuple[str, ...]
    comments: tuple[str, ...] = ()
    annotations: tuple[tuple[int, str], ...] = ()

    @property
    def n_samples(self) -> int:
        """Samples per lead."""
        return int(self.signal.shape[1])


def patient_from_name(record_id: str) -> str:
    """The patient of a CPSC 2021 record name ``data_<patient>_<record>``, else the name itself."""
    match = _CPSC_NAME.match(record_id)
    return match.group(1) if match else record_id


def _record_base(path: str | Path) -> Path:
    """The record path without a ``.hea`` / ``.dat`` / ``.mat`` / ``.atr`` extension."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat", ".mat", ".atr") else path


def _wfdb_header(base: Path):
    """wfdb's reading of the ``.hea`` header, any failure as a one-line InputError."""
    import wfdb

    try:
        return wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises many types for a malformed header
        raise InputError(f"unreadable WFDB header: {_one_line(exc)}", path=base.with_suffix(".hea")) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_signal_files(base: Path, header: Header) -> None:
    """Check each signal file exists and holds the samples the header declares."""
    by_file: dict[str, list] = {}
    for signal in header.signals:
        by_file.setdefault(signal.file, []).append(signal)
    for name, signals in by_file.items():
        file, first = base.parent / name, signals[0]
        if not file.is_file():
            raise InputError(f"signal file named in the header {base.name}.hea is missing", path=file)
        if file.suffix.lower() == ".mat":
            _check_mat4(file, first.format, first.byte_offset, len(signals))
        _check_size(file, first.format, first.byte_offset, len(signals), header.samples)


def _check_mat4(file: Path, fmt: str, offset: int, n_channels: int) -> None:
    """Check a Challenge ``.mat`` signal file is the MATLAB v4 int16 matrix the header describes.

    wfdb skips ``offset`` bytes (the ``+24`` of ``16+24``) and reads the rest as format 16; that is
    only right when the file is MATLAB v4, int16, one row per signal, and its header is exactly
    ``offset`` bytes long (20 bytes plus the variable name and its NUL: 24 for ``val``).
    """
    with file.open("rb") as handle:
        head = handle.read(128)
    if head.startswith(b"MATLAB"):
        raise InputError(
            "MATLAB v5/v7 .mat file; WFDB headers can only name MATLAB v4 files (save -v4)", path=file
        )
    if len(head) < _MAT4_HEADER.size:
        return  # cut inside the MATLAB header: the size check reports the missing samples
    if fmt != "16":
        raise InputError(
            f"WFDB format {fmt} in a .mat file (MATLAB v4 signal files are format 16)", path=file
        )
    type_code, rows, _columns, imaginary, name_length = _MAT4_HEADER.unpack_from(head)
    data_start = _MAT4_HEADER.size + name_length
    problems = []
    if type_code != _MAT4_INT16 or imaginary:
        problems.append(f"MATLAB v4 type code {type_code} (expected {_MAT4_INT16}, little-endian int16)")
    if data_start != offset:
        problems.append(f"data starts at byte {data_start} but the header says {fmt}+{offset}")
    if rows != n_channels:
        problems.append(f"matrix has {rows} rows for {n_channels} signals")
    if problems:
        raise InputError("; ".join(problems), path=file)


def _check_size(file: Path, fmt: str, offset: int, n_channels: int, samples: int | None) -> None:
    """Raise when a fixed-size format's file holds fewer samples than the header's ``samples``.

    ``offset`` is the header's byte offset for the file (``16+24``: 24), skipped before the samples.
    """
    per_sample = BYTES_PER_SAMPLE.get(fmt)
    if per_sample is None or not samples:
        return
    data_bytes = max(0, file.stat().st_size - offset)
    needed = math.ceil(n_channels * samples * per_sample)
    if data_bytes < needed:
        held = int(data_bytes // (n_channels * per_sample))
        raise InputError(
            f"header declares {samples} samples per signal but the file holds {held} "
            f"(format {fmt}, {n_channels} signals, {data_bytes} bytes)",
            path=file,
        )


def _millivolts(rec, header: Header) -> np.ndarray:
    """wfdb's physical samples as float32 leads x samples in millivolts, scaled by the header's units."""
    samples = None if rec.p_signal is None else np.asarray(rec.p_signal)
    if samples is None or samples.ndim != 2 or samples.shape[1] != len(header.signals):
        shape = "none" if samples is None else "x".join(map(str, samples.shape))
        raise InputError(
            f"the signal files hold samples of shape {shape}, expected samples x {len(header.signals)}",
            path=header.path,
        )
    scale = np.asarray(header.millivolts, dtype=np.float64)[:, None]
    return (samples.astype(np.float64).T * scale).astype(np.float32)


def _read_rhythm_labels(base: Path) -> tuple[tuple[int, str], ...]:
    """Rhythm labels of ``<record>.atr`` with their sample, or () without a file.

    Rhythm changes are ``+`` annotations whose ``aux_note`` names the rhythm (``(AFIB``, ``(N``);
    beat annotations' notes (CPSC 2021 writes ``None`` on every beat) are not rhythms.
    """
    import wfdb

    atr = base.with_suffix(".atr")
    if not atr.is_file():
        return ()
    try:
        ann = wfdb.rdann(str(base), "atr")
    except Exception as exc:
        raise InputError(f"unreadable WFDB annotations: {_one_line(exc)}", path=atr) from None
    notes = ann.aux_note or [""] * len(ann.sample)
    symbols = ann.symbol or ["+"] * len(ann.sample)
    labels = [
        (int(s), n.strip("\x00 "))
        for s, n, symbol in zip(ann.sample, notes, symbols, strict=False)
        if symbol == "+" and n.strip("\x00 ").startswith("(")
    ]
    return tuple(sorted(labels))


def _record_rhythm(comments: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """CPSC 2021's record classes: a record without rhythm annotations whose header says it is
    "non atrial fibrillation" (or "persistent atrial fibrillation") is that rhythm throughout."""
    classes = {"non atrial fibrillation": "(N", "persistent atrial fibrillation": "(AFIB"}
    found = [classes[c.strip().lower()] for c in comments if c.strip().lower() in classes]
    return ((0, found[0]),) if len(found) == 1 else ()


MICROVOLTS_PER_MV = 1000.0  # write_wfdb's ADC gain: 16-bit samples in 1 uV steps, +-32.767 mV


def write_wfdb(record: Record, folder: str | Path, *, comments: Iterable[str] = ()) -> None:
    """``record`` as ``<record_id>.hea`` and ``<record_id>.dat`` in ``folder``: WFDB format 16 in
    1 uV steps, byte for byte what ``wfdb.wrsamp`` writes for it (a test checks), in a fraction of
    its time (wrsamp spends about 85 ms a record on its field bookkeeping, more than simulating it).
    """
    folder, name = Path(folder), record.record_id
    scaled = np.round(np.asarray(record.signal, dtype=np.float64).T * MICROVOLTS_PER_MV)
    digital = np.clip(scaled, -32767, 32767).astype("<i2")  # -32768 is WFDB's "no sample"
    lines = [f"{name} {len(record.leads)} {record.sampling_rate:g} {digital.shape[0]}"]
    for lead, column in zip(record.leads, digital.T, strict=True):
        checksum = int(column.astype(np.int64).sum()) % 65536
        first = int(column[0]) if len(column) else 0
        lines.append(f"{name}.dat 16 {MICROVOLTS_PER_MV}(0)/mV 16 0 {first} {checksum} 0 {lead}")
    lines += [f"# {comment}" for comment in comments]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    digital.tofile(folder / f"{name}.dat")


def read_wfdb(path: str | Path, *, patient_id: str | None = None) -> Record:
    """Read a WFDB record (``.hea`` + signal file, optional ``.atr``) into millivolts.

    ``path`` is the record path with or without extension. The patient is ``patient_id`` when
    given, else a ``patient_id: ...`` header comment, else taken from the record name
    (:func:`patient_from_name`). Every header field used is checked first (:mod:`clinfm.ecg.header`:
    sampling rate, signals, formats, gains, units, lead names); a bad field, a missing or short
    signal file raise a one-line :class:`InputError` naming the file.
    """
    import wfdb

    base = _record_base(path)
    hea = base.with_suffix(".hea")
    if not hea.is_file():
        raise InputError("WFDB header not found (expected <record>.hea beside the .dat)", path=hea)
    header = read_header(hea)
    check_agreement(header, _wfdb_header(base))
    _check_signal_files(base, header)
    try:
        rec = wfdb.rdrecord(str(base), physical=True)
    except Exception as exc:
        raise InputError(f"unreadable WFDB signal: {_one_line(exc)}", path=hea) from None
    comments = tuple(rec.comments or ())
    if patient_id is None:
        patient_id = _comment_fields(comments).get("patient_id") or patient_from_name(base.name)
    return Record(
        record_id=base.name,
        patient_id=patient_id,
        signal=_millivolts(rec, header),
        sampling_rate=header.sampling_rate,
        leads=header.leads,
        comments=comments,
        annotations=_read_rhythm_labels(base) or _record_rhythm(comments),
    )


def read_numpy(
    path: str | Path,
    *,
    sampling_rate: float,
    leads: tuple[str, ...] | list[str],
    patient_ids: list[str] | None = None,
) -> list[Record]:
    """Records from a ``.npy`` array in millivolts: records x leads x samples, or leads x samples for one.

    Record ids are ``<file stem>_<index>``; patient ids default to the record ids.
    """
    path = Path(path)
    rate = check_sampling_rate(sampling_rate, path)
    array = _open_npy(path)  # memory-mapped: records are read as they are used
    if array.ndim == 2:
        array = array[None]
    if array.shape[1] != len(leads):
        raise InputError(
            f"array has {array.shape[1]} leads but {len(leads)} lead names were given", path=path
        )
    ids = [f"{path.stem}_{i}" for i in range(array.shape[0])]
    if patient_ids is not None and len(patient_ids) != len(ids):
        raise InputError(f"{len(patient_ids)} patient ids for {len(ids)} records", path=path)
    patients = list(patient_ids) if patient_ids is not None else ids
    return [
        Record(rid, str(pid), np.asarray(array[i], dtype=np.float32), rate, tuple(leads))
        for i, (rid, pid) in enumerate(zip(ids, patients, strict=True))
    ]


def header_fields(record: Record) -> dict[str, str]:
    """``key: value`` and ``key=value`` comment lines as a dict with lower-case keys.

    Challenge headers carry ``#Age: 53``, ``#Sex: Male``, ``#Dx: 164889003,59118001``; values are
    kept as written (stripped). Lines without a separator are skipped; a repeated key keeps its
    first value.
    """
    return _comment_fields(record.comments)


def _comment_fields(comments: Iterable[str]) -> dict[str, str]:
    """``key: value`` / ``key=value`` lines of WFDB comments (``#`` already stripped by wfdb)."""
    fields: dict[str, str] = {}
    for comment in comments:
        match = _HEADER_FIELD.match(comment.lstrip("#"))
        if match:
            fields.setdefault(match.group(1).lower(), match.group(2))
    return fields


def find_records(path: str | Path) -> list[Path]:
    """The ECG records at ``path``, sorted: one ``.hea`` per WFDB record, or ``.npy`` without a ``.hea``.

    ``path`` is a record file (``.hea``, ``.npy``, or a WFDB record's signal file or base name) or
    a folder searched recursively.
    """
    path = Path(path)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and _is_record_file(p)]
    elif path.is_file() and path.suffix.lower() in (".hea", ".npy"):
        found = [path]
    elif _record_base(path).with_suffix(".hea").is_file():
        found = [_record_base(path).with_suffix(".hea")]
    else:
        found = []
    if not found:
        raise InputError(f"no ECG records (.hea or .npy) under {path}")
    return sorted(found)


def _is_record_file(path: Path) -> bool:
    """A WFDB header, or a NumPy array with no WFDB header of the same name beside it that is not
    part of a clinfm output (a prepared set's signals, an embeddings folder's vectors)."""
    suffix = path.suffix.lower()
    if suffix == ".hea":
        return True
    clinfm_output = any((path.parent / marker).exists() for marker in ("ecg_set.json", "run.json"))
    return suffix == ".npy" and not path.with_suffix(".hea").exists() and not clinfm_output


def read_record(
    path: str | Path,
    *,
    sampling_rate: float | None = None,
    patient_id: str | None = None,
    leads: tuple[str, ...] | None = None,
) -> Record:
    """One record by suffix: ``.npy`` with :func:`read_numpy`, anything else with :func:`read_wfdb`.

    A WFDB header gives its own rate and leads, so ``sampling_rate`` and ``leads`` only apply to
    ``.npy`` arrays, which must hold one record (leads x samples); see :func:`read_records` for
    their defaults and for batches.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return read_wfdb(path, patient_id=patient_id)
    shape, rate, names = _npy_settings(path, sampling_rate, leads)
    if len(shape) == 3 and shape[0] != 1:
        raise InputError(
            f"array holds {shape[0]} records; read_record reads one (read_records reads them all)",
            path=path,
        )
    patients = None if patient_id is None else [patient_id]
    return read_numpy(path, sampling_rate=rate, leads=names, patient_ids=patients)[0]


def read_records(
    path: str | Path, *, sampling_rate: float | None = None, leads: tuple[str, ...] | None = None
) -> list[Record]:
    """Every record in one file: one for a WFDB record, one per record of a ``.npy`` batch.

    A ``.npy`` has no sampling rate, so it must be given. Without ``leads``, an array of n <= 12
    leads is taken to hold the first n of the standard order (12: I ... V6; 2: I and II); other
    lead sets must be named.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return [read_wfdb(path)]
    _, rate, names = _npy_settings(path, sampling_rate, leads)
    return read_numpy(path, sampling_rate=rate, leads=names)


def _npy_settings(
    path: Path, sampling_rate: float | None, leads: tuple[str, ...] | None
) -> tuple[tuple[int, ...], float, tuple[str, ...]]:
    """The array's shape, its sampling rate (required) and lead names (given, or standard order)."""
    if sampling_rate is None:
        raise InputError("a .npy array has no sampling rate; pass it (--sampling-rate, in Hz)", path=path)
    shape = _open_npy(path).shape  # a memory map: the samples are not loaded
    if leads is None:
        if shape[-2] > len(LEADS_12):
            raise InputError(f"array has {shape[-2]} leads; pass their names (--leads)", path=path)
        leads = LEADS_12[: shape[-2]]
    return shape, check_sampling_rate(sampling_rate, path), tuple(leads)


def _open_npy(path: Path) -> np.ndarray:
    """The array, memory-mapped and checked: leads x samples or records x leads x samples, none of
    them zero, at most ``MAX_SIGNALS`` leads, and numbers."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(f"unreadable .npy array: {_one_line(exc)}", path=path) from None
    shape = "x".join(map(str, array.shape))
    if array.ndim not in (2, 3):
        raise InputError(
            f"array has {array.ndim} dimensions, expected leads x samples or records x leads x samples",
            path=path,
        )
    if 0 in array.shape:
        raise InputError(f"array of shape {shape} is empty", path=path)
    if array.shape[-2] > MAX_SIGNALS:
        raise InputError(
            f"array of shape {shape} has {array.shape[-2]} leads, expected at most {MAX_SIGNALS} "
            "(leads come before samples: transpose it?)",
            path=path,
        )
    check_numeric(array, path)
    return array


def check_numeric(array: np.ndarray, path: object, what: str = "array") -> None:
    """Refuse an array whose values are not real numbers (text, booleans, complex, records)."""
    if array.dtype.kind not in "iuf":
        raise InputError(f"{what} holds values of type {array.dtype}, expected integers or floats", path=path)


def quality_problems(record: Record) -> list[str]:
    """Problems that make a record unusable: ``"NaN values"``, ``"flat lead <name>"``.

    A lead is flat when its peak-to-peak range over the whole record is below 1e-3 mV. Callers count
    and skip records with problems; an empty list means the record is usable.
    """
    signal = record.signal
    problems = []
    if np.isnan(signal).any():
        problems.append("NaN values")
    for name, row in zip(record.leads, signal, strict=False):
        finite = row[np.isfinite(row)]
        if finite.size == 0 or float(np.ptp(finite)) < FLAT_MV:
            problems.append(f"flat lead {name}")
    return problems


def select_leads(record: Record, wanted: tuple[str, ...] = LEADS_12, *, missing: str = "zeros") -> np.ndarray:
    """The record's rows in the ``wanted`` order, matching lead names case-insensitively.

    A missing lead becomes a row of zeros (``missing="zeros"``): PCLR's lead-I and lead-II variants
    show single leads carry signal, and zeros keep the 12-lead input shape. ``missing="error"``
    raises an InputError instead.
    """
    if missing not in ("zeros", "error"):
        raise ValueError(f"missing must be 'zeros' or 'error', not {missing!r}")
    index = {name.lower(): i for i, name in enumerate(record.leads)}
    absent = [name for name in wanted if name.lower() not in index]
    if absent and missing == "error":
        raise InputError(
            f"leads: missing {', '.join(absent)} (has {', '.join(record.leads)})", path=record.record_id
        )
    out = np.zeros((len(wanted), record.n_samples), dtype=np.float32)
    for row, name in enumerate(wanted):
        if name.lower() in index:
            out[row] = record.signal[index[name.lower()]]
    return out


def resample(signal: np.ndarray, n_samples: int = PAPER_SAMPLES) -> np.ndarray:
    """Linearly interpolate each lead (np.interp) onto ``n_samples`` points spanning the same time.

    The first and last samples are kept; this is PCLR's preprocessing (no filtering, no scaling).
    """
    signal = np.asarray(signal)
    old = np.linspace(0.0, 1.0, signal.shape[1])
    new = np.linspace(0.0, 1.0, n_samples)
    return np.stack([np.interp(new, old, row) for row in signal]).astype(np.float32)


def window_length(record: Record, seconds: float = PAPER_SECONDS) -> int:
    """Samples in a window of ``seconds``: ``round(seconds * sampling_rate)`` (10 s at 257 Hz: 2570)."""
    return round(seconds * record.sampling_rate)


def windows(
    record: Record, seconds: float = PAPER_SECONDS, *, step: int | None = None
) -> list[tuple[int, np.ndarray]]:
    """Fixed-length windows ``(start sample, leads x window samples)``.

    The window length is ``round(seconds * sampling_rate)`` samples; ``step`` (samples) defaults to
    the window length, so windows do not overlap. A last partial window is dropped.
    """
    length = window_length(record, seconds)
    step = length if step is None else int(step)
    if length < MIN_WINDOW_SAMPLES or step <= 0:
        raise InputError(
            f"a {seconds:g} s window at {record.sampling_rate:g} Hz holds {length} samples and steps by "
            f"{step}, expected at least {MIN_WINDOW_SAMPLES} samples and a positive step",
            path=record.record_id,
        )
    starts = range(0, record.n_samples - length + 1, step)
    return [(start, record.signal[:, start : start + length]) for start in starts]


def window_label(record: Record, start: int, length: int) -> str | None:
    """The rhythm label in force over ``[start, start + length)``, from the record's annotations.

    That is the last label at or before ``start``; None when there is none, or when another label
    starts inside the window (a mixed window, e.g. neither clean AF nor clean non-AF).
    """
    current = None
    for sample, label in record.annotations:
        if sample <= start:
            current = label
        elif sample < start + length and label != current:
            return None
    return current
