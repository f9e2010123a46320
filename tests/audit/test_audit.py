"""The audit trail: append-only in PostgreSQL, hash-chained, verifiable, erasable by tombstone."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.utils import DatabaseError
from django.test import RequestFactory
from django.utils import timezone

from assistant import actions as admin_actions
from assistant.services import question_ask
from audit.append import RequestMeta, audit_record
from audit.canonical import GENESIS_HASH
from audit.erasure import audit_purge_expired, audit_redact_document
from audit.models import AuditEvent
from audit.settings_snapshot import settings_snapshot_record
from audit.verify import audit_verify
from tests.factories import in_threads, ingest_bytes, make_collection

pytestmark = pytest.mark.django_db


def _disable_trigger(cursor):
    cursor.execute("ALTER TABLE assistant_auditevent DISABLE TRIGGER attest_audit_append_only")


def _enable_trigger(cursor):
    cursor.execute("ALTER TABLE assistant_auditevent ENABLE TRIGGER attest_audit_append_only")


def test_entries_chain_to_the_one_before():
    first = audit_record(event_type="collection.created", payload={"slug": "a"})
    second = audit_record(event_type="collection.created", payload={"slug": "b"})
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.entry_hash
    report = audit_verify()
    assert report.ok and report.entries == 2 and report.redacted == 0


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE assistant_auditevent SET summary = 'nothing happened' WHERE id = %s",
        "UPDATE assistant_auditevent SET payload = '{}'::jsonb WHERE id = %s",
        "DELETE FROM assistant_auditevent WHERE id = %s",
    ],
)
def test_the_database_rejects_update_and_delete(sql):
    event = audit_record(event_type="x", summary="something happened", payload={"a": 1})
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute(sql, [event.id])


def test_redaction_cannot_be_used_to_change_a_hash():
    event = audit_record(event_type="x", payload={"a": 1})
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("SET LOCAL attest.audit_redaction = 'on'")
        cursor.execute(
            "UPDATE assistant_auditevent SET redacted = true, payload_hash = %s WHERE id = %s",
            ["f" * 64, event.id],
        )


@pytest.mark.parametrize(
    ("column", "value"),
    [("payload", '{"i": 99}'), ("actor_username", "mallory"), ("created_at", "2001-01-01")],
)
def test_verify_names_the_first_altered_entry(column, value):
    events = [audit_record(event_type="x", payload={"i": i}) for i in range(4)]
    with connection.cursor() as cursor:
        _disable_trigger(cursor)
        cursor.execute(
            f"UPDATE assistant_auditevent SET {column} = %s WHERE id = %s", [value, events[2].id]
        )
        _enable_trigger(cursor)
    report = audit_verify()
    assert not report.ok
    assert report.first_broken_id == events[2].id


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.1", "2001:db8::1", None, "::ffff:10.0.0.1", "::ffff:a00:1", "::a00:1", "::1"],
)
def test_verify_reads_the_ip_address_as_it_was_hashed(ip):
    """Verify reads the trail by binary COPY: the inet must come back as the ORM's text
    (`ip_address::text` would say 10.0.0.1/32, and every entry would look altered)."""
    audit_record(event_type="x", payload={"a": 1}, meta=RequestMeta(ip_address=ip))
    # A dual-stack server reports an IPv4 client as ::ffff:a.b.c.d; PostgreSQL prints such an
    # address differently from Python, so it is stored as the IPv4 address.
    request = RequestFactory().get("/", REMOTE_ADDR=ip or "")
    audit_record(event_type="x", payload={"a": 2}, meta=RequestMeta.from_request(request))
    assert audit_verify().ok


def test_verify_catches_a_deleted_entry():
    events = [audit_record(event_type="x", payload={"i": i}) for i in range(4)]
    with connection.cursor() as cursor:
        _disable_trigger(cursor)
        cursor.execute("DELETE FROM assistant_auditevent WHERE id = %s", [events[1].id])
        _enable_trigger(cursor)
    report = audit_verify()
    assert report.first_broken_id == events[2].id


def test_erasing_a_document_removes_its_text_from_entries_and_the_chain_still_verifies(
    admin_user,
):
    collection = make_collection("Records", "records")
    document = ingest_bytes(
        collection, "patient.txt", b"Patient John Doe is allergic to penicillin and latex."
    )
    answer = question_ask(
        user=admin_user, collection=collection, question="What is John Doe allergic to?", k=3
    )
    before = AuditEvent.objects.get(payload__answer_id=answer.id)
    assert "penicillin" in json.dumps(before.payload)

    redacted = admin_actions.document_erase(document=document, user=admin_user, reason="GDPR")
    assert redacted == 1
    after = AuditEvent.objects.get(pk=before.pk)
    # Exactly the document's text goes (issue 19): the question stays, the passage is blanked.
    assert after.redacted and after.payload["question"] == "What is John Doe allergic to?"
    assert all(p["erased"] and p["text"] == "" for p in after.payload["passages"])
    assert "penicillin" not in json.dumps(after.payload) + after.summary + after.search_text
    assert after.payload_hash == before.payload_hash and after.entry_hash == before.entry_hash
    erasure = AuditEvent.objects.filter(event_type="document.erased").get()
    assert erasure.actor == admin_user and erasure.payload["audit_entries_redacted"] == 1
    report = audit_verify()
    assert report.ok and report.redacted == 1


# Payload shapes against whether they name or quote document 7, as the containment tests
# `payload @> {"document_id": 7}` / `payload @> {"passages": [{"document_id": 7}]}` decide.
DOCUMENT_REF_SHAPES = [
    ({"document_id": 7}, True),
    ({"document_id": 7.0}, True),
    ({"passages": [{"document_id": 3}, {"document_id": 7, "page": 2}]}, True),
    ({"passages": [{"document_id": 7e0}]}, True),
    ({"document_id": 8, "passages": [{"document_id": 9}]}, False),
    ({"document_id": "7"}, False),
    ({"document_id": [7]}, False),
    ({"passages": {"document_id": 7}}, False),
    ({"passages": [[{"document_id": 7}]]}, False),
    ({"passages": [{"document_id": [7]}, 7, "7", None]}, False),
    ({"nested": {"document_id": 7}}, False),
    ([{"document_id": 7}], False),
    ({}, False),
]


@pytest.mark.parametrize(("payload", "names_it"), DOCUMENT_REF_SHAPES)
def test_the_erasure_index_agrees_with_the_containment_tests(payload, names_it):
    """attest_audit_document_refs (migration 0014) only narrows erasure's search: for every
    payload shape, it holds the document exactly when the containment tests match it."""
    text = json.dumps(payload)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attest_audit_document_refs(%s::json) @> ARRAY[7::numeric],"
            ' %s::jsonb @> \'{"document_id": 7}\' OR %s::jsonb @> \'{"passages": [{"document_id": 7}]}\'',
            [text, text, text],
        )
        by_index, by_containment = cursor.fetchone()
    assert by_containment is names_it
    assert by_index is names_it


def test_erasure_reads_the_document_refs_index_not_the_whole_trail(admin_user):
    for n in range(30):
        audit_record(event_type="document.uploaded", actor=admin_user, payload={"document_id": n})
    quoting = audit_record(
        event_type="question.answered",
        actor=admin_user,
        payload={"answer": "x", "passages": [{"document_id": 4, "text": "y"}]},
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM assistant_auditevent WHERE NOT redacted"
            " AND attest_audit_document_refs(payload) @> ARRAY[4::numeric]"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "audit_document_refs_gin" in plan, plan
    assert audit_redact_document(document_id=4, reason="test") == 2
    assert AuditEvent.objects.get(pk=quoting.pk).redacted
    assert AuditEvent.objects.filter(redacted=True).count() == 2


def test_legal_hold_blocks_erasure(admin_user):
    from django.core.exceptions import PermissionDenied

    collection = make_collection("Litigation", "litigation")
    collection.legal_hold = True
    collection.save()
    document = ingest_bytes(collection, "memo.txt", b"The memo says the shipment was late.")
    with pytest.raises(PermissionDenied, match="legal hold"):
        admin_actions.document_erase(document=document, user=admin_user)
    assert type(document).objects.filter(pk=document.pk).exists()


def test_retention_purge_spares_legal_hold_and_keeps_the_chain(settings):
    settings.AUDIT_RETENTION_DAYS = 30
    held = make_collection("Held", "held")
    held.legal_hold = True
    held.save()
    old = audit_record(event_type="x", payload={"secret": "old"}, summary="old entry")
    old_held = audit_record(
        event_type="x", payload={"secret": "held"}, collection_id=held.id, summary="held entry"
    )
    # Purge as if 31 days had passed: every entry is past the 30-day period, and only the
    # one in the collection on legal hold must survive.
    count = audit_purge_expired(now=timezone.now() + timedelta(days=31))
    assert count == 1
    assert AuditEvent.objects.get(pk=old.pk).redacted
    assert not AuditEvent.objects.get(pk=old_held.pk).redacted
    assert AuditEvent.objects.filter(event_type="audit.purged").count() == 1
    assert audit_verify().ok


def test_settings_changes_are_recorded_once(settings):
    assert settings_snapshot_record() is True
    assert settings_snapshot_record() is False
    settings.CHUNK_SIZE = 777
    assert settings_snapshot_record() is True
    latest = AuditEvent.objects.filter(event_type="settings.changed").order_by("-id").first()
    assert latest.payload["changed"]["CHUNK_SIZE"]["to"] == 777


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_cannot_fork_the_chain():
    def writer(n: int) -> None:
        for i in range(15):
            audit_record(event_type="load", payload={"writer": n, "i": i})

    assert not in_threads(writer, 8)
    assert AuditEvent.objects.count() == 120
    assert len(set(AuditEvent.objects.values_list("prev_hash", flat=True))) == 120
    assert audit_verify().ok


def test_deleting_a_collection_erases_its_documents_and_is_audited(admin_user):
    from ingest.models import Chunk, Collection

    collection = make_collection("Old", "old")
    document = ingest_bytes(collection, "old.txt", b"An obsolete policy about fax machines.")
    path = document.file.path
    redacted = admin_actions.collection_delete(collection=collection, user=admin_user)
    assert redacted == 0
    assert not Collection.objects.filter(slug="old").exists()
    assert not Chunk.objects.filter(document_id=document.id).exists()
    types = list(AuditEvent.objects.order_by("id").values_list("event_type", flat=True))
    assert types[-2:] == ["document.erased", "collection.deleted"]
    assert audit_verify().ok

    # The stored original goes once the transaction commits (on_commit); this test runs in
    # one, so only check that the path was a real file before.
    assert path and Path(path).name == document.sha256


def test_audit_command_verify_export_and_purge(tmp_path, capsys, settings):
    from django.core.management import call_command

    audit_record(
        event_type="auth.login",
        summary="reader signed in",
        payload={"u": "reader"},
        actor_username="reader",
    )
    audit_record(
        event_type="auth.login",
        summary="other signed in",
        payload={"u": "other"},
        actor_username="other",
    )
    call_command("audit", "verify", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["entries"] == 2
    out = tmp_path / "reader.jsonl"
    call_command("audit", "export", "--format", "jsonl", "--user", "reader", "--output", str(out))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [line["actor"] for line in lines] == ["reader"]
    exported = AuditEvent.objects.get(event_type="audit.exported")
    assert exported.actor_username.startswith("cli:")
    assert exported.payload["filters"]["user"] == "reader"
    settings.AUDIT_RETENTION_DAYS = 0
    call_command("audit", "purge")
    assert "0 entries" in capsys.readouterr().out
