"""Questions about a patient: find the patient the question names, as people write names, and
keep the answer to that patient's records; never mix two patients in one answer.

- One patient named: the answer comes from the patient's records (assistant/patient_answers.py
  for the categories clinical_ask recognises; otherwise retrieval restricted to the patient's
  documents, inside the SQL search).
- Several patients match: no retrieval and no model call; the answer is a question back listing
  them (name and birth date), so the user can say which one.
- No patient named, in a collection of patient records, for a question about a patient ("her
  last blood pressure"): the same question back. Never a whole-collection search.
- No patient named otherwise: ordinary retrieval; if the passages found belong to several
  patients, only those of the best-ranked passage's patient are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.patients import NOT_NAMES, NamedPatient, naming_words
from ingest.records import PatientMatch, patient_collection, patients_named

from .clinical import CATEGORY_WORDS, ClinicalAsk, clinical_ask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ingest.selectors import ChunkHit

_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


@dataclass(frozen=True)
class PatientScope:
    patients: list[PatientMatch] = field(default_factory=list)
    ask: ClinicalAsk = field(default_factory=lambda: clinical_ask(""))
    # A question about a patient naming none, where only a patient can be meant.
    unnamed: bool = False
    patient_count: int = 0

    @property
    def patient(self) -> PatientMatch | None:
        return self.patients[0] if len(self.patients) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.patients) > 1

    @property
    def asks_back(self) -> bool:
        """The question cannot be answered until the user says which patient."""
        return self.ambiguous or self.unnamed

    @property
    def document_ids(self) -> list[int] | None:
        """The documents to search (None: no restriction)."""
        return list(self.patient.document_ids) if self.patient is not None else None


def patient_scope(*, question: str, collection_ids: Sequence[int]) -> PatientScope:
    count, records_only = patient_collection(collection_ids)
    if not count:
        return PatientScope()
    found = patients_named(question=question, collection_ids=collection_ids)
    if len(found) > 1:
        # "John Smith born 1980-02-03": a birth date in the question picks one of them.
        dates = set(_DATE.findall(question))
        dated = [p for p in found if p.birth_date and p.birth_date in dates]
        if len(dated) == 1:
            found = dated
    names: frozenset[str] = frozenset()
    if len(found) == 1:
        patient = found[0]
        named = NamedPatient(patient.patient_id, *patient.name_parts, patient.identifiers)
        names = naming_words(question, named)
    ask = clinical_ask(question, name_words=names)
    # In a collection that holds other documents too, a category word alone ("the policy on
    # medications") does not make a question about a patient; "her", "the patient", or a name
    # the records do not hold ("Chris's allergies") do.
    unnamed = (
        not found
        and ask.about_a_patient
        and (records_only or ask.names_someone or _names_a_person(question))
    )
    return PatientScope(patients=found, ask=ask, unnamed=unnamed, patient_count=count)


# A capitalised word past the first, or a first word written as a name ("Rod's", "Ferry:").
_CAPITALISED = re.compile(
    r"(?<=\s)([A-Z][a-z\u00c0-\u024f]{2,})(?:['\u2019]s)?\b"
    r"|^([A-Z][a-z\u00c0-\u024f]{2,})(?=['\u2019]s\b|\s*[:,\u2013-])"
)


def _names_a_person(question: str) -> bool:
    """Whether a word past the first is written as a name ("Does Chris have", "Rod's"), and is
    not one of the question's clinical words."""
    return any(
        word.lower() not in NOT_NAMES
        and word.lower() not in QUESTION_WORDS
        and word.lower() not in CATEGORY_WORDS
        and word.lower() not in _DOCUMENT_WORDS
        for pair in _CAPITALISED.findall(question)
        for word in pair
        if word
    )


# Words a title-cased question about documents uses ("the Medication Policy").
_DOCUMENT_WORDS = frozenset(
    """policy policies procedure procedures guideline guidelines protocol protocols form forms
    section sections document documents hospital ward department clinic agreement contract
    standard standards manual handbook plan""".split()
)


