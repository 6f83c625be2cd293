"""Synthetic medication sentences with exact entity offsets, for the demo and the tests.

The project makes these itself (no external data). Sentences read like discharge summaries and
carry the n2c2-2018 track-2 entity types. Three things make the task need context, as the real one
does, rather than a word list:

* some conditions are a Reason in one sentence and an ADE in another ("ondansetron for nausea",
  "developed nausea after morphine"), and appear unlabelled in history sentences;
* drug names split into a training part and a held-out part, so a test split can ask for drugs the
  model has never seen;
* most sentences (``unlabeled_share``, 0.6 by default; ~75% in n2c2) mention no medication at all.

Each sentence is on its own line. Text and spans are built together, so every entity's offsets
are exact.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from clinfm.ner.document import Document, Entity

ENTITY_TYPES = ("Drug", "Strength", "Dosage", "Form", "Route", "Frequency", "Duration", "Reason", "ADE")

# ---- vocabularies

DRUGS = (
    # generic names, some of several words
    "metoprolol", "lisinopril", "amlodipine", "atorvastatin", "simvastatin", "pravastatin", "rosuvastatin",
    "furosemide", "hydrochlorothiazide", "spironolactone", "carvedilol", "losartan", "valsartan",
    "diltiazem", "verapamil", "hydralazine", "isosorbide mononitrate", "nitroglycerin", "digoxin",
    "amiodarone", "warfarin", "heparin", "enoxaparin", "apixaban", "rivaroxaban", "clopidogrel",
    "aspirin", "metformin", "glipizide", "insulin glargine", "insulin lispro", "insulin aspart",
    "regular insulin", "levothyroxine", "prednisone", "methylprednisolone", "dexamethasone",
    "hydrocortisone", "albuterol", "ipratropium", "tiotropium", "fluticasone", "montelukast",
    "amoxicillin", "amoxicillin-clavulanate", "azithromycin", "ceftriaxone", "cefazolin", "cephalexin",
    "ciprofloxacin", "levofloxacin", "vancomycin", "piperacillin-tazobactam", "meropenem", "doxycycline",
    "trimethoprim-sulfamethoxazole", "metronidazole", "nitrofurantoin", "clindamycin", "linezolid",
    "fluconazole", "acyclovir", "oseltamivir", "acetaminophen", "ibuprofen", "naproxen", "ketorolac",
    "oxycodone", "hydromorphone", "morphine", "tramadol", "fentanyl", "gabapentin", "pregabalin",
    "lidocaine", "ondansetron", "metoclopramide", "prochlorperazine", "pantoprazole", "omeprazole",
    "famotidine", "docusate", "senna", "polyethylene glycol", "lactulose", "bisacodyl", "loperamide",
    "sertraline", "citalopram", "escitalopram", "fluoxetine", "trazodone", "mirtazapine", "bupropion",
    "quetiapine", "haloperidol", "olanzapine", "lorazepam", "alprazolam", "diazepam", "zolpidem",
    "melatonin", "levetiracetam", "phenytoin", "valproic acid", "lamotrigine", "donepezil", "tamsulosin",
    "finasteride", "allopurinol", "colchicine", "potassium chloride", "magnesium oxide",
    "calcium carbonate", "vitamin D", "ferrous sulfate", "folic acid", "thiamine", "multivitamin",
    "cyanocobalamin", "sodium bicarbonate", "sevelamer", "epoetin alfa", "nicotine", "diphenhydramine",
    "hydroxyzine", "cetirizine", "loratadine", "tacrolimus", "mycophenolate mofetil",
    # brand names
    "Lasix", "Coumadin", "Tylenol", "Zofran", "Lipitor", "Plavix", "Protonix", "Colace", "Keppra",
    "Flomax", "Ativan", "Xarelto", "Eliquis", "Lovenox", "Norvasc", "Zosyn", "Bactrim", "Augmentin",
    "Dilaudid", "Percocet", "Benadryl", "Ambien", "Seroquel", "Haldol", "Lantus", "Humalog", "Synthroid",
    "Neurontin", "Toprol XL", "Miralax",
)  # fmt: skip
# Every fifth drug is held out, by position, so the split is the same for every seed.
HELD_OUT_DRUGS = DRUGS[4::5]
TRAIN_DRUGS = tuple(drug for i, drug in enumerate(DRUGS) if i % 5 != 4)

STRENGTHS = (
    *(f"{n} mg" for n in ("2.5", "5", "10", "12.5", "20", "25", "40", "50", "81", "100", "125", "200",
                          "250", "325", "400", "500", "650", "750", "1000")),
    *(f"{n} mcg" for n in ("25", "50", "88", "100", "112", "125")),
    *(f"{n} g" for n in ("1", "2", "17")),
    *(f"{n} units" for n in ("4", "10", "20", "5000")),
    "20 mEq", "40 mEq", "10 mg/mL", "0.5 mg", "1 mg", "2 mg", "5mg", "10mg",
)  # fmt: skip
DOSAGES = ("1", "2", "one", "two", "1-2", "3")
# Forms counted by a dosage, (singular, plural), so "1 tablet" and "2 tablets" agree.
COUNTED_FORMS = (("tablet", "tablets"), ("capsule", "capsules"), ("tab", "tabs"), ("puff", "puffs"),
                 ("drop", "drops"), ("spray", "sprays"), ("patch", "patches"))  # fmt: skip
FORMS = ("tablet", "capsule", "solution", "patch", "inhaler", "cream", "ointment", "suspension",
         "injection", "nebulizer solution", "extended-release tablet", "suppository", "gel")  # fmt: skip
ROUTES = ("PO", "po", "IV", "IM", "SC", "SQ", "by mouth", "orally", "intravenously", "subcutaneously",
          "topically", "inhaled", "via nebulizer", "sublingually", "per rectum")  # fmt: skip
FREQUENCIES = (
    "daily", "once daily", "BID", "bid", "TID", "QID", "twice a day", "twice daily", "three times a day",
    "q4h", "q6h", "q8h", "q12h", "every 6 hours", "every 8 hours as needed", "every 4 hours as needed",
    "every 6 hours as needed", "at bedtime", "qHS", "qhs", "every morning", "weekly", "with meals",
    "before meals", "q4-6h as needed",
)  # fmt: skip
DURATIONS = ("for 7 days", "x10 days", "for two weeks", "for 5 days", "for 3 days", "for 1 month",
             "x 5 days", "for a total of 14 days", "for 6 weeks", "for the next 3 days",
             "for 10 days")  # fmt: skip
# Conditions a medication is given for.
REASONS = (
    "hypertension", "atrial fibrillation", "heart failure", "CHF exacerbation", "chest pain", "pain",
    "back pain", "nausea", "vomiting", "constipation", "insomnia", "anxiety", "agitation", "depression",
    "seizures", "seizure prophylaxis", "DVT prophylaxis", "pneumonia", "urinary tract infection", "UTI",
    "cellulitis", "COPD exacerbation", "asthma", "wheezing", "shortness of breath", "diabetes",
    "hyperglycemia", "hypothyroidism", "hyperlipidemia", "gout flare", "GERD", "fever", "headache",
    "itching", "edema", "hypokalemia", "hypomagnesemia", "anemia", "alcohol withdrawal",
    "neuropathic pain", "C. diff colitis", "diarrhea",
)  # fmt: skip
# Harms a medication caused. The overlap with REASONS is deliberate: only context tells them apart.
ADES = (
    "rash", "hives", "nausea", "vomiting", "diarrhea", "hypotension", "bradycardia", "angioedema", "cough",
    "dizziness", "headache", "hyperkalemia", "hypoglycemia", "acute kidney injury", "bleeding",
    "GI bleed", "thrombocytopenia", "QT prolongation", "confusion", "sedation", "respiratory depression",
    "constipation", "itching", "pruritus", "anaphylaxis", "myalgias", "elevated LFTs", "lethargy",
    "edema", "C. diff colitis", "insomnia", "agitation", "anxiety", "pain",
)  # fmt: skip
SERVICES = ("cardiology", "her primary care physician", "his primary care physician", "nephrology",
            "neurology", "the wound clinic", "pulmonology", "endocrinology", "GI")  # fmt: skip
WHEN = ("two weeks", "1 week", "one month", "3 days", "2-3 weeks", "6 weeks")

# ---- templates: {Slot} fills an entity (or a pair), {Slot^} capitalises its first letter,
# lower-case slots fill plain words that are no entity.

LABELLED_TEMPLATES = (
    "Started {Drug} {Strength} {Route} {Frequency} for {Reason}.",
    "{Drug^} {Strength} {Route} {Frequency}.",
    "{n}. {Drug^} {Strength} {Route} {Frequency}",
    "{n}. {Drug^} {Strength} {DoseForm} {Route} {Frequency} {Duration}",
    "{n}. {Drug^} {Strength} {Route} {Frequency} PRN {Reason}",
    "Discontinue {Drug} due to {ADE}.",
    "Take {DoseForm} {Route} {Frequency} for {Reason} {Duration}.",
    "Patient developed {ADE} after {Drug}.",
    "{He} was started on {Drug} {Strength} {Frequency} for {Reason}.",
    "{Drug^} was held for {ADE}.",
    "{ADE^} thought to be secondary to {Drug}; this was stopped.",
    "{He} was treated with {Drug} {Route} {Duration} for {Reason}.",
    "Continue {Drug} {Strength} {Frequency} for {Reason}.",
    "Give {Drug} {Strength} {Route} now for {Reason}.",
    "{Reason^}: {Drug} {Strength} {Route} {Frequency}.",
    "{Drug^} was switched to {Drug} because of {ADE}.",
    "Allergies: {Drug^} ({ADE}).",
    "{He} reports {ADE} while taking {Drug}.",
    "Increase {Drug} to {Strength} {Frequency}.",
    "{DrugForm^} {DoseForm} {Route} {Frequency} for {Reason}.",
    "Apply {DrugForm} {Route} {Frequency} to the affected area for {Reason}.",
    "{Drug^} {Strength} {Route} {Frequency} {Duration}.",
    "Restart {Drug} at {Strength} {Frequency} once {ADE} resolves.",
    "{He} received {Drug} {Strength} {Route} x1 for {Reason}.",
    "{Drug^} was stopped after the patient developed {ADE}.",
    "{Reason^} was controlled with {Drug} {Strength} {Route} {Frequency}.",
    "Avoid {Drug} given a history of {ADE}.",
    "{He} will complete {Drug} {DoseForm} {Frequency} {Duration} for {Reason}.",
)
# Sentences with no entity: history, examination, plans. Conditions appear here unlabelled.
UNLABELLED_TEMPLATES = (
    "The patient was afebrile overnight.",
    "Follow up with {service} in {when}.",
    "History of {condition} and {condition}.",
    "Vital signs were stable.",
    "Lungs clear to auscultation bilaterally.",
    "{He} denies chest pain or shortness of breath.",
    "Labs were notable for a creatinine of {number}.",
    "{He} was ambulating without assistance.",
    "Discharged home in stable condition.",
    "Abdomen soft, nontender, nondistended.",
    "{He} lives at home with {his} daughter.",
    "Physical therapy recommended discharge home with services.",
    "{He} was seen by {service}, who agreed with the plan.",
    "Chest x-ray showed no acute process.",
    "Please call your doctor if you have fevers or worsening symptoms.",
    "Patient is a {age}-year-old {sex} with a history of {condition}.",
    "Echocardiogram showed an ejection fraction of {ef}%.",
    "{He} tolerated a regular diet.",
    "Code status: full code.",
    "Blood cultures remained negative.",
    "Heart regular rate and rhythm, no murmurs.",
    "Repeat labs in {when}.",
    "{He} was admitted with {condition}.",
)

_SLOT = re.compile(r"\{(\w+)(\^?)\}")
Segment = tuple[str, str | None]  # (text, entity type or None)


def _compile(template: str) -> list[tuple[str, bool] | str]:
    """Split a template into literal strings and (slot, capitalise) pairs, once at import."""
    pieces: list[tuple[str, bool] | str] = []
    last = 0
    for match in _SLOT.finditer(template):
        if match.start() > last:
            pieces.append(template[last : match.start()])
        pieces.append((match.group(1), match.group(2) == "^"))
        last = match.end()
    if last < len(template):
        pieces.append(template[last:])
    return pieces


_LABELLED = [_compile(t) for t in LABELLED_TEMPLATES]
_UNLABELLED = [_compile(t) for t in UNLABELLED_TEMPLATES]


class _Context:
    """What stays fixed within one document: the drug list, the patient's pronouns, the list number."""

    def __init__(self, rng: random.Random, drugs: tuple[str, ...]):
        self.rng = rng
        self.drugs = drugs
        self.female = rng.random() < 0.5
        self.line = 0  # the number of the sentence in the document, for "3. Aspirin ..."


