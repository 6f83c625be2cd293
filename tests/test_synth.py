"""Synthetic cohorts: valid MEDS, real codes in each site's system, honest labels, determinism."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

import clinfm
from clinfm.errors import InputError
from clinfm.events.synth import catalog
from clinfm.vocab import is_valid_code


def _digest(root) -> str:
    events = clinfm.scan_events(root).collect()
    return hashlib.sha256(events.write_csv().encode()).hexdigest()


@pytest.mark.parametrize(
    "fixture, system, other", [("site_icd9", "ICD9CM", "ICD10CM"), ("site_icd10", "ICD10CM", "ICD9CM")]
)
def test_sites_validate_with_codes_of_their_own_system(request, fixture, system, other):
    root = request.getfixturevalue(fixture)
    report = clinfm.validate(root)
    assert report.ok and not report.warnings, (report.errors, report.warnings)
    codes = clinfm.scan_events(root).select(pl.col("code").unique()).collect()["code"]
    diagnoses = codes.filter(codes.str.starts_with(system + "/"))
    assert diagnoses.len() > 20 and is_valid_code(diagnoses).all()
    assert not codes.str.starts_with(other + "/").any()


def test_dataset_json_declares_the_extension_columns(site_icd9):
    metadata = clinfm.read_dataset_metadata(site_icd9)
    assert metadata["raw_source_id_columns"] == ["encounter_id"] and metadata["code_modifier_columns"] == [
        "unit"
    ]


def test_same_seed_same_cohort_other_seed_other_cohort(tmp_path):
    a = clinfm.synthesize(tmp_path / "a", patients=150, seed=7)
    b = clinfm.synthesize(tmp_path / "b", patients=150, seed=7)
    c = clinfm.synthesize(tmp_path / "c", patients=150, seed=8)
    assert _digest(a) == _digest(b) != _digest(c)


def test_shards_hold_whole_patients(tmp_path):
    root = clinfm.synthesize(tmp_path / "s", patients=250, shard_size=100)
    shards = sorted((root / "data").glob("*.parquet"))
    assert len(shards) == 3
    subjects = [set(pl.read_parquet(p)["subject_id"]) for p in shards]
    assert sum(map(len, subjects)) == 250 and len(set().union(*subjects)) == 250
    assert clinfm.validate(root).ok


def test_sites_differ_in_population_and_habits(site_icd9, tmp_path):
    other = clinfm.synthesize(tmp_path / "x", patients=600, site="site_x", coding="icd9", seed=1)
    visits = [clinfm.describe(root).events / clinfm.describe(root).subjects for root in (site_icd9, other)]
    assert visits[0] != pytest.approx(visits[1], rel=0.02)
    ids = [set(clinfm.read_splits(root)["subject_id"]) for root in (site_icd9, other)]
    assert not ids[0] & ids[1]  # sites can be pooled without id clashes


def _outcome_check(root, task, outcome_codes, horizon_days):
    """Recompute each label from the events: an outcome code on a later day within the horizon."""
    labels = clinfm.read_labels(root / "tasks" / f"{task}.parquet").with_row_index("sample")
    outcomes = (
        clinfm.scan_events(root)
        .filter(pl.col("code").is_in(outcome_codes))
        .select("subject_id", "time")
        .collect()
    )
    joined = labels.join(outcomes, on="subject_id", how="left").with_columns(
        hit=(pl.col("time") > pl.col("prediction_time"))
        & (pl.col("time") <= pl.col("prediction_time") + pl.duration(days=horizon_days))
    )
    recomputed = joined.group_by("sample").agg(pl.col("hit").fill_null(False).any()).sort("sample")
    return labels.sort("sample")["boolean_value"], recomputed["hit"]


@pytest.mark.parametrize("fixture, coding", [("site_icd9", "icd9"), ("site_icd10", "icd10")])
def test_cohort_task_labels_follow_from_later_events_only(request, fixture, coding):
    root = request.getfixturevalue(fixture)
    codes = [c for c in catalog.diagnosis_codes(catalog.ASTHMA_EXACERBATION_ICD9, coding)]
    labels, recomputed = _outcome_check(root, "asthma_exacerbation_180d", codes, 180)
    assert labels.len() > 20 and labels.sum() > 0
    assert (labels == recomputed).all()
    # Prediction times fall in the asthma cohort: an asthma code (exacerbations included) is visible by then.
    asthma_icd9 = catalog.CONDITIONS[1].icd9 + catalog.ASTHMA_EXACERBATION_ICD9
    asthma = list(catalog.diagnosis_codes(asthma_icd9, coding))
    labelled = clinfm.read_labels(root / "tasks" / "asthma_exacerbation_180d.parquet")
    visible = clinfm.events_as_of(clinfm.scan_events(root), labelled).filter(pl.col("code").is_in(asthma))
    assert visible.select(pl.col("sample_id").n_unique()).collect().item() == labelled.height


def test_history_carries_signal_about_the_outcome(tmp_path):
    """Children with an exacerbation before the prediction time have more exacerbations after it.

    Over four seeds of 20,000 children the ratio of outcome rates is 1.39 to 1.71; 10,000 children
    (about 1,200 samples) keep it above 1.2 with a wide margin.
    """
    root = clinfm.synthesize(tmp_path / "big", patients=10_000, seed=3)
    labels = clinfm.read_labels(root / "tasks" / "asthma_exacerbation_180d.parquet")
    codes = list(catalog.diagnosis_codes(catalog.ASTHMA_EXACERBATION_ICD9, "icd9"))
    past = (
        clinfm.events_as_of(clinfm.scan_events(root), labels)
        .group_by("sample_id")
        .agg(prior=pl.col("code").is_in(codes).any())
        .collect()
    )
    frame = labels.with_row_index("sample_id").join(past, on="sample_id")
    rates = frame.group_by("prior").agg(pl.col("boolean_value").mean()).sort("prior")["boolean_value"]
    assert rates[1] > 1.2 * rates[0]


def test_next_visit_and_disease_tasks(site_icd10):
    nxt = clinfm.read_labels(site_icd10 / "tasks" / "next_visit_categories.parquet")
    assert nxt["categorical_value"].str.split(" ").explode().str.starts_with("CCSR/").all()
    tasks = clinfm.task_files(site_icd10)
    diseases = [name for name in tasks if name.startswith("diseases/")]
    assert sorted(diseases) == sorted(f"diseases/{name}" for name in catalog.CONDITION_NAMES)
    times = {name: clinfm.read_labels(tasks[name])["prediction_time"].to_list() for name in diseases}
    assert len({tuple(t) for t in times.values()}) == 1  # one multi-label task: same samples


def test_notes_and_labs_are_present(site_icd9):
    events = clinfm.scan_events(site_icd9, columns=["unit"]).collect()
    notes = events.filter(pl.col("code").str.starts_with("NOTE/"))["text_value"]
    assert notes.len() > 100 and notes.str.contains("Denies").any() and notes.str.contains("-year-old").all()
    labs = events.filter(pl.col("code").str.starts_with("LOINC/"))
    assert labs["numeric_value"].null_count() == 0 and labs["unit"].null_count() == 0


def test_mimic3_format_round_trips_through_the_converter(tmp_path):
    root = clinfm.synthesize(tmp_path / "s", patients=120, mimic3=True)
    back = clinfm.convert_mimic3(root / "mimic3", tmp_path / "back")
    assert clinfm.validate(back).ok
    original, converted = clinfm.describe(root), clinfm.describe(back)
    count = {d["vocabulary"]: d["events"] for d in original.vocabularies}
    again = {d["vocabulary"]: d["events"] for d in converted.vocabularies}
    for vocabulary in ("ICD9CM", "LOINC", "CPT4", "NOTE", "GENDER"):
        assert again[vocabulary] == count[vocabulary], vocabulary
    assert again["DRUG"] == count["RXNORM"]
    with pytest.raises(InputError, match="ICD-9"):
        clinfm.synthesize(tmp_path / "t", patients=10, coding="icd10", mimic3=True)


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="icd9 or icd10"):
        clinfm.synthesize(tmp_path / "x", coding="icd11")
    with pytest.raises(InputError, match="at least 1"):
        clinfm.synthesize(tmp_path / "y", patients=0)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_self_harm_labels_follow_from_later_events_in_a_coded_cohort(site_icd10):
    codes = list(catalog.diagnosis_codes(catalog.SELF_HARM_ICD9, "icd10"))
    labels, recomputed = _outcome_check(site_icd10, "self_harm_365d", codes, 365)
    assert labels.len() > 10 and (labels == recomputed).all()
    cohort = list(
        catalog.diagnosis_codes(
            catalog.CONDITIONS[catalog.CONDITION_NAMES.index("anxiety_depression")].icd9, "icd10"
        )
    )
    samples = clinfm.read_labels(site_icd10 / "tasks" / "self_harm_365d.parquet")
    visible = clinfm.events_as_of(clinfm.scan_events(site_icd10), samples).filter(
        pl.col("code").is_in(cohort)
    )
    assert visible.select(pl.col("sample_id").n_unique()).collect().item() == samples.height


def test_next_visit_label_is_the_next_later_visits_categories(site_icd9):
    from clinfm.vocab import categories

    labels = clinfm.read_labels(site_icd9 / "tasks" / "next_visit_categories.parquet").with_row_index(
        "sample"
    )
    events = clinfm.scan_events(site_icd9, columns=["encounter_id"]).collect()
    medical = events.filter(pl.col("code").is_in(["VISIT/OUTPATIENT", "VISIT/EMERGENCY", "VISIT/INPATIENT"]))
    following = (
        labels.join(medical, on="subject_id")
        .filter(pl.col("time") > pl.col("prediction_time"))
        .sort("sample", "time")
        .group_by("sample", maintain_order=True)
        .first()
    )
    ccs = categories("CCS").select("code", "category")
    expected = (
        following.select("sample", "encounter_id")
        .join(events.select("encounter_id", "code"), on="encounter_id")
        .join(ccs, on="code")
        .group_by("sample")
        .agg(pl.col("category").unique().sort().str.join(" ").alias("expected"))
    )
    compared = labels.join(expected, on="sample")
    assert compared.height == labels.height > 100
    assert (compared["categorical_value"] == compared["expected"]).all()


def test_disease_labels_do_not_see_the_visits_own_diagnoses(site_icd9):
    samples = clinfm.read_labels(site_icd9 / "tasks" / "diseases" / "asthma.parquet")
    events = clinfm.scan_events(site_icd9, columns=["encounter_id"])
    visible = clinfm.events_as_of(events, samples).collect()
    current = (
        visible.filter(pl.col("code").str.starts_with("VISIT/"))
        .group_by("sample_id")
        .agg(pl.col("encounter_id").sort_by("time").last())
    )
    own = visible.join(current, on=["sample_id", "encounter_id"])
    assert (
        own.filter(pl.col("code").str.starts_with("LOINC/") | pl.col("code").str.starts_with("NOTE/")).height
        > 0
    )
    assert own.filter(pl.col("code").str.starts_with("ICD9CM/")).is_empty()


def test_no_event_after_death(tmp_path):
    root = clinfm.synthesize(tmp_path / "s", patients=3000, seed=5)
    events = clinfm.scan_events(root).collect()
    deaths = events.filter(pl.col("code") == "MEDS_DEATH").select("subject_id", death="time")
    assert deaths.height > 0
    later = events.join(deaths, on="subject_id").filter(pl.col("time") > pl.col("death"))
    assert later.is_empty()


def test_icd9_windows_end_before_icd10(site_icd9):
    description = clinfm.describe(site_icd9)
    assert description.last_time < "2015-10-01"
