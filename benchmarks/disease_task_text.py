"""How much of the synthetic multi-label disease task a string match on the notes can answer.

    python benchmarks/disease_task_text.py 5000

For each condition: positive samples, the share of them whose visible notes name the condition,
and the share of named samples that are positive. Labs, symptoms and drugs must carry the rest.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

import clinfm
from clinfm.events.synth import catalog


def main(patients: int) -> None:
    print("| condition | positives | named in visible notes | precision of a name |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        root = clinfm.synthesize(Path(tmp) / "site", patients=patients, site="site_a")
        notes = clinfm.scan_events(root).filter(pl.col("code").str.starts_with("NOTE/"))
        for condition in catalog.CONDITIONS:
            labels = clinfm.read_labels(root / "tasks" / "diseases" / f"{condition.name}.parquet")
            text = (
                clinfm.events_as_of(notes, labels)
                .group_by("sample_id")
                .agg(pl.col("text_value").str.join(" "))
            )
            samples = labels.with_row_index("sample_id").join(text.collect(), on="sample_id", how="left")
            named = samples["text_value"].fill_null("").str.contains(condition.title, literal=True)
            positive = samples["boolean_value"]
            recall = (named & positive).sum() / max(positive.sum(), 1)
            precision = (named & positive).sum() / max(named.sum(), 1)
            print(f"| {condition.name} | {positive.sum()} | {recall:.0%} | {precision:.0%} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
