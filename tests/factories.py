"""Small builders for test data (real rows in the real database)."""

from __future__ import annotations

from pathlib import Path

from ingest.models import Collection, Document
from ingest.services import collection_create, document_create, document_ingest


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
