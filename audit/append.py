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
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from . import writer
from .canonical import canonical_json, spliced_document
from .models import AuditEvent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.http import HttpRequest

_sha256 = hashlib.sha256
# One advisory lock for the whole chain ("ATTE"); attest_audit_append (migration 0010) takes it.
_CHAIN_LOCK_KEY = 0x41545445


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
    def from_request(cls, request: HttpRequest | None) -> RequestMeta:
        if request is None:
            return cls()
        return cls(
            ip_address=canonical_ip(request.META.get("REMOTE_ADDR")),
            user_agent=(request.META.get("HTTP_USER_AGENT") or "")[:500],
        )


# Keys of the payload whose strings are not searchable: a passage's `text` is the cited
# document's own words (kilobytes per answer), already on the entry and in the documents; the
# question, the answer, document names and headings are what a compliance officer searches for.
_UNSEARCHED_PASSAGE_KEYS = frozenset({"text"})


def searchable_text(summary: str, payload: Any) -> str:
    """The words a compliance officer can search for: the summary and every string in the
    payload except the cited passages' text (see _UNSEARCHED_PASSAGE_KEYS)."""
    words: list[str] = [summary] if summary else []
    append = words.append
    # (value, whether it is a passage); one pass, no recursion (this runs on every append).
    stack: list[tuple[Any, bool]] = [(payload, False)]
    pop, push = stack.pop, stack.append
    while stack:
        value, passage = pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str):
                    if item and not (passage and key in _UNSEARCHED_PASSAGE_KEYS):
                        append(item)
                elif isinstance(item, list):
                    is_passages = key == "passages"
                    for element in reversed(item):
                        push((element, is_passages))
                elif isinstance(item, dict):
                    push((item, False))
        elif isinstance(value, list):
            for element in reversed(value):
                push((element, passage))
        elif isinstance(value, str) and value:
            append(value)
    return "\n".join(words)[:200_000]


def audit_record(
    *,
    event_type: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    payload: dict[str, Any],
    meta: RequestMeta | None = None,
    collection_id: int | None = None,
    flagged: bool = False,
    summary: str = "",
    actor_username: str = "",
) -> AuditEvent:
    """Append one entry. Runs inside the caller's transaction when there is one.

    Everything that does not depend on the entry before (the canonical document, its payload
    hash, the time, the search text; in the function, the full-text vector) is computed before
    the chain's lock is taken. Then one statement, `attest_audit_append` (migrations 0010 to
    0012), takes the lock, links the entry to the last one, inserts it and stores the Merkle
    tree nodes it closes.

    Inside a transaction the entry commits or rolls back with the caller's action, and the
    lock is held until that commit. On its own (autocommit), the entry is appended by
    _AppendBatcher, in one statement with whatever entries other threads of this process are
    recording at the same moment (`attest_audit_append_batch`, migration 0013); the call
    returns once its entry is committed and its WAL flushed, with its own chained values, or
    raises its own error.
    """
    meta = meta or RequestMeta()
    # The payload's canonical text is what is hashed and stored verbatim (a `json` column),
    # which is what lets verify hash it without parsing.
    payload_json = canonical_json(payload)
    # A signed-in user (an anonymous one is not authenticated).
    user = cast(
        "AbstractBaseUser | None",
        actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
    )
    actor_id = user.pk if user is not None else None
    actor_username = (getattr(user, "username", "") or actor_username)[:150]
    summary = " ".join(summary.split())[:300]
    created_at = timezone.now()
    ip_address = canonical_ip(meta.ip_address)
    # canonical_document's bytes without dumping the payload again: payload_json is canonical.
    payload_hash = _sha256(
        spliced_document(
            event_type,
            created_at,
            actor_id,
            actor_username,
            ip_address,
            meta.user_agent,
            collection_id,
            flagged,
            summary,
            payload_json,
        )
    ).hexdigest()
    payload = orjson.loads(payload_json)
    search_text = searchable_text(summary, payload)
    params = (
        created_at,
        event_type,
        actor_id,
        actor_username,
        ip_address,
        meta.user_agent,
        collection_id,
        flagged,
        summary,
        search_text,
        payload_json.decode(),
        payload_hash,
    )
    db = connections[DEFAULT_DB_ALIAS]
    if db.in_atomic_block or not db.get_autocommit():
        # The entry commits (or rolls back) with the caller's action.
        new_id, seq, prev_hash, entry_hash = writer.append_one(db, params)
    else:
        # On its own: committed before this returns, possibly in one batch with entries
        # that other threads of this process are recording at the same moment.
        new_id, seq, prev_hash, entry_hash = writer.append_batched(params)
    # Positional, in the model's field order: Model.__init__'s fast path.
    event = AuditEvent(  # type: ignore[misc]  # django-stubs counts each FK twice here
        new_id,
        created_at,
        event_type,
        actor_id,
        actor_username,
        ip_address,
        meta.user_agent,
        collection_id,
        flagged,
        summary,
        search_text,
        None,
        payload,
        seq,
        payload_hash,
        prev_hash,
        entry_hash,
        False,
        None,
    )
    if user is not None:
        AuditEvent.actor.field.set_cached_value(event, user)
    event._state.adding = False
    event._state.db = db.alias
    return event


@dataclass(frozen=True)
class Actor:
    """Who does something, and from where, as the entries of their actions record it."""

    user: AbstractBaseUser | AnonymousUser | None = None
    meta: RequestMeta | None = None
    name: str = ""  # without a signed-in user: a command's operator, "system"

    def record(
        self,
        event_type: str,
        *,
        summary: str,
        payload: dict[str, Any],
        collection_id: int | None = None,
        flagged: bool = False,
    ) -> AuditEvent:
        return audit_record(
            event_type=event_type,
            actor=self.user,
            actor_username=self.name,
            meta=self.meta,
            collection_id=collection_id,
            flagged=flagged,
            summary=summary,
            payload=payload,
        )


@contextmanager
def audited(
    *,
    user: AbstractBaseUser | AnonymousUser | None = None,
    meta: RequestMeta | None = None,
    name: str = "",
) -> Iterator[Actor]:
    """An action and the entries it records, in one transaction: both commit, or neither."""
    with transaction.atomic():
        yield Actor(user=user, meta=meta, name=name)
