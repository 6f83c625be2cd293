"""WFDB headers, read field by field and checked for type and bounds before wfdb reads the samples.

wfdb's own header parser is lenient: its patterns are not anchored and it reads the file as ASCII with
other bytes dropped, so a sampling rate of ``-500`` reads as the default 250 Hz, a unit of ``µV`` as
volts (a factor of a million) and a missing lead name as ``"None"``. :func:`read_header` parses the
fields clinfm uses by the WFDB header grammar (PhysioNet's ``header(5)``) and refuses, in one line
naming the file, the line and the field, anything that is not what the grammar allows or that ECGs
cannot be: a sampling rate outside ``MIN_RATE``..``MAX_RATE``, no signals or more than ``MAX_SIGNALS``,
an unknown unit, a missing or repeated lead name. :func:`check_agreement` then refuses a header that
wfdb reads differently, so the samples wfdb returns are those this header describes.

Record line: ``name nsig [fs[/counterfreq[(base)]] [nsamp [time [date]]]]``. Signal lines:
``file format[xframes][:skew][+offset] [gain[(baseline)][/units] [resolution [zero [initial [checksum
[blocksize [description]]]]]]]``; the description is the lead name. Lines starting with ``#`` are
comments.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from clinfm.errors import InputError

# Sampling rates an ECG can have: below 50 Hz a QRS complex (80-120 ms) spans a handful of samples and a
# 10 s window fewer than 500; above 10 kHz no ECG corpus we know of was recorded. Outside: a wrong header.
MIN_RATE, MAX_RATE = 50.0, 10_000.0
DEFAULT_RATE = 250.0  # the WFDB default when a record line gives no rate
DEFAULT_GAIN = 200.0  # the WFDB default for a gain of 0 or none
MAX_SIGNALS = 256  # body-surface maps reach about 250 leads; more is a damaged header
# Signal file formats wfdb 4.x can read.
KNOWN_FORMATS = ("8", "16", "24", "32", "61", "80", "160", "212", "310", "311", "508", "516", "524")
# Multiplier from a header's physical unit to millivolts (compared lower-case); mV when none is given.
TO_MILLIVOLTS = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}

_FIELDS = re.compile(r"[ \t]+")  # wfdb separates fields by blanks and tabs only
_WHOLE = re.compile(r"-?\d{1,18}")  # longer is no count a header means (and beyond int()'s digit limit)
# Signal-line fields after the gain, up to the description: whole numbers wfdb reads, checked for type.
_WHOLE_FIELDS = ("resolution", "ADC zero", "initial value", "checksum", "block size")
_DECIMAL = re.compile(r"\d+\.?\d*|\.\d+")  # unsigned, no exponent: what wfdb reads as a sampling rate
_FORMAT = re.compile(r"(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d{1,18}))?")
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"  # wfdb reads a lower-case exponent only
_GAIN = re.compile(rf"({_NUMBER})?(?:\((-?\d{{1,18}})\))?(?:/(.+))?")


@dataclass(frozen=True)
class Signal:
    """One signal line's fields."""

    line: int
    file: str
    format: str
    byte_offset: int
    gain: float
    baseline: int
    unit: str
    lead: str


@dataclass(frozen=True)
class Header:
    """The fields of a ``.hea`` that clinfm uses, checked."""

    path: Path
    sampling_rate: float
    samples: int | None  # None when the record line gives none (wfdb counts the file's samples)
    signals: tuple[Signal, ...]

    @property
    def leads(self) -> tuple[str, ...]:
        return tuple(signal.lead for signal in self.signals)

    @property
    def millivolts(self) -> tuple[float, ...]:
        """Per signal, the multiplier from its physical unit to millivolts."""
        return tuple(TO_MILLIVOLTS[signal.unit.lower()] for signal in self.signals)


def check_sampling_rate(rate: object, where: object, *, field: str = "sampling rate") -> float:
    """``rate`` as a float, or an InputError naming ``where`` when it is not a finite number from
    ``MIN_RATE`` to ``MAX_RATE`` Hz. The one check of every sampling rate clinfm reads or is given
    (text, as in a header, must be a plain decimal such as ``500`` or ``257.5``)."""
    try:
        value = float(rate) if not isinstance(rate, str) or _DECIMAL.fullmatch(rate) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not MIN_RATE <= value <= MAX_RATE:  # also false for NaN
        raise InputError(
            f"{field} {_shown(rate)}, expected a number from {MIN_RATE:g} to {MAX_RATE:g} Hz", path=where
        )
    return value


