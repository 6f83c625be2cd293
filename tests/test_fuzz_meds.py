"""Bad MEDS data, label files and CSV extracts, fed to the commands a user runs: each is refused with
one line naming the file (exit 2, no traceback, no output left), never accepted with a wrong result.
Also: messages name rows, not patients; two runs into one output; what a killed run left behind.

Every case here was accepted or crashed before issue 16; each is written by the test itself.
"""

from __future__ import annotations

import fcntl
import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from _shared import message_lines
from clinfm.cli import app
from clinfm.errors import InputError
from clinfm.events.meds import read_labels

runner = CliRunner()


def _cli(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _refused(result, *expected: str) -> str:
    """The one error line of a refused command, which must contain each of ``expected``."""
    assert result.exit_code == 2, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A small valid site, copied by each case before it is broken."""
    from clinfm import synthesize

    return synthesize(tmp_path_factory.mktemp("fuzz") / "site", patients=120, coding="icd10", seed=4)


def _copy(site: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(site, tmp_path / "site"))


def _shard(root: Path) -> Path:
    return sorted((root / "data").rglob("*.parquet"))[0]


def _rewrite(path: Path, change) -> None:
    change(pl.read_parquet(path)).write_parquet(path)


def _backwards(root: Path) -> None:  # two events of one subject swapped in time order
    def swap(frame: pl.DataFrame) -> pl.DataFrame:
        timed = frame.with_row_index("i").filter(pl.col("time").is_not_null())
        a, b = timed["i"][0], timed["i"][-1]  # a's subject's first timed event gets the last's time
        later = frame["time"][b]
        return frame.with_columns(
            time=pl.when(pl.int_range(pl.len()) == a).then(pl.lit(later)).otherwise(pl.col("time"))
        )

    _rewrite(_shard(root), swap)


def _two_shards(root: Path) -> None:  # one subject's last event moved to a shard of its own
    shard = _shard(root)
    frame = pl.read_parquet(shard)
    first = frame["subject_id"][0]
    mine = frame.filter(pl.col("subject_id") == first)
    frame.filter(pl.col("subject_id") != first).vstack(mine.head(mine.height - 1)).sort(
        "subject_id", "time", nulls_last=False, maintain_order=True
    ).write_parquet(shard)
    mine.tail(1).write_parquet(shard.with_name("extra.parquet"))


def _null_subject(root: Path) -> None:
    _rewrite(
        _shard(root),
        lambda f: f.with_columns(
            subject_id=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("subject_id"))
        ),
    )


def _integer_time(root: Path) -> None:
    _rewrite(_shard(root), lambda f: f.with_columns(pl.col("time").dt.epoch("us")))


def _two_splits(root: Path) -> None:  # a training subject also listed as held out: leakage
    path = root / "metadata" / "subject_splits.parquet"
    splits = pl.read_parquet(path)
    train = splits.filter(pl.col("split") == "train").head(1)
    splits.vstack(train.with_columns(split=pl.lit("held_out"))).write_parquet(path)


def _corrupt(root: Path) -> None:  # a shard cut short, as a full disk or a killed copy leaves it
    shard = _shard(root)
    shard.write_bytes(shard.read_bytes()[:200])


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (_corrupt, "not a readable Parquet file"),
        (_backwards, "time goes backwards"),
        (_two_shards, "more than one shard"),
        (_null_subject, "subject_id is null"),
        (_integer_time, "time"),
        (_two_splits, "also in another split"),
    ],
    ids=[
        "corrupt-shard",
        "time-backwards",
        "subject-in-two-shards",
        "null-subject",
        "int64-time",
        "subject-in-two-splits",
    ],
)
@pytest.mark.parametrize("command", ["pretrain", "describe"])
def test_training_and_describe_refuse_what_validate_refuses(site, tmp_path, breakage, expected, command):
    data = _copy(site, tmp_path)
    breakage(data)
    out = tmp_path / "run"
    args = (
        ("pretrain", "--data", data, "--out", out, "--epochs", "1")
        if command == "pretrain"
        else (
            "describe",
            data,
        )
    )
    line = _refused(_cli(*args), expected, "clinfm validate")
    assert str(data) in line
    assert not out.exists() and not list(tmp_path.glob(".run*"))
    assert "error" in _cli("validate", data).output.lower()


def test_a_valid_copy_rewritten_by_polars_is_accepted(site, tmp_path):
    data = _copy(site, tmp_path)
    _rewrite(_shard(data), lambda f: f)
    assert _cli("describe", data).exit_code == 0


def test_other_widths_of_the_meds_types_are_read(site, tmp_path):
    """pandas' nanosecond times, Polars' float64 values, unsigned ids: the readers cast them, so the
    check on every read accepts them; validate still says they are not MEDS. A task with unknown
    (null) outcomes, which predict accepts, does not block the dataset's other commands."""
    data = _copy(site, tmp_path)
    _rewrite(
        _shard(data),
        lambda f: f.with_columns(
            pl.col("time").dt.cast_time_unit("ns"),
            pl.col("numeric_value").cast(pl.Float64),
            pl.col("subject_id").cast(pl.UInt64),
        ),
    )
    task = sorted((data / "tasks").glob("*.parquet"))[0]
    _rewrite(task, lambda f: f.with_columns(boolean_value=pl.lit(None, pl.Boolean)))
    assert _cli("describe", data).exit_code == 0
    assert "incorrect types" in _cli("validate", data).output  # validate stays strict about MEDS


def test_a_second_training_run_into_the_same_output_is_refused(site, tmp_path):
    """Training runs hold their output too: two runs never share one resume folder."""
    out = tmp_path / "run"
    with open(tmp_path / ".run.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        _refused(_cli("pretrain", "--data", site, "--out", out, "--epochs", "1"), "another clinfm run")
    assert not out.exists() and not (tmp_path / ".run.partial").exists()


# ------------------------------------------------------------------------------------------- labels


def _labels(site: Path, tmp_path: Path, change) -> Path:
    task = sorted((site / "tasks").glob("*.parquet"))[0]
    path = tmp_path / "labels.parquet"
    change(pl.read_parquet(task)).write_parquet(path)
    return path


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda f: f.with_columns(pl.col("prediction_time").dt.replace_time_zone("America/New_York")),
            "zone",
        ),
        (
            lambda f: f.with_columns(
                prediction_time=pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise("prediction_time")
            ),
            "row 2: prediction_time is empty",
        ),
        (
            lambda f: f.with_columns(
                pl.col("subject_id").cast(pl.Float64)
                + pl.when(pl.int_range(pl.len()) == 0).then(0.5).otherwise(0)
            ),
            "row 1: subject_id is not a whole number",
        ),
        (
            lambda f: f.with_columns(
                subject_id=pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise("subject_id")
            ),
            "row 3: subject_id is empty",
        ),
    ],
    ids=["time-zone", "null-time", "fractional-subject", "null-subject"],
)
def test_label_keys_a_cast_would_change_are_refused(site, tmp_path, change, expected):
    path = _labels(site, tmp_path, change)
    with pytest.raises(InputError, match=expected):
        read_labels(path)
    data = _copy(site, tmp_path)
    shutil.copy(path, data / "tasks" / "mine.parquet")
    _refused(_cli("describe", data), "mine.parquet")