def _entity(vocabulary: tuple[str, ...], kind: str) -> Callable[[_Context], list[Segment]]:
    return lambda ctx: [(ctx.rng.choice(vocabulary), kind)]


def _plain(vocabulary: tuple[str, ...]) -> Callable[[_Context], list[Segment]]:
    return lambda ctx: [(ctx.rng.choice(vocabulary), None)]


def _dose_form(ctx: _Context) -> list[Segment]:
    """ "2 tablets": a Dosage and a Form that agree in number."""
    dosage = ctx.rng.choice(DOSAGES)
    singular, plural = ctx.rng.choice(COUNTED_FORMS)
    return [(dosage, "Dosage"), (" ", None), (singular if dosage in ("1", "one") else plural, "Form")]


def _drug_form(ctx: _Context) -> list[Segment]:
    """ "albuterol inhaler": a Drug followed by its Form."""
    return [(ctx.rng.choice(ctx.drugs), "Drug"), (" ", None), (ctx.rng.choice(FORMS), "Form")]


_FILLERS: dict[str, Callable[[_Context], list[Segment]]] = {
    "Drug": lambda ctx: [(ctx.rng.choice(ctx.drugs), "Drug")],
    "DrugForm": _drug_form,
    "DoseForm": _dose_form,
    "Strength": _entity(STRENGTHS, "Strength"),
    "Dosage": _entity(DOSAGES, "Dosage"),
    "Form": _entity(FORMS, "Form"),
    "Route": _entity(ROUTES, "Route"),
    "Frequency": _entity(FREQUENCIES, "Frequency"),
    "Duration": _entity(DURATIONS, "Duration"),
    "Reason": _entity(REASONS, "Reason"),
    "ADE": _entity(ADES, "ADE"),
    "condition": _plain(REASONS),
    "service": _plain(SERVICES),
    "when": _plain(WHEN),
    "He": lambda ctx: [("She" if ctx.female else "He", None)],
    "his": lambda ctx: [("her" if ctx.female else "his", None)],
    "sex": lambda ctx: [("woman" if ctx.female else "man", None)],
    "n": lambda ctx: [(str(ctx.line), None)],
    "number": lambda ctx: [(f"{ctx.rng.randint(5, 40) / 10:.1f}", None)],
    "age": lambda ctx: [(str(ctx.rng.randint(22, 94)), None)],
    "ef": lambda ctx: [(str(ctx.rng.randrange(20, 70, 5)), None)],
}


