"""Patient identity for clinical records: link each document to a Patient of its collection,
and find the patients a question names.

Linking (`patient_link`): a document's stated identity joins an existing patient of the same
collection that shares an identifier value (MRN, the source system's patient id: the same value
under different systems, as when C-CDA's OID root and FHIR's URI name one id), else one with the
same name and birth date; otherwise it makes a new patient. Later documents add identifiers.

Matching (`patients_named`): in SQL, within the allowed collections: a patient's full name
("given family", case-insensitive) contained in the question, or one of its identifier values
appearing as a word of the question; failing both, a capitalised word of the question equal to
a given or family name.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Concat, Lower

from .models import Document, Patient

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .parsers.base import ParsedDocument, PatientIdentity, SourceRef

MIN_IDENTIFIER_LENGTH = 5  # shorter values ("1", "A") would match words by accident


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
    values = [i["value"] for i in identity.identifiers if len(i.get("value", "")) >= 5]
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


_WORD = re.compile(r"[\w'.-]+")


def patients_named(*, question: str, collection_ids: Sequence[int]) -> list[PatientMatch]:
    """The patients of these collections that `question` names (see the module docstring)."""
    if not collection_ids:
        return []
    base = Patient.objects.filter(collection_id__in=list(collection_ids))
    if not base.exists():  # most collections hold no patient records: one cheap query
        return []
    text = f" {_words(question)} "
    words = {w.strip(".'") for w in _WORD.findall(question)}
    words = {w for w in words if w}
    by_name = (
        base.exclude(name_key="")
        .annotate(q=Value(text), key=Concat(Value(" "), F("name_key"), Value(" ")))
        .filter(q__contains=F("key"))
    )
    by_identifier = Q()
    for word in words:
        if len(word) >= MIN_IDENTIFIER_LENGTH and any(c.isdigit() for c in word):
            by_identifier |= Q(identifiers__contains=[{"value": word}])
    named = Q(pk__in=by_name.values("pk"))
    found = base.filter(named | by_identifier if by_identifier else named)
    if not found.exists():
        capitalised = {w.lower() for w in words if w[:1].isupper() and len(w) >= 3}
        if capitalised:
            found = base.annotate(g=Lower("given"), f=Lower("family")).filter(
                Q(g__in=capitalised) | Q(f__in=capitalised)
            )
    return _matches(found)


def _matches(patients: QuerySet[Patient]) -> list[PatientMatch]:
    rows = []
    for patient in patients.order_by("family", "given", "id").prefetch_related("documents")[:20]:
        rows.append(
            PatientMatch(
                patient_id=patient.id,
                name=patient.name,
                birth_date=patient.birth_date.isoformat() if patient.birth_date else "",
                collection_id=patient.collection_id,
                document_ids=tuple(
                    d.id for d in patient.documents.all() if d.status == Document.Status.READY
                ),
            )
        )
    return rows
