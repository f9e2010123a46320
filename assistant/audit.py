"""The audit trail: append-only entries chained by SHA-256.

Each entry hashes its canonical document (type, UTC time, actor, IP address, user agent,
collection, flag, summary and payload) into `payload_hash`, and
`entry_hash = sha256(prev_hash || payload_hash)` links it to the entry before it. Writers take
a transaction-scoped advisory lock, so concurrent writers cannot fork the chain, and an entry
commits (or rolls back) with the action it records.

Erasure replaces an entry's payload with a tombstone and keeps `payload_hash`, so the chain
still verifies; `audit_verify` counts such entries instead of recomputing their payload hash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import audit_tree, merkle
from .models import AuditEvent, ChainCheck

GENESIS_HASH = "0" * 64
# One advisory lock for the whole chain ("ATTE"); attest_audit_append (migration 0010) takes it.
_CHAIN_LOCK_KEY = 0x41545445
TOMBSTONE_SUMMARY = "[redacted]"


def canonical_json(document: Any) -> bytes:
    """Compact UTF-8 JSON with sorted keys (orjson: about 4x faster than json, which is what
    makes verifying a million entries take seconds rather than a minute)."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS, default=str)


def _canonical_document(
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


def canonical_document_of(event: AuditEvent) -> bytes:
    """The exact bytes an entry's payload hash is taken over."""
    return _canonical_document(
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


def canonical_ip(value: str | None) -> str | None:
    """The address as PostgreSQL's inet prints it back, which is what the payload hash covers.

    Python and PostgreSQL agree on IPv4 and on most IPv6 text, but not on IPv6 addresses that
    embed an IPv4 one: PostgreSQL prints `::ffff:10.0.0.1` where Python says `::ffff:a00:1`.
    An IPv4-mapped address (what a dual-stack server reports for an IPv4 client) is stored as
    the IPv4 address itself; the deprecated IPv4-compatible form is written as PostgreSQL
    writes it."""
    if not value:
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        packed = ip.packed
        if packed[:12] == bytes(12) and packed[12:14] != b"\0\0":
            return "::" + str(ipaddress.IPv4Address(packed[12:]))
    return ip.compressed


@dataclass(frozen=True)
class RequestMeta:
    ip_address: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request) -> RequestMeta:
        if request is None:
            return cls()
        return cls(
            ip_address=canonical_ip(request.META.get("REMOTE_ADDR")),
            user_agent=(request.META.get("HTTP_USER_AGENT") or "")[:500],
        )


def _search_text(summary: str, payload: Any) -> str:
    """The words a compliance officer can search for: every string in the payload."""
    words: list[str] = [summary]

    def walk(value: Any) -> None:
        if isinstance(value, str):
            words.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(payload)
    return "\n".join(w for w in words if w)[:200_000]


def audit_record(
    *,
    event_type: str,
    actor=None,
    payload: dict[str, Any],
    meta: RequestMeta | None = None,
    collection_id: int | None = None,
    flagged: bool = False,
    summary: str = "",
    actor_username: str = "",
) -> AuditEvent:
    """Append one entry. Runs inside the caller's transaction when there is one.

    Everything that does not depend on the entry before (the canonical document, its payload
    hash, the time; in the function, the full-text vector) is computed before the chain's lock
    is taken. Then one statement, `attest_audit_append` (migrations 0010, 0011), takes the lock,
    links the entry to the last one, inserts it and stores the Merkle tree nodes it closes.
    Outside a transaction that statement is its own transaction, so the lock is held for the
    server's work and its commit only; inside one, the entry commits or rolls back with the
    caller's action.
    """
    meta = meta or RequestMeta()
    # Round-trip through JSON so the stored payload is exactly what was hashed.
    payload_json = canonical_json(payload)
    payload = orjson.loads(payload_json)
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    summary = " ".join(summary.split())[:300]
    event = AuditEvent(
        created_at=timezone.now(),
        event_type=event_type,
        actor=user,
        actor_username=(getattr(user, "username", "") or actor_username)[:150],
        ip_address=canonical_ip(meta.ip_address),
        user_agent=meta.user_agent,
        collection_id=collection_id,
        flagged=flagged,
        summary=summary,
        search_text=_search_text(summary, payload),
        payload=payload,
    )
    event.payload_hash = payload_hash_of(event)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT new_id, new_seq, new_prev_hash, new_entry_hash FROM attest_audit_append("
            "%s, %s, %s, %s, %s::inet, %s, %s, %s, %s, %s, %s::jsonb, %s)",
            [
                event.created_at,
                event.event_type,
                event.actor_id,
                event.actor_username,
                event.ip_address,
                event.user_agent,
                event.collection_id,
                event.flagged,
                event.summary,
                event.search_text,
                payload_json.decode(),
                event.payload_hash,
            ],
        )
        event.id, event.seq, event.prev_hash, event.entry_hash = cursor.fetchone()
    event._state.adding = False
    event._state.db = connection.alias
    return event


class TreeSink(Protocol):
    """Checks the tree rebuilt from the entries at chosen sizes (the signed checkpoints)."""

    next_size: int  # the next tree size to check; -1 when there is none
    keep_window: bool  # keep (id, payload_hash) of the entries since the last check

    def at_size(self, frontier: merkle.Frontier, window: list[tuple[int, str]]) -> str:
        """Called when the tree reaches `next_size`: '' to go on, else why verification stops.
        Must advance `next_size`."""
        ...


@dataclass(frozen=True)
class ChainReport:
    entries: int
    redacted: int
    first_broken_id: int | None
    reason: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.first_broken_id is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "redacted": self.redacted,
            "first_broken_id": self.first_broken_id,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.entries / self.seconds) if self.seconds else None,
        }


