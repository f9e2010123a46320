"""The exact bytes an audit entry's payload hash is taken over.

Kept free of Django so that verify's worker processes (`audit.workers`) can build
them without setting Django up.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .models import AuditEvent

_sha256 = hashlib.sha256
# The document's scalar fields, in sorted order already: no OPT_SORT_KEYS needed.
_dumps = orjson.dumps


def canonical_json(document: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys (orjson: about 4x faster than json, which is what
    makes verifying a million entries take seconds rather than a minute)."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS, default=str)


def canonical_document(
    *,
    event_type: str,
    created_at: datetime,
    actor_id: int | None,
    actor_username: str,
    ip_address: str | None,
    user_agent: str,
    collection_id: int | None,
    flagged: bool,
    summary: str,
    payload: Any,
) -> bytes:
    return canonical_json(
        {
            "event_type": event_type,
            "created_at": created_at.astimezone(UTC).isoformat(),
            "actor_id": actor_id,
            "actor": actor_username,
            "ip_address": ip_address,
            "user_agent": user_agent,
            "collection_id": collection_id,
            "flagged": flagged,
            "summary": summary,
            "payload": payload,
        }
    )


def stored_payload_hash(
    event_type: str,
    created_at: datetime,
    actor_id: int | None,
    actor_username: str,
    ip_address: str | None,
    user_agent: str,
    collection_id: int | None,
    flagged: bool,
    summary: str,
    payload_json: str | bytes,
) -> str:
    """The payload hash recomputed from a stored row's columns, parsing the payload's JSON
    text and dumping it canonically: right whatever format the text is in."""
    document = canonical_document(
        event_type=event_type,
        created_at=created_at,
        actor_id=actor_id,
        actor_username=actor_username,
        ip_address=ip_address,
        user_agent=user_agent,
        collection_id=collection_id,
        flagged=flagged,
        summary=summary,
        payload=orjson.loads(payload_json),
    )
    return hashlib.sha256(document).hexdigest()


def spliced_document(
    event_type: str,
    created_at: datetime,
    actor_id: int | None,
    actor_username: str,
    ip_address: str | None,
    user_agent: str,
    collection_id: int | None,
    flagged: bool,
    summary: str,
    payload_json: bytes,
) -> bytes:
    """canonical_document's bytes built around the payload's stored text, without parsing it.

    The document's keys sort as actor, actor_id, collection_id, created_at, event_type,
    flagged, ip_address, payload, summary, user_agent, so it is the dump of the fields before
    `payload`, the payload's text, and the dump of the fields after it. The result equals
    canonical_document's exactly when the stored text is the canonical dump of the payload
    (what audit_record stores since migration 0012)."""
    head = _dumps(
        {
            "actor": actor_username,
            "actor_id": actor_id,
            "collection_id": collection_id,
            # orjson writes an aware datetime as isoformat() does (a test checks the edge
            # cases), in a sixth of the time.
            "created_at": created_at.astimezone(UTC),
            "event_type": event_type,
            "flagged": flagged,
            "ip_address": ip_address,
        }
    )
    tail = _dumps({"summary": summary, "user_agent": user_agent})
    return b"".join((head[:-1], b',"payload":', payload_json, b",", tail[1:]))


def content_matches(
    event_type: str,
    created_at: datetime,
    actor_id: int | None,
    actor_username: str,
    ip_address: str | None,
    user_agent: str,
    collection_id: int | None,
    flagged: bool,
    summary: str,
    payload_json: bytes,
    payload_hash: str,
) -> bool:
    """Whether a stored row's columns (payload as its JSON text, UTF-8) hash to its
    `payload_hash`, positional for verify's hot loop.

    First the hash of spliced_document, which parses nothing. A match is proof enough: the
    bytes hashed are the canonical document audit_record hashed (barring a SHA-256
    collision), and since the stored text is valid JSON (the `json` type checks its input)
    and the other fields are dumped by orjson, JSON's grammar fixes where the payload's text
    lies in those bytes, so every field and the payload text itself are what was hashed.
    Otherwise the payload is parsed and dumped canonically (stored_payload_hash): text that is
    not canonical but equal in value (entries written before migration 0012 that it could not
    rewrite) still verifies, and only a real alteration fails both."""
    document = spliced_document(
        event_type,
        created_at,
        actor_id,
        actor_username,
        ip_address,
        user_agent,
        collection_id,
        flagged,
        summary,
        payload_json,
    )
    if _sha256(document).hexdigest() == payload_hash:
        return True
    try:
        recomputed = stored_payload_hash(
            event_type,
            created_at,
            actor_id,
            actor_username,
            ip_address,
            user_agent,
            collection_id,
            flagged,
            summary,
            payload_json,
        )
    except orjson.JSONDecodeError:
        # Valid JSON orjson cannot read (integers beyond 64 bits), which audit_record cannot
        # have written: the entry is named rather than verify failing.
        return False
    return recomputed == payload_hash


GENESIS_HASH = "0" * 64


def canonical_document_of(event: AuditEvent) -> bytes:
    """The exact bytes an entry's payload hash is taken over."""
    return canonical_document(
        event_type=event.event_type,
        created_at=event.created_at,
        actor_id=event.actor_id,
        actor_username=event.actor_username,
        ip_address=event.ip_address,
        user_agent=event.user_agent,
        collection_id=event.collection_id,
        flagged=event.flagged,
        summary=event.summary,
        payload=event.payload,
    )


def payload_hash_of(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_document_of(event)).hexdigest()


def entry_hash_of(prev_hash: str, payload_hash: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(payload_hash)).hexdigest()
