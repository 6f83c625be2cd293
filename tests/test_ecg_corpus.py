"""Prepared ECG sets (streamed windows in one memory-mapped array) and labels for probes."""

from __future__ import annotations

import numpy as np
import pytest

from clinfm.ecg.corpus import PrepareSettings, open_set, prepare, read_record_fields
from clinfm.ecg.labels import label_values, read_labels
from clinfm.errors import InputError


def _write(folder, name, signal, rate, leads=("I", "II"), comments=(), rhythms=()):
    """A WFDB record (16-bit, 1 uV steps) with optional rhythm annotations [(sample, '(AFIB'), ...]."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=rate,
        units=["mV"] * len(leads),
        sig_name=list(leads),
        p_signal=np.asarray(signal, dtype=np.float64).T,
        fmt=["16"] * len(leads),
        adc_gain=[1000.0] * len(leads),
        baseline=[0] * len(leads),
        comments=list(comments),
        write_dir=str(folder),
    )
    if rhythms:
        wfdb.wrann(
            name,
            "atr",
            np.array([s for s, _ in rhythms]),
            symbol=["+"] * len(rhythms),
            aux_note=[n for _, n in rhythms],
            write_dir=str(folder),
        )
    return folder / f"{name}.hea"


def _wave(seconds, rate, leads=2, offset=0.0):
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([np.sin(2 * np.pi * (k + 1) * t) + offset for k in range(leads)])


def test_windows_are_resampled_streamed_and_labelled(tmp_path):
    _write(tmp_path / "in", "data_7_1", _wave(25, 200), 200, rhythms=[(0, "(N"), (2500, "(AFIB")])
    _write(tmp_path / "in", "data_7_2", _wave(12, 500), 500)
    report = prepare(
        [tmp_path / "in"], tmp_path / "set", PrepareSettings(samples=256, leads=("I", "II", "V1"))
    )
    ecg_set = open_set(tmp_path / "set")
    assert isinstance(ecg_set.signals, np.memmap)
    assert ecg_set.signals.shape == (3, 3, 256) and ecg_set.signals.dtype == np.float32
    assert report.windows == 3 and report.patients == 1 and len(report.sampling_rates) == 2
    assert [w["start_s"] for w in ecg_set.windows] == ["0.0", "10.0", "0.0"]
    # 0-10 s sinus, 10-20 s changes to AF at 12.5 s (mixed: no label); the 500 Hz record has none
    assert [w["rhythm"] for w in ecg_set.windows] == ["N", "", ""]
    assert set(ecg_set.patient_ids) == {"7"}
    assert not ecg_set.signals[:, 2].any()  # V1 absent: zeros
    first = np.interp(
        np.linspace(0, 1, 256), np.linspace(0, 1, 2000), np.sin(2 * np.pi * np.arange(2000) / 200)
    )
    assert np.allclose(ecg_set.signals[0, 0], first, atol=2e-3)
    assert any("sampling rates differ" in line for line in report.lines())


def test_a_bad_record_among_many_is_a_counted_skip_and_alone_an_error(tmp_path):
    good = _write(tmp_path / "in", "a", _wave(10, 100), 100)
    bad = _write(tmp_path / "in", "b", _wave(10, 100), 100)
    (tmp_path / "in" / "b.dat").write_bytes(bad.with_suffix(".dat").read_bytes()[:100])
    report = prepare([tmp_path / "in"], tmp_path / "set", PrepareSettings(samples=64))
    assert report.skipped_records == 1 and report.windows == 1
    meta = open_set(tmp_path / "set").meta
    assert meta["skipped_records"] == 1 and "b.dat" in meta["skips"][0]["why"]
    with pytest.raises(InputError, match=r"b\.dat"):
        prepare([bad], tmp_path / "alone", PrepareSettings(samples=64))
    assert good.exists()


def test_nan_windows_and_short_records_are_counted(tmp_path):
    signal = _wave(20, 100)
    signal[0, 1500] = np.nan
    np.save(tmp_path / "x.npy", signal.astype(np.float32))
    np.save(tmp_path / "short.npy", _wave(5, 100).astype(np.float32))
    settings = PrepareSettings(samples=64, leads=("I", "II"), sampling_rate=100.0)
    report = prepare([tmp_path / "x.npy", tmp_path / "short.npy"], tmp_path / "set", settings)
    assert (
        report.windows == 1
        and report.skipped_windows["NaN or infinite values"] == 1
        and report.short_records == 1
    )


def test_missing_leads_can_skip_records(tmp_path):
    _write(tmp_path / "in", "two", _wave(10, 100), 100)
    _write(tmp_path / "in", "one", _wave(10, 100, leads=1), 100, leads=("II",))
    settings = PrepareSettings(samples=64, leads=("I", "II"), missing_leads="skip")
    report = prepare([tmp_path / "in"], tmp_path / "set", settings)
    assert report.windows == 1 and report.skipped_records == 1


def test_center_removes_a_dc_offset(tmp_path):
    _write(tmp_path / "in", "r", _wave(10, 100, offset=5.0), 100)
    prepare([tmp_path / "in"], tmp_path / "set", PrepareSettings(samples=64, leads=("I",), center=True))
    assert abs(float(np.median(open_set(tmp_path / "set").signals[0]))) < 0.05


def test_no_usable_window_is_one_error(tmp_path):
    _write(tmp_path / "in", "r", _wave(3, 100), 100)
    with pytest.raises(InputError, match="no usable"):
        prepare([tmp_path / "in"], tmp_path / "set", PrepareSettings(samples=64))


def test_open_set_refuses_other_folders(tmp_path):
    with pytest.raises(InputError, match="not a prepared ECG set"):
        open_set(tmp_path)


def test_labels_join_on_patients_and_name_values(tmp_path):
    windows = [
        {"record_id": "a", "patient_id": "p1", "rhythm": "AFIB"},
        {"record_id": "b", "patient_id": "p2", "rhythm": "N"},
        {"record_id": "c", "patient_id": "p3", "rhythm": ""},
    ]
    (tmp_path / "labels.csv").write_text("patient_id,sex,age\np1,M,50\np2,F,61.5\n")
    table = read_labels(tmp_path / "labels.csv")
    age = label_values("age", windows, table)
    assert age.task == "regression" and np.allclose(age.values[:2], [50, 61.5]) and np.isnan(age.values[2])
    male = label_values("sex=M", windows, table)
    assert male.task == "binary" and male.values[:2].tolist() == [1.0, 0.0]
    af = label_values("rhythm=AFIB", windows, table)
    assert af.values[:2].tolist() == [1.0, 0.0] and np.isnan(af.values[2])
    with pytest.raises(InputError, match="sex=M"):
        label_values("sex", windows, table)
    with pytest.raises(InputError, match="no label column 'lvh'"):
        label_values("lvh", windows, table)


def test_challenge_header_fields_are_labels(tmp_path):
    for name, age, sex in (("A1", 53, "Male"), ("A2", 61, "Female")):
        _write(
            tmp_path / "in",
            name,
            _wave(10, 100),
            100,
            comments=[f"Age: {age}", f"Sex: {sex}", "Dx: 426783006"],
        )
    prepare([tmp_path / "in"], tmp_path / "set", PrepareSettings(samples=64))
    ecg_set, fields = open_set(tmp_path / "set"), read_record_fields(tmp_path / "set")
    assert fields["A1"]["age"] == "53" and fields["A2"]["sex"] == "Female"
    assert label_values("Age", ecg_set.windows, records=fields).values.tolist() == [53.0, 61.0]
    assert label_values("sex=Male", ecg_set.windows, records=fields).values.tolist() == [1.0, 0.0]


def test_labels_csv_needs_a_key_and_unique_rows(tmp_path):
    (tmp_path / "a.csv").write_text("id,af\n1,0\n")
    with pytest.raises(InputError, match="line 1: no record_id or patient_id"):
        read_labels(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("patient_id,af\np1,0\np1,1\n")
    with pytest.raises(InputError, match="line 3"):
        read_labels(tmp_path / "b.csv")
