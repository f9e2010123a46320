"""Patient identity for clinical records: link each document to a Patient of its collection,
and find the patients a question names.

Linking (`patient_link`): a document's stated identity joins an existing patient of the same
collection that shares an identifier value (MRN, the source system's patient id: the same value
under different systems, as when C-CDA's OID root and FHIR's URI name one id), else one with the
same name and birth date; otherwise it makes a new patient. Later documents add identifiers.

Matching (`patients_named`): the patients of the allowed collections that the question names,
as people write names (ingest/patients.py).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .models import Document, Patient
from .patients import MIN_IDENTIFIER_LENGTH, NamedPatient, patients_matching

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.db.models import QuerySet

    from .parsers.base import ParsedDocument, PatientIdentity, SourceRef


def _words(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def name_key(given: str, family: str) -> str:
    """Lower-case words of the name ("O'Connell601" -> "o connell601"), matched as whole words."""
    return _words(f"{given} {family}")


def _birth(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def patient_link(*, document: Document, identity: PatientIdentity) -> Patient | None:
    """Attach `document` to its patient (found or created); None when the record names no one.
    Call inside the indexing transaction."""
    key = name_key(identity.given, identity.family)
    values = [
        i["value"] for i in identity.identifiers if len(i.get("value", "")) >= MIN_IDENTIFIER_LENGTH
    ]
    if not key and not values:
        return None
    birth = _birth(identity.birth_date)
    patients = Patient.objects.select_for_update().filter(collection_id=document.collection_id)
    patient = None
    for value in values:
        patient = patients.filter(identifiers__contains=[{"value": value}]).first()
        if patient is not None:
            break
    if patient is None and key and birth is not None:
        patient = patients.filter(name_key=key, birth_date=birth).first()
    if patient is None:
        patient = Patient.objects.create(
            collection_id=document.collection_id,
            given=identity.given,
            family=identity.family,
            name_key=key,
            birth_date=birth,
            gender=identity.gender,
            identifiers=list(identity.identifiers),
        )
    else:
        known = {(i.get("system"), i.get("value")) for i in patient.identifiers}
        added = [i for i in identity.identifiers if (i.get("system"), i.get("value")) not in known]
        changed = bool(added)
        patient.identifiers = [*patient.identifiers, *added]
        for field, found in (("gender", identity.gender), ("birth_date", birth)):
            if found and not getattr(patient, field):
                setattr(patient, field, found)
                changed = True
        if changed:
            patient.save(update_fields=["identifiers", "gender", "birth_date"])
    Document.objects.filter(pk=document.pk).update(patient=patient)
    document.patient = patient
    return patient


def chunk_sources(parsed: ParsedDocument, start: int, end: int) -> list[str]:
    """The distinct source references of the fact lines overlapping [start, end), in order."""
    seen: dict[str, None] = {}
    for ref in _overlapping(parsed.refs, start, end):
        seen.setdefault(ref.ref, None)
    return list(seen)


def _overlapping(refs: Sequence[SourceRef], start: int, end: int) -> list[SourceRef]:
    return [r for r in refs if r.start < end and r.end > start]


@dataclass(frozen=True)
class PatientMatch:
    patient_id: int
    name: str
    birth_date: str
    collection_id: int
    document_ids: tuple[int, ...]
    name_parts: tuple[str, str] = ("", "")  # (given, family)
    identifiers: tuple[str, ...] = ()  # the values of its identifiers (MRN, source ids)


def patients_named(*, question: str, collection_ids: Sequence[int]) -> list[PatientMatch]:
    """The patients of these collections that `question` names, as people write names (with or
    without the digits a source adds, possessives, accents, one-letter typos, a given or a
    family name alone, an identifier; see ingest/patients.py): all those matching at the
    strongest strength any of them reaches."""
    if not collection_ids:
        return []
    rows = Patient.objects.filter(collection_id__in=list(collection_ids)).values_list(
        "id", "given", "family", "identifiers"
    )
    candidates = [
        NamedPatient(
            patient_id=pk,
            given=given,
            family=family,
            identifiers=tuple(str(i.get("value", "")) for i in identifiers if isinstance(i, dict)),
        )
        for pk, given, family, identifiers in rows
    ]
    if not candidates:  # most collections hold no patient records: one cheap query
        return []
    found = patients_matching(question, candidates)
    return _matches(Patient.objects.filter(pk__in=[p.patient_id for p in found]))


def patients_by_id(ids: Sequence[int]) -> list[PatientMatch]:
    return _matches(Patient.objects.filter(pk__in=list(ids)))


def patients_born(day: str, *, collection_ids: Sequence[int]) -> list[PatientMatch]:
    born = _birth(day)
    if born is None:
        return []
    return _matches(Patient.objects.filter(collection_id__in=list(collection_ids), birth_date=born))


def _matches(patients: QuerySet[Patient]) -> list[PatientMatch]:
    rows = []
    for patient in patients.order_by("family", "given", "id").prefetch_related("documents")[:20]:
        rows.append(
            PatientMatch(
                patient_id=patient.id,
                name=patient.name,
                name_parts=(patient.given, patient.family),
                identifiers=tuple(
                    str(i.get("value", "")) for i in patient.identifiers if isinstance(i, dict)
                ),
                birth_date=patient.birth_date.isoformat() if patient.birth_date else "",
                collection_id=patient.collection_id,
                document_ids=tuple(
                    d.id for d in patient.documents.all() if d.status == Document.Status.READY
                ),
            )
        )
    return rows


def patient_collection(collection_ids: Sequence[int]) -> tuple[int, bool]:
    """(how many patients the collections hold, whether every ready document of theirs is a
    patient's record): a question about "her allergies" there can only be about a patient."""
    ids = list(collection_ids)
    count = Patient.objects.filter(collection_id__in=ids).count()
    if not count:
        return 0, False
    others = Document.objects.filter(
        collection_id__in=ids, status=Document.Status.READY, patient__isnull=True
    ).exists()
    return count, not others
