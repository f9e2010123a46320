"""How audit entries reach the database, once audit_record has prepared them.

Inside the caller's transaction: one statement, `attest_audit_append` (append_one). On its
own (autocommit): group commit, entries that concurrent threads of one process record at the
same moment appended in one statement and one transaction (`attest_audit_append_batch`,
migration 0013; append_batched, and _AppendBatcher for the protocol).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import orjson
import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

if TYPE_CHECKING:
    from datetime import datetime

    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.postgresql.base import DatabaseWrapper

    # An entry as audit_record prepares it, in _BATCH_KEYS's order.
    AppendParams = tuple[
        datetime, str, int | None, str, str | None, str, int | None, bool, str, str, str, str
    ]
    # What the append functions return for it: (id, seq, prev_hash, entry_hash).
    AppendedRow = tuple[int, int, str, str]

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
    "created_at",
    "event_type",
    "actor_id",
    "actor_username",
    "ip_address",
    "user_agent",
    "collection_id",
    "flagged",
    "summary",
    "search_text",
    "payload",
    "payload_hash",
)


def may_commit_early(db: DatabaseWrapper) -> bool:
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


def append_one(db: BaseDatabaseWrapper, params: AppendParams) -> AppendedRow:
    db.ensure_connection()
    db.validate_no_broken_transaction()
    # A server-side-bound, prepared statement on Django's own connection (so in the caller's
    # transaction when there is one): the arguments travel as parameters.
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        cursor.execute(_APPEND_SQL, params, prepare=True)
        return cast("AppendedRow", cursor.fetchone())


def _append_many(
    db: BaseDatabaseWrapper, batch: list[AppendParams], *, early_commit: bool = False
) -> list[AppendedRow]:
    """Several entries in one statement and one transaction (migration 0013), in order; with
    `early_commit`, that transaction commits without waiting for its WAL flush (the caller
    must flush: _wal_flush_on)."""
    db.ensure_connection()
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        # One JSON text parameter (orjson writes the times as RFC 3339 with their offset).
        entries = orjson.dumps([dict(zip(_BATCH_KEYS, params, strict=True)) for params in batch])
        sql = _APPEND_BATCH_EARLY_SQL if early_commit else _APPEND_BATCH_SQL
        cursor.execute(sql, (entries.decode(),), prepare=True)
        rows = cast("list[AppendedRow]", cursor.fetchall())
    if len(rows) != len(batch):
        raise RuntimeError(f"appended {len(rows)} audit entries of {len(batch)}")
    return rows


def _wal_flush_on(db: BaseDatabaseWrapper) -> None:
    """Return once the WAL is on disk up to a record written now, so everything this
    connection saw committed before is durable."""
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        cursor.execute(_WAL_FLUSH_SQL, prepare=True)


def wal_flush() -> None:
    """Make every committed audit entry durable (see _AppendBatcher): checkpoints call it
    before they sign a tree size, so no checkpoint covers an entry a crash could take away.
    Works inside a transaction too (the record it flushes is not transactional)."""
    db = cast("DatabaseWrapper", connections[DEFAULT_DB_ALIAS])
    db.ensure_connection()
    if db.pg_version >= _WAL_FLUSH_MIN_VERSION:
        _wal_flush_on(db)


@dataclass
class _Pending:
    params: AppendParams
    row: AppendedRow | None = None
    error: BaseException | None = None
    done: bool = False
    # Set when the entry is done, or when its thread is to lead the next batch.
    wake: threading.Event = field(default_factory=threading.Event)

    def outcome(self) -> AppendedRow:
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

    def append(self, params: AppendParams) -> AppendedRow:
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
        # The leader's own connection, in autocommit.
        db = cast("DatabaseWrapper", connections[DEFAULT_DB_ALIAS])
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
    def _run(db: DatabaseWrapper, batch: list[_Pending], *, early: bool = True) -> bool:
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
                item.row = append_one(db, item.params)
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


def append_batched(params: AppendParams) -> AppendedRow:
    """Append one entry on its own: committed (and its WAL flushed) before this returns,
    possibly in one batch with entries other threads of this process are recording."""
    return _batcher().append(params)
