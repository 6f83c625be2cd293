"""Training throughput: Claim-PT (modern preset) against Hugging Face BertForMaskedLM of the same size.

python benchmarks/train_throughput.py [--patients 2000] [--threads 2] [--warmup 3] [--batch-size 32]

Both models train on the same pre-training samples (site_a, ICD-9, seed 0, modern tokenizer): Claim-PT
on ``VisitBatches.collate`` batches (a visit is the sum of its codes, so its sequence is visits), BERT
on each sample's codes flattened visit after visit behind a [CLS] (capped at 512 tokens, padded to the
longest in the batch, 15% masked-LM labels with 80/10/10 replacement as DataCollatorForLanguageModeling
does). One timed step is forward + backward + AdamW; the runs alternate step by step after warm-up, on
CPU with 2 threads. Batches are built before timing (a DataLoader worker builds them in training).
Throughput counts real codes only: neither padding nor [CLS] nor the demographic token.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# OpenMP threads that spin while waiting turn every parallel op into a stall when another process
# holds a core (a shared 2-core machine): a Claim-PT step took 4 s instead of 45 ms. Set before
# torch loads its OpenMP runtime; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

CACHE = Path(tempfile.gettempdir()) / "clinfm-bench-claims"
BERT_MAX = 512


def samples(patients: int, cache: Path):
    """The synthetic cohort's pre-training samples (modern tokenizer) and their vocabulary."""
    import clinfm
    from clinfm.claims.batches import CategoryMap, VisitBatches
    from clinfm.claims.tokenizer import TokenizerConfig, claim_code_filter, tokenize
    from clinfm.events.meds import scan_events
    from clinfm.vocab.vocabulary import Vocabulary

    data = cache / f"site_a-icd9-{patients}"
    if not data.exists():
        clinfm.synthesize(data, patients=patients, site="site_a", coding="icd9", seed=0, overwrite=True)
    events = scan_events(data)
    vocab = Vocabulary.from_events(events.filter(claim_code_filter(events.collect_schema().names())), 10)
    packed = tokenize(events, vocab, TokenizerConfig.modern())
    return VisitBatches(packed, CategoryMap.build(vocab)), vocab


def flattened(packed) -> list[np.ndarray]:
    """Each sample's codes, visit after visit (the order the tokenizer kept them in)."""
    starts = packed.visit_code_offsets[packed.sample_visit_offsets]
    return [packed.codes[a:b].astype(np.int64) for a, b in itertools.pairwise(starts)]


def bert_batch(sequences, indices, cls_id, mask_id, vocab_size, rng) -> dict[str, torch.Tensor]:
    """[CLS] + codes, truncated to 512, padded to the longest; 15% of codes masked (80/10/10)."""
    rows = [np.concatenate([[cls_id], sequences[i][: BERT_MAX - 1]]) for i in indices]
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    for k, row in enumerate(rows):
        ids[k, : len(row)], attention[k, : len(row)] = row, 1
    chosen = (attention == 1) & (ids != cls_id) & (rng.random(ids.shape) < 0.15)
    labels = np.where(chosen, ids, -100)
    draw = rng.random(ids.shape)
    ids = np.where(chosen & (draw < 0.8), mask_id, ids)
    random_ids = rng.integers(3, vocab_size, ids.shape)  # ids 0-2 are PAD, UNK, MASK
    ids = np.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, ids)
    return {
        name: torch.from_numpy(v)
        for name, v in (("input_ids", ids), ("attention_mask", attention), ("labels", labels))
    }


@dataclass
class Run:
    """One model on one batch order, with what it has processed so far."""

    name: str
    model: torch.nn.Module
    batches: list[dict[str, torch.Tensor]]
    loss: callable
    codes: list[int]  # real codes per batch
    positions: list[tuple[int, int]]  # (batch size, padded sequence length) per batch
    real: list[int]  # sequence positions that are not padding, per batch
    seconds: float = 0.0
    done: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)

    def step(self, k: int, timed: bool) -> None:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(self.model, self.batches[k]).backward()
        self.optimizer.step()
        if timed:
            self.seconds += time.perf_counter() - start
            self.done.append(k)


def claim_pt_run(name, model, dataset, order) -> Run:
    batches = [dataset.collate(ix) for ix in order]
    return Run(
        name,
        model,
        batches,
        lambda m, b: m.loss(b, "pretrain")[0],
        [int((b["codes"] > 0).sum()) for b in batches],
        [(b["visit_mask"].shape[0], b["visit_mask"].shape[1] + 1) for b in batches],  # + demographic token
        [int(b["visit_mask"].sum()) + len(b["visit_mask"]) for b in batches],
    )


