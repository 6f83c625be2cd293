"""Wall time and peak memory of a command (needs psutil)."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import psutil


def run_measured(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak resident MB).

    The peak is the larger of the process tree's sampled total (children included) and the
    kernel's own maximum for the command (``wait4``), which a 50 ms sampler can miss.
    """
    # Importing Polars here exported its allocator setting; the child should start as from a shell.
    env = {key: value for key, value in os.environ.items() if key != "_RJEM_MALLOC_CONF"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    root = psutil.Process(process.pid)
    sampled = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            tree = [root, *root.children(recursive=True)]
            sampled = max(sampled, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"command failed ({code}): {' '.join(command)}")
    return wall, max(sampled, usage.ru_maxrss * 1024) / 2**20


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, {memory:.0f} GiB"
