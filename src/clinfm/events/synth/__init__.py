"""Synthetic multi-site pediatric cohorts: the embedded default data of clinfm.

>>> from clinfm.events.synth import synthesize
>>> synthesize("site_a", patients=1000, site="site_a", coding="icd9", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from clinfm.errors import InputError
from clinfm.events.convert.to_mimic3 import export_mimic3
from clinfm.events.meds import DEFAULT_SUBJECTS_PER_SHARD, finish_dataset, sort_events, write_events
from clinfm.events.synth import catalog as cat
from clinfm.events.synth.cohort import (
    CodeBook,
    SiteProfile,
    draw_patients,
    draw_visits,
    stable_hash,
)
from clinfm.events.synth.tasks import build_tasks
from clinfm.events.synth.timeline import visit_events, visit_times
from clinfm.io import atomic_directory
from clinfm.progress import track
from clinfm.vocab.systems import CLINFM_CODE_DESCRIPTIONS


def _shard(site: SiteProfile, seed: int, shard: int, first: int, n: int, codebook: CodeBook):
    """Events and task labels of ``n`` children, deterministic for (site, seed, shard)."""
    # The site is part of the stream: two sites drawn with one seed are independent populations.
    rng = np.random.default_rng([seed, stable_hash(f"stream:{site.name}") % 2**32, shard])
    window = site.years * 365.25
    patients = draw_patients(rng, site, n, window)
    visits = draw_visits(rng, site, patients, window)
    subject_ids = site.subject_offset + first + np.arange(n, dtype=np.int64)
    # Each shard owns 1,000 encounter ids per child; real utilisation stays far below that.
    if len(visits.day) >= 1000 * n:
        raise RuntimeError(f"{len(visits.day)} visits for {n} children exceed the shard's encounter-id range")
    encounter_ids = site.encounter_offset + first * 1000 + np.arange(len(visits.day), dtype=np.int64)
    times = visit_times(site, visits)
    events = visit_events(rng, site, patients, visits, times, codebook, subject_ids, encounter_ids)
    events = sort_events(events.lazy()).collect()
    tasks = build_tasks(
        rng,
        patients,
        visits,
        events,
        window=window,
        coding=site.coding,
        subject_ids=subject_ids,
        encounter_ids=encounter_ids,
        start_us=site.start_us,
        visit_time=times,
    )
    return events, tasks


def code_metadata(codes: list[str]) -> pl.DataFrame:
    """Descriptions and parents of the codes the generator used."""
    from clinfm.vocab.icd import code_metadata as icd_metadata

    own = {f"RXNORM/{k}": v for k, v in cat.DRUGS.items()}
    own |= {f"LOINC/{t.loinc}": t.name for t in cat.LAB_TESTS}
    own |= {f"CPT4/{k}": v for k, v in cat.PROCEDURES.items()}
    own |= CLINFM_CODE_DESCRIPTIONS
    table = pl.DataFrame({"code": list(own), "description": list(own.values())})
    return pl.concat([table, icd_metadata(pl.Series(codes, dtype=pl.String))], how="diagonal_relaxed")


def synthesize(
    out: str | os.PathLike,
    *,
    patients: int = 1000,
    site: str = "site_a",
    coding: str = "icd9",
    seed: int = 0,
    years: float = 4.0,
    shard_size: int = DEFAULT_SUBJECTS_PER_SHARD,
    mimic3: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic MEDS dataset of ``patients`` children at ``site`` coded in ``coding``.

    Tasks (``tasks/``): ``asthma_exacerbation_180d`` and ``self_harm_365d`` (binary, within the
    asthma and anxiety/depression cohorts), ``next_visit_categories`` (space-separated CCS or CCSR
    categories of the next visit, in ``categorical_value``) and ``diseases/<condition>`` (ten binary
    tasks sharing prediction times: the multi-label task). Generation streams in shards of
    ``shard_size`` children, so memory does not grow with ``patients``. Deterministic for a seed.
    With ``mimic3``, MIMIC-III-shaped CSVs of the same cohort are written to ``out/mimic3`` too.
    """
    if patients < 1:
        raise InputError(f"--patients must be at least 1, got {patients}")
    profile = SiteProfile.from_name(site, coding, years)
    if mimic3 and coding != "icd9":
        raise InputError("MIMIC-III tables hold ICD-9 codes only; use --coding icd9 with --format mimic3")
    codebook = CodeBook()
    tasks: dict[str, list[pl.DataFrame]] = {}
    n_shards = -(-patients // shard_size)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for shard in track(range(n_shards), f"Synthesizing {patients:,} patients at {site}", total=n_shards):
            first = shard * shard_size
            events, shard_tasks = _shard(
                profile, seed, shard, first, min(shard_size, patients - first), codebook
            )
            write_events(events, tmp / "data" / f"{shard}.parquet")
            for name, labels in shard_tasks.items():
                tasks.setdefault(name, []).append(labels)
        finish_dataset(
            tmp,
            dataset_name=f"clinfm synthetic pediatric cohort, {site} ({coding})",
            etl_name="clinfm.synthesize",
            codes=code_metadata(codebook.codes),
            tasks={name: pl.concat(parts) for name, parts in tasks.items()},
        )
        if mimic3:
            export_mimic3(tmp, tmp / "mimic3")
    return Path(out)


__all__ = ["SiteProfile", "synthesize"]
