"""Issue 9, migration 0012: the audit payload is stored as `json`, the exact canonical bytes its
hash was taken over, so verify hashes the stored text without parsing it; text that is not
canonical but equal in value still verifies (the fallback), and the ORM's JSON lookups work on
the `json` column. Against the real PostgreSQL."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.append import audit_record
from audit.canonical import canonical_document_of, canonical_json, content_matches, spliced_document
from audit.erasure import _redact
from audit.models import AuditEvent
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db

PAYLOAD = {
    "zeta": [3, 2.5, None, True],
    "answer_id": 7,
    "question": 'Où est la clause d\'arbitrage? "quoted" \\ back\nslash',
    "passages": [{"text": "passage — ü", "score": 1 / 7, "document_id": 3, "b": {}}],
    "patient_ids": ["P-001", "P-002"],
}


def _stored_text(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload::text FROM assistant_auditevent WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def _columns(event: AuditEvent) -> tuple:
    return (
        event.event_type,
        event.created_at,
        event.actor_id,
        event.actor_username,
        event.ip_address,
        event.user_agent,
        event.collection_id,
        event.flagged,
        event.summary,
    )


def test_the_stored_payload_text_is_the_canonical_bytes_that_were_hashed():
    event = audit_record(event_type="question.answered", payload=PAYLOAD, summary="où")
    text = _stored_text(event.id)
    assert text.encode() == canonical_json(PAYLOAD)
    stored = AuditEvent.objects.get(pk=event.id)
    assert stored.payload == orjson.loads(canonical_json(PAYLOAD))
    document = spliced_document(*_columns(stored), text.encode())
    assert document == canonical_document_of(stored)
    assert hashlib.sha256(document).hexdigest() == stored.payload_hash
    assert audit_verify().ok


def test_content_matches_falls_back_to_parsing_only_for_text_equal_in_value():
    event = audit_record(event_type="x", payload=PAYLOAD)
    canonical = canonical_json(PAYLOAD)
    spaced = orjson.dumps(PAYLOAD, option=orjson.OPT_INDENT_2)  # unsorted, indented
    assert spaced != canonical
    for text in (canonical, spaced):
        assert content_matches(*_columns(event), text, event.payload_hash)
    altered = canonical.replace(b'"answer_id":7', b'"answer_id":8')
    assert altered != canonical
    assert not content_matches(*_columns(event), altered, event.payload_hash)
    # The payload's text cannot absorb another field: the summary is still what was hashed.
    moved = canonical[:-1] + b',"summary":""}'
    assert not content_matches(*_columns(event), moved, event.payload_hash)
    huge = b'{"answer_id":123456789012345678901234567890}'  # valid JSON orjson cannot read
    assert not content_matches(*_columns(event), huge, event.payload_hash)


@pytest.mark.parametrize(
    "text",
    [
        '{"answer_id": 7}',  # jsonb's format of another value
        '{"answer_id":7,"passages":[],"patient_ids":[],"question":"","zeta":[]}',
    ],
)
def test_verify_names_an_entry_whose_payload_text_was_altered(text):
    events = [audit_record(event_type="x", payload=PAYLOAD) for _ in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE assistant_auditevent DISABLE TRIGGER attest_audit_append_only")
        cursor.execute(
            "UPDATE assistant_auditevent SET payload = %s WHERE id = %s", [text, events[1].id]
        )
        cursor.execute("ALTER TABLE assistant_auditevent ENABLE TRIGGER attest_audit_append_only")
    report = audit_verify()
    assert not report.ok and report.first_broken_id == events[1].id


def test_json_lookups_work_on_the_json_column():
    hit = audit_record(event_type="x", payload=PAYLOAD)
    miss = audit_record(event_type="x", payload={"answer_id": 8, "passages": []})
    objects = AuditEvent.objects
    assert list(objects.filter(payload__answer_id=7).values_list("id", flat=True)) == [hit.id]
    assert objects.filter(payload__answer_id__in=[7, 8]).count() == 2
    assert objects.get(payload__patient_ids__contains=["P-002"]).id == hit.id
    assert objects.get(payload__passages__0__document_id=3).id == hit.id
    assert objects.get(payload__question__icontains="ARBITRAGE").id == hit.id
    assert objects.get(payload__zeta__isnull=False).id == hit.id
    assert objects.get(payload__zeta__isnull=True).id == miss.id
    assert objects.get(payload__has_key="zeta").id == hit.id
    assert objects.get(payload__contains={"answer_id": 8}).id == miss.id
    assert objects.get(payload={"answer_id": 8, "passages": []}).id == miss.id
    assert objects.get(payload__answer_id__gt=7).id == miss.id
    assert list(objects.order_by("id").values_list("payload__answer_id", flat=True)) == [7, 8]
    assert objects.values_list("payload", flat=True).get(pk=miss.id) == miss.payload


def test_an_answers_entry_is_found_through_the_answer_id_index():
    for i in range(50):
        audit_record(event_type="x", payload={"answer_id": i})
    query = AuditEvent.objects.filter(payload__answer_id=42)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        # Statistics of this table as it is now, not as earlier tests left it: the planner
        # otherwise may walk the primary key backwards (the default order) over a table it
        # believes tiny.
        cursor.execute("ANALYZE assistant_auditevent")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "audit_answer_id_idx" in plan, plan
    assert query.get().payload == {"answer_id": 42}


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_existing_payloads_into_their_canonical_text():
    events = [audit_record(event_type="x", payload={**PAYLOAD, "i": i}) for i in range(6)]
    _redact([events[2].id], reason="erased before the upgrade")
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("assistant")
    try:
        _migrate(("assistant", "0011_audit_append_before_lock"))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'assistant_auditevent' AND column_name = 'payload'"
            )
            assert cursor.fetchone()[0] == "jsonb"  # really back on the old schema
        # jsonb's format: keys by length, then bytes; a space after ':' and ','.
        assert _stored_text(events[0].id).startswith('{"i": 0, "zeta": [3, 2.5, null, true]')
    finally:
        _migrate(latest[0])
    for i, event in enumerate(events):
        if i != 2:
            assert _stored_text(event.id).encode() == canonical_json({**PAYLOAD, "i": i})
    assert orjson.loads(_stored_text(events[2].id))["tombstone"] is True
    report = audit_verify()
    assert report.ok and report.redacted == 1 and report.entries == 6
    after = audit_record(event_type="x", payload={"after": True})
    assert _stored_text(after.id) == '{"after":true}'
    assert audit_verify().ok


@pytest.mark.parametrize("microsecond", [0, 1, 100, 280_060, 999_999])
@pytest.mark.parametrize("year", [1, 999, 2026])
def test_the_spliced_document_writes_the_time_as_isoformat_does(microsecond, year):
    """spliced_document lets orjson write the datetime; canonical_document writes isoformat().
    Were they ever to differ, every entry would take the slow path."""
    from datetime import UTC, datetime, timedelta, timezone

    for tz in (UTC, timezone(timedelta(hours=-5))):
        at = datetime(year, 3, 4, 5, 6, 7, microsecond, tzinfo=tz) + timedelta(days=1)
        columns = ("x", at, None, "", None, "", None, False, "", b"{}")
        assert spliced_document(*columns) == canonical_json(
            {
                "event_type": "x",
                "created_at": at.astimezone(UTC).isoformat(),
                "actor_id": None,
                "actor": "",
                "ip_address": None,
                "user_agent": "",
                "collection_id": None,
                "flagged": False,
                "summary": "",
                "payload": {},
            }
        )
