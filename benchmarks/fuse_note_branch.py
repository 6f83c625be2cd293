"""MEDFuse's note branch alone: embedding throughput, and chunked vs. truncated notes on mtsamples.

    OMP_NUM_THREADS=2 python benchmarks/fuse_note_branch.py --throughput [--notes 300]
    OMP_NUM_THREADS=2 python benchmarks/fuse_note_branch.py --mtsamples data/notes/mtsamples.csv.gz

``--throughput``: the default encoder (all-MiniLM-L6-v2, 256 tokens) embeds ``--notes`` notes
(mtsamples transcriptions when ``--mtsamples`` is given, else synthetic notes of ~3,000
characters) through :func:`clinfm.fuse.notes.embed_notes`: once into an empty temporary cache
(cold), once again from it (warm). Model loading is excluded. With both flags, both parts run.

``--mtsamples``: specialty classification from the note embedding alone. The ``--top`` most
frequent specialties, leaving out the note-type categories (:data:`NOT_SPECIALTIES`); empty
transcriptions dropped (and, with ``--drop-duplicates``, every note filed more than once: mtsamples
often files one transcription under Surgery and under its specialty); a stratified 70/30 split
(``--seed``); a multinomial logistic regression (C=1) on (a) the renormalised mean of all chunk
vectors and (b) the first chunk only, which is what an encoder that silently truncates at 256
tokens reads. Accuracy and macro F1 on the test part with 95% percentile bootstrap intervals
(1,000 resamples). Embeddings go through ``--cache``, so a rerun only fits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import polars as pl

#: mtsamples categories that name a kind of note, not a specialty.
NOT_SPECIALTIES = (
    "Consult - History and Phy.",
    "SOAP / Chart / Progress Notes",
    "Discharge Summary",
    "Office Notes",
    "Letters",
    "IME-QME-Work Comp etc.",
    "Emergency Room Reports",
)
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "clinfm-bench-note-cache"


def synthetic_notes(n: int, seed: int = 0) -> list[str]:
    """Notes of ~3,000 characters from a few clinical sentence templates (distinct texts)."""
    rng = np.random.default_rng(seed)
    findings = ["dyspnea", "chest pain", "fever", "abdominal pain", "syncope", "edema", "cough", "rash"]
    out = []
    for i in range(n):
        sentences = [f"Note {i}."]
        while sum(len(s) for s in sentences) < 3000:
            f, d = rng.choice(findings), int(rng.integers(1, 30))
            sentences.append(
                f"The patient reports {f} for {d} days; creatinine {rng.normal(1, 0.3):.2f} mg/dL, "
                f"heart rate {int(rng.integers(50, 130))} bpm, no known drug allergies."
            )
        out.append(" ".join(sentences))
    return out


def read_mtsamples(path: Path) -> pl.DataFrame:
    """transcription, specialty; empty transcriptions dropped, names stripped."""
    return (
        pl.read_csv(path, columns=["transcription", "medical_specialty"])
        .select(pl.col("transcription"), specialty=pl.col("medical_specialty").str.strip_chars())
        .filter(pl.col("transcription").str.strip_chars().str.len_chars() > 0)
    )


def throughput(args, machine_line: str) -> None:
    from clinfm.concepts import load_encoder
    from clinfm.fuse.notes import embed_notes

    texts = (
        read_mtsamples(args.mtsamples)["transcription"].to_list()[: args.notes]
        if args.mtsamples
        else synthetic_notes(args.notes)
    )
    encoder = load_encoder("default")
    print(f"\n## Note embedding throughput ({machine_line})\n")
    print("| pass | notes | chunks | seconds | chunks/s | notes/s |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for label in ("cold (empty cache)", "warm (cached)"):
            start = time.perf_counter()
            notes = embed_notes(encoder, texts, cache=Path(folder), batch_size=args.batch_size)
            seconds = time.perf_counter() - start
            n_chunks = len(notes.chunks)
            print(
                f"| {label} | {len(texts):,} | {n_chunks:,} | {seconds:.1f} | {n_chunks / seconds:,.1f} "
                f"| {len(texts) / seconds:,.1f} |"
            )


def percentile_ci(metric, y: np.ndarray, pred: np.ndarray, n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = [metric(y[idx], pred[idx]) for idx in (rng.integers(0, len(y), len(y)) for _ in range(n))]
    return metric(y, pred), *np.percentile(values, [2.5, 97.5])


def specialties(args, machine_line: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    from clinfm.concepts import load_encoder
    from clinfm.fuse.notes import embed_notes

    frame = read_mtsamples(args.mtsamples)
    counts = frame.filter(~pl.col("specialty").is_in(NOT_SPECIALTIES))["specialty"].value_counts(sort=True)
    kept = counts["specialty"].head(args.top).to_list()
    frame = frame.filter(pl.col("specialty").is_in(kept))
    if args.limit:
        frame = frame.sample(min(args.limit, frame.height), seed=args.seed)
    duplicated = frame.group_by("transcription").agg(n=pl.len(), labels=pl.col("specialty").n_unique())
    if args.drop_duplicates:  # mtsamples files many notes twice: under Surgery and under the specialty
        frame = frame.join(duplicated.filter(pl.col("n") > 1), on="transcription", how="anti")
    texts, labels = frame["transcription"].to_list(), frame["specialty"].to_numpy()
    encoder = load_encoder("default")
    start = time.perf_counter()
    notes = embed_notes(encoder, texts, cache=args.cache, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    train, test = train_test_split(
        np.arange(len(texts)), test_size=0.3, stratify=labels, random_state=args.seed
    )
    macro_f1 = lambda y, p: f1_score(y, p, average="macro")  # noqa: E731
    print(f"\n## mtsamples specialty from the note embedding alone ({machine_line})\n")
    print(f"{len(texts):,} notes, {len(kept)} specialties: {', '.join(kept)}.")
    print(
        f"{notes.texts_chunked / len(texts):.1%} of notes needed more than one 256-token chunk "
        f"({len(notes.chunks):,} chunks, mean {notes.counts.mean():.2f}, max {notes.counts.max()} per note); "
        f"embedding took {seconds:.0f} s (cache: {args.cache}).",
    )
    print(
        f"{int((duplicated['n'] > 1).sum()):,} transcriptions occur more than once "
        f"({int((duplicated['labels'] > 1).sum()):,} of them under different specialties)"
        + ("; every copy of them was dropped.\n" if args.drop_duplicates else ".\n")
    )
    print("| note vector | train | test | accuracy (95% CI) | macro F1 (95% CI) |")
    print("|---|---:|---:|---|---|")
    for name, x in (
        ("mean of all chunks", notes.pooled),
        ("first chunk only (= truncation)", notes.first_chunk()),
    ):
        model = LogisticRegression(C=1.0, max_iter=2000)
        model.fit(x[train], labels[train])
        pred = model.predict(x[test])
        acc = percentile_ci(accuracy_score, labels[test], pred, seed=args.seed)
        f1 = percentile_ci(macro_f1, labels[test], pred, seed=args.seed)
        print(
            f"| {name} | {len(train):,} | {len(test):,} | {acc[0]:.3f} ({acc[1]:.3f}-{acc[2]:.3f}) "
            f"| {f1[0]:.3f} ({f1[1]:.3f}-{f1[2]:.3f}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", action="store_true", help="embedding throughput, cold vs warm cache")
    parser.add_argument("--mtsamples", type=Path, default=None, help="mtsamples.csv(.gz): specialty check")
    parser.add_argument("--notes", type=int, default=300, help="notes for --throughput (default 300)")
    parser.add_argument("--top", type=int, default=8, help="most frequent specialties kept (default 8)")
    parser.add_argument("--limit", type=int, default=None, help="sample this many notes (quick runs)")
    parser.add_argument(
        "--drop-duplicates", action="store_true", help="drop transcriptions that occur more than once"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"embedding cache ({DEFAULT_CACHE})"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if not args.throughput and not args.mtsamples:
        parser.error("nothing to do: pass --throughput and/or --mtsamples PATH")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from measure import machine

    line = f"{machine()}, {torch.get_num_threads()} torch threads, {dt.date.today()}"
    print(f"# python {' '.join(sys.argv)}")
    if args.throughput:
        throughput(args, line)
    if args.mtsamples:
        specialties(args, line)


if __name__ == "__main__":
    main()
