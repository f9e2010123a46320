"""FHIR JSON (R4 and STU3): a Bundle (transaction, batch, collection, searchset, document), a
single resource, or bulk-export NDJSON, rendered as readable sections (see clinical.py).

One document is about one patient: a file holding resources of several patients is refused with
a message saying so (split it per patient first), so no chunk can mix two patients.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
from collections.abc import Iterable
from typing import Any

from .base import ParsedDocument, ParseError, PatientIdentity
from .clinical import LOINC_ALIASES, Record, code_label, day, demographics, number, observe, render

FHIR_JSON = "application/fhir+json"
FHIR_NDJSON = "application/fhir+ndjson"
MAX_NOTE_BYTES = 1_000_000

_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
CLINICAL_TYPES = {
    "Patient",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationOrder",
    "AllergyIntolerance",
    "Observation",
    "Procedure",
    "Immunization",
    "Encounter",
    "CarePlan",
    "DiagnosticReport",
    "DocumentReference",
}


def sniff(data: bytes) -> str:
    """FHIR_JSON, FHIR_NDJSON or "" from the first bytes: JSON whose resourceType is a Bundle or
    a clinical resource, or lines of such JSON objects."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        return ""
    first_line = head.split(b"\n", 1)[0]
    match = _RESOURCE_TYPE.search(head)
    if match is None:
        return ""
    kind = match.group(1).decode()
    if kind != "Bundle" and kind not in CLINICAL_TYPES:
        return ""
    # NDJSON: the first line is a whole JSON object and another object follows it.
    if first_line.rstrip().endswith(b"}") and b"\n{" in data[: 1 << 20].replace(b"\r\n", b"\n"):
        try:
            json.loads(first_line)
            return FHIR_NDJSON
        except ValueError:
            pass
    return FHIR_JSON


def _load(data: bytes, mime: str) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError("The FHIR file is not UTF-8 text.") from exc
    resources: list[dict[str, Any]] = []
    if mime == FHIR_NDJSON:
        for number_, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ParseError(f"Line {number_} of the NDJSON file is not valid JSON.") from exc
            resources.extend(_flatten(item))
        return resources
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ParseError(f"The FHIR file is not valid JSON ({exc}).") from exc
    return list(_flatten(document))


def _flatten(item: Any) -> Iterable[dict[str, Any]]:
    if not isinstance(item, dict) or "resourceType" not in item:
        raise ParseError("The file holds JSON that is not a FHIR resource (no resourceType).")
    if item["resourceType"] == "Bundle":
        for entry in item.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                if entry.get("fullUrl"):
                    resource = {**resource, "_fullUrl": entry["fullUrl"]}
                yield from _flatten(resource)
    else:
        yield item


def _coding(concept: Any) -> tuple[str, str, str]:
    """(display text, system, code) of a CodeableConcept (the first coding with a code)."""
    if not isinstance(concept, dict):
        return "", "", ""
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    first = next((c for c in codings if c.get("code")), codings[0] if codings else {})
    text = concept.get("text") or first.get("display") or ""
    return str(text), str(first.get("system") or ""), str(first.get("code") or "")


def _label(concept: Any) -> str:
    text, system, code = _coding(concept)
    code_text = code_label(system, code)
    return f"{text} ({code_text})" if code_text and text else (text or code_text)


def _status(value: Any) -> str:
    """STU3 strings and R4 CodeableConcepts alike."""
    if isinstance(value, str):
        return value
    text, _, code = _coding(value)
    return code or text


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id') or resource.get('_fullUrl', '?')}"


def _subject(resource: dict[str, Any]) -> str:
    for key in ("subject", "patient"):
        value = resource.get(key)
        if isinstance(value, dict) and value.get("reference"):
            return str(value["reference"])
    return ""


