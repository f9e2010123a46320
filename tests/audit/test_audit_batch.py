"""Issue 9, append throughput: entries recorded on their own by concurrent threads are
appended in batches (group commit, migration 0013), each caller still getting its own chained
entry, committed and flushed, or its own error. Against the real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from audit import checkpoints, merkle
from audit import tree as audit_tree
from audit import writer as audit_writer
from audit.append import audit_record
from audit.canonical import payload_hash_of
from audit.models import AuditEvent, AuditTreeNode
from audit.verify import audit_verify
from tests.factories import assert_chain_and_tree, in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def _params(n: int) -> list[tuple]:
    """The arguments audit_record would send for n entries, captured without appending."""
    captured: list[tuple] = []

    class Capture:
        def append(self, params: tuple) -> tuple[int, int, str, str]:
            captured.append(params)
            return (0, 0, "0" * 64, "0" * 64)

    real = audit_writer._batcher
    audit_writer._batcher = Capture  # type: ignore[assignment]
    try:
        for i in range(n):
            audit_record(event_type="load", payload={"i": i}, summary=f"entry {i}")
    finally:
        audit_writer._batcher = real
    return captured


def test_concurrent_appends_on_their_own_are_batched_and_each_caller_gets_its_own_entry(
    monkeypatch,
):
    sizes: list[int] = []
    real_many = audit_writer._append_many
    first = threading.Event()

    def slow_first_batch(db, batch, **kwargs):
        sizes.append(len(batch))
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # the other writers queue up behind this batch meanwhile
        return real_many(db, batch, **kwargs)

    monkeypatch.setattr(audit_writer, "_append_many", slow_first_batch)
    returned: list[AuditEvent] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(10):
            returned.append(
                audit_record(event_type="load", payload={"writer": n, "i": i}, summary="w")
            )

    assert not in_threads(writer, 8)
    assert max(sizes) >= 2, sizes  # batched: fewer statements than entries
    assert sum(sizes) == 80
    stored = {e.id: e for e in AuditEvent.objects.all()}
    assert sorted(e.seq for e in stored.values()) == list(range(80))
    for mine in returned:
        theirs = stored[mine.id]
        assert (mine.seq, mine.prev_hash, mine.entry_hash, mine.payload_hash) == (
            theirs.seq,
            theirs.prev_hash,
            theirs.entry_hash,
            theirs.payload_hash,
        )
        assert mine.payload == theirs.payload
        assert theirs.payload_hash == payload_hash_of(theirs)
    # Each writer's own entries are in the order it made them.
    for n in range(8):
        mine = sorted((e for e in returned if e.payload["writer"] == n), key=lambda e: e.seq)
        assert [e.payload["i"] for e in mine] == list(range(10))
    assert AuditTreeNode.objects.count() == 80 - bin(80).count("1")  # complete subtrees
    assert audit_verify().ok


def test_a_bad_entry_in_a_batch_fails_alone_and_the_others_land_in_order():
    good_1, bad, good_2 = _params(3)
    bad = (*bad[:-1], "not a hash")
    batch = [audit_writer._Pending(p) for p in (good_1, bad, good_2)]
    connection.ensure_connection()
    early = audit_writer._AppendBatcher._run(connection, batch)
    assert early is False  # the one-by-one retry commits each entry synchronously
    assert batch[0].row is not None and batch[2].row is not None
    assert batch[1].row is None
    assert "payload hash must be 64 lowercase hex digits" in str(batch[1].error)
    assert [e.summary for e in AuditEvent.objects.order_by("seq")] == ["entry 0", "entry 2"]
    assert audit_verify().ok


def _record_batches(monkeypatch, events: list[str]) -> None:
    """Note "early=True/False" in `events` for each batch statement, then run it."""
    real_many = audit_writer._append_many

    def many(db, batch, **kwargs):
        events.append(f"early={kwargs['early_commit']}")
        return real_many(db, batch, **kwargs)

    monkeypatch.setattr(audit_writer, "_append_many", many)


def test_a_lone_append_commits_synchronously_in_one_statement(monkeypatch):
    events: list[str] = []
    real_flush = audit_writer._wal_flush_on
    _record_batches(monkeypatch, events)
    monkeypatch.setattr(
        audit_writer, "_wal_flush_on", lambda db: (events.append("flush"), real_flush(db))
    )
    entry = audit_record(event_type="login", payload={"ok": True})
    assert events == ["early=False"]
    assert AuditEvent.objects.get(id=entry.id).entry_hash == entry.entry_hash


def test_a_batch_commits_early_and_its_callers_return_only_after_the_wal_flush(monkeypatch):
    events: list[str] = []
    real_many, real_flush = audit_writer._append_many, audit_writer._wal_flush_on
    queued = threading.Event()

    def many(db, batch, **kwargs):
        if not events:
            queued.wait(5)  # the first (lone) batch holds on until the others are waiting
            time.sleep(0.2)
        events.append(f"batch of {len(batch)} early={kwargs['early_commit']}")
        return real_many(db, batch, **kwargs)

    def flush(db):
        real_flush(db)
        events.append("flushed")

    monkeypatch.setattr(audit_writer, "_append_many", many)
    monkeypatch.setattr(audit_writer, "_wal_flush_on", flush)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            audit_record(event_type="login", payload={"writer": n})
            events.append(f"writer {n} returned")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    first = threading.Thread(target=writer, args=(0,))
    first.start()
    time.sleep(0.1)
    others = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for t in others:
        t.start()
    time.sleep(0.1)
    queued.set()
    for t in [first, *others]:
        t.join()
    assert not errors
    assert events[0] == "batch of 1 early=False"
    assert "batch of 2 early=True" in events
    flushed = events.index("flushed")
    assert events.index("batch of 2 early=True") < flushed
    assert events.index("writer 1 returned") > flushed
    assert events.index("writer 2 returned") > flushed
    assert AuditEvent.objects.count() == 3
    assert audit_verify().ok


def test_a_checkpoint_flushes_the_wal_before_it_signs(tmp_path, settings, monkeypatch):
    key = checkpoints.key_generate(directory=tmp_path / "keys")
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = key.private_path
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    audit_record(event_type="login", payload={"ok": True})
    order: list[str] = []
    real_flush, real_sign = audit_writer.wal_flush, checkpoints.checkpoint_sign
    monkeypatch.setattr(audit_writer, "wal_flush", lambda: (order.append("flush"), real_flush())[1])
    monkeypatch.setattr(
        checkpoints,
        "checkpoint_sign",
        lambda *a, **k: (order.append("sign"), real_sign(*a, **k))[1],
    )
    assert checkpoints.checkpoint_write() is not None
    assert order == ["flush", "sign"]


def test_a_batch_from_an_empty_trail_computes_the_python_chain_and_tree_hashes():
    connection.ensure_connection()
    rows = audit_writer._append_many(connection, _params(7))
    stored = list(AuditEvent.objects.order_by("seq"))
    assert [r[1] for r in rows] == [e.seq for e in stored] == list(range(7))
    for row, entry in zip(rows, stored, strict=True):
        assert row == (entry.id, entry.seq, entry.prev_hash, entry.entry_hash)
    get = assert_chain_and_tree(stored)
    assert audit_tree.tree_root(7) == merkle.root(get, 7)
    # The next entry, on its own, links to the batch's last.
    after = audit_record(event_type="login", payload={})
    assert (after.seq, after.prev_hash) == (7, stored[-1].entry_hash)
    assert audit_verify().ok


def test_a_batch_appends_and_flushes_under_the_web_requests_database_role():
    """Web requests run as the non-superuser `attest_app` (ingest.row_security): the batch
    function, the early commit and the WAL flush must all be allowed to it."""
    from ingest import row_security

    params = _params(3)
    row_security.apply(None)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == row_security.ROLE
        rows = audit_writer._append_many(connection, params, early_commit=True)
        audit_writer._wal_flush_on(connection)
    finally:
        row_security.reset()
    assert [r[1] for r in rows] == [0, 1, 2]
    assert audit_verify().ok


def test_batches_commit_synchronously_before_postgresql_17_or_with_a_synchronous_standby():
    """A local WAL flush is all a synchronous commit waits for only without synchronous
    standbys (a commit would also wait for a standby's confirmation) and only where
    pg_logical_emit_message can flush; the role web requests run as can read the setting."""
    from ingest import row_security

    assert audit_writer.early_commit_allowed(180000, "")
    assert audit_writer.early_commit_allowed(170002, "  ")
    assert not audit_writer.early_commit_allowed(160004, "")
    assert not audit_writer.early_commit_allowed(180000, "FIRST 1 (standby1)")
    row_security.apply(None)
    try:
        audit_writer._early_commit_ok.clear()
        assert audit_writer.may_commit_early(connection) is (connection.pg_version >= 170000)
    finally:
        row_security.reset()


def test_a_batch_commits_synchronously_when_early_commit_is_not_allowed(monkeypatch):
    events: list[str] = []
    monkeypatch.setattr(audit_writer, "may_commit_early", lambda db: False)
    _record_batches(monkeypatch, events)
    monkeypatch.setattr(audit_writer, "_wal_flush_on", lambda db: events.append("flush"))
    batch = [audit_writer._Pending(params) for params in _params(3)]
    assert audit_writer._AppendBatcher._run(connection, batch, early=True) is False
    assert events == ["early=False"]
    assert [item.row[1] for item in batch] == [0, 1, 2]
    assert audit_verify().ok
