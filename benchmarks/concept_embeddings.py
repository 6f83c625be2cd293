"""Benchmark the default concept encoder (all-MiniLM-L6-v2) on ICD-10-CM descriptions, on CPU.

python benchmarks/concept_embeddings.py [--limit 20000] [--threads N]

Two fresh Python processes share one empty cache folder: the first embeds every description (all
misses), the second finds them all in the cache. Each reports its texts/second for the embedding
call alone (model loading excluded, shown apart); the parent reports each process's wall time and
peak memory (measure.py: the kernel's ``wait4`` maximum and a sampled process-tree total).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path


def worker(limit: int | None, cache: Path, result: Path, threads: int | None) -> None:
    """Embed the first ``limit`` ICD-10-CM descriptions through the cache; write timings as JSON."""
    import polars as pl
    import torch

    if threads:
        torch.set_num_threads(threads)
    from clinfm.concepts import embed_texts, load_encoder
    from clinfm.vocab.icd import descriptions

    texts = descriptions(("ICD10CM",))["description"].to_list()[:limit]
    start = time.perf_counter()
    encoder = load_encoder("default")
    loaded = time.perf_counter()
    vectors = embed_texts(encoder, texts, cache=cache)
    done = time.perf_counter()
    timing = {"texts": len(texts), "load_s": loaded - start, "embed_s": done - loaded}
    timing["threads"] = torch.get_num_threads()
    timing["mean_chars"] = float(pl.Series(texts).str.len_chars().mean())
    assert vectors.shape == (len(texts), encoder.dim)
    result.write_text(json.dumps(timing))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N descriptions (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--worker", nargs=2, metavar=("CACHE", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.limit, Path(args.worker[0]), Path(args.worker[1]), args.threads)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from measure import machine, run_measured

    print(f"# {machine()}, {dt.date.today()}, python {' '.join(sys.argv)}")
    print("| pass | texts | load s | embed s | texts/s | wall s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for label in ("cold (no cache)", "warm (cached)"):
            result = Path(folder) / "result.json"
            command = [sys.executable, __file__, "--worker", str(Path(folder) / "cache"), str(result)]
            command += ["--limit", str(args.limit)] if args.limit else []
            command += ["--threads", str(args.threads)] if args.threads else []
            wall, peak = run_measured(command)
            t = json.loads(result.read_text())
            rate = t["texts"] / t["embed_s"]
            print(
                f"| {label} | {t['texts']:,} | {t['load_s']:.1f} | {t['embed_s']:.1f} | {rate:,.0f} "
                f"| {wall:.1f} | {peak:,.0f} |"
            )


if __name__ == "__main__":
    main()
