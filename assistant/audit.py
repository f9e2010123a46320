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
import itertools
import json
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.utils import timezone

from . import audit_tree, audit_workers, merkle
from .audit_canonical import canonical_document as _canonical_document
from .audit_canonical import canonical_json, content_matches, spliced_document
from .models import AuditEvent, ChainCheck

GENESIS_HASH = "0" * 64
_sha256 = hashlib.sha256
# One advisory lock for the whole chain ("ATTE"); attest_audit_append (migration 0010) takes it.
_CHAIN_LOCK_KEY = 0x41545445
TOMBSTONE_SUMMARY = "[redacted]"


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


# Keys of the payload whose strings are not searchable: a passage's `text` is the cited
# document's own words (kilobytes per answer), already on the entry and in the documents; the
# question, the answer, document names and headings are what a compliance officer searches for.
_UNSEARCHED_PASSAGE_KEYS = frozenset({"text"})


def _search_text(summary: str, payload: Any) -> str:
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


_APPEND_SQL = (
    "SELECT new_id, new_seq, new_prev_hash, new_entry_hash FROM attest_audit_append("
    "%s::timestamptz, %s::text, %s::bigint, %s::text, %s::inet, %s::text, %s::bigint,"
    " %s::boolean, %s::text, %s::text, %s, %s::text)"
)
_APPEND_BATCH_SQL = (
    "SELECT new_id, new_seq, new_prev_hash, new_entry_hash FROM attest_audit_append_batch(%s)"
)
# The same, its transaction set to commit without waiting for its WAL flush (the setting's
# value at commit is what counts, so the order of the two functions does not matter).
_APPEND_BATCH_EARLY_SQL = _APPEND_BATCH_SQL.replace(
    "FROM attest_audit_append_batch(",
    "FROM set_config('synchronous_commit', 'off', true), attest_audit_append_batch(",
)
# A non-transactional WAL record flushed before the call returns (PostgreSQL 17 and later).
_WAL_FLUSH_SQL = "SELECT pg_logical_emit_message(false, 'attest.audit', '', true)"
_WAL_FLUSH_MIN_VERSION = 170000
# Per database connection: whether committing early and flushing after is as durable as a
# synchronous commit there (see may_commit_early).
_early_commit_ok: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()
_BATCH_KEYS = (
    "created_at", "event_type", "actor_id", "actor_username", "ip_address", "user_agent",
    "collection_id", "flagged", "summary", "search_text", "payload", "payload_hash",
)  # fmt: skip


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
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
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
    search_text = _search_text(summary, payload)
    params = (
        created_at, event_type, actor_id, actor_username, ip_address, meta.user_agent,
        collection_id, flagged, summary, search_text, payload_json.decode(), payload_hash,
    )  # fmt: skip
    db = connections[DEFAULT_DB_ALIAS]
    if db.in_atomic_block or not db.get_autocommit():
        # The entry commits (or rolls back) with the caller's action.
        new_id, seq, prev_hash, entry_hash = _append_one(db, params)
    else:
        # On its own: committed before this returns, possibly in one batch with entries
        # that other threads of this process are recording at the same moment.
        new_id, seq, prev_hash, entry_hash = _batcher().append(params)
    # Positional, in the model's field order: Model.__init__'s fast path.
    event = AuditEvent(
        new_id, created_at, event_type, actor_id, actor_username, ip_address, meta.user_agent,
        collection_id, flagged, summary, search_text, None, payload, seq, payload_hash,
        prev_hash, entry_hash, False, None,
    )  # fmt: skip
    if user is not None:
        AuditEvent.actor.field.set_cached_value(event, user)
    event._state.adding = False
    event._state.db = db.alias
    return event


def may_commit_early(db) -> bool:
    """Whether a batch of appends on this connection may commit without waiting for its WAL
    flush and flush after (the chain's lock is then free sooner; see _AppendBatcher).

    Only where that flush is everything a synchronous commit would have waited for: PostgreSQL
    17 or later (the flush is pg_logical_emit_message's), and no synchronous standby (a commit
    would also wait for the standby to confirm, which a local flush does not). Asked once per
    connection: a standby configured later counts from each connection's next reconnect."""
    db.ensure_connection()
    ok = _early_commit_ok.get(db.connection)
    if ok is None:
        with db.wrap_database_errors, db.connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('synchronous_standby_names')")
            standbys = cursor.fetchone()[0]
        ok = early_commit_allowed(db.pg_version, standbys)
        _early_commit_ok[db.connection] = ok
    return ok


