"""C-CDA R2.1 XML (CCD and other document types), rendered as readable sections (clinical.py).

The header gives the patient (recordTarget), the author and the document's date. Each section
is read from its narrative table (Synthea and most EHRs put one row per entry there, with the
row's cells pointing at the coded entry by ID); a section without a table falls back to its
coded entries, and a section with neither to its narrative text. A fact line's source reference
is "C-CDA <section title>/<row or entry id>".

XML with a DOCTYPE is refused: clinical documents do not need one, and it is how entity-expansion
and external-entity attacks arrive.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .base import ParsedDocument, ParseError, PatientIdentity
from .clinical import Record, code_label, day, demographics, number, observe, render

CCDA = "application/cda+xml"
NS = "urn:hl7-org:v3"
H = f"{{{NS}}}"

# Section LOINC codes -> rendering sections ("Medications" is split into current and past).
SECTION_CODES = {
    "48765-2": "Allergies",
    "10160-0": "Medications",
    "29549-3": "Medications",
    "11450-4": "Problems",
    "30954-2": "Results and vitals",
    "8716-3": "Results and vitals",
    "47519-4": "Procedures",
    "46240-8": "Encounters",
    "11369-6": "Immunizations",
    "18776-5": "Care plans",
    "61146-7": "Care plans",
}

_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?ClinicalDocument[\s>]")


def sniff(data: bytes) -> bool:
    """XML whose root element is ClinicalDocument in the HL7 v3 namespace."""
    head = data[:8192].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return False
    return bool(_ROOT.search(head)) and NS.encode() in head


def _attr(element: ET.Element | None, name: str) -> str:
    # (An Element with no children is falsy, so `find(...) or default` would be wrong.)
    return element.get(name, "") if element is not None else ""


def _text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _identity(root: ET.Element) -> tuple[PatientIdentity, list[str]]:
    role = root.find(f"{H}recordTarget/{H}patientRole")
    if role is None:
        raise ParseError("The C-CDA document has no patient (recordTarget/patientRole).")
    if len(root.findall(f"{H}recordTarget")) > 1:
        raise ParseError(
            "The C-CDA document names several patients; Attest keeps one patient per document."
        )
    patient = role.find(f"{H}patient")
    name = patient.find(f"{H}name") if patient is not None else None
    given = name.find(f"{H}given") if name is not None else None
    family = name.find(f"{H}family") if name is not None else None
    gender = patient.find(f"{H}administrativeGenderCode") if patient is not None else None
    birth = patient.find(f"{H}birthTime") if patient is not None else None
    identifiers = [
        {"system": i.get("root", ""), "value": i.get("extension", ""), "type": ""}
        for i in role.findall(f"{H}id")
        if i.get("extension")
    ]
    extra = []
    for addr in role.findall(f"{H}addr"):
        text = ", ".join(_text(part) for part in addr if _text(part))
        if text:
            extra.append(f"Address: {text}")
    for telecom in role.findall(f"{H}telecom"):
        if telecom.get("value"):
            extra.append(f"Contact: {telecom.get('value')}")
    gender_code = gender.get("code", "") if gender is not None else ""
    identity = PatientIdentity(
        given=_text(given),
        family=_text(family),
        birth_date=day(birth.get("value")) if birth is not None else "",
        gender={"F": "female", "M": "male"}.get(gender_code, gender_code),
        identifiers=identifiers,
    )
    return identity, extra


def parse_ccda(data: bytes) -> ParsedDocument:
    if b"<!DOCTYPE" in data[:4096].upper() or b"<!ENTITY" in data.upper():
        raise ParseError("The XML file declares a DOCTYPE or entities; C-CDA documents do not.")
    try:
        root = ET.fromstring(data)  # noqa: S314 - DOCTYPE and entities refused above
    except ET.ParseError as exc:
        raise ParseError(f"The C-CDA document is not well-formed XML ({exc}).") from exc
    if root.tag != f"{H}ClinicalDocument":
        raise ParseError("The XML file is not a C-CDA ClinicalDocument.")
    identity, extra = _identity(root)
    title = _text(root.find(f"{H}title")) or "Clinical document"
    record = Record(patient=identity, kind=f"C-CDA: {title}")
    header = [f"Document date: {day(_attr(root.find(f'{H}effectiveTime'), 'value'))}"]
    author = root.find(f"{H}author")
    if author is not None:
        who = _text(author.find(f".//{H}assignedPerson/{H}name")) or _text(
            author.find(f".//{H}representedOrganization/{H}name")
        )
        when = day(_attr(author.find(f"{H}time"), "value"))
        if who or when:
            header.append(f"Author: {who or 'not named'}" + (f", {when}" if when else ""))
    demographics(record, "C-CDA header/recordTarget", extra=extra + header)
    for section in root.iter(f"{H}section"):
        _section(record, section)
    return render(record)


def _section(record: Record, section: ET.Element) -> None:
    code = _attr(section.find(f"{H}code"), "code")
    title = _text(section.find(f"{H}title")) or code or "Section"
    target = SECTION_CODES.get(code, "")
    narrative = section.find(f"{H}text")
    table = narrative.find(f".//{H}table") if narrative is not None else None
    if table is not None:
        _table(record, target, title, table)
        return
    entries = section.findall(f"{H}entry")
    if entries and target:
        for index, entry in enumerate(entries, start=1):
            _entry(record, target, title, entry, index)
        return
    text = _text(narrative)
    empty = text.lower().startswith(("there are no", "no known", "none"))
    if text and (not target or not empty):
        record.add("Notes", f"{title}: {text}", f"C-CDA {title}")


def _table(record: Record, target: str, title: str, table: ET.Element) -> None:
    headers = [_text(th).lower() for th in table.iter(f"{H}th")]
    for index, row in enumerate(table.iter(f"{H}tr"), start=1):
        cells = row.findall(f"{H}td")
        if not cells:
            continue
        values = {
            headers[i] if i < len(headers) else f"col{i}": _text(c) for i, c in enumerate(cells)
        }
        row_id = next((c.get("ID") for c in cells if c.get("ID")), "") or f"row {index}"
        ref = f"C-CDA {title}/{row_id}"
        start, stop = day(values.get("start")), day(values.get("stop"))
        description = values.get("description") or values.get("name") or ""
        code = values.get("code", "")
        if " " in code:  # "http://snomed.info/sct 49727002"
            system, _, value = code.rpartition(" ")
            code = code_label(system, value)
        label = f"{description} ({code})" if code and description else description or code
        value = values.get("value", "")
        if not target:
            cells_text = ", ".join(f"{k}: {v}" for k, v in values.items() if v)
            record.add("Notes", f"{title}: {cells_text}", ref, sort=start)
            continue
        _fact(record, target, label, start, stop, value, ref)


def _fact(
    record: Record, target: str, label: str, start: str, stop: str, value: str, ref: str
) -> None:
    when = start or "date not recorded"
    if target == "Medications":
        kind = "Past medication" if stop else "Current medication"
        text = f"{kind}: {label}, prescribed {when}" + (f", until {stop}" if stop else "")
        section = f"{kind}s"
        record.add(section, text, ref, sort=start)
    elif target == "Problems":
        text = f"{label}, diagnosed {when}" + (f", resolved {stop}" if stop else ", active")
        record.add("Problems", text, ref, sort=start)
    elif target == "Allergies":
        text = f"Allergy: {label}, recorded {when}" + (f", ended {stop}" if stop else ", active")
        record.add("Allergies", text, ref, sort=start)
    elif target == "Results and vitals":
        shown = _measurement(value)
        record.add(target, f"{when}: {label}: {shown or 'no value'}", ref, sort=start)
        if shown and start:
            observe(record, key=label, date=start, text=f"{label}: {shown}, on {start}", ref=ref)
    else:
        text = f"{when}: {label}" + (f", until {stop}" if stop and stop != start else "")
        record.add(target, text, ref, sort=start)


def _measurement(value: str) -> str:
    """'41.81295141004882 Cel' as recorded; a bare number stays as it is."""
    parts = value.split(" ", 1)
    try:
        float(parts[0])
    except ValueError:
        return value
    return " ".join([number(parts[0]), *parts[1:]])


def _entry(record: Record, target: str, title: str, entry: ET.Element, index: int) -> None:
    """A coded entry (no narrative table): its first code and effective time."""
    coded = next((c for c in entry.iter(f"{H}code") if c.get("displayName")), None)
    material = next(
        (c for c in entry.iter(f"{H}code") if c.get("displayName") and c is not coded), None
    )
    if target in {"Medications", "Immunizations", "Allergies"} and material is not None:
        coded = material
    if coded is None:
        return
    label = coded.get("displayName", "")
    code_text = code_label(coded.get("codeSystem", ""), coded.get("code", ""))
    label = f"{label} ({code_text})" if code_text else label
    times = entry.find(f".//{H}effectiveTime")
    start = stop = ""
    if times is not None:
        low, high = times.find(f"{H}low"), times.find(f"{H}high")
        start = day((low if low is not None else times).get("value"))
        stop = day(high.get("value")) if high is not None else ""
    value = entry.find(f".//{H}value")
    shown = ""
    if value is not None and value.get("value"):
        shown = f"{number(value.get('value'))} {value.get('unit', '')}".strip()
    ref_id = entry.find(f".//{H}id")
    ref = f"C-CDA {title}/entry {index}" + (
        f" ({ref_id.get('root')})" if ref_id is not None and ref_id.get("root") else ""
    )
    _fact(record, target, label, start, stop, shown, ref)