# One binary COPY in id order. Casts pin each column's wire type to the loader named below
# (binary rows carry no type check). format('%s', ip_address) is inet's output text, exactly
# what the ORM returns for it (Django loads inet as text); ip_address::text would add the
# netmask ("10.0.0.1/32"). payload::text is re-parsed by orjson.
_VERIFY_COLUMNS = (
    "id::int8, event_type::text, created_at, actor_id::int8, actor_username::text, "
    "CASE WHEN ip_address IS NULL THEN NULL ELSE format('%s', ip_address) END, "
    "user_agent::text, collection_id::int8, flagged, summary::text, "
    "payload::text, payload_hash::text, prev_hash::text, entry_hash::text, redacted, seq::int8"
)
_VERIFY_TYPES = (
    "int8", "text", "timestamptz", "int8", "text", "text", "text", "int8", "bool", "text",
    "text", "text", "text", "text", "bool", "int8",
)  # fmt: skip


class _StopCopy(Exception):
    """Ends the verify COPY early, once the first bad entry is found."""


def audit_verify(
    *, batch_size: int = 10_000, record: bool = False, sink: TreeSink | None = None
) -> ChainReport:
    """Recompute every hash in id order; name the first entry that does not match.

    Also recomputes the Merkle tree from the entries and checks that the stored tree (which
    receipts are cut from) has the same root. `sink` checks that tree at the signed
    checkpoints' sizes as the stream passes them. Reads the trail as one binary COPY (no ORM
    objects, no text parsing of timestamps and integers; about a third of the cost of a
    server-side cursor) and parses payloads itself, so it verifies large trails quickly.
    `batch_size` is kept for callers and ignored. With `record`, the result becomes the
    workspace badge.
    """
    started = time.monotonic()
    frontier = merkle.Frontier()
    window: list[tuple[int, str]] = []
    leaf = merkle.leaf_hash
    fromhex = bytes.fromhex
    prev = GENESIS_HASH
    count = redacted = 0
    broken: tuple[int, str] | None = None
    sha256 = hashlib.sha256
    connection.ensure_connection()
    query = (
        f"COPY (SELECT {_VERIFY_COLUMNS} FROM assistant_auditevent ORDER BY id) "
        "TO STDOUT (FORMAT BINARY)"
    )
    try:
        with (
            transaction.atomic(),
            connection.connection.cursor() as cursor,
            cursor.copy(query) as copy,
        ):
            copy.set_types(list(_VERIFY_TYPES))
            for row in copy.rows():
                (
                    event_id, event_type, created_at, actor_id, actor_username, ip_address,
                    user_agent, collection_id, flagged, summary, payload_text, payload_hash,
                    prev_hash, entry_hash, is_redacted, seq,
                ) = row  # fmt: skip
                count += 1
                if seq != count - 1:
                    broken = (event_id, f"leaf index {seq} should be {count - 1}")
                    break
                if prev_hash != prev:
                    broken = (event_id, "prev_hash does not match the entry before it")
                    break
                if is_redacted:
                    redacted += 1
                else:
                    document = _canonical_document(
                        event_type=event_type,
                        created_at=created_at,
                        actor_id=actor_id,
                        actor_username=actor_username,
                        ip_address=ip_address,
                        user_agent=user_agent,
                        collection_id=collection_id,
                        flagged=flagged,
                        summary=summary,
                        payload=orjson.loads(payload_text),
                    )
                    if sha256(document).hexdigest() != payload_hash:
                        broken = (event_id, "the entry's content does not match its hash")
                        break
                if sha256(fromhex(prev) + fromhex(payload_hash)).hexdigest() != entry_hash:
                    broken = (event_id, "entry hash does not match")
                    break
                prev = entry_hash
                frontier.append(leaf(fromhex(payload_hash)))
                if sink is not None:
                    if sink.keep_window:
                        window.append((event_id, payload_hash))
                    if count == sink.next_size:
                        problem = sink.at_size(frontier, window)
                        window.clear()
                        if problem:
                            broken = (event_id, problem)
                            break
            if broken is not None:
                # Leaving the block by an exception makes psycopg cancel the rest of the COPY
                # (a plain break would leave the connection mid-COPY).
                raise _StopCopy
    except _StopCopy:
        pass
    if broken is None and count:
        try:
            stored = audit_tree.tree_root(count)
        except audit_tree.TreeIncomplete as exc:
            stored = None
            broken = (0, f"the stored Merkle tree is incomplete ({exc})")
        if stored is not None and stored != frontier.root():
            # Proofs cut from this tree would not verify; the entries themselves are fine.
            broken = (0, "the stored Merkle tree does not match the entries")
    report = ChainReport(
        entries=count,
        redacted=redacted,
        first_broken_id=broken[0] if broken else None,
        reason=broken[1] if broken else "",
        seconds=time.monotonic() - started,
    )
    if record:
        ChainCheck.objects.create(
            checked_at=timezone.now(),
            entries=report.entries,
            redacted=report.redacted,
            ok=report.ok,
            first_broken_id=report.first_broken_id,
            reason=report.reason[:200],
            seconds=report.seconds,
        )
    return report


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
            "UPDATE assistant_auditevent SET payload = %s::jsonb, summary = %s, "
            "search_text = '', redacted = true, redacted_at = %s "
            "WHERE id = ANY(%s) AND NOT redacted",
            [tombstone, TOMBSTONE_SUMMARY, now, ids],
        )
        changed = cursor.rowcount
    return changed


def audit_redact_document(*, document_id: int, reason: str) -> int:
    """Tombstone every entry whose payload quotes or names the document."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM assistant_auditevent WHERE NOT redacted AND ("
            " payload @> %s::jsonb OR payload @> %s::jsonb)",
            [
                json.dumps({"document_id": document_id}),
                json.dumps({"passages": [{"document_id": document_id}]}),
            ],
        )
        ids = [r[0] for r in cursor.fetchall()]
    return _redact(ids, reason=reason)


def audit_purge_expired(*, actor=None, now: datetime | None = None) -> int:
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
