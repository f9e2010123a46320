"""Render a clinical record (FHIR, C-CDA) as readable text in sections, one line per fact.

Each section is its own page of the ParsedDocument, so the chunker (which packs page by page)
never lets a chunk run across two sections, and a short section such as current medications
stays in one chunk. A section starts with its name in capitals (the chunker's heading rule) and
the patient's name, so every section's first chunk says whose record it is. Every fact line ends
with a full stop (one "sentence" for the chunker) and keeps a SourceRef to the resource or entry
it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .base import PageSpan, ParsedDocument, PatientIdentity, SourceRef

# Order of sections in the rendering; names are shown in capitals as headings.
SECTIONS = (
    "Demographics",
    "Allergies",
    "Current medications",
    "Past medications",
    "Problems",
    "Latest results and vitals",
    "Results and vitals",
    "Procedures",
    "Immunizations",
    "Encounters",
    "Care plans",
    "Notes",
)

CODE_SYSTEMS = {
    "http://snomed.info/sct": "SNOMED CT",
    "2.16.840.1.113883.6.96": "SNOMED CT",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "2.16.840.1.113883.6.88": "RxNorm",
    "http://loinc.org": "LOINC",
    "2.16.840.1.113883.6.1": "LOINC",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "2.16.840.1.113883.12.292": "CVX",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://www.ama-assn.org/go/cpt": "CPT",
}


# What clinicians call some common tests, added to their lines so a question using the short
# name finds them ("most recent HbA1c").
LOINC_ALIASES = {
    "4548-4": "HbA1c",
    "39156-5": "BMI",
    "18262-6": "LDL cholesterol",
    "13457-7": "LDL cholesterol",
    "2093-3": "total cholesterol",
    "2085-9": "HDL cholesterol",
    "2339-0": "blood glucose",
    "2345-7": "blood glucose",
    "38483-4": "serum creatinine",
    "2160-0": "serum creatinine",
    "85354-9": "blood pressure",
    "55284-4": "blood pressure",
}


def code_label(system: str, code: str) -> str:
    if not code:
        return ""
    name = CODE_SYSTEMS.get(system or "", "")
    return f"{name} {code}" if name else code


def day(value: str | None) -> str:
    """The calendar date of a FHIR date/dateTime or a C-CDA TS, as written (no time-zone shift):
    '2015-12-18T06:10:48-06:00' and '20151218061048' both give '2015-12-18'."""
    if not value:
        return ""
    value = value.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return value[:10]
    if re.match(r"^\d{8}", value):
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    if re.match(r"^\d{4}(-\d{2})?$", value):
        return value
    return ""


def number(value: object) -> str:
    """A measured number exactly as recorded (no rounding: "values exactly as recorded")."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value).strip()


@dataclass
class Fact:
    """One line of the rendering. `sort` orders lines within a section (latest first)."""

    text: str
    ref: str
    sort: str = ""


@dataclass
class Record:
    patient: PatientIdentity
    facts: dict[str, list[Fact]] = field(default_factory=dict)
    kind: str = ""  # "FHIR JSON", "C-CDA", ... (shown under Demographics)
    # Latest value per test: key -> (date, line text, ref), for "most recent" questions.
    latest: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def add(self, section: str, text: str, ref: str, sort: str = "") -> None:
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}")
        text = " ".join(text.replace("\x00", "").split())
        if not text:
            return
        if not text.endswith("."):
            text += "."
        self.facts.setdefault(section, []).append(Fact(text=text, ref=ref, sort=sort))


def observe(record: Record, *, key: str, date: str, text: str, ref: str) -> None:
    """Note a measurement; the latest of each test gets a line in "Latest results and vitals"."""
    known = record.latest.get(key)
    if known is None or date > known[0]:
        record.latest[key] = (date, text, ref)


def render(record: Record) -> ParsedDocument:
    """The record as text, one page per non-empty section, with a SourceRef per fact line."""
    for date, text, ref in record.latest.values():
        record.add("Latest results and vitals", f"Most recent {text}", ref, sort=date)
    patient = record.patient
    who = patient.name or "unknown patient"
    if patient.birth_date:
        who += f" (born {patient.birth_date})"
    parts: list[str] = []
    pages: list[PageSpan] = []
    refs: list[SourceRef] = []
    offset = 0
    for section in SECTIONS:
        facts = record.facts.get(section, [])
        if not facts and section != "Demographics":
            continue
        if section != "Demographics":
            # Latest first; a stable sort keeps the source order within a date.
            facts = sorted(facts, key=lambda f: f.sort, reverse=True)
        if parts:
            parts.append("\n\n")
            offset += 2
        start = offset
        head = f"{section.upper()}\nPatient: {who}\n"
        if section == "Demographics" and record.kind:
            head += f"Record: {record.kind}\n"
        parts.append(head)
        offset += len(head)
        for fact in facts:
            line = fact.text + "\n"
            refs.append(SourceRef(start=offset, end=offset + len(fact.text), ref=fact.ref))
            parts.append(line)
            offset += len(line)
        pages.append(PageSpan(number=len(pages) + 1, start=start, end=offset))
    text = "".join(parts)
    return ParsedDocument(text=text, pages=pages, patient=patient, refs=refs)


def demographics(record: Record, ref: str, *, extra: list[str] | None = None) -> None:
    patient = record.patient
    if patient.name:
        record.add("Demographics", f"Name: {patient.name}", ref)
    if patient.birth_date:
        record.add("Demographics", f"Date of birth: {patient.birth_date}", ref)
    if patient.gender:
        record.add("Demographics", f"Gender: {patient.gender}", ref)
    for ident in patient.identifiers:
        label = ident.get("type") or "Identifier"
        system = ident.get("system", "")
        record.add(
            "Demographics",
            f"{label}: {ident['value']}" + (f" (system {system})" if system else ""),
            ref,
        )
    for line in extra or []:
        record.add("Demographics", line, ref)