def _fill(template: list[tuple[str, bool] | str], ctx: _Context) -> list[Segment]:
    segments: list[Segment] = []
    for piece in template:
        if isinstance(piece, str):
            segments.append((piece, None))
            continue
        slot, capitalise = piece
        filled = _FILLERS[slot](ctx)
        if capitalise:
            text, kind = filled[0]
            filled[0] = (text[:1].upper() + text[1:], kind)
        segments.extend(filled)
    return segments


def _document(name: str, ctx: _Context, unlabeled_share: float) -> Document:
    """One to four sentences, one per line, each without entities with probability ``unlabeled_share``."""
    rng = ctx.rng
    parts: list[str] = []
    spans: list[tuple[str, int, int, str]] = []  # (type, start, end, phrase)
    offset = 0
    n_sentences = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
    used: set[int] = set()  # no template twice in a document: notes rarely repeat a sentence
    for line in range(1, n_sentences + 1):
        ctx.line = line
        templates = _UNLABELLED if rng.random() < unlabeled_share else _LABELLED
        template = rng.choice(templates)
        while id(template) in used:
            template = rng.choice(templates)
        used.add(id(template))
        if line > 1:
            parts.append("\n")
            offset += 1
        for text, kind in _fill(template, ctx):
            if kind is not None:
                spans.append((kind, offset, offset + len(text), text))
            parts.append(text)
            offset += len(text)
    text = "".join(parts)
    entities = []
    for number, (kind, start, end, phrase) in enumerate(spans, start=1):
        assert text[start:end] == phrase, (name, kind, start, end, phrase)
        entities.append(Entity(kind, ((start, end),), f"T{number}"))
    return Document(name, text, entities)


