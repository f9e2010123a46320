"""Issue 9, append throughput: the server-side append (`attest_audit_append`, migration 0010)
computes the same chain and tree hashes as the Python definitions, keeps an entry with its
action, and refuses to build on an incomplete tree. Against the real PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit import merkle
from audit import tree as audit_tree
from audit.append import audit_record
from audit.models import AuditEvent, AuditTreeNode
from audit.verify import audit_verify
from tests.factories import assert_chain_and_tree, in_threads, make_collection

pytestmark = pytest.mark.django_db


def test_the_sql_append_computes_the_python_chain_and_tree_hashes():
    # 520 leaves: sizes 256 and 512 close eight and nine levels in one append.
    returned = [
        audit_record(
            event_type="x",
            payload={"i": i, "text": "é ü ∑ \u2028", "nested": {"b": [1, 2.5, None]}},
            summary=f"entry {i}",
            actor_username=f"user{i % 3}",
        )
        for i in range(520)
    ]
    stored = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in stored] == list(range(520))
    for mine, theirs in zip(returned, stored, strict=True):
        assert (mine.id, mine.seq, mine.entry_hash) == (theirs.id, theirs.seq, theirs.entry_hash)
    get = assert_chain_and_tree(stored)
    assert AuditTreeNode.objects.filter(level=9, index=0).exists()
    leaves = [audit_tree.leaf_of(e.payload_hash) for e in stored]
    frontier = merkle.Frontier()
    for size, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        if size in (1, 2, 3, 7, 8, 255, 256, 257, 511, 512, 520):
            assert audit_tree.tree_root(size) == frontier.root() == merkle.root(get, size)
    assert audit_verify().ok


def test_an_entry_rolls_back_with_its_action_and_the_chain_goes_on():
    audit_record(event_type="x", payload={"i": 0})
    with pytest.raises(RuntimeError), transaction.atomic():
        make_collection("Doomed", "doomed")
        audit_record(event_type="collection.created", payload={"slug": "doomed"})
        raise RuntimeError("the action failed")
    assert not AuditEvent.objects.filter(event_type="collection.created").exists()
    assert not AuditTreeNode.objects.exists()
    second = audit_record(event_type="x", payload={"i": 1})
    assert second.seq == 1
    assert AuditTreeNode.objects.filter(level=1, index=0).exists()
    assert audit_verify().ok


def test_a_missing_tree_node_stops_the_append_and_writes_nothing():
    for i in range(3):
        audit_record(event_type="x", payload={"i": i})
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE assistant_audittreenode DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM assistant_audittreenode WHERE level = 1 AND index = 0")
        cursor.execute("ALTER TABLE assistant_audittreenode ENABLE TRIGGER USER")
    with pytest.raises(DatabaseError, match="node 1/0 is missing"), transaction.atomic():
        audit_record(event_type="x", payload={"i": 3})
    assert AuditEvent.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_writers_inside_their_actions_transactions_neither_fork_nor_keep_rolled_back_entries():
    """The lock is held until each caller commits or rolls back; every third action fails."""

    def writer(n: int) -> None:
        for i in range(12):
            try:
                with transaction.atomic():
                    audit_record(event_type="load", payload={"writer": n, "i": i})
                    if i % 3 == 2:
                        raise LookupError("the action failed")
            except LookupError:
                pass

    assert not in_threads(writer, 8)
    assert AuditEvent.objects.count() == 64
    assert not AuditEvent.objects.filter(payload__i__in=[2, 5, 8, 11]).exists()
    assert sorted(AuditEvent.objects.values_list("seq", flat=True)) == list(range(64))
    assert AuditTreeNode.objects.count() == 64 - 1
    assert audit_verify().ok