def bert_run(name, model, sequences, order, vocab_size, seed) -> Run:
    rng = np.random.default_rng(seed)
    cls_id, mask_id = vocab_size - 1, 2
    batches = [bert_batch(sequences, ix, cls_id, mask_id, vocab_size - 1, rng) for ix in order]
    return Run(
        name,
        model,
        batches,
        lambda m, b: m(**b).loss,
        [int(b["attention_mask"].sum()) - len(b["attention_mask"]) for b in batches],  # minus [CLS]
        [tuple(b["input_ids"].shape) for b in batches],
        [int(b["attention_mask"].sum()) for b in batches],
    )


def orders(lengths: np.ndarray, batch_size: int, bucket: bool, n: int) -> list[list[int]]:
    from clinfm.train.sampling import BucketBatchSampler

    batches = list(BucketBatchSampler(lengths, batch_size, seed=0, bucket=bucket))
    return [batches[k % len(batches)] for k in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, help="timed steps per run (default: one epoch, every sample once)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-bert-bucketed", action="store_true")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import BertConfig, BertForMaskedLM

    from clinfm.claims.model import ClaimPT, ClaimPTConfig

    dataset, vocab = samples(args.patients, args.cache)
    packed = dataset.packed
    sequences = flattened(packed)
    steps = args.steps or -(-len(packed) // args.batch_size)
    n = args.warmup + steps  # batches repeat cyclically: warm-up + one epoch times every batch once
    config = ClaimPTConfig.modern(len(vocab), len(dataset.categories))
    bert_config = BertConfig(
        vocab_size=len(vocab) + 1,  # + [CLS]
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        intermediate_size=config.d_ff,
        max_position_embeddings=BERT_MAX,
        pad_token_id=0,
    )
    code_lengths = np.array([len(s) + 1 for s in sequences])
    random_order = orders(dataset.lengths, args.batch_size, False, n)
    runs = [
        claim_pt_run(
            "(a) Claim-PT modern, bucketed",
            ClaimPT(config),
            dataset,
            orders(dataset.lengths, args.batch_size, True, n),
        ),
        claim_pt_run("(b) Claim-PT modern, random batches", ClaimPT(config), dataset, random_order),
        bert_run(
            "(c) BERT, random batches",
            BertForMaskedLM(bert_config),
            sequences,
            random_order,
            len(vocab) + 1,
            0,
        ),
    ]
    if not args.no_bert_bucketed:
        runs.append(
            bert_run(
                "(d) BERT, bucketed by code count",
                BertForMaskedLM(bert_config),
                sequences,
                orders(code_lengths, args.batch_size, True, n),
                len(vocab) + 1,
                0,
            )
        )
    for run in runs:
        run.model.train()
    load = os.getloadavg()[0]
    for k in range(n):
        for run in runs:
            run.step(k, timed=k >= args.warmup)

    bert_attention = runs[2].model.config._attn_implementation
    print(
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; "
        f"BERT attention: {bert_attention}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"{len(packed):,} samples; visits per sample: median {np.median(dataset.lengths):.0f}, "
        f"max {dataset.lengths.max()}; codes per sample: median {np.median(code_lengths - 1):.0f}, "
        f"max {code_lengths.max() - 1}, over 511: {(code_lengths > BERT_MAX).sum()}; vocabulary "
        f"{len(vocab):,}; categories {len(dataset.categories):,}"
    )
    print(f"{steps} timed steps of {args.batch_size} per run after {args.warmup} warm-up steps")
    print(
        "| run | parameters | codes/s | ms/step | mean padded length | padding | attention scores/step (M) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    notes = []
    for run in runs:
        shapes = [run.positions[k] for k in run.done]
        codes = sum(run.codes[k] for k in run.done)
        slots = sum(b * length for b, length in shapes)
        real = sum(run.real[k] for k in run.done)
        attention = sum(b * length**2 for b, length in shapes) / len(shapes) / 1e6
        params = sum(p.numel() for p in run.model.parameters())
        if "codes" in run.batches[0]:  # Claim-PT also pads a visit's codes to the batch's widest visit
            grid = sum(run.batches[k]["codes"].numel() for k in run.done)
            notes.append(f"{run.name}: code grid [B, V, C] {1 - codes / grid:.0%} padding")
        print(
            f"| {run.name} | {params:,} | {codes / run.seconds:,.0f} "
            f"| {1000 * run.seconds / len(run.done):,.0f} "
            f"| {np.mean([s[1] for s in shapes]):.1f} | {1 - real / slots:.0%} | {attention:.2f} |"
        )
    speed = {run.name[:3]: sum(run.codes[k] for k in run.done) / run.seconds for run in runs}
    ratios = [
        f"{x}/{y} = {speed[x] / speed[y]:.2f}x"
        for x, y in (("(a)", "(c)"), ("(b)", "(c)"), ("(a)", "(d)"))
        if x in speed and y in speed
    ]
    print("\n".join([*notes, "; ".join(ratios)]))


if __name__ == "__main__":
    main()
