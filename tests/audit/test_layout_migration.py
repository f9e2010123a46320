"""A database migrated before the audit models moved to the `audit` app migrates forward with
no change to its tables (audit 0001 and assistant 0015 change Django's state only), its trail
still verifies, and permissions granted on the old `assistant.*` content types stay granted,
now as `audit.*`."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from audit.append import RequestMeta, audit_record
from audit.verify import audit_verify

BEFORE_MOVE = [("assistant", "0014_audit_document_refs_index"), ("audit", None)]
MODELS = ["auditevent", "chaincheck", "audittreenode", "auditcheckpoint"]
TABLES = ["assistant_" + model for model in MODELS]


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    ContentType.objects.clear_cache()


def _rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(cursor.fetchall(), key=repr)


def _schema() -> dict[str, list[tuple]]:
    """The four tables as PostgreSQL describes them, and every function of the project's."""
    tables = list(TABLES)
    return {
        "tables": _rows(
            "SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, "
            "c.reloptions, c.relpersistence FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
            [tables],
        ),
        "columns": _rows(
            "SELECT table_name, ordinal_position, column_name, data_type, udt_name, "
            "is_nullable, column_default, character_maximum_length, numeric_precision, "
            "is_identity, identity_generation, is_generated, generation_expression "
            "FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = ANY(%s)",
            [tables],
        ),
        "indexes": _rows(
            "SELECT i.tablename, i.indexname, i.indexdef, x.indisvalid, x.indisready, "
            "c.reloptions FROM pg_indexes i "
            "JOIN pg_class c ON c.relname = i.indexname "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname "
            "JOIN pg_index x ON x.indexrelid = c.oid "
            "WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)",
            [tables],
        ),
        "constraints": _rows(
            "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), "
            "condeferrable, condeferred, convalidated FROM pg_constraint "
            "WHERE conrelid::regclass::text = ANY(%s)",
            [tables],
        ),
        "triggers": _rows(
            "SELECT tgrelid::regclass::text, tgname, tgenabled, pg_get_triggerdef(oid) "
            "FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text = ANY(%s)",
            [tables],
        ),
        "policies": _rows(
            "SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check "
            "FROM pg_policies WHERE schemaname = 'public' AND tablename = ANY(%s)",
            [tables],
        ),
        "sequences": _rows(
            "SELECT table_name, column_name, pg_get_serial_sequence(table_name, column_name) "
            "FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = ANY(%s) "
            "AND pg_get_serial_sequence(table_name, column_name) IS NOT NULL",
            [tables],
        ),
        # The functions the triggers and the writers call (attest_audit_*): all of the
        # project's own, i.e. every function in public that no extension (pgvector) owns.
        "functions": _rows(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
            "pg_get_functiondef(p.oid) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p') AND NOT EXISTS ("
            "  SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
            "  AND d.objid = p.oid AND d.deptype = 'e')"
        ),
    }


def _content_types() -> list[tuple[str, str]]:
    return sorted(ContentType.objects.filter(model__in=MODELS).values_list("app_label", "model"))


@pytest.mark.django_db(transaction=True)
def test_a_database_from_before_the_move_migrates_forward_unchanged():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        _migrate(BEFORE_MOVE)
        applied = MigrationExecutor(connection).loader.applied_migrations
        assert ("audit", "0001_initial") not in applied
        assert ("assistant", "0015_audit_models_moved") not in applied
        assert ("assistant", "0014_audit_document_refs_index") in applied
        # Back on the old layout, where the content types are the assistant app's (the
        # reverse of audit 0001 moves them back; said again here so that the forward checks
        # below test the forward migration even if that reverse were missing).
        for model in MODELS:
            if not ContentType.objects.filter(app_label="assistant", model=model).exists():
                ContentType.objects.filter(app_label="audit", model=model).update(
                    app_label="assistant"
                )
        ContentType.objects.clear_cache()
        assert _content_types() == [("assistant", model) for model in sorted(MODELS)]

        # A trail recorded the way it was then (attest_audit_append, on the same tables),
        # in a caller's transaction and on its own.
        reviewer = get_user_model().objects.create_user(
            username="pre-move-reviewer", password="Reviewer-Pass-2026!"
        )
        group = Group.objects.create(name="reviewers before the move")
        group.permissions.add(
            Permission.objects.get(content_type__app_label="assistant", codename="review_audit")
        )
        reviewer.groups.add(group)
        with transaction.atomic():
            for i in range(3):
                audit_record(
                    event_type="question",
                    actor=reviewer,
                    payload={"i": i, "passages": [{"document_id": i, "text": "clause"}]},
                    meta=RequestMeta(ip_address="10.0.0.1", user_agent="pytest"),
                    summary=f"question {i}",
                )
        for i in range(3, 5):
            audit_record(event_type="audit.export", payload={"i": i}, actor_username="system")
        entries = _rows("SELECT count(*) FROM assistant_auditevent")[0][0]
        assert entries >= 5
        before = _schema()
        assert {row[0] for row in before["tables"]} == set(TABLES)
        assert before["triggers"] and before["functions"] and before["indexes"]

        # Forward through the move alone: later migrations (audit 0002 and on) may change the
        # trail's functions on purpose; the move itself must not.
        _migrate([("audit", "0001_initial"), ("assistant", "0015_audit_models_moved")])

        after = _schema()
        for part in before:
            assert after[part] == before[part], f"the move changed the tables' {part}"
        report = audit_verify()
        assert report.ok, report.as_dict()
        assert report.entries == entries
        assert _content_types() == [("audit", model) for model in sorted(MODELS)]
        assert not ContentType.objects.filter(app_label="assistant", model__in=MODELS).exists()
        # A fresh instance: ModelBackend caches permissions on the user object.
        reviewer = get_user_model().objects.get(pk=reviewer.pk)
        assert reviewer.has_perm("audit.review_audit")
        assert not reviewer.has_perm("assistant.review_audit")
        assert reviewer.groups.get().permissions.get().content_type.app_label == "audit"
    finally:
        _migrate(latest)


@pytest.mark.django_db
def test_the_move_runs_no_sql():
    """Neither migration of the move has a database operation that SQL can express (what
    the snapshot above cannot see: a change whose reverse is a no-op)."""
    executor = MigrationExecutor(connection)
    moves = [("audit", "0001_initial"), ("assistant", "0015_audit_models_moved")]
    plan = [(executor.loader.graph.nodes[key], False) for key in moves]
    statements = [
        line
        for line in executor.loader.collect_sql(plan)
        if line.strip()
        and not line.lstrip().startswith("--")
        and line.strip().upper() not in {"BEGIN;", "COMMIT;"}
    ]
    assert statements == []
