"""MEDFuse's lab side and fusion model: tokenising speed on MEDS, and training throughput.

    python benchmarks/fuse_throughput.py [--tokenise] [--train] [--threads 4]
    python benchmarks/fuse_throughput.py --tokenise --data /work/shared/data/ehr/mimic-iv-demo-meds
    python benchmarks/fuse_throughput.py --train --presets small,paper --batch-size 256 --steps 20

``--tokenise`` (needs ``--data``, a MEDS dataset; skipped with a message when absent), each timing
run ``--repeats`` times, the best kept (the first run warms the file cache):
(a) :func:`clinfm.fuse.samples.lab_table` for one sample per admission (the samples of
:func:`clinfm.fuse.targets.diagnosis_group_labels`) over every ``LAB//`` row, then over the
``LAB//5`` rows only (lab items; the rest of ``LAB//`` in the MIMIC-IV demo is charted vitals);
(b) ``lab_table`` for every lab panel (:func:`clinfm.fuse.recipes.lab_panels` over all splits);
(c) the lab vocabulary and value scaler fitted on (b), then :class:`clinfm.fuse.labs.LabTokens`
built from it. "Rows" is the MEDS rows with the selected prefixes (for (c), the lab tokens of (b));
the events are scanned lazily inside each timing, so reading the shards counts.

``--train`` (synthetic, no data): per preset, (a) masked lab pre-training steps (forward, backward,
AdamW) on batches of ``--batch-size`` samples of ``--items`` distinct items out of 200; (b) fusion
training steps (disentangled, MI weight 0.1, so the CLUB q step runs too) on batches of
``--fusion-batch-size`` samples with ``--items`` lab tokens, 4 note chunks of 384-d vectors and
10 labels. Samples per second over ``--steps`` steps after 3 warm-up steps, on the CPU.
With neither flag, both parts run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a shared machine

import polars as pl
import torch

from clinfm.fuse.labs import LabEncoderConfig, LabTokens, MaskedLabModel, fit_value_scaler, lab_vocabulary
from clinfm.fuse.model import FusionConfig, FusionModel

DEFAULT_DATA = Path("/work/shared/data/ehr/mimic-iv-demo-meds")
VOCAB_ITEMS, SPECIALS, NOTE_DIM, NOTE_CHUNKS, LABELS, WARMUP = 200, 3, 384, 4, 10, 3


def commit() -> str:
    """The checked-out commit, read from .git without running git ("unknown" outside a checkout)."""
    git = Path(__file__).resolve().parents[1] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:10]
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:10]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line[:10]
    except OSError:
        pass
    return "unknown"


def best_of(repeats: int, work):
    """(fewest seconds over ``repeats`` runs of ``work()``, its last result)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def tokenise(args) -> None:
    from clinfm.events.meds import scan_events
    from clinfm.fuse.recipes import lab_panels
    from clinfm.fuse.samples import lab_table, select_events
    from clinfm.fuse.targets import diagnosis_group_labels

    print(f"\n## Lab tokenising (best of {args.repeats} runs)\n")
    if not args.data.exists():
        print(f"Skipped: no MEDS dataset at {args.data}.")
        return
    data = args.data
    admissions = diagnosis_group_labels(scan_events(data))[0].select("subject_id", "prediction_time")
    panels = lab_panels(data, ("LAB//5",), ["train", "tuning", "held_out"], 10**9)

    def count(prefixes) -> int:
        return scan_events(data).filter(select_events(prefixes)).select(pl.len()).collect().item()

    print("| step | rows read | samples | tokens | seconds | rows/s |")
    print("|---|---:|---:|---:|---:|---:|")

    def row(step: str, rows: int, samples: int, tokens: int, seconds: float) -> None:
        print(f"| {step} | {rows:,} | {samples:,} | {tokens:,} | {seconds:.2f} | {rows / seconds:,.0f} |")

    for step, labels, prefixes in (
        ("(a) lab_table, admissions, `LAB//`", admissions, ("LAB//",)),
        ("(a) lab_table, admissions, `LAB//5`", admissions, ("LAB//5",)),
        ("(b) lab_table, all lab panels, `LAB//5`", panels, ("LAB//5",)),
    ):
        seconds, table = best_of(
            args.repeats, lambda labels=labels, p=prefixes: lab_table(scan_events(data), labels, labs=p)
        )
        row(step, count(prefixes), table.height, int(table["n_labs"].sum()), seconds)
    tokens = int(table["n_labs"].sum())
    seconds, (vocab, scaler) = best_of(
        args.repeats, lambda: (v := lab_vocabulary(table, args.min_subjects), fit_value_scaler(table, v))
    )
    row(f"(c) vocabulary ({len(vocab):,} tokens) + scaler", tokens, table.height, tokens, seconds)
    seconds, _ = best_of(args.repeats, lambda: LabTokens(table, vocab, scaler))
    row("(c) LabTokens", tokens, table.height, tokens, seconds)


