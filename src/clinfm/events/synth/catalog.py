"""What the synthetic pediatric cohorts are made of: conditions, episodes, drugs, labs, procedures.

Every code here is real: ICD-9-CM diagnosis codes chosen inside each condition's CCS category
(ICD-10-CM codes are derived from them through the CMS GEMs, see :func:`diagnosis_codes`), RxNorm
ingredient codes, LOINC tests and CPT-4 procedures. Prevalences, onset ages and comorbidity ratios
are round figures in the range the pediatric literature reports; they make a plausible cohort, not
an epidemiological model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import polars as pl


@dataclass(frozen=True)
class Condition:
    """A latent chronic condition of childhood."""

    name: str
    title: str  # as a clinician writes it in a note
    icd9: tuple[str, ...]  # routine codes, most used first
    prevalence: float  # lifetime by age 18, before site and comorbidity multipliers
    male_ratio: float  # relative risk for boys
    onset_age: tuple[float, float]  # mean, sd in years
    symptoms: tuple[str, ...]
    drugs: tuple[str, ...] = ()  # RxNorm codes of maintenance drugs, refilled at a pharmacy
    followup_rate: float = 1.0  # relative weight of follow-up visits for this condition
    risk_from: dict[str, float] = field(default_factory=dict)  # comorbidity: condition -> risk ratio


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "eczema_allergy",
        "atopic dermatitis and allergies",
        ("691.8", "477.9", "477.0", "995.3"),
        0.14,
        1.1,
        (2.0, 2.5),
        ("itchy rash", "dry skin", "sneezing", "nasal congestion"),
        drugs=("20610", "5492"),
        followup_rate=0.6,
    ),
    Condition(
        "asthma",
        "asthma",
        ("493.90", "493.00", "493.10", "493.81", "493.82"),
        0.10,
        1.4,
        (4.5, 3.0),
        ("wheezing", "cough", "shortness of breath", "chest tightness"),
        drugs=("41126", "88249"),
        risk_from={"eczema_allergy": 2.5, "obesity": 1.4},
    ),
    Condition(
        "adhd",
        "ADHD",
        ("314.01", "314.00", "314.9"),
        0.09,
        2.3,
        (7.5, 2.0),
        ("inattention", "hyperactivity", "poor school performance", "impulsivity"),
        drugs=("6901", "40114"),
    ),
    Condition(
        "autism",
        "autism spectrum disorder",
        ("299.00", "299.80"),
        0.025,
        4.0,
        (3.5, 1.5),
        ("delayed speech", "repetitive behaviors", "poor eye contact"),
        drugs=("35636",),
        followup_rate=0.8,
    ),
    Condition(
        "anxiety_depression",
        "anxiety and depression",
        ("300.00", "300.02", "311", "296.20", "309.28"),
        0.09,
        0.7,
        (12.5, 2.5),
        ("low mood", "excessive worry", "poor sleep", "irritability"),
        drugs=("36437", "4493"),
        risk_from={"adhd": 2.0, "autism": 1.8, "obesity": 1.4},
    ),
    Condition(
        "obesity",
        "obesity",
        ("278.00", "V85.54", "278.01"),
        0.12,
        1.1,
        (8.0, 3.5),
        ("weight gain", "snoring", "fatigue"),
        followup_rate=0.5,
    ),
    Condition(
        "type1_diabetes",
        "type 1 diabetes",
        ("250.01", "250.03"),
        0.004,
        1.1,
        (9.0, 4.0),
        ("polyuria", "polydipsia", "fatigue", "weight loss"),
        drugs=("274783", "86009"),
        followup_rate=1.6,
    ),
    Condition(
        "epilepsy",
        "epilepsy",
        ("345.90", "345.10", "780.39"),
        0.01,
        1.2,
        (6.0, 4.0),
        ("seizure", "staring spells", "jerking movements"),
        drugs=("114477",),
        followup_rate=1.2,
        risk_from={"autism": 3.0},
    ),
    Condition(
        "migraine",
        "migraine",
        ("346.90", "346.10", "346.00", "784.0"),
        0.05,
        0.8,
        (11.0, 3.0),
        ("headache", "nausea", "sensitivity to light"),
        followup_rate=0.6,
        risk_from={"anxiety_depression": 1.6},
    ),
    Condition(
        "hypothyroidism",
        "hypothyroidism",
        ("244.9", "245.2"),
        0.006,
        0.4,
        (10.0, 4.0),
        ("fatigue", "cold intolerance", "constipation"),
        drugs=("10582",),
        followup_rate=0.8,
    ),
)
CONDITION_NAMES = tuple(c.name for c in CONDITIONS)


@dataclass(frozen=True)
class Episode:
    """An acute reason for a visit: the noise every pediatric practice sees."""

    name: str
    icd9: tuple[str, ...]
    symptoms: tuple[str, ...]
    drugs: tuple[str, ...]
    weight: float
    infection: bool = False
    procedure: str | None = None


EPISODES: tuple[Episode, ...] = (
    Episode("otitis", ("382.9",), ("ear pain", "fever"), ("723",), 1.0, infection=True),
    Episode("uri", ("465.9", "079.99"), ("runny nose", "cough", "fever"), ("161",), 1.4, infection=True),
    Episode(
        "pharyngitis",
        ("462", "034.0"),
        ("sore throat", "fever"),
        ("723", "18631"),
        0.7,
        infection=True,
        procedure="87880",
    ),
    Episode("bronchiolitis", ("466.11",), ("cough", "wheezing", "poor feeding"), (), 0.3, infection=True),
    Episode("gastroenteritis", ("558.9",), ("vomiting", "diarrhea"), ("26225",), 0.6, infection=True),
    Episode("fever", ("780.60",), ("fever", "fussiness"), ("5640",), 0.4, infection=True),
    Episode("injury", ("845.00", "813.40", "959.01"), ("pain", "swelling"), ("5640",), 0.6),
)

WELL_CHILD_ICD9 = ("V20.2", "V70.0")

#: Outcomes of the built-in tasks (ICD-9; ICD-10 through the GEMs).
ASTHMA_EXACERBATION_ICD9 = ("493.92", "493.91")
SELF_HARM_ICD9 = ("E956", "E950.3", "E950.0")
SUICIDAL_IDEATION_ICD9 = ("V62.84",)
DKA_ICD9 = ("250.13",)

DRUGS: dict[str, str] = {  # RxNorm ingredient -> generic name
    "20610": "cetirizine",
    "5492": "hydrocortisone",
    "41126": "fluticasone",
    "88249": "montelukast",
    "435": "albuterol",
    "8638": "prednisolone",
    "6901": "methylphenidate",
    "40114": "guanfacine",
    "35636": "risperidone",
    "36437": "sertraline",
    "4493": "fluoxetine",
    "274783": "insulin glargine",
    "86009": "insulin lispro",
    "114477": "levetiracetam",
    "37418": "sumatriptan",
    "10582": "levothyroxine",
    "723": "amoxicillin",
    "18631": "azithromycin",
    "161": "acetaminophen",
    "26225": "ondansetron",
    "5640": "ibuprofen",
}
RESCUE_DRUGS = {"asthma": ("435", "8638"), "migraine": ("37418",)}


@dataclass(frozen=True)
class LabTest:
    loinc: str
    name: str
    unit: str
    mean: float
    sd: float
    low: float = 0.0
    shifts: dict[str, float] = field(default_factory=dict)  # condition (or "infection") -> shift per severity
    age_slope: float = 0.0  # change of the mean per year of age above 5


LAB_TESTS: tuple[LabTest, ...] = (
    LabTest("4548-4", "Hemoglobin A1c", "%", 5.2, 0.3, 3.5, {"type1_diabetes": 2.6}),
    LabTest("2345-7", "Glucose", "mg/dL", 90, 10, 40, {"type1_diabetes": 85}),
    LabTest("3016-3", "Thyrotropin (TSH)", "mIU/L", 2.0, 0.7, 0.1, {"hypothyroidism": 6.0}),
    LabTest("6690-2", "Leukocytes", "10*3/uL", 7.5, 1.8, 2.0, {"infection": 5.0}),
    LabTest("711-2", "Eosinophils", "10*3/uL", 0.2, 0.1, 0.0, {"asthma": 0.25, "eczema_allergy": 0.3}),
    LabTest("718-7", "Hemoglobin", "g/dL", 12.5, 1.0, 7.0),
    LabTest("1988-5", "C reactive protein", "mg/L", 2.0, 1.5, 0.1, {"infection": 25.0}),
    LabTest("2093-3", "Cholesterol", "mg/dL", 155, 22, 90, {"obesity": 30, "hypothyroidism": 20}),
    LabTest("1742-6", "Alanine aminotransferase (ALT)", "U/L", 20, 6, 5, {"obesity": 14}),
    LabTest("39156-5", "Body mass index", "kg/m2", 15.8, 1.4, 11, {"obesity": 8.0}, age_slope=0.45),
    LabTest("44261-6", "PHQ-9 total score", "{score}", 3.0, 2.0, 0, {"anxiety_depression": 8.0}),
)
#: Which tests a visit for a reason orders, and how often.
LAB_ORDERS: dict[str, tuple[tuple[str, float], ...]] = {
    "type1_diabetes": (("4548-4", 0.8), ("2345-7", 0.6)),
    "hypothyroidism": (("3016-3", 0.7),),
    "obesity": (("39156-5", 0.9), ("2093-3", 0.35), ("1742-6", 0.35)),
    "anxiety_depression": (("44261-6", 0.6),),
    "asthma": (("711-2", 0.25), ("6690-2", 0.25)),
    "eczema_allergy": (("711-2", 0.3),),
    "infection": (("6690-2", 0.3), ("1988-5", 0.3)),
    "well_child": (("39156-5", 0.9), ("718-7", 0.3)),
    "any": (("39156-5", 0.25), ("6690-2", 0.06), ("718-7", 0.06)),
}

PROCEDURES: dict[str, str] = {  # CPT-4 -> short description
    "99213": "Office visit, established patient, low complexity",
    "99214": "Office visit, established patient, moderate complexity",
    "99391": "Preventive visit, established patient, infant under 1 year",
    "99392": "Preventive visit, established patient, age 1-4",
    "99393": "Preventive visit, established patient, age 5-11",
    "99394": "Preventive visit, established patient, age 12-17",
    "99283": "Emergency department visit, moderate severity",
    "99284": "Emergency department visit, high severity",
    "99222": "Initial hospital care, moderate complexity",
    "94640": "Inhalation treatment (nebulizer) for airway obstruction",
    "94010": "Spirometry",
    "95816": "Electroencephalogram (EEG), awake and drowsy",
    "96127": "Brief emotional or behavioral assessment",
    "90834": "Psychotherapy, 45 minutes",
    "87880": "Rapid streptococcus antigen test",
    "90471": "Immunization administration",
}
CONDITION_PROCEDURES: dict[str, tuple[tuple[str, float], ...]] = {
    "asthma": (("94010", 0.2),),
    "epilepsy": (("95816", 0.15),),
    "adhd": (("96127", 0.3),),
    "anxiety_depression": (("96127", 0.3), ("90834", 0.3)),
}

NEGATABLE_FINDINGS: tuple[str, ...] = (
    "fever",
    "chest pain",
    "rash",
    "vomiting",
    "seizures",
    "headache",
    "wheezing",
    "abdominal pain",
    "weight loss",
    "suicidal ideation",
)


#: CCS categories of the incidental diagnoses every pediatric practice codes in passing (eyes,
#: ears, skin, teeth, minor injuries, screening): a long tail of real codes, most of them rare.
INCIDENTAL_CCS = (
    10,
    89,
    90,
    91,
    92,
    94,
    124,
    125,
    126,
    133,
    134,
    136,
    138,
    155,
    159,
    163,
    197,
    198,
    200,
    232,
    235,
    236,
    239,
    244,
    246,
    250,
    251,
    252,
    253,
    257,
    258,
)
#: Chance that a medical visit also codes an incidental diagnosis.
INCIDENTAL_RATE = 0.35


@cache
def incidental_codes(coding: str) -> tuple[str, ...]:
    """The long tail, in a fixed order that stands for how common each code is everywhere.

    ICD-9-CM: every billable code of INCIDENTAL_CCS; ICD-10-CM: the first valid GEM target of each.
    """
    from clinfm.vocab.icd import categories, descriptions, gem, is_valid_code

    wanted = [f"CCS/{number}" for number in INCIDENTAL_CCS]
    icd9 = (
        categories("CCS")
        .filter(pl.col("category").is_in(wanted))
        .select("code")
        .join(descriptions(("ICD9CM",)), on="code", how="semi")
        .sort("code")["code"]
    )
    # A fixed shuffle stands for prevalence rank: not alphabetical, the same at every site.
    icd9 = icd9.sample(fraction=1.0, shuffle=True, seed=2015)
    if coding == "icd9":
        return tuple(icd9.to_list())
    targets = gem("ICD9CM", "ICD10CM").filter(pl.col("source_code").is_in(icd9.implode()))
    targets = targets.filter(is_valid_code(targets["target_code"]))
    first = targets.sort("target_code").unique("source_code", keep="first")
    ordered = icd9.to_frame("source_code").join(first, on="source_code", how="inner", maintain_order="left")
    return tuple(ordered["target_code"].unique(maintain_order=True).to_list())


@cache
def diagnosis_codes(icd9: tuple[str, ...], coding: str) -> tuple[str, ...]:
    """Prefixed codes for ICD-9 codes in the site's system: themselves, or their GEM targets.

    ICD-10 targets are kept only if valid in the current ICD-10-CM code set, and in the order of
    the ICD-9 codes, so "most used first" carries over.
    """
    source = tuple(f"ICD9CM/{code}" for code in icd9)
    if coding == "icd9":
        return source
    from clinfm.vocab.icd import gem, is_valid_code

    targets = (
        gem("ICD9CM", "ICD10CM")
        .filter(pl.col("source_code").is_in(source))
        .with_columns(order=pl.col("source_code").replace_strict(source, list(range(len(source)))))
        .sort("order", "target_code")
    )["target_code"]
    targets = targets.filter(is_valid_code(targets)).unique(maintain_order=True)
    if targets.is_empty():
        raise ValueError(f"no valid ICD-10-CM code for {icd9}")
    return tuple(targets.to_list())