def clarification_text(scope: PatientScope) -> str:
    if not scope.patients:
        return (
            "Which patient do you mean? This question is about a patient but names none that "
            f"these records hold ({scope.patient_count} patients). Ask again with the patient's "
            "name, birth date or MRN."
        )
    listed = "; ".join(
        f"{p.name} (born {p.birth_date})" if p.birth_date else p.name for p in scope.patients
    )
    return (
        f"Several patients match this question: {listed}. Which patient do you mean? "
        "Ask again with the patient's full name, birth date or identifier."
    )


def one_patient(hits: list[ChunkHit]) -> list[ChunkHit]:
    """Keep the passages of the best-ranked passage's patient (and those about no patient)."""
    patients = {h.patient_id for h in hits if h.patient_id is not None}
    if len(patients) <= 1:
        return hits
    first = next(h.patient_id for h in hits if h.patient_id is not None)
    return [h for h in hits if h.patient_id in (None, first)]


# Words that say what kind of fact is asked for, not which one: they are not looked for in the
# record. Everything else in a question about a patient (a condition, a medication, a test)
# must appear in the passages found, or the records do not show it.
QUESTION_WORDS = {
    "when",
    "what",
    "which",
    "who",
    "how",
    "was",
    "were",
    "is",
    "are",
    "does",
    "did",
    "do",
    "diagnosed",
    "diagnosis",
    "prescribed",
    "prescription",
    "started",
    "start",
    "given",
    "most",
    "recent",
    "latest",
    "last",
    "current",
    "currently",
    "taking",
    "take",
    "takes",
    "medications",
    "medication",
    "medicines",
    "drugs",
    "allergies",
    "allergy",
    "allergic",
    "recorded",
    "record",
    "records",
    "documented",
    "date",
    "birth",
    "born",
    "dob",
    "have",
    "has",
    "had",
    "patient",
    "patients",
    "value",
    "result",
    "results",
    "level",
    "reading",
    "measured",
    "measurement",
    "first",
    "ever",
    "with",
    "for",
    "of",
    "the",
    "a",
    "an",
    "on",
    "in",
    "to",
    "s",
    "his",
    "her",
    "their",
    "any",
    "all",
    "list",
    "show",
    "tell",
    "me",
}

# Common abbreviations and the names records use for them (either side counts as present).
SYNONYMS = {
    "bmi": ("body mass index",),
    "hba1c": ("hemoglobin a1c", "a1c"),
    "a1c": ("hemoglobin a1c", "hba1c"),
    "ldl": ("low density lipoprotein",),
    "hdl": ("high density lipoprotein",),
    "bp": ("blood pressure",),
}

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def missing_topic(*, question: str, patient: PatientMatch, texts: Sequence[str]) -> str:
    """The words of `question` naming what is asked about that none of `texts` contains
    (joined, as asked), or "" when every one is there. Names of the patient do not count."""
    name_words = set(_tokens(patient.name))
    haystack = " ".join(" ".join(_tokens(t)) for t in texts)
    present = set(haystack.split())
    missing = []
    for word in _tokens(question):
        if word in QUESTION_WORDS or word in name_words or len(word) < 2:
            continue
        if word in present:
            continue
        if any(alt in haystack for alt in SYNONYMS.get(word, ())):
            continue
        missing.append(word)
    return " ".join(missing)


def not_shown_text(*, patient: PatientMatch, topic: str) -> str:
    born = f" (born {patient.birth_date})" if patient.birth_date else ""
    return (
        f"{patient.name}{born}: the records of {patient.name} do not show {topic}. "
        "Nothing about it was found in this patient's documents (searched in full text)."
    )


def search_text(question: str) -> str:
    """The question with the long forms of its abbreviations added, for retrieval: records
    spell out "Hemoglobin A1c" where a question says "HbA1c"."""
    extra = [
        alternative
        for word in dict.fromkeys(_tokens(question))
        for alternative in SYNONYMS.get(word, ())
        if alternative not in question.lower()
    ]
    return f"{question} {' '.join(extra)}" if extra else question


def without_name(question: str, patient: PatientMatch) -> str:
    """The question with the patient's name words taken out."""
    names = set(_tokens(patient.name))
    kept = [w for w in re.findall(r"\S+", question) if not set(_tokens(w)) & names]
    return " ".join(kept) or question