def test_whole_number_float_subject_ids_are_read_as_integers(site, tmp_path):
    path = _labels(site, tmp_path, lambda f: f.with_columns(pl.col("subject_id").cast(pl.Float64)))
    labels = read_labels(path)
    assert labels["subject_id"].dtype == pl.Int64
    assert labels["subject_id"].to_list() == pl.read_parquet(path)["subject_id"].cast(pl.Int64).to_list()


def test_label_errors_name_rows_not_patients(site, tmp_path):
    """A message may be pasted into an issue tracker: it names the row, never a subject or a date."""
    from clinfm.events.labels import check_labels
    from clinfm.events.meds import scan_events

    path = _labels(site, tmp_path, lambda f: f.with_columns(prediction_time=pl.lit(datetime(1900, 1, 2))))
    labels = read_labels(path)
    with pytest.raises(InputError) as raised:
        check_labels(scan_events(site), labels, path=path)
    message = str(raised.value)
    assert "row 1: prediction_time is before the subject's birth" in message
    assert str(labels["subject_id"][0]) not in message.replace(str(path), "") and "1900" not in message


# ---------------------------------------------------------------------------------------- CSV input

MAPPING = """
tables:
  - file: events.csv
    subject_id: patient
    time: when
    code: drug
    code_prefix: LOCAL_DRUG
    unit: unit
{extra}
"""


def _extract(tmp_path: Path, rows: str, extra: str = "") -> tuple[Path, Path]:
    src = tmp_path / "extract"
    src.mkdir()
    (src / "events.csv").write_text("patient,when,drug,unit\n" + rows)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.format(extra=extra))
    return src, mapping


