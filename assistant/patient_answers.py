"""Answers from a patient's record, section by section, quoted and cited.

For a question about one patient whose category `clinical_ask` recognises, the answer is read
from that patient's documents' section for the category (allergies, medications, problems,
results and vitals, ...), never from a model and never from another patient's document:
- a list (allergies, current medications): every fact of the section;
- a named item ("penicillin", "HbA1c", "viral sinusitis"): the facts naming it, the most
  recent first when a value is asked for;
- nothing: "not recorded" only when the section was searched in every structured record of the
  patient and holds no such fact, naming the records searched; a record stating "No Known
  Allergies" is quoted.
Every answer starts with the patient's full name and birth date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.patients import line_passages, record_documents

from .clinical import ITEM_SYNONYMS

if TYPE_CHECKING:
    from ingest.patients import RecordDocument, RecordLine
    from ingest.records import PatientMatch
    from ingest.selectors import ChunkHit

    from .clinical import ClinicalAsk

# Category -> the sections that hold it, and what the answer calls it.
SECTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "allergies": (("ALLERGIES",), "allergies"),
    "medications": (("CURRENT MEDICATIONS", "PAST MEDICATIONS", "MEDICATIONS"), "medications"),
    "conditions": (("PROBLEMS", "CONDITIONS"), "problems or diagnoses"),
    "observation": (
        ("LATEST RESULTS AND VITALS", "RESULTS AND VITALS", "OBSERVATIONS", "REPORTS"),
        "results or vitals",
    ),
    "immunizations": (("IMMUNIZATIONS",), "immunizations"),
    "procedures": (("PROCEDURES",), "procedures"),
    "encounters": (("ENCOUNTERS",), "encounters"),
    "care_plans": (("CARE PLANS",), "care plans"),
    "birth": (("DEMOGRAPHICS", "HEADER"), "date of birth"),
}
NOT_FOUND = {
    "allergies": "no allergy to {item} is recorded",
    "medications": "no medication {item} is recorded",
    "conditions": "no {item} is recorded among the problems and diagnoses",
    "observation": "no {item} result is recorded",
    "immunizations": "no {item} immunization is recorded",
    "procedures": "no {item} procedure is recorded",
}
MAX_LISTED = 25
_NONE_KNOWN = re.compile(r"\bno known\b|\bnone recorded\b|\bno current\b", re.IGNORECASE)
_CODE = re.compile(r"\s*\((?:SNOMED CT|RxNorm|LOINC|CVX|ICD-10-CM|CPT)[^)]*\)")
_LABEL = re.compile(
    r"^\s*(?:Allergy|Current medication|Past medication|Most recent|Medication)\s*:?\s*",
    re.IGNORECASE,
)
# Measurement noise ("126.84815502815191"), never a dose ("0.125 MG"): rounded to one decimal.
_LONG_DECIMAL = re.compile(r"\d+\.\d{5,}")
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_BIRTH = re.compile(r"(?:Date of birth|Birth Date)\s*:\s*(\d{4}-\d{2}-\d{2})", re.IGNORECASE)


@dataclass
class PatientAnswer:
    text: str
    passages: list[ChunkHit] = field(default_factory=list)
    not_recorded: bool = False  # the record was searched and holds no such fact


def patient_header(patient: PatientMatch) -> str:
    return f"{patient.name} (born {patient.birth_date})" if patient.birth_date else patient.name


def record_answer(*, patient: PatientMatch, ask: ClinicalAsk) -> PatientAnswer | None:
    """The answer from the patient's records, or None when they are not records in sections
    (a letter, a scanned report): then the question goes to ordinary retrieval."""
    if ask.category not in SECTIONS:
        return None
    documents = [d for d in record_documents(patient.document_ids) if d.structured]
    if not documents:
        return None
    names, title = SECTIONS[ask.category]
    if ask.category == "birth":
        return _birth(patient, documents)
    lines = [line for d in documents for s in names for line in d.sections.get(s, [])]
    facts = [line for line in lines if not _NONE_KNOWN.search(line.text)]
    stated_none = [line for line in lines if _NONE_KNOWN.search(line.text)]
    header = patient_header(patient)
    searched = _searched(documents, names)
    if ask.item:
        chosen = _most_recent(_one_document(_naming(facts, ask)))
        if not chosen:
            missing = NOT_FOUND.get(ask.category, "no {item} is recorded").format(item=ask.item)
            return PatientAnswer(f"{header}: {missing}. Searched: {searched}.", not_recorded=True)
        if ask.category == "observation" or ask.latest:
            chosen = chosen[:1]
        return _quoted(header, chosen[:MAX_LISTED])
    if ask.category == "medications" and ask.latest:
        facts = [line for line in facts if _current(line)]
        title = "current medications"
    if not facts:
        text = f"{header}: no {title} are recorded. Searched: {searched}."
        if stated_none:
            return _quoted(f"{header}: no {title} are recorded", stated_none[:1], not_recorded=True)
        return PatientAnswer(text, not_recorded=True)
    listed = _one_document(facts)[:MAX_LISTED]
    return _quoted(f"{header}: {len(listed)} {title} recorded", listed)


def _birth(patient: PatientMatch, documents: list[RecordDocument]) -> PatientAnswer:
    for document in documents:
        for section in ("DEMOGRAPHICS", "HEADER"):
            for line in document.sections.get(section, []):
                found = _BIRTH.search(line.text)
                if found:
                    answer = _quoted(f"{patient.name} was born on {found.group(1)}", [line])
                    answer.text = answer.text.replace(f": {display(line.text)}", "", 1)
                    return answer
    return PatientAnswer(
        f"{patient_header(patient)}: no date of birth is recorded. "
        f"Searched: {_searched(documents, ('DEMOGRAPHICS', 'HEADER'))}.",
        not_recorded=True,
    )


def _searched(documents: list[RecordDocument], names: tuple[str, ...]) -> str:
    wanted = [n.lower() for n in names if n != "HEADER"] or ["header"]
    return f"the {' / '.join(wanted)} sections of " + ", ".join(d.name for d in documents)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _naming(lines: list[RecordLine], ask: ClinicalAsk) -> list[RecordLine]:
    """The lines that name the item: an observation by the records' words for it, anything
    else by every word of the item (or one of its everyday synonyms)."""
    if ask.record_words:
        return [line for line in lines if any(w in line.text.lower() for w in ask.record_words)]
    found = []
    for line in lines:
        words = _words(_CODE.sub("", line.text))
        lowered = line.text.lower()
        if all(
            _has_word(words, w) or any(alt in lowered for alt in ITEM_SYNONYMS.get(w, ()))
            for w in re.findall(r"[a-z0-9]+", ask.item)
        ):
            found.append(line)
    return found


def _has_word(words: set[str], wanted: str) -> bool:
    """`wanted` or another form of it ("alendronate" / "alendronic", "diabetic" / "diabetes"):
    a word sharing all but its last three letters, and at least five."""
    if wanted in words:
        return True
    stem = len(wanted) - 3
    if stem < 5:
        return False
    return any(len(w) >= stem and w[:stem] == wanted[:stem] for w in words)


def _most_recent(lines: list[RecordLine]) -> list[RecordLine]:
    """Newest first: by the latest date a line states ("Most recent" lines first on ties)."""

    def key(line: RecordLine) -> tuple[str, bool]:
        dates = _DATE.findall(line.text)
        return (max(dates) if dates else "", line.text.lstrip().startswith("Most recent"))

    return sorted(lines, key=key, reverse=True)


def _current(line: RecordLine) -> bool:
    if line.section == "CURRENT MEDICATIONS":
        return True
    return line.section == "MEDICATIONS" and "[CURRENT]" in line.text


def _one_document(lines: list[RecordLine]) -> list[RecordLine]:
    """Facts are quoted from one record (the first that has them): the same facts exported
    twice would be listed twice."""
    if not lines:
        return lines
    first = lines[0].document_id
    return [line for line in lines if line.document_id == first]


def display(text: str) -> str:
    """A fact line as the answer shows it: codes and labels dropped, long decimals rounded."""
    shown = _LABEL.sub("", _CODE.sub("", text)).strip().rstrip(".")
    shown = _LONG_DECIMAL.sub(lambda m: f"{float(m.group(0)):.1f}", shown)
    return " ".join(shown.split())


def _quoted(lead: str, lines: list[RecordLine], *, not_recorded: bool = False) -> PatientAnswer:
    passages = line_passages(lines)
    number = {
        (p.document_id, p.start): n for n, p in enumerate(passages, start=1)
    }  # passage -> [n]

    def cite(line: RecordLine) -> str:
        for p in passages:
            if p.document_id == line.document_id and p.start <= line.start < p.end:
                return f" [{number[(p.document_id, p.start)]}]"
        return ""

    # Facts from the same passage are cited once, after the last of them.
    shown = []
    for i, line in enumerate(lines):
        mark = cite(line)
        following = cite(lines[i + 1]) if i + 1 < len(lines) else None
        shown.append(display(line.text) + (mark if mark != following else ""))
    facts = "; ".join(shown)
    return PatientAnswer(f"{lead}: {facts}.", passages=passages, not_recorded=not_recorded)