def lab_batch(batch: int, items: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``items`` distinct item ids per sample (after the special tokens), standard normal values."""
    item = torch.rand(batch, VOCAB_ITEMS, generator=generator).argsort(dim=1)[:, :items] + SPECIALS
    return {
        "item": item,
        "value": torch.randn(batch, items, generator=generator),
        "observed": torch.ones(batch, items, dtype=torch.bool),
    }


def fusion_batch(batch: int, items: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        **lab_batch(batch, items, generator),
        "note_vectors": torch.randn(batch, NOTE_CHUNKS, NOTE_DIM, generator=generator),
        "note_valid": torch.ones(batch, NOTE_CHUNKS, dtype=torch.bool),
        "labels": (torch.rand(batch, LABELS, generator=generator) < 0.2).float(),
    }


def rate(model: torch.nn.Module, parameters, batches: list[dict], objective: str, steps: int) -> float:
    """Samples per second over ``steps`` optimiser steps after the warm-up (batches cycled)."""
    optimiser = torch.optim.AdamW(parameters, lr=1e-4)
    model.train()

    def step(i: int) -> None:
        loss, _ = model.loss(batches[i % len(batches)], objective)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    for i in range(WARMUP):
        step(i)
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * len(batches[0]["item"]) / (time.perf_counter() - started)


def count(parameters) -> int:
    return sum(p.numel() for p in parameters)


def train(args) -> None:
    print(f"\n## Training throughput (synthetic, {args.items} lab tokens per sample, CPU)\n")
    print("| preset | model | parameters | batch | steps | samples/s |")
    print("|---|---|---|---:|---:|---:|")
    generator = torch.Generator().manual_seed(0)
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        lab_config = LabEncoderConfig.small() if preset == "small" else LabEncoderConfig()
        lab = MaskedLabModel(VOCAB_ITEMS + SPECIALS, lab_config)
        encoder = count(p for group in lab.encoder_groups() for p in group)
        batches = [lab_batch(args.batch_size, args.items, generator) for _ in range(4)]
        speed = rate(lab, lab.parameters(), batches, "pretrain", args.steps)
        total = count(lab.parameters())
        print(
            f"| {preset} | MaskedLabModel pre-training | encoder {encoder:,}, total {total:,} "
            f"| {args.batch_size} | {args.steps} | {speed:,.0f} |"
        )
        changes = {"fusion": "disentangled", "mi_weight": 0.1}
        config = FusionConfig.small(**changes) if preset == "small" else FusionConfig(**changes)
        fusion = FusionModel(lab, NOTE_DIM, LABELS, config)
        q = count(fusion.club.parameters())
        decoder = count(lab.parameters()) - encoder
        trained = [p for group in fusion.layer_groups() for p in group]  # what the engine's optimiser moves
        batches = [fusion_batch(args.fusion_batch_size, args.items, generator) for _ in range(4)]
        speed = rate(fusion, trained, batches, "multilabel", args.steps)
        total = count(fusion.parameters()) - q
        print(
            f"| {preset} | FusionModel (disentangled, MI 0.1) | total excl. q {total:,} "
            f"(of which unused lab decoder {decoder:,}), q {q:,} "
            f"| {args.fusion_batch_size} | {args.steps} | {speed:,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenise", action="store_true", help="lab_table / LabTokens speed on MEDS")
    parser.add_argument("--train", action="store_true", help="training throughput on synthetic batches")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"MEDS dataset ({DEFAULT_DATA})")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tokenising timing; best kept")
    parser.add_argument("--min-subjects", type=int, default=10, help="lab vocabulary threshold (default 10)")
    parser.add_argument("--presets", default="small,paper")
    parser.add_argument("--batch-size", type=int, default=256, help="pre-training samples per batch")
    parser.add_argument("--fusion-batch-size", type=int, default=64, help="fusion samples per batch")
    parser.add_argument("--items", type=int, default=30, help="lab tokens per synthetic sample")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from measure import machine

    print(f"# python {' '.join(sys.argv)}")
    print(
        f"# {machine()}, {os.cpu_count()} CPUs visible, {torch.get_num_threads()} torch threads, "
        f"{pl.thread_pool_size()} polars threads, {dt.date.today()}, commit {commit()}"
    )
    everything = not args.tokenise and not args.train
    if args.tokenise or everything:
        tokenise(args)
    if args.train or everything:
        train(args)


if __name__ == "__main__":
    main()
