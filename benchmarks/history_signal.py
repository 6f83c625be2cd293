"""How much a synthetic child's history says about the asthma task's outcome.

    python benchmarks/history_signal.py 20000 0 1 2 3

For each seed: asthma-cohort samples with and without an exacerbation before the prediction time,
their outcome rates (an exacerbation in the next 180 days), and the ratio of the two.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

import clinfm
from clinfm.events.synth import catalog


def rates(root: Path) -> pl.DataFrame:
    labels = clinfm.read_labels(root / "tasks" / "asthma_exacerbation_180d.parquet")
    codes = list(catalog.diagnosis_codes(catalog.ASTHMA_EXACERBATION_ICD9, "icd9"))
    prior = (
        clinfm.events_as_of(clinfm.scan_events(root), labels)
        .group_by("sample_id")
        .agg(prior=pl.col("code").is_in(codes).any())
        .collect()
    )
    samples = labels.with_row_index("sample_id").join(prior, on="sample_id")
    return samples.group_by("prior").agg(rate=pl.col("boolean_value").mean(), samples=pl.len()).sort("prior")


def main(patients: int, seeds: list[int]) -> None:
    print("| seed | samples without / with | rate without | rate with | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            table = rates(clinfm.synthesize(Path(tmp) / "site", patients=patients, seed=seed))
        (without, with_), (n_without, n_with) = table["rate"], table["samples"]
        print(f"| {seed} | {n_without} / {n_with} | {without:.3f} | {with_:.3f} | {with_ / without:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]), [int(seed) for seed in sys.argv[2:]] or [0])
