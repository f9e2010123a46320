"""Verify with worker processes (AUDIT_VERIFY_WORKERS) names exactly what the single-process
verify names, on real trails in the real PostgreSQL. The workers read committed rows through
their own connections, so these tests commit (transaction=True)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.db import connection

from audit import checkpoints, verify
from audit.append import audit_record
from audit.canonical import canonical_json
from audit.checkpoint_verify import audit_verify_checkpoints
from audit.erasure import _redact
from audit.models import AuditEvent
from audit.verify import audit_verify
from tests.audit.test_receipts import _rewrite_from, _triggers

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signing(tmp_path, settings):
    key = checkpoints.key_generate(directory=tmp_path / "keys")
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = key.private_path
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return key


@pytest.fixture
def worker_runs(monkeypatch) -> list[int]:
    """Counts the times verify really started its worker processes."""
    runs: list[int] = []
    real = verify._content_workers

    def counted(workers: int, snapshot: str):
        runs.append(workers)
        return real(workers, snapshot)

    monkeypatch.setattr(verify, "_content_workers", counted)
    return runs


def _trail(n: int = 64, every: int = 10) -> list[AuditEvent]:
    """n entries (some with passages, one with a non-ASCII payload), a checkpoint every 10."""
    events = []
    for i in range(n):
        payload = {"i": i, "passages": [{"text": f"passage {i} — ü", "score": i / 7}]}
        events.append(audit_record(event_type="x", payload=payload, summary=f"entry {i}"))
        if (i + 1) % every == 0:
            checkpoints.checkpoint_write()
    return events


def _alter_content(event: AuditEvent) -> None:
    """Change an entry's payload without recomputing any hash."""
    with connection.cursor() as cursor:
        _triggers(cursor, "DISABLE")
        cursor.execute(
            "UPDATE assistant_auditevent SET payload = %s::jsonb WHERE id = %s",
            [json.dumps({"i": -1}), event.id],
        )
        _triggers(cursor, "ENABLE")


def _delete(event: AuditEvent) -> None:
    with connection.cursor() as cursor:
        _triggers(cursor, "DISABLE")
        cursor.execute("DELETE FROM assistant_auditevent WHERE id = %s", [event.id])
        _triggers(cursor, "ENABLE")


def _both_ways(settings, signing, worker_runs) -> tuple[list[dict], list[dict]]:
    """(single-process, parallel) results of plain verify and verify --checkpoints."""
    settings.AUDIT_VERIFY_PARALLEL_FROM = 1
    results = []
    for workers in (0, 2):
        settings.AUDIT_VERIFY_WORKERS = workers
        chain = audit_verify().as_dict()
        anchored = audit_verify_checkpoints(
            directory=Path(settings.AUDIT_CHECKPOINT_DIR),
            public_key=checkpoints.load_public_key(signing.public_path),
        ).as_dict()
        for report in (chain, anchored):
            del report["seconds"], report["entries_per_second"]
        results.append([chain, anchored])
    assert worker_runs == [2, 2], "the parallel path did not run"
    return results[0], results[1]


def _content_then_rewrite(events: list[AuditEvent]) -> None:
    # The altered content comes first; the rewrite after it would fail a later checkpoint.
    _alter_content(events[23])
    _rewrite_from(AuditEvent.objects.get(pk=events[41].id), {"i": 41, "note": "hidden"})


TAMPERING: dict[str, tuple[Callable[[list[AuditEvent]], None], int | None]] = {
    "content altered": (lambda e: _alter_content(e[23]), 23),
    "content altered in the first entry": (lambda e: _alter_content(e[0]), 0),
    "content altered in the last entry": (lambda e: _alter_content(e[-1]), 63),
    "content altered, a later entry rewritten with every hash": (_content_then_rewrite, 23),
    "rewritten with every later hash": (
        lambda e: _rewrite_from(e[37], {"i": 37, "note": "hidden"}),
        37,
    ),
    "an entry deleted": (lambda e: _delete(e[30]), 31),
    "untouched, with tombstones": (lambda e: _redact([e[5].id, e[50].id], reason="erasure"), None),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_the_parallel_path_names_the_same_first_bad_entry(case, settings, signing, worker_runs):
    events = _trail()
    tamper, expected = TAMPERING[case]
    tamper(events)
    single, parallel = _both_ways(settings, signing, worker_runs)
    assert parallel == single
    chain, anchored = parallel
    if expected is None:
        assert chain["ok"] and anchored["ok"], (chain, anchored)
        assert chain["redacted"] == anchored["redacted"] == 2
        return
    assert anchored["ok"] is False
    assert anchored["first_bad"]["id"] == events[expected].id, anchored


def test_small_trails_and_open_transactions_stay_in_one_process(settings, signing, worker_runs):
    _trail(12)
    settings.AUDIT_VERIFY_WORKERS = 2
    settings.AUDIT_VERIFY_PARALLEL_FROM = 50_000
    assert audit_verify().ok
    settings.AUDIT_VERIFY_PARALLEL_FROM = 1
    from django.db import transaction

    with transaction.atomic():
        # Workers could not see what this transaction wrote, so verify stays in process.
        audit_record(event_type="x", payload={"i": "uncommitted"})
        report = audit_verify()
    assert report.ok and report.entries == 13
    assert worker_runs == []


def _set_payload_text(events: list[AuditEvent], sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        _triggers(cursor, "DISABLE")
        cursor.execute(
            f"UPDATE assistant_auditevent SET payload = {sql} WHERE id = ANY(%s)",
            [*params, [e.id for e in events]],
        )
        _triggers(cursor, "ENABLE")


def test_payload_text_equal_in_value_but_not_canonical_verifies_both_ways(
    settings, signing, worker_runs
):
    """Issue 9, migration 0012: verify hashes the stored text as it is, and parses it only
    when that does not match, so text in another format (jsonb's, as entries written before
    0012 had) still verifies in the main process and in the workers."""
    events = _trail()
    _set_payload_text([events[0], events[23], events[63]], "payload::jsonb::text::json", [])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT payload::text FROM assistant_auditevent WHERE id = %s", [events[23].id]
        )
        assert cursor.fetchone()[0].startswith('{"i": 23, ')  # not the canonical text
    single, parallel = _both_ways(settings, signing, worker_runs)
    assert parallel == single
    assert all(report["ok"] for report in parallel), parallel


def test_payload_text_altered_to_another_canonical_value_is_named_both_ways(
    settings, signing, worker_runs
):
    events = _trail()
    altered = {"i": 23, "passages": [{"score": 23 / 7, "text": "passage 23 — ü (edited)"}]}
    _set_payload_text([events[23]], "%s::json", [canonical_json(altered).decode()])
    single, parallel = _both_ways(settings, signing, worker_runs)
    assert parallel == single
    for report in parallel:
        assert report["ok"] is False
    assert parallel[0]["first_broken_id"] == events[23].id
    assert parallel[1]["first_bad"]["id"] == events[23].id
