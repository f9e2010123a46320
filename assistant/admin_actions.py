"""Audited administrative actions.

Each function performs one ingest (or auth) service and writes its audit entry in the same
transaction: no action without its entry. Views, the Django admin and commands call these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction

from ingest import services as ingest_services
from ingest.archives import ArchiveError, ArchiveLimits, is_zip, zip_entries
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


def document_rejected(
    *,
    collection: Collection,
    name: str,
    reason: str,
    key: bytes,
    source_path: str = "",
    user=None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> tuple[Document, bool]:
    """Record an input refused before storing (a hostile archive entry) as a failed document."""
    with transaction.atomic():
        document, created = ingest_services.document_reject(
            collection=collection,
            name=name,
            reason=reason,
            key=key,
            source_path=source_path,
            user=user,
        )
        if created:
            audit_record(
                event_type=AuditEvent.Type.DOCUMENT_REJECTED,
                actor=user,
                actor_username=actor_name,
                meta=meta,
                collection_id=collection.id,
                summary=f"Refused {document.name}",
                payload={
                    "collection": collection.slug,
                    "document_id": document.id,
                    "name": document.name,
                    "source_path": document.source_path,
                    "status_message": reason,
                },
            )
    return document, created


@dataclass(frozen=True)
class UploadOutcome:
    """What became of one uploaded file (or archive entry)."""

    name: str
    path: str  # where it came from: a file path, or "archive.zip/inner/path"
    status: str  # the document's status, or "duplicate"
    error: str
    document: Document | None


def archive_limits() -> ArchiveLimits:
    return ArchiveLimits(
        max_entries=settings.ZIP_MAX_ENTRIES,
        max_total_bytes=settings.ZIP_MAX_TOTAL_BYTES,
        max_ratio=settings.ZIP_MAX_RATIO,
        max_entry_bytes=settings.UPLOAD_MAX_BYTES,
    )


def documents_upload(
    *,
    collection: Collection,
    files: Iterable[tuple[str, bytes, str]],
    user=None,
    meta: RequestMeta | None = None,
    enqueue: bool = True,
    actor_name: str = "",
) -> list[UploadOutcome]:
    """Store a batch of files `(name, data, source_path)`; `.zip` files are unpacked (see
    ingest/archives.py) and each entry stored on its own. Every input ends as one outcome:
    queued (or failed at once, with the reason), or a duplicate of a document already in the
    collection. A bad file or entry never stops the rest of the batch."""
    outcomes: list[UploadOutcome] = []

    def store(name: str, data: bytes, path: str) -> None:
        document, created = document_upload(
            collection=collection, name=name, data=data, user=user, meta=meta,
            source_path=path, enqueue=enqueue, actor_name=actor_name,
        )  # fmt: skip
        outcomes.append(_outcome(name, path, document, duplicate=not created))

    def reject(name: str, path: str, reason: str, key: bytes) -> None:
        document, created = document_rejected(
            collection=collection, name=name, reason=reason, key=key, source_path=path,
            user=user, meta=meta, actor_name=actor_name,
        )  # fmt: skip
        outcomes.append(_outcome(name, path, document, duplicate=not created))

    for name, data, source_path in files:
        if not is_zip(name):
            store(name, data, source_path)
            continue
        label = source_path or name
        archive_key = hashlib.sha256(data).digest()
        try:
            for entry in zip_entries(data, archive_limits()):
                path = f"{label}/{entry.path}"
                if entry.data is None:
                    reject(entry.name, path, entry.error, archive_key + entry.path.encode())
                else:
                    store(entry.name, entry.data, path)
        except ArchiveError as exc:
            reject(name, label, str(exc), archive_key)
    return outcomes


def _outcome(name: str, path: str, document: Document, *, duplicate: bool) -> UploadOutcome:
    return UploadOutcome(
        name=document.name if not duplicate else name,
        path=path,
        status="duplicate" if duplicate else document.status,
        error=(
            f"The same content is already in this collection as {document.name}."
            if duplicate
            else (document.status_message if document.status == "failed" else "")
        ),
        document=document,
    )


def document_cancel(*, document: Document, user=None, meta: RequestMeta | None = None) -> bool:
    """Cancel a queued document (audited). Returns False if it was no longer queued."""
    with transaction.atomic():
        if not ingest_services.document_cancel(document=document):
            return False
        audit_record(
            event_type=AuditEvent.Type.DOCUMENTS_CANCELLED,
            actor=user,
            meta=meta,
            collection_id=document.collection_id,
            summary=f"Cancelled {document.name}",
            payload={"document_ids": [document.id], "names": [document.name]},
        )
    return True


def collection_cancel(
    *, collection: Collection, user=None, meta: RequestMeta | None = None, actor_name: str = ""
) -> int:
    """Cancel every queued document of a collection (audited). Returns how many."""
    with transaction.atomic():
        ids = ingest_services.collection_cancel(collection=collection)
        if ids:
            audit_record(
                event_type=AuditEvent.Type.DOCUMENTS_CANCELLED,
                actor=user,
                actor_username=actor_name,
                meta=meta,
                collection_id=collection.id,
                summary=f"Cancelled {len(ids)} queued document(s) in {collection.name}",
                payload={"collection": collection.slug, "document_ids": ids},
            )
    return len(ids)


def collection_reingest(
    *, collection: Collection, user=None, meta: RequestMeta | None = None, actor_name: str = ""
) -> int:
    """Queue every stored document of a collection again (audited). Returns how many."""
    with transaction.atomic():
        ids = ingest_services.collection_reingest(collection=collection)
        audit_record(
            event_type=AuditEvent.Type.COLLECTION_REINGESTED,
            actor=user,
            actor_username=actor_name,
            meta=meta,
            collection_id=collection.id,
            summary=f"Re-ingest {len(ids)} document(s) of {collection.name}",
            payload={"collection": collection.slug, "document_ids": ids},
        )
    return len(ids)


def document_reingest(*, document: Document, user=None, meta: RequestMeta | None = None) -> bool:
    """Queue one document again (retry a failed one); audited. False if it cannot be."""
    with transaction.atomic():
        if not ingest_services.document_reingest(document=document):
            return False
        audit_record(
            event_type=AuditEvent.Type.DOCUMENT_REINGESTED,
            actor=user,
            meta=meta,
            collection_id=document.collection_id,
            summary=f"Re-ingest {document.name}",
            payload={"document_id": document.id, "name": document.name, "sha256": document.sha256},
        )
    return True


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
