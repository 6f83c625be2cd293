"""Claim-PT tokenizer and batches, each test a small worked example computed by hand.

The events are tiny MEDS frames (a few patients, a few visits each); every expected id, date, age
and target below can be read off the frame without running the code.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch

from clinfm.claims.batches import CategoryMap, VisitBatches
from clinfm.claims.tokenizer import IP, MAX_AGE, OP, RX, TokenizerConfig, claim_code_filter, tokenize
from clinfm.vocab import categories
from clinfm.vocab.vocabulary import Vocabulary

ASTHMA = "ICD9CM/493.90"
DIABETES = "ICD9CM/250.00"
OFFICE_VISIT = "CPT4/99213"
FLU_SHOT = "CPT4/90658"
ALBUTEROL = "RXNORM/745679"
METFORMIN = "RXNORM/860975"
CODES = (ASTHMA, DIABETES, OFFICE_VISIT, FLU_SHOT, ALBUTEROL, METFORMIN)
VOCAB = Vocabulary(codes=CODES, counted=False)
# Hand-made ids: [PAD]=0, [UNK]=1, [MASK]=2, then the codes in the order listed.
A, D, OV, FS, AL, MF = range(3, 3 + len(CODES))

NO_HOLD_OUT = TokenizerConfig(hold_out_last_visit=False)
F, M, UNKNOWN_SEX = 0, 1, 2


def meds(rows, *, encounters: bool = True, encounter_column: str = "encounter_id") -> pl.DataFrame:
    """A MEDS frame from rows ``(subject_id, time, code[, encounter_id[, numeric_value[, text_value]]])``.

    ``time`` is an ISO string or None (a static event).
    """
    padded = [tuple(row) + (None,) * (6 - len(row)) for row in rows]
    frame = pl.DataFrame(
        {
            "subject_id": [r[0] for r in padded],
            "time": [None if r[1] is None else datetime.fromisoformat(r[1]) for r in padded],
            "code": [r[2] for r in padded],
            "numeric_value": [r[4] for r in padded],
            "text_value": [r[5] for r in padded],
            encounter_column: [r[3] for r in padded],
        },
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "numeric_value": pl.Float32,
            "text_value": pl.String,
            encounter_column: pl.Int64,
        },
    )
    return frame if encounters else frame.drop(encounter_column)


def labels_frame(rows) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "prediction_time": [datetime.fromisoformat(r[1]) for r in rows],
            "boolean_value": [r[2] for r in rows],
        },
        schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "boolean_value": pl.Boolean},
    )


def input_visits(packed, sample: int = 0) -> list[list[int]]:
    """The input visits of one sample as lists of code ids."""
    start, end = packed.sample_visit_offsets[sample], packed.sample_visit_offsets[sample + 1]
    offsets = packed.visit_code_offsets
    return [packed.codes[offsets[v] : offsets[v + 1]].tolist() for v in range(start, end)]


def visit_field(packed, name: str, sample: int = 0) -> list:
    start, end = packed.sample_visit_offsets[sample], packed.sample_visit_offsets[sample + 1]
    return getattr(packed, name)[start:end].tolist()


def target_visit(packed, sample: int = 0) -> list[int]:
    offsets = packed.target_code_offsets
    return packed.target_codes[offsets[sample] : offsets[sample + 1]].tolist()


# ---------------------------------------------------------------------------------------------------
# Which events are claims


def test_claim_code_filter_keeps_coded_care_only():
    events = meds(
        [
            (1, None, "MEDS_BIRTH"),
            (1, None, "GENDER/F"),
            (1, "2020-01-01 09:00", "VISIT/OUTPATIENT"),
            (1, "2020-01-01 09:00", "NOTE/PROGRESS", None, None, "wheezing"),
            (1, "2020-01-01 09:00", "LAB/GLUCOSE", None, 5.4),
            (1, "2020-01-01 09:00", "MEDS_DEATH"),
            (1, "2020-01-01 09:00", ASTHMA),
            (1, "2020-01-01 09:00", ALBUTEROL),
        ]
    )
    kept = events.filter(claim_code_filter(events.columns))["code"].to_list()
    assert kept == [ASTHMA, ALBUTEROL]


def test_structural_codes_values_and_unknown_codes_are_never_input():
    # The vocabulary deliberately holds the structural codes, so only the filter can keep them out.
    structural = ("MEDS_BIRTH", "GENDER/F", "VISIT/OUTPATIENT", "NOTE/PROGRESS", "LAB/GLUCOSE")
    vocab = Vocabulary(codes=(*CODES, *structural), counted=False)
    events = meds(
        [
            (1, "1990-01-01 00:00", "MEDS_BIRTH"),
            (1, None, "GENDER/F"),
            (1, "2020-01-01 09:00", "VISIT/OUTPATIENT", 10),
            (1, "2020-01-01 09:00", "NOTE/PROGRESS", 10, None, "wheezing"),
            (1, "2020-01-01 09:00", "LAB/GLUCOSE", 10, 5.4),
            (1, "2020-01-01 09:00", ASTHMA, 10, 1.0),  # a claims code with a value is a measurement
            (1, "2020-01-01 09:00", "ICD9CM/999.99", 10),  # not in the vocabulary: dropped
            (1, "2020-01-01 09:00", DIABETES, 10),
            # A day with only structural and unknown codes is no visit at all.
            (1, "2020-01-03 09:00", "VISIT/OUTPATIENT", 11),
            (1, "2020-01-03 09:00", "ICD9CM/999.99", 11),
            (1, "2020-01-05 09:00", OFFICE_VISIT, 12),
        ]
    )
    packed = tokenize(events, vocab, NO_HOLD_OUT)
    assert input_visits(packed) == [[D], [OV]]
    assert visit_field(packed, "visit_date") == [1, 5]


# ---------------------------------------------------------------------------------------------------
# Visits


def test_two_encounters_on_the_same_day_are_two_visits():
    events = meds(
        [
            (1, "2020-03-01 09:00", ASTHMA, 10),
            (1, "2020-03-01 15:00", OFFICE_VISIT, 11),
            (1, "2020-03-04 10:00", ALBUTEROL, 12),
        ]
    )
    packed = tokenize(events, VOCAB, NO_HOLD_OUT)
    assert input_visits(packed) == [[A], [OV], [AL]]
    assert visit_field(packed, "visit_date") == [1, 1, 4]


def test_an_encounter_spanning_midnight_is_one_visit_unless_grouped_by_day():
    events = meds(
        [
            (1, "2020-03-01 23:00", ASTHMA, 10),
            (1, "2020-03-02 01:00", OFFICE_VISIT, 10),
            (1, "2020-03-05 10:00", DIABETES, 11),
        ]
    )
    assert input_visits(tokenize(events, VOCAB, NO_HOLD_OUT)) == [[A, OV], [D]]
    by_day = TokenizerConfig(hold_out_last_visit=False, group_visits_by="day")
    assert input_visits(tokenize(events, VOCAB, by_day)) == [[A], [OV], [D]]


def test_without_an_encounter_column_visits_are_calendar_days():
    events = meds(
        [
            (1, "2020-03-01 08:00", ASTHMA),
            (1, "2020-03-01 20:00", OFFICE_VISIT),
            (1, "2020-03-02 08:00", ALBUTEROL),
        ],
        encounters=False,
    )
    assert input_visits(tokenize(events, VOCAB, NO_HOLD_OUT)) == [[A, OV], [AL]]


def test_mimic_iv_hadm_id_is_an_encounter_column():
    events = meds(
        [
            (1, "2020-03-01 09:00", ASTHMA, 100),
            (1, "2020-03-01 15:00", OFFICE_VISIT, 101),
            (1, "2020-03-01 23:00", DIABETES, 101),
        ],
        encounter_column="hadm_id",
    )
    assert input_visits(tokenize(events, VOCAB, NO_HOLD_OUT)) == [[A], [OV, D]]


def test_events_without_an_encounter_id_are_grouped_by_their_day():
    events = meds(
        [
            (1, "2020-03-01 09:00", ASTHMA, 10),
            (1, "2020-03-01 12:00", ALBUTEROL, None),  # a pharmacy fill outside the encounter
            (1, "2020-03-01 18:00", METFORMIN, None),
        ]
    )
    packed = tokenize(events, VOCAB, NO_HOLD_OUT)
    assert input_visits(packed) == [[A], [AL, MF]]
    assert visit_field(packed, "visit_type") == [OP, RX]


def test_a_visit_is_a_set_and_keeps_the_first_max_codes():
    events = meds(
        [
            (1, "2020-03-01 09:00", ASTHMA, 10),
            (1, "2020-03-01 09:10", ASTHMA, 10),  # repeated: counted once
            (1, "2020-03-01 09:20", OFFICE_VISIT, 10),
            (1, "2020-03-01 09:30", ASTHMA, 10),
            (1, "2020-03-01 09:40", FLU_SHOT, 10),
            (1, "2020-03-01 09:50", ALBUTEROL, 10),
        ]
    )
    assert input_visits(tokenize(events, VOCAB, NO_HOLD_OUT)) == [[A, OV, FS, AL]]
    three = TokenizerConfig(hold_out_last_visit=False, max_codes=3)
    assert input_visits(tokenize(events, VOCAB, three)) == [[A, OV, FS]]


def test_first_recorded_codes_are_the_earliest_whatever_the_row_order():
    rows = [
        (1, "2020-03-01 11:00", OFFICE_VISIT, 10),
        (1, "2020-03-01 09:00", ASTHMA, 10),  # recorded first, though listed second
        (1, "2020-03-05 09:00", DIABETES, 11),
    ]
    one_code = TokenizerConfig(hold_out_last_visit=False, max_codes=1)
    labels = labels_frame([(1, "2020-04-01 00:00", True)])
    assert input_visits(tokenize(meds(rows), VOCAB, one_code, labels=labels)) == [[A], [D]]
    assert input_visits(tokenize(meds(rows), VOCAB, one_code)) == [[A], [D]]


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        pytest.param(["VISIT/INPATIENT", ASTHMA], IP, id="inpatient"),
        pytest.param(["VISIT/INPATIENT", ALBUTEROL], IP, id="inpatient-with-drugs-only"),
        pytest.param(["HOSPITAL_ADMISSION//EW EMER.", ASTHMA], IP, id="mimic-iv-admission"),
        pytest.param(["VISIT/PHARMACY", ALBUTEROL], RX, id="pharmacy"),
        pytest.param(["VISIT/PHARMACY", ASTHMA], RX, id="pharmacy-with-a-diagnosis"),
        pytest.param(["VISIT/OUTPATIENT", ASTHMA], OP, id="outpatient"),
        pytest.param([ALBUTEROL, METFORMIN], RX, id="untyped-drugs-only"),
        pytest.param([ALBUTEROL, ASTHMA], OP, id="untyped-mixed"),
        pytest.param([OFFICE_VISIT], OP, id="untyped-procedure"),
        pytest.param(["VISIT/OUTPATIENT", ALBUTEROL], OP, id="outpatient-with-drugs-only"),
    ],
)
def test_visit_type(codes, expected):
    events = meds([(1, f"2020-03-01 09:{i:02d}", code, 10) for i, code in enumerate(codes)])
    assert visit_field(tokenize(events, VOCAB, NO_HOLD_OUT), "visit_type") == [expected]


def five_visits() -> pl.DataFrame:
    """One patient, five visits of one code each, on days 0, 1, 2, 3 and 10."""
    days_and_codes = [(1, ASTHMA), (2, DIABETES), (3, OFFICE_VISIT), (4, FLU_SHOT), (11, ALBUTEROL)]
    return meds([(1, f"2020-03-{day:02d} 10:00", code, day) for day, code in days_and_codes])


def test_the_last_visit_is_held_out_as_the_next_visit_target():
    packed = tokenize(five_visits(), VOCAB, TokenizerConfig.paper())
    assert input_visits(packed) == [[A], [D], [OV], [FS]]
    assert target_visit(packed) == [AL]
    assert packed.target_code_offsets.tolist() == [0, 1]


def test_nothing_is_held_out_when_asked():
    packed = tokenize(five_visits(), VOCAB, NO_HOLD_OUT)
    assert input_visits(packed) == [[A], [D], [OV], [FS], [AL]]
    assert target_visit(packed) == []
    assert packed.target_code_offsets.tolist() == [0, 0]


def test_truncation_keeps_the_first_visits_the_held_out_one_included():
    packed = tokenize(five_visits(), VOCAB, TokenizerConfig(max_visits=3))
    assert input_visits(packed) == [[A], [D]]
    assert target_visit(packed) == [OV]
    assert visit_field(packed, "visit_date") == [1, 2]


def test_truncation_keeps_the_last_visits_when_asked():
    packed = tokenize(five_visits(), VOCAB, TokenizerConfig(max_visits=3, keep="last"))
    assert input_visits(packed) == [[OV], [FS]]
    assert target_visit(packed) == [AL]
    # Dates count from the first KEPT visit (day 2), not the first visit of the record.
    assert visit_field(packed, "visit_date") == [1, 2]


def test_modern_keeps_the_last_visits_and_holds_none_out():
    packed = tokenize(five_visits(), VOCAB, TokenizerConfig.modern())
    assert input_visits(packed) == [[A], [D], [OV], [FS], [AL]]
    assert target_visit(packed) == []


def test_date_index_counts_days_from_the_first_visit_and_is_capped():
    packed = tokenize(five_visits(), VOCAB, NO_HOLD_OUT)
    assert visit_field(packed, "visit_date") == [1, 2, 3, 4, 11]
    small = TokenizerConfig(hold_out_last_visit=False, date_vocab=4)  # day indices 1..3
    assert visit_field(tokenize(five_visits(), VOCAB, small), "visit_date") == [1, 2, 3, 3, 3]
    # The paper's 366-entry table: a visit 400 days on gets the last index, 365.
    far = meds([(1, "2020-01-01 10:00", ASTHMA, 1), (1, "2021-02-04 10:00", DIABETES, 2)])
    assert visit_field(tokenize(far, VOCAB, NO_HOLD_OUT), "visit_date") == [1, 365]


def test_date_index_counts_calendar_days():
    events = meds([(1, "2020-03-01 18:00", ASTHMA), (1, "2020-03-02 09:00", DIABETES)], encounters=False)
    packed = tokenize(events, VOCAB, NO_HOLD_OUT)
    assert input_visits(packed) == [[A], [D]]  # two calendar days, two visits
    assert visit_field(packed, "visit_date") == [1, 2]


# ---------------------------------------------------------------------------------------------------
# Samples: pre-training and labels


def test_pretraining_drops_subjects_with_fewer_than_two_visits():
    events = meds(
        [
            (1, "2020-03-01 10:00", ASTHMA, 1),
            (1, "2020-03-05 10:00", DIABETES, 2),
            (2, "2020-03-01 10:00", ASTHMA, 3),  # one visit: nothing to hold out and predict
            (2, "2020-03-01 11:00", OFFICE_VISIT, 3),
            (3, None, "GENDER/F"),  # no visit at all
            (4, "2020-03-01 10:00", FLU_SHOT, 4),
            (4, "2020-03-02 10:00", METFORMIN, 5),
            (4, "2020-03-03 10:00", ALBUTEROL, 6),
        ]
    )
    packed = tokenize(events, VOCAB, TokenizerConfig.paper())
    assert packed.subject_id.tolist() == [1, 4]
    assert packed.visits_per_sample.tolist() == [1, 2]
    assert [target_visit(packed, 0), target_visit(packed, 1)] == [[D], [AL]]
    assert np.isnat(packed.prediction_time).all()
    # Without a held-out visit one visit is enough.
    assert tokenize(events, VOCAB, NO_HOLD_OUT).subject_id.tolist() == [1, 2, 4]


def labelled_events() -> pl.DataFrame:
    """Subject 1: visits on 1, 5 and 9 January; the 5 January one is inpatient, admitted at 10:00."""
    return meds(
        [
            (1, "2000-01-01 00:00", "MEDS_BIRTH"),
            (1, "2020-01-01 10:00", ASTHMA, 1),
            (1, "2020-01-05 10:00", "VISIT/INPATIENT", 2),
            (1, "2020-01-05 10:00", DIABETES, 2),
            (1, "2020-01-05 14:00", OFFICE_VISIT, 2),  # later in the same stay
            (1, "2020-01-09 10:00", FLU_SHOT, 3),
            (2, "2020-01-02 10:00", ALBUTEROL, 4),
        ]
    )


def test_labels_give_one_sample_per_row_in_label_order_without_future_events():
    labels = labels_frame(
        [
            (2, "2019-06-01 00:00", False),  # before subject 2's only visit: an empty sample
            (1, "2020-01-05 10:00", True),  # at the admission exactly: its events at 10:00 count
            (1, "2020-02-01 00:00", False),
            (2, "2020-01-03 00:00", True),
        ]
    )
    packed = tokenize(labelled_events(), VOCAB, NO_HOLD_OUT, labels=labels)
    assert packed.subject_id.tolist() == [2, 1, 1, 2]
    assert packed.prediction_time.tolist() == labels["prediction_time"].to_list()
    assert [input_visits(packed, i) for i in range(4)] == [[], [[A], [D]], [[A], [D, OV], [FS]], [[AL]]]
    # The stay was already inpatient at 10:00; what happened at 14:00 is not seen at 10:00.
    assert visit_field(packed, "visit_type", 1) == [OP, IP]


def test_an_event_after_prediction_time_is_never_used_even_the_visit_type():
    events = meds(
        [
            (1, "2020-01-05 10:00", DIABETES, 2),
            (1, "2020-01-05 10:00:00.000001", "VISIT/INPATIENT", 2),  # one microsecond too late
            (1, "2020-01-05 10:00:00.000001", OFFICE_VISIT, 2),
        ]
    )
    labels = labels_frame([(1, "2020-01-05 10:00", True)])
    packed = tokenize(events, VOCAB, NO_HOLD_OUT, labels=labels)
    assert input_visits(packed) == [[D]]
    assert visit_field(packed, "visit_type") == [OP]


def test_labels_with_the_paper_config_hold_out_the_last_visible_visit():
    labels = labels_frame([(1, "2020-01-06 00:00", True), (1, "2020-01-02 00:00", False)])
    packed = tokenize(labelled_events(), VOCAB, TokenizerConfig.paper(), labels=labels)
    assert input_visits(packed, 0) == [[A]]
    assert target_visit(packed, 0) == [D, OV]
    # One visible visit: it is the target and the input is empty; the sample is kept all the same.
    assert input_visits(packed, 1) == []
    assert target_visit(packed, 1) == [A]
    assert len(packed) == 2


def test_a_label_for_a_subject_without_events_is_an_empty_sample():
    labels = labels_frame([(99, "2020-01-06 00:00", True)])
    packed = tokenize(labelled_events(), VOCAB, TokenizerConfig.paper(), labels=labels)
    assert len(packed) == 1
    assert packed.subject_id.tolist() == [99]
    assert input_visits(packed) == [] and target_visit(packed) == []
    assert packed.age.tolist() == [MAX_AGE + 1] and packed.sex.tolist() == [UNKNOWN_SEX]


# ---------------------------------------------------------------------------------------------------
# Demographics


def test_age_at_prediction_time_and_sex_from_gender_codes():
    events = meds(
        [
            (1, "2000-06-15 00:00", "MEDS_BIRTH"),
            (1, None, "GENDER/F"),
            (1, "2010-01-01 10:00", ASTHMA, 1),
            (2, "1850-01-01 00:00", "MEDS_BIRTH"),  # older than MAX_AGE: clipped
            (2, None, "GENDER//M"),  # MIMIC-IV style
            (2, "2010-01-01 10:00", ASTHMA, 2),
            (3, "2010-01-01 10:00", ASTHMA, 3),  # no birth, no sex
        ]
    )
    labels = labels_frame(
        [
            (1, "2010-06-14 00:00", True),  # the day before the 10th birthday
            (1, "2010-06-16 00:00", True),  # the day after
            (2, "2010-06-16 00:00", True),
            (3, "2010-06-16 00:00", True),
        ]
    )
    packed = tokenize(events, VOCAB, NO_HOLD_OUT, labels=labels)
    assert packed.age.tolist() == [9, 10, MAX_AGE, MAX_AGE + 1]
    assert packed.sex.tolist() == [F, F, M, UNKNOWN_SEX]
    assert np.isnan(packed.visit_age[-1])


def test_pretraining_age_is_taken_at_the_held_out_visit():
    events = meds(
        [
            (1, "2000-01-01 00:00", "MEDS_BIRTH"),
            (1, None, "GENDER/M"),
            (1, "2009-12-01 10:00", ASTHMA, 1),  # age 9
            (1, "2010-02-01 10:00", DIABETES, 2),  # age 10: the held-out visit
        ]
    )
    packed = tokenize(events, VOCAB, TokenizerConfig.paper())
    assert packed.age.tolist() == [10]
    assert packed.sex.tolist() == [M]
    assert visit_field(packed, "visit_days_before") == [62.0]


# ---------------------------------------------------------------------------------------------------
# Category map


def test_category_map_uses_ccs_ccsr_and_a_three_character_fallback():
    ccs = categories("CCS")
    asthma_category = ccs.filter(pl.col("code") == ASTHMA)["category"].item()
    assert asthma_category == "CCS/128"
    vocab = Vocabulary(
        codes=(ASTHMA, "ICD10CM/J45.20", OFFICE_VISIT, FLU_SHOT, ALBUTEROL, "ICD9CM/999.99"), counted=False
    )
    category_map = CategoryMap.build(vocab)
    expected = {
        ASTHMA: "CCS/128",
        "ICD10CM/J45.20": "CCSR/RSP009",
        OFFICE_VISIT: "CPT4/992",
        FLU_SHOT: "CPT4/906",
        ALBUTEROL: "RXNORM/745",
        "ICD9CM/999.99": "ICD9CM/999",  # not in CCS: falls back
    }
    assert category_map.names == tuple(sorted(set(expected.values())))
    assert len(category_map.code_offsets) == len(vocab) + 1
    for token, category in expected.items():
        code_id = vocab.id_of(token)
        start, end = category_map.code_offsets[code_id], category_map.code_offsets[code_id + 1]
        assert [category_map.names[i] for i in category_map.category_ids[start:end]] == [category]
    # Special tokens belong to no category.
    assert category_map.code_offsets[:4].tolist() == [0, 0, 0, 0]


# ---------------------------------------------------------------------------------------------------
# Batches


def batch_example() -> tuple:
    """Two subjects, pre-training, with hand-made categories.

    Subject 1: visits [A, OV], [D], then [FS] held out.  Subject 2: visit [AL, MF, A], then [D] held out.
    Categories: A -> asthma, D -> diabetes, OV and FS -> office, AL -> asthma AND drug, MF -> drug.
    """
    events = meds(
        [
            (1, "2020-01-01 10:00", ASTHMA, 1),
            (1, "2020-01-01 10:00", OFFICE_VISIT, 1),
            (1, "2020-01-03 10:00", DIABETES, 2),
            (1, "2020-01-10 10:00", FLU_SHOT, 3),
            (2, "2020-01-01 10:00", ALBUTEROL, 4),
            (2, "2020-01-01 10:00", METFORMIN, 4),
            (2, "2020-01-01 10:00", ASTHMA, 4),
            (2, "2020-01-02 10:00", DIABETES, 5),
        ]
    )
    packed = tokenize(events, VOCAB, TokenizerConfig.paper())
    names = ("asthma", "diabetes", "drug", "office")
    pairs = [(A, "asthma"), (D, "diabetes"), (OV, "office"), (FS, "office"), (AL, "asthma"), (AL, "drug")]
    pairs.append((MF, "drug"))
    category_map = CategoryMap.from_pairs(names, [p[0] for p in pairs], [p[1] for p in pairs], len(VOCAB))
    return packed, category_map


def test_collate_pads_with_zeros_and_builds_the_head_targets():
    packed, category_map = batch_example()
    batch = VisitBatches(packed, category_map, labels=np.array([1.0, 0.0])).collate([0, 1])
    assert batch["codes"].tolist() == [[[A, OV, 0], [D, 0, 0]], [[AL, MF, A], [0, 0, 0]]]
    assert batch["visit_mask"].tolist() == [[True, True], [True, False]]
    assert batch["visit_type"].tolist() == [[OP, OP], [OP, 0]]
    assert batch["visit_date"].tolist() == [[1, 3], [1, 0]]
    assert batch["visit_days_before"].tolist() == [[9.0, 7.0], [1.0, 0.0]]
    assert batch["age"].tolist() == [MAX_AGE + 1] * 2 and batch["sex"].tolist() == [UNKNOWN_SEX] * 2
    # cp_target[b, v]: the categories of visit v's own codes (asthma, diabetes, drug, office).
    assert batch["cp_target"].tolist() == [
        [[1, 0, 0, 1], [0, 1, 0, 0]],
        [[1, 0, 1, 0], [0, 0, 0, 0]],
    ]
    # nvp_target[b]: the held-out visit's categories.
    assert batch["nvp_target"].tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]]
    assert batch["label"].tolist() == [1.0, 0.0]
    assert batch["codes"].dtype == torch.int64 and batch["cp_target"].dtype == torch.float32


def test_collate_in_another_order_and_subset_map_rows():
    packed, category_map = batch_example()
    dataset = VisitBatches(packed, category_map, labels=np.array([1.0, 0.0]))
    swapped = dataset.collate([1, 0])
    assert swapped["codes"][1].tolist() == [[A, OV, 0], [D, 0, 0]]
    assert swapped["label"].tolist() == [0.0, 1.0]
    second = dataset.subset([1])
    assert len(second) == 1 and second.lengths.tolist() == [1]
    alone = second.collate([0])
    assert alone["codes"].tolist() == [[[AL, MF, A]]]
    assert alone["visit_mask"].tolist() == [[True]]
    assert alone["nvp_target"].tolist() == [[0, 1, 0, 0]]
    assert alone["label"].tolist() == [0.0]
    # A subset of a subset still points at the packed rows.
    assert dataset.subset([1, 0]).subset([1]).collate([0])["label"].tolist() == [1.0]


def test_collate_an_empty_sample():
    labels = labels_frame([(99, "2020-01-06 00:00", True)])
    packed = tokenize(labelled_events(), VOCAB, TokenizerConfig.paper(), labels=labels)
    batch = VisitBatches(packed, CategoryMap.build(VOCAB)).collate([0])
    assert batch["codes"].shape == (1, 1, 1)
    assert batch["visit_mask"].tolist() == [[False]]
    assert batch["nvp_target"].sum() == 0 and batch["cp_target"].sum() == 0
    assert "label" not in batch
