"""ECG records: WFDB / NumPy reading in millivolts, failures as InputError, PCLR preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from _shared import shared_path
from clinfm.ecg.records import (
    LEADS_12,
    PAPER_SAMPLES,
    Record,
    quality_problems,
    read_numpy,
    read_wfdb,
    resample,
    select_leads,
    window_label,
    windows,
)
from clinfm.errors import InputError

FS = 100


def _signal(n_leads: int = 2, n: int = 1000) -> np.ndarray:
    t = np.arange(n) / FS
    return np.stack([np.sin(2 * np.pi * (i + 1) * t) * (i + 1) for i in range(n_leads)]).astype(np.float64)


def _write(tmp_path, name="data_7_3", units="mV", scale=1.0, fmt="16", signal=None):
    signal = _signal() if signal is None else signal
    wfdb.wrsamp(
        name,
        fs=FS,
        units=[units] * signal.shape[0],
        sig_name=["I", "II"][: signal.shape[0]],
        p_signal=(signal * scale).T,
        fmt=[fmt] * signal.shape[0],
        comments=["paroxysmal atrial fibrillation"],
        write_dir=str(tmp_path),
    )
    return tmp_path / name


def _record(signal, leads, annotations=(), fs=FS) -> Record:
    return Record("r", "p", np.asarray(signal, dtype=np.float32), float(fs), tuple(leads), (), annotations)


def test_wfdb_round_trip_in_millivolts(tmp_path):
    base = _write(tmp_path)
    rec = read_wfdb(base)
    assert rec.record_id == "data_7_3" and rec.patient_id == "7"
    assert rec.leads == ("I", "II") and rec.sampling_rate == FS
    assert rec.signal.dtype == np.float32 and rec.signal.shape == (2, 1000)
    np.testing.assert_allclose(rec.signal, _signal(), atol=1e-3)
    assert rec.comments == ("paroxysmal atrial fibrillation",)
    assert rec.annotations == ()
    assert read_wfdb(base.with_suffix(".hea"), patient_id="x").patient_id == "x"


def test_wfdb_microvolts_converted(tmp_path):
    rec = read_wfdb(_write(tmp_path, name="rec1", units="uV", scale=1000.0))
    assert rec.patient_id == "rec1"
    np.testing.assert_allclose(rec.signal, _signal(), atol=1e-3)


def test_wfdb_unknown_unit(tmp_path):
    with pytest.raises(InputError, match="unknown unit"):
        read_wfdb(_write(tmp_path, units="mmHg"))


def test_wfdb_annotations_keep_rhythm_labels(tmp_path):
    base = _write(tmp_path)
    wfdb.wrann(
        base.name,
        "atr",
        sample=np.array([0, 100, 400, 700]),
        symbol=["+", "N", "+", "+"],
        aux_note=["(N", "", "(AFIB", "(N"],
        write_dir=str(tmp_path),
    )
    assert read_wfdb(base).annotations == ((0, "(N"), (400, "(AFIB"), (700, "(N"))


@pytest.mark.parametrize("fmt", ["16", "212", "80"])
def test_truncated_dat_names_declared_and_held(tmp_path, fmt):
    base = _write(tmp_path, fmt=fmt)
    dat = base.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    with pytest.raises(InputError) as info:
        read_wfdb(base)
    message = str(info.value)
    assert "\n" not in message and "data_7_3.dat" in message
    assert "declares 1000 samples" in message and "holds 500" in message


def test_missing_files(tmp_path):
    base = _write(tmp_path)
    base.with_suffix(".dat").unlink()
    with pytest.raises(InputError, match=r"data_7_3\.dat.*missing"):
        read_wfdb(base)
    with pytest.raises(InputError, match=r"nothere\.hea"):
        read_wfdb(tmp_path / "nothere")


def test_unknown_format_code(tmp_path):
    base = _write(tmp_path)
    hea = base.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    lines[1:3] = [line.replace(".dat 16", ".dat 99", 1) for line in lines[1:3]]
    hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        read_wfdb(base)
    assert "data_7_3.hea" in str(info.value) and "\n" not in str(info.value)


def test_read_numpy(tmp_path):
    array = np.random.default_rng(0).normal(size=(3, 2, 500)).astype(np.float64)
    np.save(tmp_path / "batch.npy", array)
    recs = read_numpy(
        tmp_path / "batch.npy", sampling_rate=50, leads=("I", "II"), patient_ids=["a", "a", "b"]
    )
    assert [r.patient_id for r in recs] == ["a", "a", "b"]
    assert recs[2].record_id == "batch_2" and recs[2].signal.dtype == np.float32
    np.testing.assert_allclose(recs[1].signal, array[1], rtol=1e-6)
    np.save(tmp_path / "one.npy", array[0])
    assert len(read_numpy(tmp_path / "one.npy", sampling_rate=50, leads=("I", "II"))) == 1
    with pytest.raises(InputError, match="2 leads but 3 lead names"):
        read_numpy(tmp_path / "one.npy", sampling_rate=50, leads=("I", "II", "III"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy"):
        read_numpy(tmp_path / "obj.npy", sampling_rate=50, leads=("I",))


def test_quality_problems():
    good = _signal(3)
    assert quality_problems(_record(good, ["I", "II", "V1"])) == []
    bad = good.copy()
    bad[0, 5] = np.nan
    bad[2] = 0.2
    assert quality_problems(_record(bad, ["I", "II", "V1"])) == ["NaN values", "flat lead V1"]


def test_select_leads():
    rec = _record(np.arange(9).reshape(3, 3), ["avr", "I", "v6"])
    out = select_leads(rec)
    assert out.shape == (12, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[LEADS_12.index("I")], [3, 4, 5])
    np.testing.assert_array_equal(out[LEADS_12.index("aVR")], [0, 1, 2])
    np.testing.assert_array_equal(out[LEADS_12.index("V6")], [6, 7, 8])
    assert not out[LEADS_12.index("II")].any()
    np.testing.assert_array_equal(select_leads(rec, ("V6", "AVR")), [[6, 7, 8], [0, 1, 2]])
    with pytest.raises(InputError, match="missing II"):
        select_leads(rec, ("I", "II"), missing="error")


def test_resample_linear_ramp():
    ramp = np.tile(np.linspace(-1.0, 2.0, 5000), (12, 1))
    out = resample(ramp)
    assert out.shape == (12, PAPER_SAMPLES) and out.dtype == np.float32
    np.testing.assert_allclose(out[3], np.linspace(-1.0, 2.0, PAPER_SAMPLES), atol=1e-6)
    assert out[0, 0] == -1.0 and out[0, -1] == 2.0
    np.testing.assert_allclose(resample(np.array([[0.0, 10.0]]), 3), [[0.0, 5.0, 10.0]])


def test_windows_and_labels():
    rec = _record(np.tile(np.arange(2550.0), (2, 1)), ["I", "II"])
    wins = windows(rec)  # 10 s at 100 Hz = 1000 samples; 550 left over dropped
    assert [start for start, _ in wins] == [0, 1000]
    assert wins[1][1].shape == (2, 1000) and wins[1][1][0, 0] == 1000
    assert [s for s, _ in windows(rec, step=500)] == [0, 500, 1000, 1500]
    assert [s for s, _ in windows(rec, seconds=2.004)] == [
        0,
        200,
        400,
        600,
        800,
        1000,
        1200,
        1400,
        1600,
        1800,
        2000,
        2200,
    ]
    labelled = _record(rec.signal, rec.leads, annotations=((0, "(N"), (1500, "(AFIB"), (2400, "(N")))
    assert window_label(labelled, 0, 1000) == "(N"
    assert window_label(labelled, 1000, 1000) is None  # AF starts mid-window
    assert window_label(labelled, 1500, 900) == "(AFIB"
    assert window_label(_record(rec.signal, rec.leads), 0, 1000) is None


@pytest.mark.shared_data
def test_real_cpsc2021_record():
    rec = read_wfdb(shared_path("ecg", "cpsc2021", "data_101_6.hea"))
    assert rec.patient_id == "101" and rec.leads == ("I", "II")
    assert rec.sampling_rate == 200 and rec.signal.shape == (2, 22355)
    assert np.abs(rec.signal).max() < 20.0
    assert "paroxysmal atrial fibrillation" in rec.comments
    assert "(AFIB" in {label for _, label in rec.annotations}
    assert quality_problems(rec) == []
    assert len(windows(rec)) == 11  # 22,355 samples at 200 Hz = 111.8 s
    assert len(windows(rec, seconds=1.0)) == 111
    assert select_leads(rec).shape == (12, 22355)
    assert resample(windows(rec)[0][1]).shape == (2, PAPER_SAMPLES)
