"""Issue 9, migration 0011: the entry's full-text vector is a stored column that
`attest_audit_append` computes before the chain's lock, and triggers keep in step with the
search text on every other write. The workspace's free-text filter must find exactly what it
found when the vector was a generated column. Against the real PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.append import audit_record
from audit.canonical import GENESIS_HASH
from audit.compliance import AuditFilter, audit_query
from audit.erasure import _redact
from audit.models import AuditEvent
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db


def _found(q: str) -> set[int]:
    return set(audit_query(filters=AuditFilter(q=q)).values_list("id", flat=True))


def _vectors_match_text() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT bool_and(search_vector IS NOT NULL AND search_vector = "
            "to_tsvector('english', search_text)) FROM assistant_auditevent"
        )
        return cursor.fetchone()[0]


def test_appended_entries_are_found_by_free_text_with_the_vector_of_their_search_text():
    notice = audit_record(
        event_type="question.answered",
        payload={
            "question": "What is the notice period for termination?",
            "passages": [{"text": "Either party may terminate on ninety days written notice."}],
        },
        summary="contract 123",
    )
    other = audit_record(event_type="auth.login", payload={"note": "signed in from the ward"})
    assert _vectors_match_text()
    assert _found("terminating") == {notice.id}  # stemmed: "termination" in the question
    assert _found('"notice period"') == {notice.id}  # phrase: positions are kept
    assert _found("contract 123") == {notice.id}  # the summary
    assert _found("ward") == {other.id}
    assert _found("notice -termination") == set()
    assert _found("unrelated") == set()


def test_cited_passage_text_is_not_indexed_but_what_was_asked_and_cited_is():
    """A passage's text is the document's own words (kilobytes per answer): not indexed, which
    keeps its vector off every append. The question, the answer, document names and
    headings are."""
    answer = audit_record(
        event_type="question.answered",
        payload={
            "question": "Who pays the arbitration costs?",
            "answer": "Each party bears its own costs [1].",
            "passages": [
                {
                    "text": "The tribunal shall sit in Stockholm.",
                    "document": "supply-agreement.pdf",
                    "heading": "14. Dispute Resolution",
                }
            ],
        },
        summary="Who pays the arbitration costs?",
    )
    assert "Stockholm" not in answer.search_text
    assert _found("Stockholm") == set()
    assert _found("arbitration") == {answer.id}
    assert _found("bears") == {answer.id}
    assert _found("supply-agreement.pdf") == {answer.id}
    assert _found("dispute resolution") == {answer.id}
    assert _vectors_match_text()


def test_an_entry_inserted_without_the_function_gets_its_vector_from_the_trigger():
    event = AuditEvent.objects.create(
        created_at=timezone.now(),
        event_type="x",
        search_text="quarterly indemnification review",
        payload={},
        seq=0,
        payload_hash="0" * 64,
        prev_hash=GENESIS_HASH,
        entry_hash="1" * 64,
    )
    assert _vectors_match_text()
    assert _found("reviewing") == {event.id}


def test_erasure_empties_the_vector_so_erased_words_are_no_longer_found():
    kept = audit_record(event_type="x", payload={"q": "the patient's allergy to penicillin"})
    erased = audit_record(event_type="x", payload={"q": "penicillin dosage for Jane Roe"})
    assert _found("penicillin") == {kept.id, erased.id}
    _redact([erased.id], reason="erasure request")
    assert _found("penicillin") == {kept.id}
    assert _found("Roe") == set()
    assert _vectors_match_text()
    assert audit_verify().ok


def test_an_update_cannot_plant_a_vector_that_differs_from_the_search_text():
    event = audit_record(event_type="x", payload={"q": "routine question"})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL attest.audit_redaction = 'on'")
        cursor.execute(
            "UPDATE assistant_auditevent SET redacted = true, "
            "search_vector = to_tsvector('english', 'planted') WHERE id = %s",
            [event.id],
        )
    assert _found("planted") == set()
    assert _found("routine") == {event.id}
    assert _vectors_match_text()


def test_the_table_keeps_only_the_indexes_the_workspace_and_the_chain_use():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'assistant_auditevent' "
            "ORDER BY indexname"
        )
        defs = [row[0].split(" USING ", 1)[1] for row in cursor.fetchall()]
    assert sorted(defs) == sorted(
        [
            "btree (id)",  # primary key, keyset pages
            "btree (created_at)",  # since / until, dashboard
            "btree (entry_hash)",  # unique
            "btree (seq)",  # unique: the leaf index, the chain's last entry
            "btree (actor_id, id DESC)",
            "btree (collection_id, id DESC)",
            "btree (id DESC) WHERE flagged",
            "gin (search_vector)",
            "btree (event_type, id DESC)",
            # payload__answer_id= (migration 0012)
            "btree ((((payload -> 'answer_id'::text))::jsonb))",
            # erasure: the documents a payload names or quotes (migration 0014)
            "gin (attest_audit_document_refs(payload)) WITH (fastupdate=off)",
        ]
    )


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_vectors_and_goes_back_to_a_generated_column():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("assistant")[0]
    before = audit_record(event_type="x", payload={"q": "arbitration clause"})
    try:
        _migrate(("assistant", "0010_audit_append_function"))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT is_generated FROM information_schema.columns "
                "WHERE table_name = 'assistant_auditevent' AND column_name = 'search_vector'"
            )
            assert cursor.fetchone()[0] == "ALWAYS"
        between = audit_record(event_type="x", payload={"q": "arbitration venue"})
        assert _found("arbitration") == {before.id, between.id}
    finally:
        _migrate(latest)
    after = audit_record(event_type="x", payload={"q": "arbitration costs"})
    assert _found("arbitration") == {before.id, between.id, after.id}
    assert _vectors_match_text()
    assert audit_verify().ok


def _refs_index_valid() -> bool | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'audit_document_refs_gin'"
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


@pytest.mark.django_db(transaction=True)
def test_a_failed_concurrent_build_of_the_erasure_index_is_rebuilt_when_migrating_again():
    """CREATE INDEX CONCURRENTLY that fails leaves an invalid index; IF NOT EXISTS alone would
    keep it for good, so migration 0014 drops an invalid one before building."""
    import importlib

    m0014 = importlib.import_module("assistant.migrations.0014_audit_document_refs_index")
    audit_record(event_type="document.uploaded", payload={"document_id": 3})
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'audit_document_refs_gin'::regclass"
        )
    assert _refs_index_valid() is False
    with connection.schema_editor(atomic=False) as editor:
        m0014.drop_invalid_index(None, editor)
        assert _refs_index_valid() is None
        editor.execute(m0014.INDEX)
    assert _refs_index_valid() is True
    with connection.schema_editor(atomic=False) as editor:
        m0014.drop_invalid_index(None, editor)  # a valid index is kept
    assert _refs_index_valid() is True
