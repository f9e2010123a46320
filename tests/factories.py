"""Small builders for test data (real rows in the real database)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.db import connections

from ingest.pipeline import document_ingest
from ingest.services import collection_create, document_create

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ingest.models import Collection, Document


def make_collection(name: str = "Contracts", slug: str = "") -> Collection:
    return collection_create(name=name, slug=slug)


def ingest_bytes(collection: Collection, name: str, data: bytes) -> Document:
    """Store and ingest synchronously (in this process), returning the refreshed document.

    An e-mail's attachments are ingested too, the same way, before this returns."""
    document, _ = document_create(collection=collection, name=name, data=data, enqueue=False)
    pending = [document.id]
    while pending:
        result = document_ingest(document_id=pending.pop(0), enqueue_attachments=False)
        pending.extend(result.attachment_ids)
    document.refresh_from_db()
    return document


def ingest_path(collection: Collection, path: Path) -> Document:
    return ingest_bytes(collection, path.name, path.read_bytes())


def grant(collection: Collection, user, *, manage: bool = False, group_name: str = "") -> None:
    """Give `user` read (or manage) access to `collection` through a group of their own."""
    from django.contrib.auth.models import Group

    from ingest.models import CollectionGrant

    group, _ = Group.objects.get_or_create(name=group_name or f"readers-of-{collection.slug}")
    user.groups.add(group)
    CollectionGrant.objects.update_or_create(
        collection=collection, group=group, defaults={"can_manage": manage}
    )


def in_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    """Run target(0) .. target(count - 1) in threads, each with its own database connection
    (closed at the end); returns what they raised."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_chain_and_tree(stored: list) -> Callable[[int, int], bytes]:
    """The audit entries `stored`, in seq order from an empty trail, carry their own payload
    hashes and chain from the genesis hash as the Python definitions say, and the stored tree
    nodes are exactly the complete subtrees of the Merkle tree over them, with the same hashes.
    Returns that tree's node getter, for further checks."""
    from audit import merkle
    from audit import tree as audit_tree
    from audit.canonical import GENESIS_HASH, entry_hash_of, payload_hash_of
    from audit.models import AuditTreeNode

    prev = GENESIS_HASH
    for entry in stored:
        assert entry.payload_hash == payload_hash_of(entry)
        assert entry.prev_hash == prev
        assert entry.entry_hash == entry_hash_of(prev, entry.payload_hash)
        prev = entry.entry_hash
    get = merkle.list_getter([audit_tree.leaf_of(e.payload_hash) for e in stored])
    nodes = {(n.level, n.index): bytes(n.hash) for n in AuditTreeNode.objects.all()}
    assert nodes.keys() == {
        key for n in range(len(stored)) for key in merkle.complete_nodes_after_append(n)
    }
    for (level, index), h in nodes.items():
        assert h == get(level, index), f"node {level}/{index}"
    return get
