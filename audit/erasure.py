"""Erasure and retention: tombstones that keep every hash, so the chain still verifies.

An erased entry's payload becomes a tombstone; `payload_hash` stays, and verify counts the
entry as redacted instead of recomputing its hash.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .append import audit_record
from .models import AuditEvent

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

TOMBSTONE_SUMMARY = "[redacted]"


def _redact(events: Iterable[int], *, reason: str) -> int:
    """Replace payloads with tombstones, keeping every hash (the trigger checks that)."""
    ids = list(events)
    if not ids:
        return 0
    now = timezone.now()
    tombstone = json.dumps({"tombstone": True, "reason": reason, "redacted_at": now.isoformat()})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL attest.audit_redaction = 'on'")
        cursor.execute(
            "UPDATE assistant_auditevent SET payload = %s::json, summary = %s, "
            "search_text = '', redacted = true, redacted_at = %s "
            "WHERE id = ANY(%s) AND NOT redacted",
            [tombstone, TOMBSTONE_SUMMARY, now, ids],
        )
        return cursor.rowcount


def audit_redact_document(*, document_id: int, reason: str) -> int:
    """Tombstone every entry whose payload quotes or names the document.

    The GIN index over `attest_audit_document_refs(payload)` (migration 0014) finds the
    candidates; the containment tests decide, so the index never changes which entries match.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM assistant_auditevent WHERE NOT redacted"
            " AND attest_audit_document_refs(payload) @> ARRAY[%s::numeric]"
            " AND (payload::jsonb @> %s::jsonb OR payload::jsonb @> %s::jsonb)",
            [
                document_id,
                json.dumps({"document_id": document_id}),
                json.dumps({"passages": [{"document_id": document_id}]}),
            ],
        )
        ids = [r[0] for r in cursor.fetchall()]
    return _redact(ids, reason=reason)


def audit_purge_expired(
    *, actor: AbstractBaseUser | AnonymousUser | None = None, now: datetime | None = None
) -> int:
    """Tombstone entries older than AUDIT_RETENTION_DAYS, except collections on legal hold."""
    days = settings.AUDIT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    from ingest.models import Collection

    held = list(Collection.objects.filter(legal_hold=True).values_list("id", flat=True))
    ids = list(
        AuditEvent.objects.filter(created_at__lt=cutoff, redacted=False)
        .exclude(collection_id__in=held)
        # The record of erasures and purges themselves is kept.
        .exclude(event_type__in=[AuditEvent.Type.DOCUMENT_ERASED, AuditEvent.Type.AUDIT_PURGED])
        .values_list("id", flat=True)
    )
    with transaction.atomic():
        count = _redact(ids, reason=f"retention period of {days} days passed")
        audit_record(
            event_type=AuditEvent.Type.AUDIT_PURGED,
            actor=actor,
            actor_username="" if actor else "system",
            payload={"redacted": count, "older_than": cutoff.isoformat(), "retention_days": days},
            summary=f"{count} entries past retention redacted",
        )
    return count