def test_a_row_with_an_unquoted_separator_is_refused_with_its_row(tmp_path):
    rows = '1,2020-01-01,ASPIRIN,mg\n2,2020-01-02,HEPARIN,5000,units\n3,2020-01-03,"A, B",mg\n'
    src, mapping = _extract(tmp_path, rows)
    line = _refused(_cli("convert", "csv", src, tmp_path / "out", "--mapping", mapping), "events.csv")
    assert "row 2 has 5 fields, the header 4" in line and "quoted" in line
    assert not (tmp_path / "out").exists()


def test_a_ragged_row_after_a_very_long_value_is_still_one_line(tmp_path):
    note = "x" * 200_000  # past the csv module's default field limit (128 KB)
    src, mapping = _extract(tmp_path, f"1,2020-01-01,ASPIRIN,{note}\n2,2020-01-02,HEPARIN,5000,units\n")
    _refused(_cli("convert", "csv", src, tmp_path / "out", "--mapping", mapping), "row 2 has 5 fields")


def test_quoted_separators_and_short_rows_are_read(tmp_path):
    src, mapping = _extract(tmp_path, '1,2020-01-01,"A, B",mg\n2,2020-01-02,HEPARIN\n')
    assert _cli("convert", "csv", src, tmp_path / "out", "--mapping", mapping).exit_code == 0
    codes = pl.read_parquet(tmp_path / "out" / "data").filter(pl.col("code").str.starts_with("LOCAL_DRUG"))
    assert sorted(codes["code"].to_list()) == ["LOCAL_DRUG/A, B", "LOCAL_DRUG/HEPARIN"]


@pytest.mark.parametrize("separator", ["'||'", "''", "'\"'"])
def test_a_separator_must_be_one_character(tmp_path, separator):
    src, mapping = _extract(tmp_path, "1,2020-01-01,ASPIRIN,mg\n", extra=f"    separator: {separator}")
    _refused(
        _cli("convert", "csv", src, tmp_path / "out", "--mapping", mapping), "separator", "one character"
    )


def test_unparsable_ids_and_dates_are_shown_by_shape_not_value(tmp_path):
    src, mapping = _extract(tmp_path, "1,2020-01-01,ASPIRIN,mg\nMRN77,03/04/1961,ASPIRIN,mg\n")
    line = _refused(_cli("convert", "csv", src, tmp_path / "out", "--mapping", mapping), "row 2")
    assert "MRN77" not in line and "1961" not in line and "'xxx99'" in line


# ---------------------------------------------------------------------------------- the output folder


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(tmp_path):
    src, mapping = _extract(tmp_path, "1,2020-01-01,ASPIRIN,mg\n")
    out = tmp_path / "out"
    with open(tmp_path / ".out.lock", "a") as held:  # what a running clinfm holds
        fcntl.flock(held, fcntl.LOCK_EX)
        _refused(_cli("convert", "csv", src, out, "--mapping", mapping), "another clinfm run")
    assert not out.exists()
    assert _cli("convert", "csv", src, out, "--mapping", mapping).exit_code == 0
    assert not (tmp_path / ".out.lock").exists()


def test_leftovers_of_a_killed_run_are_cleared_by_the_next_run_into_the_same_output(tmp_path):
    src, mapping = _extract(tmp_path, "1,2020-01-01,ASPIRIN,mg\n")
    killed = [tmp_path / ".out.k1ll3d_1.tmp", tmp_path / ".out.staging-k1ll3d_2"]
    other = [tmp_path / ".outer.k1ll3d_3.tmp", tmp_path / ".out.x.k1ll3d_4.tmp", tmp_path / "notes"]
    for folder in killed + other:
        (folder / "data").mkdir(parents=True)
    assert _cli("convert", "csv", src, tmp_path / "out", "--mapping", mapping).exit_code == 0
    assert not any(folder.exists() for folder in killed)
    assert all(folder.exists() for folder in other)  # another output's, or the user's


def test_an_output_moved_aside_by_a_killed_replacement_is_put_back(tmp_path):
    src, mapping = _extract(tmp_path, "1,2020-01-01,ASPIRIN,mg\n")
    out = tmp_path / "out"
    assert _cli("convert", "csv", src, out, "--mapping", mapping).exit_code == 0
    out.rename(tmp_path / ".out.old")  # killed between the two renames of replace_directory
    assert _cli("convert", "csv", src, out, "--mapping", mapping).exit_code == 2  # exists: not replaced
    assert out.is_dir() and not (tmp_path / ".out.old").exists()
