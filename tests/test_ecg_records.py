"""ECG records: WFDB / NumPy reading in millivolts, failures as InputError, PCLR preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import wfdb

from _shared import shared_path
from clinfm.ecg.records import (
    LEADS_12,
    PAPER_SAMPLES,
    Record,
    find_records,
    header_fields,
    quality_problems,
    read_numpy,
    read_record,
    read_records,
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


def _write_challenge(tmp_path, name="A0001", n=5000, fmt="16+24") -> tuple:
    """A PhysioNet/CinC Challenge record: WFDB header naming a MATLAB v4 ``.mat`` holding ``val``."""
    val = np.random.default_rng(0).integers(-3000, 3000, size=(12, n)).astype(np.int16)
    gains = np.array([1000.0] * 6 + [500.0] * 6)
    baselines = np.arange(12) * 10 - 40
    scipy.io.savemat(tmp_path / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name} 12 500 {n} 05-Feb-2020 11:39:16"]
    for i, lead in enumerate(LEADS_12):
        lines.append(f"{name}.mat {fmt} {gains[i]:g}({baselines[i]})/mV 16 0 {val[i, 0]} 0 0 {lead}")
    lines += ["#Age: 53", "#Sex: Male", "#Dx: 164889003,59118001", "#Rx: Unknown"]
    (tmp_path / f"{name}.hea").write_text("\n".join(lines) + "\n")
    millivolts = (val - baselines[:, None]) / gains[:, None]
    return tmp_path / f"{name}.hea", millivolts


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


def test_wfdb_patient_from_header_comment(tmp_path):
    base = _write(tmp_path)
    hea = base.with_suffix(".hea")
    hea.write_text(hea.read_text() + "# patient_id: P00042\n")
    assert read_wfdb(base).patient_id == "P00042"
    assert read_wfdb(base, patient_id="x").patient_id == "x"


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


def test_challenge_mat_record_in_millivolts(tmp_path):
    hea, millivolts = _write_challenge(tmp_path)
    mat = hea.with_suffix(".mat")
    assert mat.stat().st_size == 24 + 2 * 12 * 5000  # MATLAB v4 header of "val" is 24 bytes
    for path in (hea, mat, tmp_path / "A0001"):
        rec = read_wfdb(path)
        assert rec.record_id == "A0001" and rec.leads == LEADS_12 and rec.sampling_rate == 500
        np.testing.assert_allclose(rec.signal, millivolts, rtol=1e-6, atol=1e-6)
    assert read_record(hea).comments == ("Age: 53", "Sex: Male", "Dx: 164889003,59118001", "Rx: Unknown")
    assert header_fields(read_record(hea)) == {
        "age": "53",
        "sex": "Male",
        "dx": "164889003,59118001",
        "rx": "Unknown",
    }


def test_truncated_mat_names_the_file(tmp_path):
    hea, _ = _write_challenge(tmp_path)
    mat = hea.with_suffix(".mat")
    mat.write_bytes(mat.read_bytes()[: 24 + 2 * 12 * 1000])
    with pytest.raises(InputError) as info:
        read_wfdb(hea)
    message = str(info.value)
    assert "\n" not in message and "A0001.mat" in message
    assert "declares 5000 samples" in message and "holds 1000" in message
    mat.write_bytes(b"")
    with pytest.raises(InputError, match=r"A0001\.mat.*holds 0"):
        read_wfdb(hea)
    mat.unlink()
    with pytest.raises(InputError, match=r"A0001\.mat.*missing"):
        read_wfdb(hea)


def test_mat_that_wfdb_would_misread(tmp_path):
    hea, _ = _write_challenge(tmp_path, fmt="16+32")
    with pytest.raises(InputError, match=r"A0001\.mat: data starts at byte 24 but the header says 16\+32"):
        read_wfdb(hea)
    hea, _ = _write_challenge(tmp_path)
    scipy.io.savemat(hea.with_suffix(".mat"), {"val": np.zeros((12, 5000), np.int16)})  # MATLAB v5
    with pytest.raises(InputError, match="MATLAB v5/v7"):
        read_wfdb(hea)
    scipy.io.savemat(hea.with_suffix(".mat"), {"val": np.zeros((12, 5000))}, format="4")  # doubles
    with pytest.raises(InputError, match="type code"):
        read_wfdb(hea)


def test_header_fields():
    comments = ("Age: 53", "#Sex: Male", "Dx: 164889003", "label = AF", "paroxysmal atrial fibrillation")
    rec = Record("r", "p", np.zeros((1, 10), np.float32), 100.0, ("I",), comments)
    assert header_fields(rec) == {"age": "53", "sex": "Male", "dx": "164889003", "label": "AF"}
    assert header_fields(_record(np.zeros((1, 3)), ["I"])) == {}


def test_find_records_in_a_mixed_folder(tmp_path):
    (tmp_path / "wfdb").mkdir()
    _write(tmp_path / "wfdb", name="rec1")
    _write_challenge(tmp_path / "wfdb")
    (tmp_path / "arrays" / "deep").mkdir(parents=True)
    np.save(tmp_path / "arrays" / "deep" / "b.npy", np.zeros((12, 100)))
    np.save(tmp_path / "arrays" / "a.npy", np.zeros((12, 100)))
    np.save(tmp_path / "wfdb" / "rec1.npy", np.zeros((2, 100)))  # a copy of a WFDB record: listed once
    (tmp_path / "notes.txt").write_text("not a record")
    found = find_records(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "arrays/a.npy",
        "arrays/deep/b.npy",
        "wfdb/A0001.hea",
        "wfdb/rec1.hea",
    ]
    assert find_records(tmp_path / "arrays" / "a.npy") == [tmp_path / "arrays" / "a.npy"]
    assert find_records(tmp_path / "wfdb" / "A0001.mat") == [tmp_path / "wfdb" / "A0001.hea"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no ECG records \(\.hea or \.npy\) under .*empty"):
        find_records(tmp_path / "empty")
    with pytest.raises(InputError, match="no ECG records"):
        find_records(tmp_path / "nothere")


def test_read_record_dispatches_by_suffix(tmp_path):
    base = _write(tmp_path)
    assert read_record(base.with_suffix(".hea"), patient_id="x").patient_id == "x"
    assert read_record(base.with_suffix(".hea"), sampling_rate=999).sampling_rate == FS  # header wins
    array = np.random.default_rng(0).normal(size=(12, 300))
    np.save(tmp_path / "one.npy", array)
    with pytest.raises(InputError) as info:
        read_record(tmp_path / "one.npy")
    assert "one.npy" in str(info.value) and "--sampling-rate" in str(info.value)
    rec = read_record(tmp_path / "one.npy", sampling_rate=60, patient_id="p1")
    assert rec.leads == LEADS_12 and rec.sampling_rate == 60 and rec.patient_id == "p1"
    np.testing.assert_allclose(rec.signal, array, rtol=1e-6)
    np.save(tmp_path / "two.npy", array[:2])
    assert read_record(tmp_path / "two.npy", sampling_rate=60).leads == ("I", "II")  # standard order
    assert read_record(tmp_path / "two.npy", sampling_rate=60, leads=("II", "V5")).leads == ("II", "V5")
    np.save(tmp_path / "many.npy", np.zeros((15, 300)))
    with pytest.raises(InputError, match="array has 15 leads; pass their names"):
        read_record(tmp_path / "many.npy", sampling_rate=60)
    np.save(tmp_path / "batch.npy", np.stack([array, array]))
    with pytest.raises(InputError, match="holds 2 records"):
        read_record(tmp_path / "batch.npy", sampling_rate=60)
    batch = read_records(tmp_path / "batch.npy", sampling_rate=60)
    assert [r.record_id for r in batch] == ["batch_0", "batch_1"] and batch[1].leads == LEADS_12
    assert [r.record_id for r in read_records(base.with_suffix(".hea"))] == ["data_7_3"]
    with pytest.raises(InputError, match="--sampling-rate"):
        read_records(tmp_path / "batch.npy")


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


@pytest.mark.shared_data
def test_real_cpsc2021_rhythms_from_annotations_or_record_class():
    paroxysmal = read_wfdb(shared_path("ecg", "cpsc2021", "data_101_6.hea")).annotations
    assert {label for _, label in paroxysmal} == {"(AFIB", "(N"}  # beats' "None" notes are not rhythms
    assert read_wfdb(shared_path("ecg", "cpsc2021", "data_8_2.hea")).annotations[0] == (0, "(AFIB")
    # no rhythm annotations: the header's class "non atrial fibrillation" holds throughout
    assert read_wfdb(shared_path("ecg", "cpsc2021", "data_21_7.hea")).annotations == ((0, "(N"),)
