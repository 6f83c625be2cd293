"""Benchmark the Claim-PT tokenizer: MEDS folder -> PackedVisits (pre-training, no labels).

(Not named tokenize.py: a script there would shadow the standard library's ``tokenize`` module, which
linecache and inspect import, for every script in this folder.)

python benchmarks/claims_tokenize.py 10000 [--preset paper|modern] [--repeat 3] [--whole]

By default the tokenizer reads the dataset shard by shard (``scan_shards``), as the recipes do;
``--whole`` hands it all events as one lazy frame instead.

The cohort (site_a, ICD-9, seed 0) is synthesized once into ``--cache`` and reused, with its
vocabulary (claim codes seen in at least 10 patients). Each run tokenizes in a fresh Python process,
so the peak memory (the kernel's ``wait4`` maximum, via measure.py) is the tokenizer's own plus the
interpreter and its imports, which the child also reports on their own ("before" column).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "clinfm-bench-claims"
ALLOCATOR = "dirty_decay_ms:100,muzzy_decay_ms:0"  # what the ``clinfm`` command sets (clinfm/__main__.py)


def prepare(patients: int, cache: Path) -> None:
    """Synthesize the cohort and write its vocabulary and event count, unless already there."""
    import polars as pl

    import clinfm
    from clinfm.claims.tokenizer import claim_code_filter
    from clinfm.events.meds import scan_events
    from clinfm.vocab.vocabulary import Vocabulary

    data, vocab_file, info = paths(patients, cache)
    if not data.exists():  # synthesize writes atomically: the folder exists only when complete
        clinfm.synthesize(data, patients=patients, site="site_a", coding="icd9", seed=0, overwrite=True)
    if not vocab_file.exists():
        events = scan_events(data)
        claims = events.filter(claim_code_filter(events.collect_schema().names()))
        Vocabulary.from_events(claims, min_subjects=10).save(vocab_file)
    if not info.exists():
        rows = pl.scan_parquet(data / "data" / "**" / "*.parquet").select(pl.len()).collect().item()
        info.write_text(json.dumps({"events": rows}))


def paths(patients: int, cache: Path) -> tuple[Path, Path, Path]:
    """The MEDS folder, its vocabulary file and its event count file."""
    stem = cache / f"site_a-icd9-{patients}"
    return stem, stem.with_name(stem.name + ".vocab.json"), stem.with_name(stem.name + ".events.json")


def child(data: str, vocab_file: str, preset: str, result: str, whole: bool) -> None:
    """Tokenize in this process and write counts and timings to ``result`` (JSON)."""
    os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)
    from clinfm.claims.tokenizer import TokenizerConfig, tokenize
    from clinfm.events.meds import scan_events, scan_shards
    from clinfm.vocab.vocabulary import Vocabulary

    vocab = Vocabulary.load(vocab_file)
    config = TokenizerConfig.paper() if preset == "paper" else TokenizerConfig.modern()
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    packed = tokenize(scan_events(data) if whole else scan_shards(data), vocab, config)
    seconds = time.perf_counter() - start
    target_visits = int((packed.target_code_offsets[1:] > packed.target_code_offsets[:-1]).sum())
    summary = {
        "samples": len(packed),
        "visits": len(packed.visit_type) + target_visits,
        "codes": packed.n_events,
        "tokenize_s": seconds,
        "before_mb": before_mb,
    }
    Path(result).write_text(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patients", type=int)
    parser.add_argument("--preset", choices=("paper", "modern"), default="paper")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--whole", action="store_true", help="one lazy frame, not shard by shard")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("DATA", "VOCAB", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.preset, args.child[2], args.whole)
    if args.prepare:
        return prepare(args.patients, args.cache)

    from measure import machine, run_measured

    # Preparing runs in its own process: a child's kernel peak (wait4) starts from its parent's
    # peak RSS (the parent's memory is counted until exec), so the parent must stay small.
    args.cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, __file__, str(args.patients), "--prepare", "--cache", args.cache], check=True
    )
    data, vocab_file, info = paths(args.patients, args.cache)
    events = json.loads(info.read_text())["events"]
    mode = "one frame" if args.whole else "shard by shard"
    print(
        f"machine: {machine()}; date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"preset: {args.preset}; {mode}"
    )
    print(
        "| patients | events read | samples | visits | codes | tokenize (s) | process wall (s) "
        "| events/s | peak RSS (MB) | before (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for _ in range(args.repeat):
        with tempfile.NamedTemporaryFile(suffix=".json") as result:
            command = [sys.executable, __file__, str(args.patients), "--preset", args.preset]
            command += ["--whole"] if args.whole else []
            command += ["--child", str(data), str(vocab_file), result.name]
            wall, peak = run_measured(command)
            s = json.loads(Path(result.name).read_text())
        print(
            f"| {args.patients:,} | {events:,} | {s['samples']:,} | {s['visits']:,} | {s['codes']:,} "
            f"| {s['tokenize_s']:.2f} | {wall:.2f} | {events / s['tokenize_s']:,.0f} | {peak:,.0f} "
            f"| {s['before_mb']:,.0f} |"
        )


if __name__ == "__main__":
    main()
