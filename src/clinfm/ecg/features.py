"""Hand-crafted ECG features: PCLR's "standard ECG features" baseline for linear probes.

:func:`ecg_features` measures one ECG (leads x samples, millivolts) into a fixed vector named by
:data:`FEATURES`; anything that cannot be measured is NaN, never an exception. neurokit2 does the
cleaning (``ecg_clean``), R-peak detection (``ecg_peaks``) and P/T-wave delineation
(``ecg_delineate``, discrete wavelet method). Two measurements are our own, for reasons stated where
they are made:

* the rhythm lead is lead II unless its R peaks disagree with the other leads' (then the lead that
  agrees best), and
* QRS onset and offset come from the spatial velocity of the multi-lead median beat, because
  neurokit2's wavelet QRS onsets land near the P wave on ECGSYN-style signals.

PR and QT combine the two: dwt P onsets / T offsets relative to each R peak, and the global QRS
onset from the median beat, all on the same R-peak time base.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

from clinfm.ecg.records import LEADS_12

RHYTHM_FEATURES = (
    "heart_rate_bpm",
    "rr_mean_ms",
    "sdnn_ms",
    "rmssd_ms",
    "pnn50_pct",
    "rr_cv",
    "n_beats",
)
INTERVAL_FEATURES = (
    "pr_interval_ms",
    "p_duration_ms",
    "qrs_duration_ms",
    "qt_interval_ms",
    "qtc_bazett_ms",
    "p_wave_rate",
    "t_wave_rate",
    "qrs_axis_deg",
)
FEATURES = (
    RHYTHM_FEATURES
    + INTERVAL_FEATURES
    + tuple(f"r_amp_{lead}_mv" for lead in LEADS_12)
    + tuple(f"s_amp_{lead}_mv" for lead in LEADS_12)
)

RHYTHM_LEAD = "II"
PEAK_MATCH_S = 0.05  # two leads' R peaks within 50 ms are the same beat
PREFER_RHYTHM_LEAD = 0.05  # keep lead II unless another lead agrees better by more than this
FLAT_MV = 1e-3
BEAT_WINDOW_S = (0.25, 0.25)  # median beat from 250 ms before to 250 ms after each R peak
AMPLITUDE_WINDOW_S = 0.06  # R and S amplitudes: max and min within +-60 ms of the R peak
QRS_SEARCH_S = 0.2  # QRS onset / offset searched within +-200 ms of the R peak
QRS_THRESHOLD = 0.2  # share of peak spatial velocity that still counts as QRS
QRS_QUIET_S = 0.012  # velocity must stay below threshold this long to end the QRS
SMOOTH_S = 0.008
BASELINE_S = 0.02  # isoelectric level: mean of the 20 ms before QRS onset (the PR segment)
MIN_BEATS = 3


def ecg_features(signal: np.ndarray, sampling_rate: float, leads: tuple[str, ...]) -> np.ndarray:
    """The :data:`FEATURES` of one ECG (leads x samples, mV) as float64; NaN where not measurable."""
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(leads):
        raise ValueError(f"signal must be leads x samples with {len(leads)} leads, got shape {signal.shape}")
    # A NaN would make every neurokit2 filter return NaN; zeros at worst lose those samples.
    signal = np.nan_to_num(signal, nan=0.0, posinf=0.0, neginf=0.0)
    values = dict.fromkeys(FEATURES, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2 warns freely on short or odd signals
        values.update(_measure(signal, float(sampling_rate), tuple(leads)))
    return np.array([values[name] for name in FEATURES], dtype=np.float64)


def feature_matrix(
    signals: np.ndarray,
    sampling_rate: float,
    leads: tuple[str, ...],
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """:func:`ecg_features` of each ECG in ``signals`` (N x leads x samples): N x len(FEATURES).

    ``progress(done, total)`` is called after each ECG when given.
    """
    out = np.full((len(signals), len(FEATURES)), np.nan)
    for i, signal in enumerate(signals):
        out[i] = ecg_features(signal, sampling_rate, leads)
        if progress is not None:
            progress(i + 1, len(signals))
    return out


def impute_median(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Copies of ``train`` and ``others`` with NaNs replaced by the training column medians.

    A column that is NaN throughout ``train`` is filled with 0.
    """
    train = np.asarray(train, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        medians = np.nanmedian(train, axis=0)
    medians = np.where(np.isfinite(medians), medians, 0.0)
    filled = []
    for array in (train, *others):
        array = np.array(array, dtype=np.float64)
        rows, cols = np.nonzero(np.isnan(array))
        array[rows, cols] = medians[cols]
        filled.append(array)
    return tuple(filled)


def _measure(signal: np.ndarray, fs: float, leads: tuple[str, ...]) -> dict[str, float]:
    """All features that can be measured; missing keys stay NaN."""
    if signal.size == 0:
        return {"n_beats": 0.0}
    clean = np.stack([_clean(row, fs) for row in signal])
    peaks = [_r_peaks(row, fs) for row in clean]
    rhythm = _rhythm_lead(peaks, leads, fs)
    r_peaks = peaks[rhythm]
    values = _rr_features(r_peaks, fs)
    if len(r_peaks) < MIN_BEATS:
        return values
    beat, zero = _median_beat(clean, r_peaks, fs)
    onset, offset = _qrs_bounds(beat, zero, fs) if beat is not None else (math.nan, math.nan)
    values["qrs_duration_ms"] = 1000.0 * (offset - onset) / fs
    if beat is not None:
        values.update(_amplitude_features(beat, zero, onset, fs, leads))
    values.update(_wave_features(clean[rhythm], r_peaks, fs, 1000.0 * (onset - zero) / fs))
    if math.isfinite(values["qt_interval_ms"]) and values["rr_mean_ms"] > 0:
        values["qtc_bazett_ms"] = values["qt_interval_ms"] / math.sqrt(values["rr_mean_ms"] / 1000.0)
    return values


def _clean(row: np.ndarray, fs: float) -> np.ndarray:
    """neurokit2's default cleaning (0.5 Hz high-pass, powerline); a flat lead stays zeros."""
    import neurokit2 as nk

    if np.ptp(row) < FLAT_MV:
        return np.zeros_like(row)
    try:
        return np.asarray(nk.ecg_clean(row, sampling_rate=fs), dtype=np.float64)
    except Exception:  # neurokit2 raises various types on degenerate input
        return np.zeros_like(row)


def _r_peaks(row: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of one cleaned lead (neurokit2's default detector); empty if none."""
    import neurokit2 as nk

    if not row.any():
        return np.zeros(0, dtype=np.int64)
    try:
        _, info = nk.ecg_peaks(row, sampling_rate=fs)
    except Exception:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def _agreement(a: np.ndarray, b: np.ndarray, tolerance: float) -> float:
    """F1-like share of beats in ``a`` and ``b`` that have a partner in the other within ``tolerance``."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    return (_matched(a, b, tolerance) + _matched(b, a, tolerance)) / (len(a) + len(b))


def _matched(a: np.ndarray, b: np.ndarray, tolerance: float) -> int:
    """How many of ``a`` have an element of sorted ``b`` within ``tolerance``."""
    right = np.clip(np.searchsorted(b, a), 0, len(b) - 1)
    left = np.clip(right - 1, 0, len(b) - 1)
    nearest = np.minimum(np.abs(b[right] - a), np.abs(b[left] - a))
    return int(np.sum(nearest <= tolerance))


def _rhythm_lead(peaks: list[np.ndarray], leads: tuple[str, ...], fs: float) -> int:
    """Lead II, unless another lead's R peaks agree clearly better with the rest; else the first lead.

    On a clean 12-lead ECG all leads find the same beats and lead II wins. A lead whose detector
    fires on tall P or T waves (or misses small QRS complexes) disagrees with the others and loses.
    """
    names = [name.lower() for name in leads]
    preferred = names.index(RHYTHM_LEAD.lower()) if RHYTHM_LEAD.lower() in names else 0
    if len(peaks) < 3:
        return preferred if len(peaks[preferred]) else int(np.argmax([len(p) for p in peaks]))
    tolerance = PEAK_MATCH_S * fs
    scores = [
        np.mean([_agreement(a, b, tolerance) for j, b in enumerate(peaks) if j != i])
        for i, a in enumerate(peaks)
    ]
    best = int(np.argmax(scores))
    return preferred if scores[preferred] >= scores[best] - PREFER_RHYTHM_LEAD else best


def _rr_features(r_peaks: np.ndarray, fs: float) -> dict[str, float]:
    """Heart rate and RR variability; beat count always, the rest from three beats on."""
    values = {"n_beats": float(len(r_peaks))}
    if len(r_peaks) < MIN_BEATS:
        return values
    rr = np.diff(r_peaks) * 1000.0 / fs
    successive = np.diff(rr)
    values.update(
        heart_rate_bpm=60000.0 / rr.mean(),
        rr_mean_ms=rr.mean(),
        sdnn_ms=rr.std(ddof=1),
        rmssd_ms=math.sqrt(np.mean(successive**2)),
        pnn50_pct=100.0 * np.mean(np.abs(successive) > 50.0),
        rr_cv=rr.std(ddof=1) / rr.mean(),
    )
    return values


def _median_beat(clean: np.ndarray, r_peaks: np.ndarray, fs: float) -> tuple[np.ndarray | None, int]:
    """Median over beats of each lead around the R peaks (leads x window) and the R index in it."""
    before, after = round(BEAT_WINDOW_S[0] * fs), round(BEAT_WINDOW_S[1] * fs)
    inside = r_peaks[(r_peaks >= before) & (r_peaks + after < clean.shape[1])]
    if len(inside) < MIN_BEATS:
        return None, before
    index = inside[:, None] + np.arange(-before, after + 1)[None, :]
    return np.median(clean[:, index], axis=1), before


def _qrs_bounds(beat: np.ndarray, zero: int, fs: float) -> tuple[float, float]:
    """QRS onset and offset (sample indices in the median beat) from its spatial velocity.

    The velocity (sum over leads of |slope|) is large only during the QRS; the QRS ends where it
    stays below a share of its peak for a few milliseconds. Using every lead at once makes this
    independent of which lead happens to show the earliest onset or latest offset.
    """
    velocity = np.abs(np.gradient(beat, axis=1)).sum(axis=0)
    width = max(1, round(SMOOTH_S * fs))
    velocity = np.convolve(velocity, np.ones(width) / width, mode="same")
    near = round(AMPLITUDE_WINDOW_S * fs)
    lo, hi = max(0, zero - near), min(len(velocity), zero + near + 1)
    peak = lo + int(np.argmax(velocity[lo:hi]))
    if velocity[peak] <= 0:
        return math.nan, math.nan
    below = velocity < QRS_THRESHOLD * velocity[peak]
    search = round(QRS_SEARCH_S * fs)
    quiet = max(1, round(QRS_QUIET_S * fs))
    onset = _quiet_edge(below, peak, -1, max(0, zero - search), quiet)
    offset = _quiet_edge(below, peak, +1, min(len(below) - 1, zero + search), quiet)
    return onset, offset


def _quiet_edge(below: np.ndarray, start: int, step: int, stop: int, quiet: int) -> float:
    """Walking from ``start`` by ``step``, the first index that begins ``quiet`` samples below threshold."""
    run = 0
    for i in range(start, stop + step, step):
        run = run + 1 if below[i] else 0
        if run == quiet:
            return float(i - step * (quiet - 1))
    return math.nan


def _amplitude_features(
    beat: np.ndarray, zero: int, onset: float, fs: float, leads: tuple[str, ...]
) -> dict[str, float]:
    """R (max) and S (min) amplitude per standard lead and the QRS axis, from the median beat."""
    if math.isfinite(onset):
        start = max(0, int(onset) - round(BASELINE_S * fs))
        baseline = beat[:, start : int(onset) + 1].mean(axis=1)
    else:  # without an onset, the beat's median level is the best isoelectric guess
        baseline = np.median(beat, axis=1)
    near = round(AMPLITUDE_WINDOW_S * fs)
    window = beat[:, max(0, zero - near) : zero + near + 1] - baseline[:, None]
    r_amp, s_amp = window.max(axis=1), window.min(axis=1)
    index = {name.lower(): i for i, name in enumerate(leads)}
    values = {}
    for lead in LEADS_12:
        i = index.get(lead.lower())
        if i is not None and np.ptp(beat[i]) > 0:
            values[f"r_amp_{lead}_mv"] = float(r_amp[i])
            values[f"s_amp_{lead}_mv"] = float(s_amp[i])
    values["qrs_axis_deg"] = _qrs_axis(values)
    return values


def _qrs_axis(values: dict[str, float]) -> float:
    """Frontal QRS axis (degrees) from the net QRS amplitude (R + S) of leads I and aVF.

    aVF is scaled by 2/sqrt(3) because, for a dipole at angle theta, lead I reads cos(theta) while
    aVF reads sqrt(3)/2 sin(theta) (Einthoven / Goldberger geometry).
    """
    try:
        net_i = values["r_amp_I_mv"] + values["s_amp_I_mv"]
        net_avf = values["r_amp_aVF_mv"] + values["s_amp_aVF_mv"]
    except KeyError:
        return math.nan
    return math.degrees(math.atan2(net_avf * 2.0 / math.sqrt(3.0), net_i))


def _wave_features(row: np.ndarray, r_peaks: np.ndarray, fs: float, qrs_onset_ms: float) -> dict[str, float]:
    """P and T measurements from neurokit2's wavelet delineation of the rhythm lead (medians over beats)."""
    waves = _delineate(row, r_peaks, fs)
    if waves is None:
        return {}

    def relative_ms(key: str) -> np.ndarray:
        points = np.asarray(waves.get(key, [math.nan] * len(r_peaks)), dtype=np.float64)
        return (points - r_peaks) * 1000.0 / fs

    p_onset, p_offset, t_offset = (relative_ms(k) for k in ("ECG_P_Onsets", "ECG_P_Offsets", "ECG_T_Offsets"))
    values = {
        "p_wave_rate": float(np.mean(np.isfinite(relative_ms("ECG_P_Peaks")))),
        "t_wave_rate": float(np.mean(np.isfinite(relative_ms("ECG_T_Peaks")))),
        "p_duration_ms": _positive(_nanmedian(p_offset - p_onset)),
        "pr_interval_ms": _positive(qrs_onset_ms - _nanmedian(p_onset)),
        "qt_interval_ms": _positive(_nanmedian(t_offset) - qrs_onset_ms),
    }
    return values


def _delineate(row: np.ndarray, r_peaks: np.ndarray, fs: float) -> dict | None:
    """neurokit2's ``ecg_delineate(method="dwt")`` waves, or None when it cannot run."""
    import neurokit2 as nk

    try:
        _, waves = nk.ecg_delineate(row, r_peaks, sampling_rate=fs, method="dwt")
    except Exception:  # too few beats or a signal shorter than neurokit2's 4 s segment minimum
        return None
    return waves


def _nanmedian(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _positive(value: float) -> float:
    """The value when it is a positive duration, else NaN (a misplaced wave gives nonsense)."""
    return value if math.isfinite(value) and value > 0 else math.nan
