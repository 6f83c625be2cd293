"""How well the plainest history features rank the asthma task's outcome, with no model at all.

    python benchmarks/task_ceiling.py SITE          # a synthesized MEDS folder (ICD-9-CM)

The AUROC of each feature on every label (train and test together), with a bootstrap 95% CI: if no
hand-picked feature of what drives the generator's outcome ranks patients well, no model trained on
a few hundred labels will either, pre-trained or not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

import clinfm
from clinfm.evaluate.metrics import auroc, bootstrap
from clinfm.events.synth import catalog

TASK = "asthma_exacerbation_180d"


def features(root: Path) -> pl.DataFrame:
    labels = clinfm.read_labels(root / "tasks" / f"{TASK}.parquet")
    exacerbation = list(catalog.diagnosis_codes(catalog.ASTHMA_EXACERBATION_ICD9, "icd9"))
    history = (
        clinfm.events_as_of(clinfm.scan_events(root).select("subject_id", "time", "code"), labels)
        .group_by("sample_id")
        .agg(
            prior_exacerbations=pl.col("code").is_in(exacerbation).sum(),
            asthma_codes=pl.col("code").str.starts_with("ICD9CM/493").sum(),
            visits=pl.col("code").str.starts_with("VISIT/").sum(),
            emergency_visits=(pl.col("code") == "VISIT/EMERGENCY").sum(),
            years=(pl.col("time").max() - pl.col("time").min()).dt.total_days() / 365.25 + 0.1,
        )
        .collect()
    )
    return labels.with_row_index("sample_id").join(history, on="sample_id", how="left").fill_null(0)


def main(root: Path) -> None:
    table = features(root)
    y = table["boolean_value"].to_numpy().astype(int)
    print(f"{TASK}: {len(y):,} samples, {y.sum():,} positive")
    for name in ("prior_exacerbations", "asthma_codes", "visits", "emergency_visits"):
        for label, x in ((name, table[name]), (f"{name} per year", table[name] / table["years"])):
            estimate = bootstrap(auroc, y, x.to_numpy().astype(float))
            print(f"  {label:32s} AUROC {estimate.value:.3f} ({estimate.low:.3f}-{estimate.high:.3f})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