def early_commit_allowed(pg_version: int, synchronous_standby_names: str) -> bool:
    return pg_version >= _WAL_FLUSH_MIN_VERSION and not synchronous_standby_names.strip()


def _append_one(db, params: tuple) -> tuple[int, int, str, str]:
    db.ensure_connection()
    db.validate_no_broken_transaction()
    # A server-side-bound, prepared statement on Django's own connection (so in the caller's
    # transaction when there is one): the arguments travel as parameters.
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        cursor.execute(_APPEND_SQL, params, prepare=True)
        return cursor.fetchone()


def _append_many(db, batch: list[tuple], *, early_commit: bool = False) -> list[tuple]:
    """Several entries in one statement and one transaction (migration 0013), in order; with
    `early_commit`, that transaction commits without waiting for its WAL flush (the caller
    must flush: _wal_flush_on)."""
    db.ensure_connection()
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        # One JSON text parameter (orjson writes the times as RFC 3339 with their offset).
        entries = orjson.dumps([dict(zip(_BATCH_KEYS, params, strict=True)) for params in batch])
        sql = _APPEND_BATCH_EARLY_SQL if early_commit else _APPEND_BATCH_SQL
        cursor.execute(sql, (entries.decode(),), prepare=True)
        rows = cursor.fetchall()
    if len(rows) != len(batch):
        raise RuntimeError(f"appended {len(rows)} audit entries of {len(batch)}")
    return rows


def _wal_flush_on(db) -> None:
    """Return once the WAL is on disk up to a record written now, so everything this
    connection saw committed before is durable."""
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        cursor.execute(_WAL_FLUSH_SQL, prepare=True)


def wal_flush() -> None:
    """Make every committed audit entry durable (see _AppendBatcher): checkpoints call it
    before they sign a tree size, so no checkpoint covers an entry a crash could take away.
    Works inside a transaction too (the record it flushes is not transactional)."""
    db = connections[DEFAULT_DB_ALIAS]
    db.ensure_connection()
    if db.pg_version >= _WAL_FLUSH_MIN_VERSION:
        _wal_flush_on(db)


@dataclass
class _Pending:
    params: tuple
    row: tuple[int, int, str, str] | None = None
    error: BaseException | None = None
    done: bool = False
    # Set when the entry is done, or when its thread is to lead the next batch.
    wake: threading.Event = field(default_factory=threading.Event)

    def outcome(self) -> tuple[int, int, str, str]:
        if self.error is not None:
            raise self.error
        assert self.row is not None
        return self.row


