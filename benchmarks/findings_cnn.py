"""Training speed of the concept-embedding paper's CNN (clinfm.concepts.cnn) on a findings table.

    python benchmarks/findings_cnn.py [--findings 100] [--dim 384] [--samples 2000]

Times one paper-preset fit (50 epochs x 100 steps of 32, validation each epoch) through the training
engine, and the bare forward+backward step with the kernel-1 shortcut against the literal
convolution over looked-up vectors.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a shared machine

import numpy as np
import torch

from clinfm.concepts.cnn import PAPER_TRAINING, CNNConfig, FindingsCNN
from clinfm.concepts.findings import FindingsData
from clinfm.train.engine import fit


def step_ms(
    model: FindingsCNN, tokens: torch.Tensor, labels: torch.Tensor, literal: bool, n: int = 200
) -> float:
    def step():
        if literal:
            pooled = torch.relu(model.conv(model.vectors[tokens].permute(0, 2, 1))).amax(dim=2)
            loss = torch.nn.functional.cross_entropy(model.fc(model.dropout(pooled)), labels.long())
        else:
            loss, _ = model.loss({"tokens": tokens, "label": labels}, "classify")
        loss.backward()

    for _ in range(10):
        step()
    started = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - started) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=100)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = 1 + 2 * np.arange(args.findings)[None, :] + rng.integers(0, 2, size=(args.samples, args.findings))
    labels = (rng.random(args.samples) < 0.2).astype(np.float32)
    vectors = torch.randn(1 + 2 * args.findings, args.dim)
    model = FindingsCNN(CNNConfig(dim=args.dim), vectors)
    tokens, y = torch.from_numpy(table[:32]), torch.from_numpy(labels[:32])
    print(f"threads {torch.get_num_threads()}, {args.findings} findings, {args.dim}-d vectors, batch 32")
    print(f"step, kernel-1 shortcut: {step_ms(model, tokens, y, literal=False):.2f} ms")
    print(f"step, literal convolution: {step_ms(model, tokens, y, literal=True):.2f} ms")
    train = FindingsData(table, labels)
    tuning = FindingsData(table[: args.samples // 4], labels[: args.samples // 4])
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        fit(model, "classify", train, tuning, PAPER_TRAINING.replace(logger="none"), work, resume=False)
        seconds = time.perf_counter() - started
    steps = PAPER_TRAINING.max_epochs * PAPER_TRAINING.steps_per_epoch
    print(f"paper-preset fit ({steps} steps, {args.samples // 4} tuning samples): {seconds:.1f} s")


if __name__ == "__main__":
    main()
