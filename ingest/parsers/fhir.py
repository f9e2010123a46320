"""FHIR JSON (R4 and STU3): a Bundle (transaction, batch, collection, searchset, document), a
single resource, or bulk-export NDJSON, rendered as readable sections (see clinical.py).

One document is about one patient: a file holding resources of several patients is refused with
a message saying so (split it per patient first), so no chunk can mix two patients.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .base import ParsedDocument, ParseError, PatientIdentity
from .clinical import Record, day, demographics, render
from .fhir_resources import HANDLERS, coding, resource_ref

if TYPE_CHECKING:
    from collections.abc import Iterable

FHIR_JSON = "application/fhir+json"

FHIR_NDJSON = "application/fhir+ndjson"


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


def _subject(resource: dict[str, Any]) -> str:
    for key in ("subject", "patient"):
        value = resource.get(key)
        if isinstance(value, dict) and value.get("reference"):
            return str(value["reference"])
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
        kind = coding(ident.get("type"))
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
    by_url.update({resource_ref(r): r for r in resources})
    if patients:
        extra = _patient_extra(patients[0])
        names = [n for n in patients[0].get("name") or [] if isinstance(n, dict)]
        if names and len(names[0].get("given") or []) > 1:
            full = " ".join([*map(str, names[0]["given"]), str(names[0].get("family") or "")])
            extra.insert(0, f"Full name: {full.strip()}")
        demographics(record, resource_ref(patients[0]), extra=extra)
    for resource in resources:
        handler = HANDLERS.get(str(resource.get("resourceType")))
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