def read_header(path: str | Path) -> Header:
    """The checked fields of the WFDB header at ``path`` (a ``.hea`` file); InputError otherwise."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise InputError(f"cannot read the WFDB header: {error.strerror}", path=path) from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise InputError("no record line (expected 'name signals rate samples')", path=path)
    n_signals, rate, samples = _record_line(path, *lines[0])
    if len(lines) - 1 != n_signals:
        raise InputError(
            f"line {lines[0][0]}: {n_signals} signals declared but {len(lines) - 1} signal lines follow",
            path=path,
        )
    signals = tuple(_signal_line(path, n, line) for n, line in lines[1:])
    _check_leads(path, signals)
    return Header(path, rate, samples, signals)


def _record_line(path: Path, number: int, line: str) -> tuple[int, float, int | None]:
    """(signals, sampling rate, samples) of the record line."""
    fields = _FIELDS.split(line)
    if "/" in fields[0]:
        raise InputError(
            f"line {number}: a multi-segment record (name/segments); clinfm reads single-segment records",
            path=path,
        )
    where = f"{path}: line {number}"
    n_signals = _whole(fields, 1, "number of signals", where, low=1, high=MAX_SIGNALS, required=True)
    rate = DEFAULT_RATE
    if len(fields) > 2:
        rate = check_sampling_rate(fields[2].split("/")[0], where)  # fs[/counterfreq[(base)]]
    samples = _whole(fields, 3, "samples per signal", where, low=0)
    return n_signals, rate, samples


def _signal_line(path: Path, number: int, line: str) -> Signal:
    fields = _FIELDS.split(line, maxsplit=8)
    where = f"{path}: line {number}"
    if len(fields) < 2:
        raise InputError("expected a signal line: file, format, gain/units, ..., lead name", path=where)
    fmt = _FORMAT.fullmatch(fields[1])
    if not fmt or fmt.group(1) not in KNOWN_FORMATS:
        code = fmt.group(1) if fmt else fields[1]
        raise InputError(
            f"format {_shown(code)}, expected one of {', '.join(KNOWN_FORMATS)} (optionally +byte offset)",
            path=where,
        )
    gain, baseline, unit = _gain(fields[2] if len(fields) > 2 else "", where)
    numbers = [_whole(fields, index, name, where) for index, name in enumerate(_WHOLE_FIELDS, 3)]
    if baseline is None:  # WFDB: the baseline defaults to the ADC zero
        baseline = numbers[1] or 0
    lead = fields[8].strip() if len(fields) > 8 else ""
    if not lead:
        raise InputError(
            "no lead name (the description, last field), expected a name such as II or V1", path=where
        )
    offset = int(fmt.group(4) or 0)
    return Signal(number, fields[0], fmt.group(1), offset, gain, baseline, unit, lead)


def _gain(text: str, where: str) -> tuple[float, int | None, str]:
    """(gain, baseline or None, unit) of ``gain[(baseline)][/units]``; WFDB's defaults where absent."""
    match = _GAIN.fullmatch(text)
    if not match:
        raise InputError(
            f"gain {_shown(text)}, expected gain[(baseline)][/units] such as 200(0)/mV", path=where
        )
    gain = float(match.group(1)) if match.group(1) else 0.0
    if not math.isfinite(gain):
        raise InputError(f"gain {_shown(match.group(1))}, expected a finite number", path=where)
    unit = match.group(3) or "mV"
    if unit.lower() not in TO_MILLIVOLTS:
        raise InputError(f"unknown unit {_shown(unit)}, expected mV, uV or V", path=where)
    baseline = int(match.group(2)) if match.group(2) is not None else None
    return gain or DEFAULT_GAIN, baseline, unit


def _whole(
    fields: list[str],
    index: int,
    name: str,
    where: str,
    *,
    low: int | None = None,
    high: int | None = None,
    required: bool = False,
) -> int | None:
    """Field ``index`` as a whole number within bounds; None when absent and not required."""
    if index >= len(fields):
        if required:
            raise InputError(f"no {name}", path=where)
        return None
    text = fields[index]
    value = int(text) if _WHOLE.fullmatch(text) else None
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f" from {low} to {high}" if high is not None else f" of at least {low}" if low is not None else ""
        )
        raise InputError(f"{name} {_shown(text)}, expected a whole number{bounds}", path=where)
    return value


def _check_leads(path: Path, signals: tuple[Signal, ...]) -> None:
    """Lead names are matched case-insensitively, so two that differ only in case are one lead twice."""
    first: dict[str, int] = {}
    for signal in signals:
        seen = first.setdefault(signal.lead.lower(), signal.line)
        if seen != signal.line:
            raise InputError(
                f"line {signal.line}: lead {_shown(signal.lead)} already named on line {seen}, "
                "expected one signal per lead",
                path=path,
            )


def check_agreement(header: Header, parsed) -> None:
    """Refuse a header that wfdb (``parsed``, from ``wfdb.rdheader``) reads differently from
    :func:`read_header`: wfdb reads the samples, and must read them from the files and with the
    scaling this header states."""
    n = len(header.signals)
    ours = {
        "number of signals": n,
        "sampling rate": header.sampling_rate,
        "samples per signal": header.samples or None,
        "file names": [s.file for s in header.signals],
        "formats": [s.format for s in header.signals],
        "byte offsets": [s.byte_offset for s in header.signals],
        "gains": [s.gain for s in header.signals],
        "baselines": [s.baseline for s in header.signals],
    }
    theirs = {
        "number of signals": getattr(parsed, "n_sig", None),
        "sampling rate": float(getattr(parsed, "fs", None) or DEFAULT_RATE),
        "samples per signal": getattr(parsed, "sig_len", None) or None,
        "file names": list(getattr(parsed, "file_name", None) or []),
        "formats": [str(f) for f in getattr(parsed, "fmt", None) or []],
        "byte offsets": [b or 0 for b in getattr(parsed, "byte_offset", None) or [0] * n],
        "gains": [float(g) or DEFAULT_GAIN for g in getattr(parsed, "adc_gain", None) or []],
        "baselines": [int(b) for b in getattr(parsed, "baseline", None) or []],
    }
    for field, value in ours.items():
        if theirs[field] != value:
            raise InputError(
                f"the wfdb package reads the {field} as {_shown(theirs[field])}, not {_shown(value)} "
                "as written; rewrite the header in the WFDB format",
                path=header.path,
            )


def _shown(value: object, limit: int = 40) -> str:
    """A header value for a one-line message: as written when short and printable, else its repr, cut."""
    text = str(value)
    if text.isprintable() and 0 < len(text) <= limit and text.strip() == text:
        return text
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"
