"""Issue 9's migration on a trail that existed before it: entries are numbered in chain order
and their tree is built, with the roots the live code computes."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit import tree as audit_tree
from audit.append import audit_record
from audit.erasure import _redact
from audit.verify import audit_verify

BEFORE = [("assistant", "0006_removed_citations")]


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_an_existing_trail_gets_leaf_indexes_and_its_tree():
    events = [audit_record(event_type="x", payload={"i": i}) for i in range(13)]
    _redact([events[4].id], reason="erased before the upgrade")
    roots = {n: audit_tree.tree_root(n) for n in (1, 8, 13)}
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("assistant")
    try:
        _migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'assistant_auditevent' AND column_name = 'seq'"
            )
            assert cursor.fetchone() is None  # really back on the old schema
        _migrate(latest)
        with connection.cursor() as cursor:
            cursor.execute("SELECT seq FROM assistant_auditevent ORDER BY id")
            assert [row[0] for row in cursor.fetchall()] == list(range(13))
        for n, root in roots.items():
            assert audit_tree.tree_root(n) == root
        report = audit_verify()
        assert report.ok and report.redacted == 1
    finally:
        _migrate(latest)