class _AppendBatcher:
    """Group commit for entries recorded on their own (autocommit) by concurrent threads of
    one process: a web worker's threads, the bench's writers.

    Appends are serialised by the chain's lock, held until the appending transaction commits,
    so one append at a time used to pay a round trip, the lock, and a commit whose WAL flush
    (an fdatasync, 0.2 to 1 ms on the project's machines) kept every other append waiting.
    Here a thread that finds no append under way leads: it takes every entry waiting (up to
    MAX_BATCH), its own first, and appends them in arrival order in one statement on its own
    connection (`attest_audit_append_batch`: one round trip, one lock acquisition, one
    commit). That transaction commits without waiting for its WAL flush, so the lock is free
    at once: the leader hands the lead to the first thread waiting, whose batch can run
    meanwhile, then waits for the flush of a WAL record written after its commit (WAL is
    flushed in order, so its batch is then on disk), and only then wakes its batch's threads
    with their results. Every caller therefore returns only once its own entry is committed
    and on disk, with its own chained values, or raises its own error: if a batch fails, its
    entries are appended one by one (each committed synchronously), so a bad entry fails
    alone. Between a batch's commit and its flush other sessions can read its entries; a
    crash then loses them (with nothing acknowledged), and only ever a tail of the trail,
    never an entry in the middle; checkpoint_write flushes before it signs. With a synchronous
    standby configured (or before PostgreSQL 17) batches commit synchronously instead
    (may_commit_early).
    """

    MAX_BATCH = 64
    # When the last batch was larger than what is waiting now, its threads are most likely
    # preparing their next entries: the leader gives them this long to join (PostgreSQL's
    # commit_delay, for the same reason).
    GATHER_SECONDS = 0.0003

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._busy = False
        self._last_batch = 0

    def append(self, params: tuple) -> tuple[int, int, str, str]:
        entry = _Pending(params)
        with self._lock:
            self._pending.append(entry)
            lead = not self._busy
            self._busy = True
        if not lead:
            entry.wake.wait()
            if entry.done:
                return entry.outcome()
        # Leading: this entry is the first waiting, so it is in the batch taken here.
        if self._last_batch > len(self._pending) and self.GATHER_SECONDS:
            time.sleep(self.GATHER_SECONDS)
        with self._lock:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            self._last_batch = len(batch)
            # Alone (nobody else appending): one synchronous commit is one round trip less
            # than committing early and flushing after.
            early = len(batch) > 1 or bool(self._pending)
        db = connections[DEFAULT_DB_ALIAS]  # the leader's own connection, in autocommit
        try:
            needs_flush = self._run(db, batch, early=early)
        except BaseException:
            needs_flush = False
            raise
        finally:
            # The chain's lock is free: the next batch may run while this one is flushed.
            with self._lock:
                following = self._pending[0] if self._pending else None
                if following is None:
                    self._busy = False
            if following is not None:
                following.wake.set()
            try:
                if needs_flush:
                    _wal_flush_on(db)
            except Exception as exc:  # noqa: BLE001 - each caller gets it
                for item in batch:
                    item.row, item.error = None, item.error or exc
            finally:
                for item in batch:
                    if item.row is None and item.error is None:
                        item.error = RuntimeError("the audit append was interrupted")
                    item.done = True
                    item.wake.set()
        return entry.outcome()

    @staticmethod
    def _run(db, batch: list[_Pending], *, early: bool = True) -> bool:
        """Append the batch; True when it committed without waiting for its WAL flush."""
        early = early and may_commit_early(db)
        try:
            rows = _append_many(db, [item.params for item in batch], early_commit=early)
        except DatabaseError:
            pass  # the statement failed, so nothing was appended: one by one below
        except Exception as exc:  # noqa: BLE001 - it may have committed: no retry
            for item in batch:
                item.error = exc
            return early
        else:
            for item, row in zip(batch, rows, strict=True):
                item.row = row
            return early
        for item in batch:
            try:
                item.row = _append_one(db, item.params)
            except Exception as exc:  # noqa: BLE001 - raised in the caller's thread
                item.error = exc
        return False


_batchers: dict[int, _AppendBatcher] = {}


def _batcher() -> _AppendBatcher:
    """This process's batcher (a forked worker gets its own, never a copy of its parent's)."""
    pid = os.getpid()
    batcher = _batchers.get(pid)
    if batcher is None:
        batcher = _batchers.setdefault(pid, _AppendBatcher())
    return batcher


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
# netmask ("10.0.0.1/32"). `payload` is `json`, whose binary form is its stored text: it
# arrives as raw UTF-8 bytes (the "bytea" loader) and is hashed as it is, parsed only when that
# does not match (audit_canonical.content_matches).
_VERIFY_COLUMNS = (
    "id::int8, event_type::text, created_at, actor_id::int8, actor_username::text, "
    "CASE WHEN ip_address IS NULL THEN NULL ELSE format('%s', ip_address) END, "
    "user_agent::text, collection_id::int8, flagged, summary::text, "
    "payload, payload_hash::text, prev_hash::text, entry_hash::text, redacted, seq::int8"
)
_VERIFY_TYPES = (
    "int8", "text", "timestamptz", "int8", "text", "text", "text", "int8", "bool", "text",
    "bytea", "text", "text", "text", "bool", "int8",
)  # fmt: skip
# The parallel path's main process reads only what the chain and the tree need.
_HASH_COLUMNS = (
    "id::int8, payload_hash::text, prev_hash::text, entry_hash::text, redacted, seq::int8"
)
# The parallel path reads the trail in id ranges of at most this many ids (about 0.1 s of a
# worker's time each), and checks the content of the first few itself while workers start.
_RANGE_IDS = 10_000
_OWN_RANGES = 3


def _copy_query(columns: str, where: str = "") -> str:
    return (
        f"COPY (SELECT {columns} FROM assistant_auditevent {where} ORDER BY id) "
        "TO STDOUT (FORMAT BINARY)"
    )


class _StopCopy(Exception):
    """Ends the verify COPY early, once the first bad entry is found."""


