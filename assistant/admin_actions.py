"""Audited administrative actions.

Each function performs one ingest (or auth) service and writes its audit entry in the same
transaction: no action without its entry. Views, the Django admin and commands call these.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction

from ingest import services as ingest_services
from ingest.models import Collection, CollectionGrant, Document

from .audit import RequestMeta, audit_record, audit_redact_document
from .models import AuditEvent


def document_upload(
    *,
    collection: Collection,
    name: str,
    data: bytes,
    user=None,
    meta: RequestMeta | None = None,
    source_path: str = "",
    enqueue: bool = True,
    actor_name: str = "",
) -> tuple[Document, bool]:
    with transaction.atomic():
        document, created = ingest_services.document_create(
            collection=collection,
            name=name,
            data=data,
            user=user,
            source_path=source_path,
            enqueue=enqueue,
        )
        if created:
            audit_record(
                event_type=AuditEvent.Type.DOCUMENT_UPLOADED,
                actor=user,
                actor_username=actor_name,
                meta=meta,
                collection_id=collection.id,
                summary=f"Uploaded {document.name}",
                payload={
                    "collection": collection.slug,
                    "document_id": document.id,
                    "name": document.name,
                    "sha256": document.sha256,
                    "size": document.size,
                    "status": document.status,
                    "status_message": document.status_message,
                },
            )
    return document, created


def document_reingest(*, document: Document, user=None, meta: RequestMeta | None = None) -> None:
    with transaction.atomic():
        ingest_services.document_reingest(document=document)
        audit_record(
            event_type=AuditEvent.Type.DOCUMENT_REINGESTED,
            actor=user,
            meta=meta,
            collection_id=document.collection_id,
            summary=f"Re-ingest {document.name}",
            payload={"document_id": document.id, "name": document.name, "sha256": document.sha256},
        )


def document_erase(
    *, document: Document, user=None, meta: RequestMeta | None = None, reason: str = ""
) -> int:
    """Delete a document with its chunks, vectors and file, and tombstone the audit entries
    that quote it (their hashes stay, so the chain still verifies). Refused under legal hold.
    Returns how many audit entries were redacted."""
    collection = document.collection
    if collection.legal_hold:
        raise PermissionDenied(f"{collection.name} is under legal hold: nothing may be erased.")
    with transaction.atomic():
        document_id, name, sha = document.id, document.name, document.sha256
        ingest_services.document_delete(document=document)
        redacted = audit_redact_document(
            document_id=document_id, reason=f"document {document_id} erased"
        )
        audit_record(
            event_type=AuditEvent.Type.DOCUMENT_ERASED,
            actor=user,
            meta=meta,
            collection_id=collection.id,
            summary=f"Erased {name}",
            # The erasure record names the file only by its hash and id.
            payload={
                "document_id_erased": document_id,
                "sha256": sha,
                "reason": reason,
                "audit_entries_redacted": redacted,
            },
        )
    return redacted


def collection_saved(
    *,
    collection: Collection,
    created: bool,
    changes: dict[str, Any],
    user=None,
    meta=None,
    actor_name: str = "",
) -> None:
    audit_record(
        event_type=(
            AuditEvent.Type.COLLECTION_CREATED if created else AuditEvent.Type.COLLECTION_CHANGED
        ),
        actor=user,
        actor_username=actor_name,
        meta=meta,
        collection_id=collection.id,
        summary=f"{'Created' if created else 'Changed'} collection {collection.name}",
        payload={"slug": collection.slug, "name": collection.name, "changes": changes},
    )


def grant_set(
    *,
    collection: Collection,
    group: Group,
    can_manage: bool | None,
    user=None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> None:
    """Grant (read, or manage) a collection to a group; `can_manage=None` revokes."""
    with transaction.atomic():
        if can_manage is None:
            CollectionGrant.objects.filter(collection=collection, group=group).delete()
            access = "none"
        else:
            CollectionGrant.objects.update_or_create(
                collection=collection, group=group, defaults={"can_manage": can_manage}
            )
            access = "manage" if can_manage else "read"
        grant_recorded(
            collection=collection, group=group, access=access, user=user, meta=meta,
            actor_name=actor_name,
        )  # fmt: skip


def grant_recorded(
    *, collection: Collection, group: Group, access: str, user=None, meta=None, actor_name=""
) -> None:
    """Audit a grant change made elsewhere in the same transaction (e.g. the admin inline)."""
    audit_record(
        event_type=AuditEvent.Type.GRANT_CHANGED,
        actor=user,
        actor_username=actor_name,
        meta=meta,
        collection_id=collection.id,
        summary=f"{group.name}: {access} on {collection.slug}",
        payload={"collection": collection.slug, "group": group.name, "access": access},
    )


def roles_changed(
    *, target, before: list[str], after: list[str], user=None, meta=None, actor_name: str = ""
) -> None:
    if sorted(before) == sorted(after):
        return
    audit_record(
        event_type=AuditEvent.Type.ROLE_CHANGED,
        actor=user,
        actor_username=actor_name,
        meta=meta,
        summary=f"Groups of {target.username}: {', '.join(sorted(after)) or 'none'}",
        payload={
            "user": target.username,
            "user_id": target.id,
            "before": sorted(before),
            "after": sorted(after),
        },
    )


def collection_delete(*, collection: Collection, user=None, meta: RequestMeta | None = None) -> int:
    """Erase every document of the collection (files, chunks, vectors, quoting audit entries
    tombstoned), then the collection itself. Refused under legal hold."""
    if collection.legal_hold:
        raise PermissionDenied(f"{collection.name} is under legal hold: nothing may be erased.")
    with transaction.atomic():
        redacted = 0
        documents = list(collection.documents.all())
        for document in documents:
            redacted += document_erase(
                document=document, user=user, meta=meta, reason="collection deleted"
            )
        collection_id, slug, name = collection.id, collection.slug, collection.name
        collection.delete()
        audit_record(
            event_type=AuditEvent.Type.COLLECTION_DELETED,
            actor=user,
            meta=meta,
            collection_id=collection_id,
            summary=f"Deleted collection {name}",
            payload={"slug": slug, "name": name, "documents": len(documents)},
        )
    return redacted


def user_deleted(*, target, user=None, meta: RequestMeta | None = None) -> None:
    audit_record(
        event_type=AuditEvent.Type.USER_DELETED,
        actor=user,
        meta=meta,
        summary=f"Deleted user {target.username}",
        payload={"user": target.username, "user_id": target.id},
    )
