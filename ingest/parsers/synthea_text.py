"""Synthea's plain-text patient export: the text is kept exactly as it is (offsets are offsets
into the file), but each section (ALLERGIES:, MEDICATIONS:, ...) becomes its own page, so the
chunker never runs a chunk across two sections, and the header gives the patient's identity.
"""

from __future__ import annotations

import re

from .base import PageSpan, ParsedDocument, ParseError, PatientIdentity, SourceRef
from .text import decode_text

SYNTHEA_TEXT = "text/x-synthea"

SECTION = re.compile(r"^([A-Z][A-Z /]{2,40}):\s*$", re.MULTILINE)
_FIELD = re.compile(r"^(Gender|Birth Date|Age|Race|Ethnicity):\s+(.*)$", re.MULTILINE)


def sniff(data: bytes) -> bool:
    try:
        head = decode_text(data[:4096])
    except ParseError:
        return False  # binary content: not a text export
    lines = head.split("\n")
    # The name underlined with "=": Synthea keeps the name's non-ASCII letters and
    # apostrophes in the underline ("===é===", "====='====").
    underline = lines[1].strip() if len(lines) > 1 else ""
    return (
        len(lines) > 3
        and len(underline) >= 3
        and underline.count("=") >= 0.7 * len(underline)
        and "Birth Date:" in head
        and bool(SECTION.search(head))
    )


def parse_synthea_text(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    fields = dict(_FIELD.findall(text[:2000]))
    name = text.split("\n", 1)[0].strip()
    given, _, family = name.partition(" ")
    if " " in family:  # "Given Middle Family": the family name is the last word
        _middle, _, family = family.rpartition(" ")
    patient = PatientIdentity(
        given=given,
        family=family,
        birth_date=fields.get("Birth Date", "").strip()[:10],
        gender={"M": "male", "F": "female"}.get(fields.get("Gender", "").strip(), ""),
    )
    starts = [0] + [m.start() for m in SECTION.finditer(text)]
    pages = []
    for number, start in enumerate(starts, start=1):
        end = starts[number] if number < len(starts) else len(text)
        pages.append(PageSpan(number=number, start=start, end=end))
    refs = []
    section = "header"
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        heading = SECTION.match(line)
        if heading:
            section = heading.group(1)
        elif line.strip() and not set(line.strip()) <= {"-", "="}:
            refs.append(SourceRef(offset, offset + len(line), f"text {section} line {number}"))
        offset += len(line) + 1
    return ParsedDocument(text=text, pages=pages, patient=patient, refs=refs)