@dataclass
class _Walk:
    """The trail walked in chain order: everything verify checks except the content, which
    the caller decides (in process, or from the workers' verdicts) and passes in."""

    sink: TreeSink | None
    frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    window: list[tuple[int, str]] = field(default_factory=list)
    prev: str = GENESIS_HASH
    prev_digest: bytes = bytes(32)
    count: int = 0
    redacted: int = 0
    broken: tuple[int, str] | None = None

    def step(
        self,
        event_id: int,
        seq: int,
        prev_hash: str,
        payload_hash: str,
        entry_hash: str,
        is_redacted: bool,
        content_bad: bool,
    ) -> bool:
        """Check one entry, in the order the single-process verify always has (leaf index,
        link, content, entry hash, then the tree at a checkpoint's size). True, with `broken`
        set, at the first problem."""
        index = self.count
        self.count = index + 1
        if seq != index:
            return self._stop(event_id, f"leaf index {seq} should be {index}")
        if prev_hash != self.prev:
            return self._stop(event_id, "prev_hash does not match the entry before it")
        if is_redacted:
            self.redacted += 1
        elif content_bad:
            return self._stop(event_id, "the entry's content does not match its hash")
        payload_bytes = bytes.fromhex(payload_hash)
        digest = _sha256(self.prev_digest + payload_bytes).digest()
        if digest.hex() != entry_hash:
            return self._stop(event_id, "entry hash does not match")
        self.prev = entry_hash
        self.prev_digest = digest
        self.frontier.append(_sha256(b"\x00" + payload_bytes).digest())  # merkle.leaf_hash
        sink = self.sink
        if sink is not None:
            if sink.keep_window:
                self.window.append((event_id, payload_hash))
            if index + 1 == sink.next_size:
                problem = sink.at_size(self.frontier, self.window)
                self.window.clear()
                if problem:
                    return self._stop(event_id, problem)
        return False

    def _stop(self, event_id: int, reason: str) -> bool:
        self.broken = (event_id, reason)
        return True

    def full_rows(self, rows: Iterable[tuple]) -> bool:
        """Walk _VERIFY_COLUMNS rows, recomputing each payload hash here."""
        for (
            event_id, event_type, created_at, actor_id, actor_username, ip_address, user_agent,
            collection_id, flagged, summary, payload, payload_hash, prev_hash, entry_hash,
            is_redacted, seq,
        ) in rows:  # fmt: skip
            content_bad = not is_redacted and not content_matches(
                event_type, created_at, actor_id, actor_username, ip_address, user_agent,
                collection_id, flagged, summary, payload, payload_hash,
            )  # fmt: skip
            if self.step(
                event_id, seq, prev_hash, payload_hash, entry_hash, is_redacted, content_bad
            ):
                return True
        return False

    def hash_rows(self, rows: Iterable[tuple], bad_at: int | None) -> bool:
        """Walk _HASH_COLUMNS rows; `bad_at` is the id of the first entry among them whose
        content does not match its payload hash, if any."""
        step = self.step
        for event_id, payload_hash, prev_hash, entry_hash, is_redacted, seq in rows:
            if step(
                event_id, seq, prev_hash, payload_hash, entry_hash, is_redacted,
                event_id == bad_at,
            ):  # fmt: skip
                return True
        return False


def _copy_walk(query: str, types: tuple[str, ...], walk_rows) -> None:
    """Stream one binary COPY through `walk_rows(rows)`; cancel the rest once it stops."""
    try:
        with connection.connection.cursor() as cursor, cursor.copy(query) as copy:
            copy.set_types(list(types))
            if walk_rows(copy.rows()):
                # Leaving the block by an exception makes psycopg cancel the rest of the COPY
                # (a plain break would leave the connection mid-COPY).
                raise _StopCopy
    except _StopCopy:
        pass


def _walk_in_process(walk: _Walk) -> None:
    _copy_walk(_copy_query(_VERIFY_COLUMNS), _VERIFY_TYPES, walk.full_rows)


