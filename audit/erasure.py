"""Erasure and retention: changes that keep every hash, so the chain still verifies.

Retention and an entry about an erased document replace the payload with a tombstone; an entry
that only quotes an erased document loses exactly that document's text. `payload_hash` stays,
and verify counts the entry as redacted instead of recomputing its hash.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .append import audit_record, searchable_text
from .canonical import canonical_json
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
    """Erase a document's content from the trail; returns how many entries changed.

    An entry that names the document itself (its upload, re-ingestion) becomes a tombstone. An
    entry that quotes it (an answer's passages) keeps everything else: only the text of the
    passages from that document goes (each keeps its `text_sha256` and is marked `erased`),
    with any sentence of theirs the answer repeated. Every hash stays, so the chain verifies;
    verify counts changed entries as redacted. Entries already redacted for another document
    are redacted again for this one.

    The GIN index over `attest_audit_document_refs(payload)` (migration 0014) finds the
    candidates; the containment tests decide, so the index never changes which entries match.
    """
    named = _matching(document_id, {"document_id": document_id})
    quoting = _matching(document_id, {"passages": [{"document_id": document_id}]})
    changed = _redact(named, reason=reason)
    return changed + _redact_passages([i for i in quoting if i not in set(named)], document_id)


def _matching(document_id: int, shape: dict[str, Any]) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM assistant_auditevent"
            " WHERE attest_audit_document_refs(payload) @> ARRAY[%s::numeric]"
            " AND payload::jsonb @> %s::jsonb ORDER BY id",
            [document_id, json.dumps(shape)],
        )
        return [row[0] for row in cursor.fetchall()]


ERASED_TEXT = "[erased]"
_SENTENCE = re.compile(r"[^.!?\n]{20,}[.!?]?")


def _redact_passages(ids: list[int], document_id: int) -> int:
    """Remove the document's passage text (and the answer's repetitions of it) from entries."""
    changed = 0
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL attest.audit_redaction = 'on'")
        for event_id in ids:
            cursor.execute(
                "SELECT payload::text, summary FROM assistant_auditevent WHERE id = %s FOR UPDATE",
                [event_id],
            )
            text, summary = cursor.fetchone()
            payload = json.loads(text)
            if not _erase_quotes(payload, document_id):
                continue
            words = searchable_text(summary, payload)
            cursor.execute(
                "UPDATE assistant_auditevent SET payload = %s::json, search_text = %s,"
                " redacted = true, redacted_at = %s WHERE id = %s",
                [canonical_json(payload).decode(), words, now, event_id],
            )
            changed += cursor.rowcount
    return changed


def _erase_quotes(payload: dict[str, Any], document_id: int) -> bool:
    """Blank the passages of `document_id` in `payload` (and those of their sentences that the
    answer or the streamed text repeat); whether anything was left to erase."""
    removed: list[str] = []
    for passage in payload.get("passages") or []:
        if isinstance(passage, dict) and passage.get("document_id") == document_id:
            if passage.get("text"):
                removed.append(str(passage["text"]))
            passage["text"] = ""
            passage["erased"] = True
    if not removed:
        return False
    for key in ("answer", "streamed"):
        value = payload.get(key)
        if isinstance(value, str):
            payload[key] = erase_quoted(value, removed)
    return True


def erase_quoted(text: str, quoted: list[str]) -> str:
    """`text` with every sentence (20 characters or more) of `quoted` replaced by [erased]."""
    sentences = {m.group(0).strip() for source in quoted for m in _SENTENCE.finditer(source)}
    for sentence in sorted(sentences, key=len, reverse=True):
        text = text.replace(sentence, ERASED_TEXT)
    return text


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
