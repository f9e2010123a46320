"""Questions about a patient (issue 10): find the patient the question names, in SQL, and keep
retrieval to that patient's records; never mix two patients in one answer.

- One patient named: retrieval is restricted to that patient's documents (inside the SQL search).
- Several patients match: no retrieval and no model call; the answer is a question back listing
  them (name and birth date), so the user can say which one.
- No patient named: ordinary retrieval; if the passages found belong to several patients, only
  those of the best-ranked passage's patient are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingest.records import PatientMatch, patients_named
from ingest.selectors import ChunkHit

_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


@dataclass(frozen=True)
class PatientScope:
    patients: list[PatientMatch] = field(default_factory=list)

    @property
    def patient(self) -> PatientMatch | None:
        return self.patients[0] if len(self.patients) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.patients) > 1

    @property
    def document_ids(self) -> list[int] | None:
        """The documents to search (None: no restriction)."""
        return list(self.patient.document_ids) if self.patient is not None else None


def patient_scope(*, question: str, collection_ids: Sequence[int]) -> PatientScope:
    found = patients_named(question=question, collection_ids=collection_ids)
    if len(found) > 1:
        # "John Smith born 1980-02-03": a birth date in the question picks one of them.
        dates = set(_DATE.findall(question))
        dated = [p for p in found if p.birth_date and p.birth_date in dates]
        if len(dated) == 1:
            found = dated
    return PatientScope(patients=found)


def clarification_text(scope: PatientScope) -> str:
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