def _id_ranges(low: int, high: int, workers: int) -> list[tuple[int, int]]:
    """lo..hi id ranges covering low..high: at most _RANGE_IDS ids, at least 8 per worker."""
    size = max(1, min(_RANGE_IDS, -(-(high - low + 1) // (workers * 8))))
    return [(lo, min(lo + size - 1, high)) for lo in range(low, high + 1, size)]


def _worker_conninfo() -> dict[str, Any]:
    """Django's connection parameters a fresh psycopg connection can take (no adapters)."""
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if isinstance(v, str | int | float)}


@contextmanager
def _content_workers(workers: int, snapshot: str) -> Iterator[ProcessPoolExecutor]:
    """Worker processes in `snapshot`; on leaving, ranges not yet started are dropped."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=audit_workers.worker_start,
        initargs=(_worker_conninfo(), snapshot),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _snapshot_and_bounds() -> tuple[str, int | None, int | None]:
    """Make this transaction REPEATABLE READ, export its snapshot; the trail's id bounds in it."""
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot(), min(id), max(id) FROM assistant_auditevent")
        return cursor.fetchone()


def _walk_in_parallel(walk: _Walk, workers: int, attach_sink: Callable[[], None]) -> None:
    """Payload hashes recomputed by `workers` processes over id ranges of one exported
    snapshot (the first _OWN_RANGES here, while they start); the chain and the tree checked
    here, range by range in id order, from the hash columns of the same snapshot, each range
    once its content verdict is in. Trails shorter than AUDIT_VERIFY_PARALLEL_FROM are walked
    in one process, in the same transaction. `attach_sink` runs once the workers are
    starting, so that whatever it reads (the checkpoint files) overlaps their start."""
    with transaction.atomic():
        snapshot, low, high = _snapshot_and_bounds()
        if low is None or high - low + 1 < settings.AUDIT_VERIFY_PARALLEL_FROM:
            attach_sink()
            _walk_in_process(walk)
            return
        raw = connection.connection
        ranges = _id_ranges(low, high, workers)
        own = min(_OWN_RANGES, len(ranges) // (2 * workers))
        with _content_workers(workers, snapshot) as pool:
            theirs = pool.map(audit_workers.check_range, ranges[own:])
            attach_sink()
            mine = (audit_workers.range_first_mismatch(raw, lo, hi) for lo, hi in ranges[:own])
            for (lo, hi), bad_at in zip(ranges, itertools.chain(mine, theirs), strict=True):
                rows = audit_workers.range_rows(raw, _HASH_COLUMNS, lo, hi)
                if walk.hash_rows(rows, bad_at):
                    return


def _may_use_workers() -> bool:
    """Workers read committed data through their own connections, so not inside a
    transaction (they would not see its writes); and a daemon process cannot start them."""
    return not connection.in_atomic_block and not multiprocessing.current_process().daemon


def audit_verify(
    *,
    batch_size: int = 10_000,
    record: bool = False,
    sink: TreeSink | Callable[[], TreeSink] | None = None,
) -> ChainReport:
    """Recompute every hash in id order; name the first entry that does not match.

    Also recomputes the Merkle tree from the entries and checks that the stored tree (which
    receipts are cut from) has the same root. `sink` checks that tree at the signed
    checkpoints' sizes as the stream passes them; it may be given as a function that makes it,
    called once the worker processes are starting. Reads the trail as binary COPY (no ORM
    objects, no text parsing of timestamps and integers) and parses payloads itself. With
    AUDIT_VERIFY_WORKERS > 0 and at least AUDIT_VERIFY_PARALLEL_FROM entries, payload hashes
    are recomputed by that many worker processes in the same snapshot while this process
    checks the chain and the tree; the first bad entry named is the same either way.
    `batch_size` is kept for callers and ignored. With `record`, the result becomes the
    workspace badge.
    """
    started = time.monotonic()
    walk = _Walk(None)

    def attach_sink() -> None:
        walk.sink = sink() if callable(sink) else sink

    connection.ensure_connection()
    workers = settings.AUDIT_VERIFY_WORKERS
    if workers > 0 and _may_use_workers():
        _walk_in_parallel(walk, workers, attach_sink)
    else:
        attach_sink()
        with transaction.atomic():
            _walk_in_process(walk)
    broken = walk.broken
    count = walk.count
    if broken is None and count:
        try:
            stored = audit_tree.tree_root(count)
        except audit_tree.TreeIncomplete as exc:
            stored = None
            broken = (0, f"the stored Merkle tree is incomplete ({exc})")
        if stored is not None and stored != walk.frontier.root():
            # Proofs cut from this tree would not verify; the entries themselves are fine.
            broken = (0, "the stored Merkle tree does not match the entries")
    report = ChainReport(
        entries=count,
        redacted=walk.redacted,
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
            "UPDATE assistant_auditevent SET payload = %s::json, summary = %s, "
            "search_text = '', redacted = true, redacted_at = %s "
            "WHERE id = ANY(%s) AND NOT redacted",
            [tombstone, TOMBSTONE_SUMMARY, now, ids],
        )
        changed = cursor.rowcount
    return changed


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
