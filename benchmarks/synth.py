"""Benchmark `clinfm synth`: wall time, events per second and peak memory.

python benchmarks/synth.py 100000 [1000000 ...]
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


def main(sizes: list[str]) -> None:
    print(f"machine: {machine()}; date: {dt.date.today()}")
    print("| patients | events | wall (s) | events/s | peak memory (MB) |")
    print("|---:|---:|---:|---:|---:|")
    for size in map(int, sizes):
        out = Path(tempfile.mkdtemp(prefix="clinfm-bench-")) / "site"
        wall, peak = run_measured(
            [CLINFM, "synth", "--out", str(out), "--patients", str(size), "--site", "bench"]
        )
        events = pl.scan_parquet(out / "data" / "*.parquet").select(pl.len()).collect().item()
        print(f"| {size:,} | {events:,} | {wall:.1f} | {events / wall:,.0f} | {peak:,.0f} |")
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main(sys.argv[1:])