def _generate(n: int, rng: random.Random, unlabeled_share: float, held_out_drugs: bool,
              first: int = 1) -> list[Document]:  # fmt: skip
    if not 0.0 <= unlabeled_share <= 1.0:
        raise ValueError(f"unlabeled_share must be in [0, 1], got {unlabeled_share}")
    drugs = HELD_OUT_DRUGS if held_out_drugs else TRAIN_DRUGS
    return [
        _document(f"synth_{i:05d}", _Context(rng, drugs), unlabeled_share) for i in range(first, first + n)
    ]


def synthetic_documents(
    n: int, *, seed: int = 0, unlabeled_share: float = 0.6, held_out_drugs: bool = False
) -> list[Document]:
    """``n`` documents named synth_00001.., the same for the same arguments.

    ``unlabeled_share`` is the chance that a sentence mentions no entity. ``held_out_drugs`` draws
    every drug from :data:`HELD_OUT_DRUGS` instead of :data:`TRAIN_DRUGS` (disjoint lists).
    """
    return _generate(n, random.Random(seed), unlabeled_share, held_out_drugs)


def synthetic_corpus(
    out: str | Path,
    *,
    train: int = 2000,
    dev: int = 300,
    test: int = 300,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write brat folders ``out/train``, ``out/dev``, ``out/test``; return ``out``.

    Each split draws from its own random stream. The second half of test uses held-out drug names,
    so a test score shows how well a model tags drugs it has never seen, from context alone.
    """
    from clinfm.io import atomic_directory, write_json_atomic
    from clinfm.ner.brat import write_brat  # imported here: synthetic_documents needs no brat

    splits = {
        "train": _generate(train, random.Random(f"{seed}/train"), 0.6, False),
        "dev": _generate(dev, random.Random(f"{seed}/dev"), 0.6, False),
    }
    seen = _generate(test - test // 2, random.Random(f"{seed}/test"), 0.6, False)
    unseen = _generate(test // 2, random.Random(f"{seed}/test-held-out"), 0.6, True, first=len(seen) + 1)
    splits["test"] = seen + unseen
    with atomic_directory(out, overwrite=overwrite) as tmp:  # all three splits, or none
        for split, documents in splits.items():
            write_brat(documents, tmp / split)
        counts = {split: len(documents) for split, documents in splits.items()}
        write_json_atomic(tmp / "run.json", {"kind": "ner-synth", "seed": seed, "documents": counts})
    return Path(out)
