"""Verify the audit trail: every hash recomputed in chain order, and the Merkle tree with it.

Reads the trail as one binary COPY (or, for long trails, id ranges checked by worker
processes in one exported snapshot) and names the first entry that does not match.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import merkle, tree
from . import workers as audit_workers
from .canonical import GENESIS_HASH, content_matches
from .models import ChainCheck

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

_sha256 = hashlib.sha256


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
    "int8",
    "text",
    "timestamptz",
    "int8",
    "text",
    "text",
    "text",
    "int8",
    "bool",
    "text",
    "bytea",
    "text",
    "text",
    "text",
    "bool",
    "int8",
)
# The parallel path's main process reads only what the chain and the tree need.
_HASH_COLUMNS = (
    "id::int8, payload_hash::text, prev_hash::text, entry_hash::text, redacted, seq::int8"
)
# The parallel path reads the trail in id ranges of at most this many ids (about 0.1 s of a
# worker's time each), and checks the content of the first few itself while workers start.
_RANGE_IDS = 10_000
_OWN_RANGES = 3


def _copy_query(columns: str, where: str = "") -> str:
    # `columns` and `where` are this module's constants, never user input.
    return (
        f"COPY (SELECT {columns} FROM assistant_auditevent {where} ORDER BY id) "  # noqa: S608
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
            event_id,
            event_type,
            created_at,
            actor_id,
            actor_username,
            ip_address,
            user_agent,
            collection_id,
            flagged,
            summary,
            payload,
            payload_hash,
            prev_hash,
            entry_hash,
            is_redacted,
            seq,
        ) in rows:
            content_bad = not is_redacted and not content_matches(
                event_type,
                created_at,
                actor_id,
                actor_username,
                ip_address,
                user_agent,
                collection_id,
                flagged,
                summary,
                payload,
                payload_hash,
            )
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
                event_id,
                seq,
                prev_hash,
                payload_hash,
                entry_hash,
                is_redacted,
                event_id == bad_at,
            ):
                return True
        return False


def _copy_walk(
    query: str, types: tuple[str, ...], walk_rows: Callable[[Iterator[tuple[Any, ...]]], bool]
) -> None:
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
        if low is None or high is None or high - low + 1 < settings.AUDIT_VERIFY_PARALLEL_FROM:
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
            stored = tree.tree_root(count)
        except tree.TreeIncomplete as exc:
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
