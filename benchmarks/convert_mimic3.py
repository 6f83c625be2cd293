"""Benchmark `clinfm convert mimic3` on MIMIC-III-shaped data of growing size.

Make the inputs from the real demo with the shared tool (10,000 patients per 100 copies):
    python ../shared/tools/scale_mimic3.py ../shared/data/ehr/mimic-iii-demo /tmp/m3x100 100
then:
    python benchmarks/convert_mimic3.py /tmp/m3x100 [/tmp/m3x1000 ...]
Prints one markdown row per input: patients, source rows, events written, wall time, peak memory.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import polars as pl
from measure import machine, run_measured

CLINFM = str(Path(sys.executable).with_name("clinfm"))


def rows(scan: pl.LazyFrame) -> int:
    return scan.select(pl.len()).collect().item()


def source_rows(src: Path) -> int:
    return sum(rows(pl.scan_csv(path, infer_schema=False)) for path in src.glob("*.csv*"))


def main(sources: list[str]) -> None:
    print(f"machine: {machine()}; date: {dt.date.today()}")
    print("| patients | source rows | events | wall (s) | peak memory (MB) | events/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for src in map(Path, sources):
        out = Path(tempfile.mkdtemp(prefix="clinfm-bench-")) / "meds"
        wall, peak = run_measured([CLINFM, "convert", "mimic3", str(src), str(out)])
        events = rows(pl.scan_parquet(out / "data" / "*.parquet"))
        patients = rows(pl.scan_parquet(out / "metadata" / "subject_splits.parquet"))
        cells = [f"{patients:,}", f"{source_rows(src):,}", f"{events:,}", f"{wall:.2f}", f"{peak:,.0f}"]
        print("| " + " | ".join([*cells, f"{events / wall:,.0f}"]) + " |")
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main(sys.argv[1:])
