"""Wall time and peak memory of a command's whole process tree, sampled every 50 ms (needs psutil)."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import psutil


def run_measured(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak resident MB of it and its children)."""
    # Importing Polars here exported its allocator setting; the child should start as from a shell.
    env = {key: value for key, value in os.environ.items() if key != "_RJEM_MALLOC_CONF"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    if process.returncode:
        raise SystemExit(f"command failed ({process.returncode}): {' '.join(command)}")
    return time.perf_counter() - start, peak / 2**20


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, {memory:.0f} GiB"
