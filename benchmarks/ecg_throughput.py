"""PCLR pre-training and embedding speed (ECGs per second) and memory, streaming from a prepared set.

    python benchmarks/ecg_throughput.py [--windows 6000] [--steps 20] [--presets paper,small] [--ecgs 20]

Writes a prepared set of ``--windows`` random 12-lead windows per preset (4,096 samples for the
paper preset: 1.2 GB on disk at 6,000 windows; 1,024 for small) through clinfm.ecg.corpus' streaming
writer, then, reading batches from the memory-mapped array as ``clinfm ecg pretrain`` does:
PCLR optimiser steps at batch 64 pairs (128 ECGs) after a warm-up, and embedding at batch 256.
Memory is reported beside the set's size on disk (Linux /proc): training must not copy the set
into anonymous memory; mapped pages of the set show as file-backed.
The signal content does not matter for speed (the network's cost does not depend on it).
Then, on one core: ``--ecgs`` synthetic 12-lead ECGs simulated (clinfm.ecg.synth, 10 s at 250 Hz)
and their hand-crafted features measured at the paper's 4,096 samples per window.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a shared machine

import numpy as np
import torch

from clinfm.ecg.corpus import SIGNALS_FILE, WindowWriter
from clinfm.ecg.data import ECGPairs, ECGWindows
from clinfm.ecg.model import PRESETS, PCLRModel
from clinfm.train.engine import TrainConfig, make_loader, make_optimizer, parameter_groups, predict


def write_set(folder: Path, windows: int, samples: int, patients: int) -> tuple[np.ndarray, np.ndarray]:
    """Random windows streamed to disk in chunks; (memory-mapped signals, patient ids)."""
    writer = WindowWriter(folder / SIGNALS_FILE, 12, samples)
    rng = np.random.default_rng(0)
    for _ in range(windows):
        writer.append(rng.normal(0.0, 0.5, size=(12, samples)).astype(np.float32))
    writer.finish()
    ids = np.array([f"p{i % patients}" for i in range(windows)])
    return np.load(folder / SIGNALS_FILE, mmap_mode="r"), ids


def memory_mb() -> tuple[float, float, float]:
    """(peak resident, resident anonymous now, resident file-backed now) in MB. Pages of the
    memory-mapped set count as file-backed: the kernel can drop them, they are not a copy."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    anon, file = (float(status[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, anon, file


def train_rate(signals, ids, preset: str, steps: int, batch: int) -> float:
    """Pre-training ECGs per second (both ECGs of each pair count)."""
    model = PCLRModel(PRESETS[preset])
    config = TrainConfig(batch_size=batch, optimizer="adam", lr=1e-3)
    optimiser = make_optimizer(parameter_groups(model, config), config)
    loader = make_loader(ECGPairs(signals, ids), config, train=True)
    batches = iter(loader)
    model.train()

    def step():
        nonlocal batches
        batch = next(batches, None)
        if batch is None:  # an epoch of pairs is shorter than the steps asked for: start another
            batches = iter(loader)
            batch = next(batches)
        loss, _ = model.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * 2 * batch / (time.perf_counter() - started)


def embed_rate(signals, ids, preset: str, n: int) -> float:
    model = PCLRModel(PRESETS[preset])
    rows = ECGWindows(signals[:n], ids[:n])
    started = time.perf_counter()
    predict(model, rows, "embed", batch_size=256)
    return n / (time.perf_counter() - started)


def synthesis_and_features(n: int) -> tuple[float, float]:
    """(seconds per simulated ECG, seconds per hand-crafted feature vector) over ``n`` ECGs."""
    from clinfm.ecg.features import ecg_features
    from clinfm.ecg.records import LEADS_12, resample
    from clinfm.ecg.synth import synthetic_ecg, synthetic_patients

    rng = np.random.default_rng(0)
    patients = synthetic_patients(n, seed=0)
    started = time.perf_counter()
    ecgs = [resample(synthetic_ecg(p, rng=rng), 4096) for p in patients]
    simulated = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for ecg in ecgs:
        ecg_features(ecg, 409.6, LEADS_12)
    return simulated, (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="pairs per batch")
    parser.add_argument("--presets", default="paper,small")
    parser.add_argument("--embed", type=int, default=1024, help="windows embedded")
    parser.add_argument("--ecgs", type=int, default=20, help="synthetic ECGs simulated and measured")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    for preset in filter(None, args.presets.split(",")):  # --presets "": only the --ecgs line
        samples = PRESETS[preset].samples
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            signals, ids = write_set(Path(tmp), args.windows, samples, patients=args.windows // 3)
            written = time.perf_counter() - started
            size = (Path(tmp) / SIGNALS_FILE).stat().st_size / 2**20
            train = train_rate(signals, ids, preset, args.steps, args.batch)
            embed = embed_rate(signals, ids, preset, min(args.embed, args.windows))
            peak, anon, file = memory_mb()
            print(
                f"{preset}: set {args.windows} windows x 12 x {samples} = {size:,.0f} MB "
                f"written in {written:.1f} s; pre-training {train:,.0f} ECGs/s; "
                f"embedding {embed:,.0f} ECGs/s; peak RSS {peak:,.0f} MB (now {anon:,.0f} MB anonymous, "
                f"{file:,.0f} MB file-backed)"
            )

    if args.ecgs:
        torch.set_num_threads(1)
        simulated, measured = synthesis_and_features(args.ecgs)
        print(
            f"one core: simulating a 10 s 12-lead ECG {1000 * simulated:.1f} ms; "
            f"hand-crafted features of a 4,096-sample window {1000 * measured:.0f} ms"
        )


if __name__ == "__main__":
    main()
