"""Reads for the compliance workspace: filtered audit queries, exports, dashboard series.

Queries are keyset-paginated on the primary key and every filter has an index (actor,
collection, event type, flagged, full-text GIN), so listing stays fast at millions of entries.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date

from ingest.models import Collection, Patient
from ingest.records import PatientMatch, patients_born, patients_by_id, patients_named
from ingest.redaction import identifier_in

from .models import AuditEvent

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from django.db.models import QuerySet

ANSWER_TYPES = (AuditEvent.Type.QUESTION_ANSWERED, AuditEvent.Type.QUESTION_REFUSED)
_PATIENT_NUMBER = re.compile(r"#?\d{1,9}")  # a patient's number, as entries list it
EXPORT_FIELDS = [
    "id",
    "created_at",
    "event_type",
    "actor",
    "ip_address",
    "user_agent",
    "collection_id",
    "flagged",
    "summary",
    "redacted",
    "payload_hash",
    "prev_hash",
    "entry_hash",
    "payload",
]


@dataclass(frozen=True)
class AuditFilter:
    user: str = ""
    collection: str = ""
    since: date | None = None
    until: date | None = None
    event_type: str = ""
    q: str = ""
    flagged: bool = False
    # Who looked at this patient: a patient id, a name (as people write it), an MRN or a birth
    # date (YYYY-MM-DD); see patient_lookup.
    patient: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AuditFilter:
        # PostgreSQL text cannot hold NUL characters: drop them from every parameter.
        params = {k: str(params.get(k) or "").replace("\x00", "") for k in params}

        def day(name: str) -> date | None:
            try:
                return parse_date(params.get(name) or "")
            except ValueError:
                return None

        return cls(
            user=(params.get("user") or "").strip()[:150],
            collection=(params.get("collection") or "").strip()[:100],
            since=day("since"),
            until=day("until"),
            event_type=(params.get("type") or "").strip()[:50],
            q=(params.get("q") or "").strip()[:200],
            flagged=(params.get("flagged") or "") in {"1", "on", "true"},
            patient=(params.get("patient") or "").strip()[:200],
        )

    def as_params(self) -> dict[str, str]:
        values = {
            "user": self.user,
            "collection": self.collection,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "type": self.event_type,
            "q": self.q,
            "flagged": "1" if self.flagged else "",
            "patient": self.patient,
        }
        return {k: v for k, v in values.items() if v}

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def audit_query(*, filters: AuditFilter) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if filters.user:
        qs = qs.filter(actor_username=filters.user)
    if filters.collection:
        ids = list(Collection.objects.filter(slug=filters.collection).values_list("id", flat=True))
        if not ids and filters.collection.isdigit():
            ids = [int(filters.collection)]  # a deleted collection, by id
        qs = qs.filter(collection_id__in=ids)
    if filters.since:
        qs = qs.filter(created_at__gte=_day_start(filters.since))
    if filters.until:
        qs = qs.filter(created_at__lt=_day_start(filters.until + timedelta(days=1)))
    if filters.event_type:
        qs = qs.filter(event_type=filters.event_type)
    if filters.flagged:
        qs = qs.filter(flagged=True)
    if filters.patient:
        ids = [p.patient_id for p in patient_lookup(filters.patient)]
        # Answers whose passages came from the patient's records, and the questions that named
        # the patient: an ask-back between two patients is listed under each.
        qs = (
            qs.filter(
                Q(payload__patient_ids__contains=ids[:1])
                | Q(payload__patients_named__contains=ids[:1])
            )
            if len(ids) == 1
            else qs.filter(_mentions_any(ids))
        )
    if filters.q:
        qs = qs.extra(
            where=["search_vector @@ websearch_to_tsquery('english', %s)"], params=[filters.q]
        )
    return qs.order_by("-id")


def filter_refusal(filters: AuditFilter) -> dict[str, str]:
    """For a reviewer without view_identifiers: the filters refused ({parameter: why}), since
    the count of entries a search matches tells whether an identifier appears in the trail. The
    text filter is refused when it looks like an identifier (ingest.redaction.identifier_in),
    whether or not it matches anything; the patient filter takes only a patient's number."""
    refused = {}
    found = identifier_in(filters.q) if filters.q else ""
    if found:
        refused["q"] = (
            f"The text filter looks like an identifier ({found}) and was not searched: without "
            "the permission to see identifiers, a search cannot tell whether one appears in the "
            "trail. Search for other words, or ask a reviewer who may see identifiers."
        )
    if filters.patient and not _PATIENT_NUMBER.fullmatch(filters.patient.strip()):
        refused["patient"] = (
            "The patient filter looks like an identifier (a name, MRN or birth date) and was "
            "not searched: without the permission to see identifiers, find a patient by number "
            "(#12, as entries list them), or ask a reviewer who may see identifiers."
        )
    return refused


def _mentions_any(ids: list[int]) -> Q:
    found = Q(pk__in=[])  # no patient matches: no entry, never the whole trail
    for patient_id in ids:
        found |= Q(payload__patient_ids__contains=[patient_id])
        found |= Q(payload__patients_named__contains=[patient_id])
    return found