def _quantity(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{number(q['value'])} {unit}".strip()


def _value(resource: dict[str, Any]) -> str:
    if "valueQuantity" in resource:
        return _quantity(resource["valueQuantity"])
    if "valueCodeableConcept" in resource:
        return _label(resource["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in resource:
            return str(resource[key])
    return ""


def _identity(patient: dict[str, Any]) -> PatientIdentity:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    # The first given name: "Nestor901 Jason347 Carroll471" is asked about as "Nestor901
    # Carroll471"; middle names stay in the rendering's Name line.
    givens = [str(g) for g in name.get("given") or []]
    given = givens[0] if givens else ""
    family = name.get("family") or ""
    if isinstance(family, list):  # DSTU2
        family = " ".join(family)
    identifiers = []
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        kind = _coding(ident.get("type"))
        identifiers.append(
            {
                "system": str(ident.get("system") or ""),
                "value": str(ident["value"]),
                "type": "MRN" if kind[2] == "MR" else (kind[0] or ""),
            }
        )
    return PatientIdentity(
        given=given or (name.get("text") or "" if not family else ""),
        family=str(family),
        birth_date=day(patient.get("birthDate")),
        gender=str(patient.get("gender") or ""),
        identifiers=identifiers,
    )


def _decode_attachment(attachment: dict[str, Any]) -> str:
    data = attachment.get("data")
    if not data:
        return ""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return ""
    content_type = str(attachment.get("contentType") or "text/plain")
    if not content_type.startswith("text/"):
        return ""
    if raw[:2] == b"\x1f\x8b":  # gzip, as FHIR-Converter embeds the original C-CDA
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as handle:
                raw = handle.read(MAX_NOTE_BYTES + 1)
        except (OSError, EOFError):
            return ""
    if len(raw) > MAX_NOTE_BYTES or b"\x00" in raw or raw.lstrip()[:1] == b"<":
        return ""  # binary, oversized, or a whole XML document (not a note)
    text = raw.decode("utf-8", errors="replace")
    if "html" in content_type:
        text = re.sub(r"<[^>]+>", " ", text)
    return text


def parse_fhir(data: bytes, mime: str = FHIR_JSON) -> ParsedDocument:
    resources = _load(data, mime)
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    distinct = {(_identity(p).name, _identity(p).birth_date) for p in patients}
    if len(distinct) > 1:
        raise ParseError(
            f"The file holds the records of {len(distinct)} patients; Attest keeps one patient "
            "per document so that no passage mixes two patients. Split it per patient "
            "(one bundle or NDJSON file per patient) and upload those."
        )
    subjects = {_subject(r) for r in resources if _subject(r)}
    patient_refs = {
        ref
        for p in patients
        for ref in (f"Patient/{p.get('id')}", p.get("_fullUrl"), f"urn:uuid:{p.get('id')}")
        if ref
    }
    strangers = {
        s for s in subjects if s not in patient_refs and s.startswith(("Patient/", "urn:"))
    }
    if patients and strangers:
        raise ParseError(
            "The file holds resources about another patient than its Patient resource; "
            "Attest keeps one patient per document. Split it per patient and upload those."
        )
    if not patients and len(subjects) > 1:
        raise ParseError(
            f"The file holds resources about {len(subjects)} different patients and no Patient "
            "resource; split it per patient and upload those."
        )
    if not any(r.get("resourceType") in CLINICAL_TYPES for r in resources):
        raise ParseError("The FHIR file holds no patient record resources.")
    identity = _identity(patients[0]) if patients else PatientIdentity()
    version = "FHIR NDJSON" if mime == FHIR_NDJSON else "FHIR JSON"
    record = Record(patient=identity, kind=version)
    by_url = {r["_fullUrl"]: r for r in resources if r.get("_fullUrl")}
    by_url.update({_ref(r): r for r in resources})
    if patients:
        extra = _patient_extra(patients[0])
        names = [n for n in patients[0].get("name") or [] if isinstance(n, dict)]
        if names and len(names[0].get("given") or []) > 1:
            full = " ".join([*map(str, names[0]["given"]), str(names[0].get("family") or "")])
            extra.insert(0, f"Full name: {full.strip()}")
        demographics(record, _ref(patients[0]), extra=extra)
    for resource in resources:
        handler = _HANDLERS.get(str(resource.get("resourceType")))
        if handler is not None:
            handler(record, resource, by_url)
    return render(record)


def _patient_extra(patient: dict[str, Any]) -> list[str]:
    lines = []
    for address in patient.get("address") or []:
        if isinstance(address, dict):
            parts = list(address.get("line") or []) + [
                address.get(k) for k in ("city", "state", "postalCode", "country")
            ]
            text = ", ".join(str(p) for p in parts if p)
            if text:
                lines.append(f"Address: {text}")
    for telecom in patient.get("telecom") or []:
        if isinstance(telecom, dict) and telecom.get("value"):
            lines.append(f"{str(telecom.get('system') or 'contact').title()}: {telecom['value']}")
    if patient.get("deceasedDateTime"):
        lines.append(f"Deceased: {day(patient['deceasedDateTime'])}")
    return lines


def _period(resource: dict[str, Any], *keys: str) -> tuple[str, str]:
    """(start, end) dates from the first of `keys` present (a dateTime or a Period)."""
    for key in keys:
        value = resource.get(key)
        if isinstance(value, dict):
            return day(value.get("start")), day(value.get("end"))
        if isinstance(value, str):
            return day(value), ""
    return "", ""


def _allergy(record: Record, r: dict[str, Any], _: dict) -> None:
    status = _status(r.get("clinicalStatus"))
    date, _end = _period(r, "onsetDateTime", "recordedDate", "assertedDate", "onsetPeriod")
    details = [f"recorded {date}" if date else "", status]
    if r.get("criticality"):
        details.append(f"criticality {r['criticality']}")
    categories = r.get("category") or []
    if categories:
        details.append("category " + ", ".join(str(c) for c in categories))
    for reaction in r.get("reaction") or []:
        for manifestation in reaction.get("manifestation") or []:
            details.append(f"reaction {_coding(manifestation)[0]}")
    text = f"Allergy: {_label(r.get('code'))}, " + ", ".join(d for d in details if d)
    record.add("Allergies", text, _ref(r), sort=date)


def _medication_name(r: dict[str, Any], by_url: dict) -> str:
    if r.get("medicationCodeableConcept"):
        return _label(r["medicationCodeableConcept"])
    reference = (r.get("medicationReference") or {}).get("reference", "")
    target = by_url.get(reference)
    if target is None and reference.startswith("#"):
        target = next((c for c in r.get("contained") or [] if f"#{c.get('id')}" == reference), None)
    if target is not None:
        return _label(target.get("code"))
    return str((r.get("medicationReference") or {}).get("display") or "unnamed medication")


def _medication(record: Record, r: dict[str, Any], by_url: dict) -> None:
    status = _status(r.get("status"))
    start, end = _period(r, "authoredOn", "effectivePeriod", "effectiveDateTime", "dateWritten")
    if not end:
        validity = (r.get("dispenseRequest") or {}).get("validityPeriod") or {}
        end = day(validity.get("end"))
    current = status in {"active", "on-hold", "intended"} and not (  # "current" means active
        end and r.get("resourceType") == "MedicationStatement"
    )
    verb = "taken from" if r.get("resourceType") == "MedicationStatement" else "prescribed"
    kind = "Current medication" if current else "Past medication"
    text = f"{kind}: {_medication_name(r, by_url)}, {verb} {start or 'date not recorded'}"
    if end:
        text += f", until {end}"
    text += f", status {status}" if status else ""
    for dosage in (r.get("dosageInstruction") or r.get("dosage") or [])[:1]:
        if isinstance(dosage, dict) and dosage.get("text"):
            text += f", {str(dosage['text']).rstrip('.')}"
    reasons = [_coding(c)[0] for c in r.get("reasonCode") or []]
    reasons += [x.get("display", "") for x in r.get("reasonReference") or [] if isinstance(x, dict)]
    if any(reasons):
        text += ", for " + ", ".join(x for x in reasons if x)
    section = "Current medications" if current else "Past medications"
    record.add(section, text, _ref(r), sort=start)


def _condition(record: Record, r: dict[str, Any], _: dict) -> None:
    start, _end = _period(r, "onsetDateTime", "onsetPeriod", "recordedDate", "assertedDate")
    end, _ = _period(r, "abatementDateTime", "abatementPeriod")
    status = _status(r.get("clinicalStatus"))
    text = f"{_label(r.get('code'))}, diagnosed {start or 'date not recorded'}"
    if end:
        text += f", resolved {end}"
    if status:
        text += f", {status}"
    record.add("Problems", text, _ref(r), sort=start)


def _observation(record: Record, r: dict[str, Any], by_url: dict) -> None:
    date, _ = _period(r, "effectiveDateTime", "effectivePeriod", "issued")
    name = _label(r.get("code"))
    alias = LOINC_ALIASES.get(_coding(r.get("code"))[2], "")
    if alias and alias.lower() not in name.lower():
        name += f" ({alias})"
    value = _value(r)
    components = []
    for component in r.get("component") or []:
        if isinstance(component, dict):
            components.append(f"{_coding(component.get('code'))[0]} {_value(component)}")
    if not value and components:
        systolic = _component(r, "8480-6")
        diastolic = _component(r, "8462-4")
        if systolic and diastolic:
            value = f"{systolic[0]}/{diastolic[0]} {systolic[1]}".strip()
    text = f"{date or 'date not recorded'}: {name}: {value or 'no value'}"
    if components:
        text += " (" + ", ".join(components) + ")"
    if r.get("interpretation"):
        text += f", interpretation {_label(r['interpretation'])}"
    record.add("Results and vitals", text, _ref(r), sort=date)
    if value and date:
        observe(
            record,
            key=_coding(r.get("code"))[2] or name,
            date=date,
            text=f"{name}: {value}, on {date}",
            ref=_ref(r),
        )


def _component(r: dict[str, Any], code: str) -> tuple[str, str] | None:
    for component in r.get("component") or []:
        if _coding(component.get("code"))[2] == code:
            q = component.get("valueQuantity") or {}
            if q.get("value") is not None:
                return number(q["value"]), str(q.get("unit") or q.get("code") or "")
    return None


def _procedure(record: Record, r: dict[str, Any], _: dict) -> None:
    start, _end = _period(r, "performedDateTime", "performedPeriod")
    text = f"{start or 'date not recorded'}: {_label(r.get('code'))}"
    status = _status(r.get("status"))
    if status:
        text += f", {status}"
    reasons = [x.get("display", "") for x in r.get("reasonReference") or [] if isinstance(x, dict)]
    reasons += [_coding(c)[0] for c in r.get("reasonCode") or []]
    if any(reasons):
        text += ", reason " + ", ".join(x for x in reasons if x)
    record.add("Procedures", text, _ref(r), sort=start)


def _immunization(record: Record, r: dict[str, Any], _: dict) -> None:
    date, _end = _period(r, "occurrenceDateTime", "date")
    text = f"{date or 'date not recorded'}: {_label(r.get('vaccineCode'))}"
    if r.get("notGiven") or _status(r.get("status")) == "not-done":
        text += ", not given"
    record.add("Immunizations", text, _ref(r), sort=date)


def _encounter(record: Record, r: dict[str, Any], _: dict) -> None:
    start, end = _period(r, "period")
    kinds = [_label(t) for t in r.get("type") or []]
    klass = r.get("class")
    klass_text = klass.get("code", "") if isinstance(klass, dict) else ""
    text = f"{start or 'date not recorded'}: {', '.join(k for k in kinds if k) or 'Encounter'}"
    if klass_text:
        text += f", {klass_text}"
    reasons = [_coding(c)[0] for c in r.get("reason") or r.get("reasonCode") or []]
    if any(reasons):
        text += ", reason " + ", ".join(x for x in reasons if x)
    if end and end != start:
        text += f", until {end}"
    record.add("Encounters", text, _ref(r), sort=start)


def _careplan(record: Record, r: dict[str, Any], _: dict) -> None:
    start, end = _period(r, "period")
    categories = [_label(c) for c in r.get("category") or [] if _coding(c)[0]]
    text = f"{start or 'date not recorded'}: Care plan {', '.join(categories) or ''}".rstrip()
    status = _status(r.get("status"))
    if status:
        text += f", {status}"
    if end:
        text += f", until {end}"
    activities = [
        _coding((a.get("detail") or {}).get("code"))[0]
        for a in r.get("activity") or []
        if isinstance(a, dict)
    ]
    if any(activities):
        text += ", activities: " + ", ".join(a for a in activities if a)
    record.add("Care plans", text, _ref(r), sort=start)


def _report(record: Record, r: dict[str, Any], _: dict) -> None:
    date, _end = _period(r, "effectiveDateTime", "effectivePeriod", "issued")
    notes = [_decode_attachment(a) for a in r.get("presentedForm") or [] if isinstance(a, dict)]
    notes = [n for n in notes if n.strip()]
    if notes:
        for note in notes:
            _note(record, f"{date}: {_coding(r.get('code'))[0] or 'Report'}", note, _ref(r), date)
        return
    results = [x.get("display", "") for x in r.get("result") or [] if isinstance(x, dict)]
    text = f"{date or 'date not recorded'}: Report {_label(r.get('code'))}"
    if r.get("conclusion"):
        text += f", conclusion {r['conclusion']}"
    if any(results):
        text += ", results: " + ", ".join(x for x in results if x)
    record.add("Results and vitals", text, _ref(r), sort=date)


def _document(record: Record, r: dict[str, Any], _: dict) -> None:
    start, _end = _period(r.get("context") or {}, "period")
    date = day(r.get("date")) or start
    title = _coding(r.get("type"))[0] or r.get("description") or "Clinical note"
    for content in r.get("content") or []:
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if isinstance(attachment, dict):
            note = _decode_attachment(attachment)
            if note.strip():
                _note(record, f"{date or 'date not recorded'}: {title}", note, _ref(r), date)


def _note(record: Record, title: str, note: str, ref: str, date: str) -> None:
    """A decoded note: its title line, then each non-empty line of it, all from `ref`."""
    lines = [line.strip().lstrip("#").strip() for line in note.splitlines()]
    body = " ".join(line for line in lines if line)
    # Synthea puts the same note in a DiagnosticReport and a DocumentReference: keep one.
    if any(body in fact.text for fact in record.facts.get("Notes", [])):
        return
    record.add("Notes", f"Note of {title}. {body}", ref, sort=date)


_HANDLERS = {
    "AllergyIntolerance": _allergy,
    "MedicationRequest": _medication,
    "MedicationStatement": _medication,
    "MedicationOrder": _medication,
    "Condition": _condition,
    "Observation": _observation,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "Encounter": _encounter,
    "CarePlan": _careplan,
    "DiagnosticReport": _report,
    "DocumentReference": _document,
}
