"""Two real sites: the MIMIC-III demo (ICD-9, PRESCRIPTIONS drug names) and the MIMIC-IV demo (ICD-9
and ICD-10, MEDICATION codes), 100 patients each, through ``clinfm transfer --preset paper``.

The task, defined the same way at both sites: death in hospital, predicted 24 hours into an
inpatient admission that lasts longer than that. An admission starts at VISIT/INPATIENT (MIMIC-III
converted by clinfm) or HOSPITAL_ADMISSION//* (MIMIC-IV); it ends at HOSPITAL_DISCHARGE (MIMIC-IV)
or at its last event (MIMIC-III, whose diagnoses are stamped at discharge). A death event on or
before the day of discharge makes the label true.

    python benchmarks/mimic_transfer.py OUT_FOLDER [--seeds 0,1,2]

Writes OUT_FOLDER/mimic3 (converted), the two label files, OUT_FOLDER/run (the transfer run) and
prints its AUROCs. 100 patients a site cannot show a significant difference: this proves the
pipeline on real data, nothing more.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ehr"
DAY = pl.duration(days=1)


def admissions(data: Path) -> pl.DataFrame:
    """(subject_id, start, end) per inpatient admission."""
    events = pl.scan_parquet(data / "data" / "**" / "*.parquet")
    columns = events.collect_schema().names()
    key = "hadm_id" if "hadm_id" in columns else "encounter_id"
    starts = events.filter(
        pl.col("code").str.starts_with("HOSPITAL_ADMISSION") | (pl.col("code") == "VISIT/INPATIENT")
    )
    stays = (
        events.filter(pl.col(key).is_not_null())
        .group_by("subject_id", key)
        .agg(
            pl.col("time").max().alias("last_event"),
            pl.col("time")
            .filter(pl.col("code").str.starts_with("HOSPITAL_DISCHARGE"))
            .max()
            .alias("discharge"),
        )
    )
    return (
        starts.select("subject_id", key, pl.col("time").alias("start"))
        .join(stays, on=["subject_id", key])
        .select("subject_id", "start", pl.coalesce("discharge", "last_event").alias("end"))
        .unique()
        .sort("subject_id", "start")
        .collect()
    )


def labels(data: Path) -> pl.DataFrame:
    """MEDS labels: in-hospital death, predicted 24 h after admission."""
    events = pl.scan_parquet(data / "data" / "**" / "*.parquet")
    deaths = (
        events.filter(
            pl.col("code").str.starts_with("MEDS_DEATH") | (pl.col("code") == "HOSPITAL_DISCHARGE//DIED")
        )
        .group_by("subject_id")
        .agg(pl.col("time").min().alias("death"))
        .collect()
    )
    stays = admissions(data).with_columns(prediction_time=pl.col("start") + pl.duration(hours=24))
    stays = stays.filter(pl.col("end") > pl.col("prediction_time")).join(deaths, on="subject_id", how="left")
    died = (
        pl.col("death").is_not_null()
        & (pl.col("death") >= pl.col("start"))
        & (pl.col("death") < pl.col("end").dt.date().cast(pl.Datetime("us")) + DAY)
    )
    return stays.select(
        pl.col("subject_id").cast(pl.Int64),
        pl.col("prediction_time").cast(pl.Datetime("us")),
        died.alias("boolean_value"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fractions", default="0.5,1")
    args = parser.parse_args()
    from clinfm.claims.cross_site import transfer
    from clinfm.events.convert.mimic3 import convert_mimic3

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    mimic3, mimic4 = out / "mimic3", SHARED / "mimic-iv-demo-meds"
    if not mimic3.exists():
        convert_mimic3(SHARED / "mimic-iii-demo", mimic3)
    paths = {}
    for name, data in (("mimic3", mimic3), ("mimic4", mimic4)):
        frame = labels(data)
        paths[name] = out / f"{name}_in_hospital_death_24h.parquet"
        frame.write_parquet(paths[name])
        print(f"{name}: {frame.height} admissions, {int(frame['boolean_value'].sum())} deaths in hospital")
    started = time.perf_counter()
    run = transfer(
        mimic3,
        mimic4,
        "in_hospital_death_24h",
        out / "run",
        preset="paper",
        source_labels=paths["mimic3"],
        target_labels=paths["mimic4"],
        fractions=tuple(float(f) for f in args.fractions.split(",")),
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        held_out=0.3,
        overwrite=True,
    )
    print(f"transfer: {time.perf_counter() - started:.0f} s")
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"test: {metrics['test']}")
    for method, values in metrics["methods"].items():
        auroc = values["auroc"]
        print(f"{method:24s} AUROC {auroc['value']:.3f} ({auroc['low']:.3f}-{auroc['high']:.3f})")


if __name__ == "__main__":
    main()
