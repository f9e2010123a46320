"""FHIR resources as the lines of a patient's record: one handler per resource type
(HANDLERS), and the small readers of codes, quantities, values and periods they share."""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import re
from typing import Any

from .clinical import LOINC_ALIASES, Record, code_label, day, number, observe

MAX_NOTE_BYTES = 1_000_000


def coding(concept: Any) -> tuple[str, str, str]:
    """(display text, system, code) of a CodeableConcept (the first coding with a code)."""
    if not isinstance(concept, dict):
        return "", "", ""
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    first = next((c for c in codings if c.get("code")), codings[0] if codings else {})
    text = concept.get("text") or first.get("display") or ""
    return str(text), str(first.get("system") or ""), str(first.get("code") or "")


def _label(concept: Any) -> str:
    text, system, code = coding(concept)
    code_text = code_label(system, code)
    return f"{text} ({code_text})" if code_text and text else (text or code_text)


def _status(value: Any) -> str:
    """STU3 strings and R4 CodeableConcepts alike."""
    if isinstance(value, str):
        return value
    text, _, code = coding(value)
    return code or text


def resource_ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id') or resource.get('_fullUrl', '?')}"


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
            details.append(f"reaction {coding(manifestation)[0]}")
    text = f"Allergy: {_label(r.get('code'))}, " + ", ".join(d for d in details if d)
    record.add("Allergies", text, resource_ref(r), sort=date)


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
    reasons = [coding(c)[0] for c in r.get("reasonCode") or []]
    reasons += [x.get("display", "") for x in r.get("reasonReference") or [] if isinstance(x, dict)]
    if any(reasons):
        text += ", for " + ", ".join(x for x in reasons if x)
    section = "Current medications" if current else "Past medications"
    record.add(section, text, resource_ref(r), sort=start)


def _condition(record: Record, r: dict[str, Any], _: dict) -> None:
    start, _end = _period(r, "onsetDateTime", "onsetPeriod", "recordedDate", "assertedDate")
    end = _period(r, "abatementDateTime", "abatementPeriod")[0]
    status = _status(r.get("clinicalStatus"))
    text = f"{_label(r.get('code'))}, diagnosed {start or 'date not recorded'}"
    if end:
        text += f", resolved {end}"
    if status:
        text += f", {status}"
    record.add("Problems", text, resource_ref(r), sort=start)


def _observation(record: Record, r: dict[str, Any], by_url: dict) -> None:
    date, _ = _period(r, "effectiveDateTime", "effectivePeriod", "issued")
    name = _label(r.get("code"))
    alias = LOINC_ALIASES.get(coding(r.get("code"))[2], "")
    if alias and alias.lower() not in name.lower():
        name += f" ({alias})"
    value = _value(r)
    components = []
    for component in r.get("component") or []:
        if isinstance(component, dict):
            components.append(f"{coding(component.get('code'))[0]} {_value(component)}")
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
    record.add("Results and vitals", text, resource_ref(r), sort=date)
    if value and date:
        observe(
            record,
            key=coding(r.get("code"))[2] or name,
            date=date,
            text=f"{name}: {value}, on {date}",
            ref=resource_ref(r),
        )


def _component(r: dict[str, Any], code: str) -> tuple[str, str] | None:
    for component in r.get("component") or []:
        if coding(component.get("code"))[2] == code:
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
    reasons += [coding(c)[0] for c in r.get("reasonCode") or []]
    if any(reasons):
        text += ", reason " + ", ".join(x for x in reasons if x)
    record.add("Procedures", text, resource_ref(r), sort=start)


def _immunization(record: Record, r: dict[str, Any], _: dict) -> None:
    date, _end = _period(r, "occurrenceDateTime", "date")
    text = f"{date or 'date not recorded'}: {_label(r.get('vaccineCode'))}"
    if r.get("notGiven") or _status(r.get("status")) == "not-done":
        text += ", not given"
    record.add("Immunizations", text, resource_ref(r), sort=date)


def _encounter(record: Record, r: dict[str, Any], _: dict) -> None:
    start, end = _period(r, "period")
    kinds = [_label(t) for t in r.get("type") or []]
    klass = r.get("class")
    klass_text = klass.get("code", "") if isinstance(klass, dict) else ""
    text = f"{start or 'date not recorded'}: {', '.join(k for k in kinds if k) or 'Encounter'}"
    if klass_text:
        text += f", {klass_text}"
    reasons = [coding(c)[0] for c in r.get("reason") or r.get("reasonCode") or []]
    if any(reasons):
        text += ", reason " + ", ".join(x for x in reasons if x)
    if end and end != start:
        text += f", until {end}"
    record.add("Encounters", text, resource_ref(r), sort=start)


def _careplan(record: Record, r: dict[str, Any], _: dict) -> None:
    start, end = _period(r, "period")
    categories = [_label(c) for c in r.get("category") or [] if coding(c)[0]]
    text = f"{start or 'date not recorded'}: Care plan {', '.join(categories) or ''}".rstrip()
    status = _status(r.get("status"))
    if status:
        text += f", {status}"
    if end:
        text += f", until {end}"
    activities = [
        coding((a.get("detail") or {}).get("code"))[0]
        for a in r.get("activity") or []
        if isinstance(a, dict)
    ]
    if any(activities):
        text += ", activities: " + ", ".join(a for a in activities if a)
    record.add("Care plans", text, resource_ref(r), sort=start)


def _report(record: Record, r: dict[str, Any], _: dict) -> None:
    date, _end = _period(r, "effectiveDateTime", "effectivePeriod", "issued")
    notes = [_decode_attachment(a) for a in r.get("presentedForm") or [] if isinstance(a, dict)]
    notes = [n for n in notes if n.strip()]
    if notes:
        for note in notes:
            _note(
                record,
                f"{date}: {coding(r.get('code'))[0] or 'Report'}",
                note,
                resource_ref(r),
                date,
            )
        return
    results = [x.get("display", "") for x in r.get("result") or [] if isinstance(x, dict)]
    text = f"{date or 'date not recorded'}: Report {_label(r.get('code'))}"
    if r.get("conclusion"):
        text += f", conclusion {r['conclusion']}"
    if any(results):
        text += ", results: " + ", ".join(x for x in results if x)
    record.add("Results and vitals", text, resource_ref(r), sort=date)


def _document(record: Record, r: dict[str, Any], _: dict) -> None:
    start, _end = _period(r.get("context") or {}, "period")
    date = day(r.get("date")) or start
    title = coding(r.get("type"))[0] or r.get("description") or "Clinical note"
    for content in r.get("content") or []:
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if isinstance(attachment, dict):
            note = _decode_attachment(attachment)
            if note.strip():
                _note(
                    record, f"{date or 'date not recorded'}: {title}", note, resource_ref(r), date
                )


def _note(record: Record, title: str, note: str, ref: str, date: str) -> None:
    """A decoded note: its title line, then each non-empty line of it, all from `ref`."""
    lines = [line.strip().lstrip("#").strip() for line in note.splitlines()]
    body = " ".join(line for line in lines if line)
    # Synthea puts the same note in a DiagnosticReport and a DocumentReference: keep one.
    if any(body in fact.text for fact in record.facts.get("Notes", [])):
        return
    record.add("Notes", f"Note of {title}. {body}", ref, sort=date)


HANDLERS = {
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