def patient_lookup(text: str) -> list[PatientMatch]:
    """The patients a reviewer's search names: a patient id ("#12" or "12"), a birth date
    (YYYY-MM-DD), or a name or MRN as people write them (ingest/patients.py), across every
    collection."""
    text = text.strip()
    collections = list(Collection.objects.values_list("id", flat=True))
    if _PATIENT_NUMBER.fullmatch(text):
        return patients_by_id([int(text.lstrip("#"))])
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return patients_born(text, collection_ids=collections)
    return patients_named(question=text, collection_ids=collections)


def patient_suggestions(limit: int = 1000) -> list[str]:
    """What the patient filter offers as one types: "Given Family (born YYYY-MM-DD)"."""
    rows = Patient.objects.order_by("family", "given", "id").values_list(
        "given", "family", "birth_date"
    )[:limit]
    return [
        f"{given} {family} (born {born.isoformat()})" if born else f"{given} {family}"
        for given, family, born in rows
    ]


def audit_page(
    *, filters: AuditFilter, before_id: int | None, size: int
) -> tuple[list[AuditEvent], int | None]:
    """One page, newest first, starting below `before_id`; and the id to continue from."""
    qs = audit_query(filters=filters).defer("payload", "search_text")
    if before_id:
        qs = qs.filter(id__lt=before_id)
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].id if more and rows else None)


def event_row(event: AuditEvent, *, with_payload: bool = True) -> dict[str, Any]:
    row = {
        "id": event.id,
        "created_at": event.created_at.isoformat(),
        "event_type": event.event_type,
        "actor": event.actor_username,
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "collection_id": event.collection_id,
        "flagged": event.flagged,
        "summary": event.summary,
        "redacted": event.redacted,
        "payload_hash": event.payload_hash,
        "prev_hash": event.prev_hash,
        "entry_hash": event.entry_hash,
    }
    if with_payload:
        row["payload"] = event.payload
    return row


def export_lines(*, filters: AuditFilter, fmt: str, redact: bool = False) -> Iterator[str]:
    """The filtered entries, oldest first, as CSV (payload as JSON in one column) or JSONL.

    With `redact`, identifiers in the summary and payload are replaced (see redaction.py):
    such rows no longer match their payload_hash, and say so in `identifiers_redacted`."""
    from ingest.redaction import redact_row

    qs = audit_query(filters=filters).order_by("id")
    fields = EXPORT_FIELDS + (["identifiers_redacted"] if redact else [])

    def export_row(event: AuditEvent) -> dict[str, Any]:
        row = event_row(event)
        return redact_row(row) if redact else row

    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        yield buffer.getvalue()
        for event in qs.iterator(chunk_size=2000):
            buffer.seek(0)
            buffer.truncate()
            row = export_row(event)
            row["payload"] = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True)
            writer.writerow(row)
            yield buffer.getvalue()
    elif fmt == "jsonl":
        for event in qs.iterator(chunk_size=2000):
            yield json.dumps(export_row(event), ensure_ascii=False, sort_keys=True) + "\n"
    else:
        raise ValueError(f"unknown export format {fmt!r}")


@dataclass(frozen=True)
class DayFigures:
    day: date
    questions: int
    refusals: int
    unsupported: int
    failed_logins: int

    @property
    def unsupported_rate(self) -> float:
        return self.unsupported / self.questions if self.questions else 0.0


def dashboard_series(*, days: int = 30) -> list[DayFigures]:
    """Per-day counts over the last `days` days (UTC), zero-filled."""
    start = timezone.now().date() - timedelta(days=days - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                   count(*) FILTER (WHERE event_type IN (%s, %s)),
                   count(*) FILTER (WHERE event_type = %s),
                   count(*) FILTER (WHERE event_type IN (%s, %s)
                                    AND json_array_length(
                                        COALESCE(payload->'unsupported_sentences', '[]'::json)
                                    ) > 0),
                   count(*) FILTER (WHERE event_type = %s)
            FROM assistant_auditevent
            WHERE created_at >= %s
            GROUP BY day
            """,
            [
                *ANSWER_TYPES,
                AuditEvent.Type.QUESTION_REFUSED,
                *ANSWER_TYPES,
                AuditEvent.Type.LOGIN_FAILED,
                _day_start(start),
            ],
        )
        found = {row[0]: row[1:] for row in cursor.fetchall()}
    series = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        q, r, u, f = found.get(day, (0, 0, 0, 0))
        series.append(DayFigures(day, q, r, u, f))
    return series


def bar_chart(values: list[float], *, height: int = 80, bar: int = 12, gap: int = 3) -> dict:
    """Geometry for a server-rendered SVG bar chart (no JavaScript, no external assets)."""
    top = max(values) if values and max(values) > 0 else 1
    bars = []
    for i, value in enumerate(values):
        h = round(height * value / top) if value else 0
        bars.append({"x": i * (bar + gap), "y": height - h, "h": h, "w": bar, "value": value})
    return {"width": len(values) * (bar + gap), "height": height, "bars": bars, "max": top}
