"""Audited actions: what users and administrators do, each with its audit entry.

Each function performs one ingest (or auth) service and records its audit entry in the same
transaction (`audit.append.audited`): no action without its entry. Views, the API, the Django
admin and management commands call these. `user` is who acts (None for a command's operator,
named by `actor_name`), `meta` where the request came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied

from audit.append import Actor, RequestMeta, audited
from audit.erasure import audit_redact_document, erase_quoted
from audit.models import AuditEvent
from ingest import selectors as ingest_selectors
from ingest import services as ingest_services
from ingest.archives import upload_entries

from .models import Answer, Citation, Feedback

if TYPE_CHECKING:
    from collections.abc import Iterable

    from django.contrib.auth.models import User

    from ingest.models import Collection, Document


def document_upload(
    *,
    collection: Collection,
    name: str,
    data: bytes,
    user: User | None = None,
    meta: RequestMeta | None = None,
    source_path: str = "",
    enqueue: bool = True,
    actor_name: str = "",
) -> tuple[Document, bool]:
    """Store one file and queue it for ingestion; (document, False) for a duplicate."""
    with audited(user=user, meta=meta, name=actor_name) as actor:
        document, created = ingest_services.document_create(
            collection=collection,
            name=name,
            data=data,
            user=user,
            source_path=source_path,
            enqueue=enqueue,
        )
        if created:
            actor.record(
                AuditEvent.Type.DOCUMENT_UPLOADED,
                collection_id=collection.id,
                summary=f"Uploaded {document.name}",
                payload=_document_payload(
                    collection, document, "sha256", "size", "status", "status_message"
                ),
            )
    return document, created


def document_rejected(
    *,
    collection: Collection,
    name: str,
    reason: str,
    key: bytes,
    source_path: str = "",
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> tuple[Document, bool]:
    """Record an input refused before storing (a hostile archive entry) as a failed document."""
    with audited(user=user, meta=meta, name=actor_name) as actor:
        document, created = ingest_services.document_reject(
            collection=collection,
            name=name,
            reason=reason,
            key=key,
            source_path=source_path,
            user=user,
        )
        if created:
            actor.record(
                AuditEvent.Type.DOCUMENT_REJECTED,
                collection_id=collection.id,
                summary=f"Refused {document.name}",
                payload={
                    **_document_payload(collection, document, "source_path"),
                    "status_message": reason,
                },
            )
    return document, created


def _document_payload(collection: Collection, document: Document, *fields: str) -> dict[str, Any]:
    """What an upload entry says of its document: collection, id, name and `fields`."""
    return {
        "collection": collection.slug,
        "document_id": document.id,
        "name": document.name,
        **{name: getattr(document, name) for name in fields},
    }


@dataclass(frozen=True)
class UploadOutcome:
    """What became of one uploaded file (or archive entry)."""

    name: str
    path: str  # where it came from: a file path, or "archive.zip/inner/path"
    status: str  # the document's status, or "duplicate"
    error: str
    document: Document | None


def documents_upload(
    *,
    collection: Collection,
    files: Iterable[tuple[str, bytes, str]],
    user: User | None = None,
    meta: RequestMeta | None = None,
    enqueue: bool = True,
    actor_name: str = "",
) -> list[UploadOutcome]:
    """Store a batch of files `(name, data, source_path)`; `.zip` files are unpacked
    (ingest.archives.upload_entries) and each entry stored on its own. Every input ends as one
    outcome: queued (or failed at once, with the reason), or a duplicate of a document already
    in the collection. A bad file or entry never stops the rest of the batch."""
    outcomes: list[UploadOutcome] = []
    who: dict[str, Any] = {"user": user, "meta": meta, "actor_name": actor_name}
    for entry in upload_entries(files):
        if entry.data is None:
            document, created = document_rejected(
                collection=collection,
                name=entry.name,
                reason=entry.error,
                key=entry.key,
                source_path=entry.path,
                **who,
            )
        else:
            document, created = document_upload(
                collection=collection,
                name=entry.name,
                data=entry.data,
                source_path=entry.path,
                enqueue=enqueue,
                **who,
            )
        outcomes.append(_outcome(entry.name, entry.path, document, duplicate=not created))
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


def document_cancel(
    *, document: Document, user: User | None = None, meta: RequestMeta | None = None
) -> bool:
    """Cancel a queued document (audited). Returns False if it was no longer queued."""
    with audited(user=user, meta=meta) as actor:
        if not ingest_services.document_cancel(document=document):
            return False
        actor.record(
            AuditEvent.Type.DOCUMENTS_CANCELLED,
            collection_id=document.collection_id,
            summary=f"Cancelled {document.name}",
            payload={"document_ids": [document.id], "names": [document.name]},
        )
    return True


def collection_cancel(
    *,
    collection: Collection,
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> int:
    """Cancel every queued document of a collection (audited). Returns how many."""
    with audited(user=user, meta=meta, name=actor_name) as actor:
        ids = ingest_services.collection_cancel(collection=collection)
        if ids:
            actor.record(
                AuditEvent.Type.DOCUMENTS_CANCELLED,
                collection_id=collection.id,
                summary=f"Cancelled {len(ids)} queued document(s) in {collection.name}",
                payload={"collection": collection.slug, "document_ids": ids},
            )
    return len(ids)


def collection_reingest(
    *,
    collection: Collection,
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> int:
    """Queue every stored document of a collection again (audited). Returns how many."""
    with audited(user=user, meta=meta, name=actor_name) as actor:
        ids = ingest_services.collection_reingest(collection=collection)
        actor.record(
            AuditEvent.Type.COLLECTION_REINGESTED,
            collection_id=collection.id,
            summary=f"Re-ingest {len(ids)} document(s) of {collection.name}",
            payload={"collection": collection.slug, "document_ids": ids},
        )
    return len(ids)


def document_reingest(
    *, document: Document, user: User | None = None, meta: RequestMeta | None = None
) -> bool:
    """Queue one document again (retry a failed one); audited. False if it cannot be."""
    with audited(user=user, meta=meta) as actor:
        if not ingest_services.document_reingest(document=document):
            return False
        actor.record(
            AuditEvent.Type.DOCUMENT_REINGESTED,
            collection_id=document.collection_id,
            summary=f"Re-ingest {document.name}",
            payload={"document_id": document.id, "name": document.name, "sha256": document.sha256},
        )
    return True


def _refuse_under_legal_hold(collection: Collection) -> None:
    if collection.legal_hold:
        raise PermissionDenied(f"{collection.name} is under legal hold: nothing may be erased.")


def document_erase(
    *,
    document: Document,
    user: User | None = None,
    meta: RequestMeta | None = None,
    reason: str = "",
) -> int:
    """Erase a document (a data subject's request, personal data uploaded by mistake): delete it
    with its attachments, chunks, vectors and files, remove its text from the answers and
    citations that quoted it, and from the audit entries: those about it become tombstones,
    those that quote it lose exactly its passages' text (every hash stays, so the chain still
    verifies). Administrators only: a collection manager deletes (document_delete) and the
    trail keeps what it recorded. Refused under legal hold. Returns how many audit entries
    changed."""
    if user is not None and not ingest_selectors.user_sees_everything(user):
        raise PermissionDenied(
            "Only an administrator may erase a document and its quotes from the audit trail; "
            "a collection manager may delete it from the collection."
        )
    collection = document.collection
    _refuse_under_legal_hold(collection)
    family = ingest_selectors.document_family_ids(document)
    with audited(user=user, meta=meta) as actor:
        document_id, name, sha = document.id, document.name, document.sha256
        answers_changed = _forget_quotes(family)
        ingest_services.document_delete(document=document)
        redacted = sum(
            audit_redact_document(document_id=i, reason=f"document {document_id} erased")
            for i in family
        )
        actor.record(
            AuditEvent.Type.DOCUMENT_ERASED,
            collection_id=collection.id,
            summary=f"Erased {name}",
            # The erasure record names the file only by its hash and id.
            payload={
                "document_id_erased": document_id,
                "attachments_erased": family[1:],
                "sha256": sha,
                "reason": reason,
                "audit_entries_redacted": redacted,
                "answers_changed": answers_changed,
            },
        )
    return redacted


def _forget_quotes(document_ids: list[int]) -> int:
    """Remove the documents' text from stored answers and their citations; how many answers
    changed."""
    quoted: dict[int, list[str]] = {}
    for answer_id, text in Citation.objects.filter(document_id__in=document_ids).values_list(
        "answer_id", "text"
    ):
        quoted.setdefault(answer_id, []).append(text)
    changed = 0
    for answer in Answer.objects.filter(pk__in=quoted).only("pk", "text"):
        text = erase_quoted(answer.text, quoted[answer.pk])
        if text != answer.text:
            Answer.objects.filter(pk=answer.pk).update(text=text)
            changed += 1
    Citation.objects.filter(document_id__in=document_ids).update(text="", heading="")
    return changed


def document_delete(
    *, document: Document, user: User | None = None, meta: RequestMeta | None = None
) -> None:
    """A collection manager removes a document (and its attachments, chunks, vectors and files)
    from the collection. The audit trail keeps what it recorded; erasing that is
    document_erase's, for administrators."""
    collection = document.collection
    _refuse_under_legal_hold(collection)
    with audited(user=user, meta=meta) as actor:
        family = ingest_selectors.document_family_ids(document)
        document_id, name, sha = document.id, document.name, document.sha256
        ingest_services.document_delete(document=document)
        actor.record(
            AuditEvent.Type.DOCUMENT_DELETED,
            collection_id=collection.id,
            summary=f"Deleted {name}",
            payload={
                "document_id": document_id,
                "attachments_deleted": family[1:],
                "name": name,
                "sha256": sha,
            },
        )


def collection_delete(
    *, collection: Collection, user: User | None = None, meta: RequestMeta | None = None
) -> int:
    """Erase every document of the collection (files, chunks, vectors, quoting audit entries
    tombstoned), then the collection itself. Refused under legal hold."""
    _refuse_under_legal_hold(collection)
    with audited(user=user, meta=meta) as actor:
        redacted = 0
        documents = list(collection.documents.all())
        for document in documents:
            redacted += document_erase(
                document=document, user=user, meta=meta, reason="collection deleted"
            )
        collection_id, slug, name = collection.id, collection.slug, collection.name
        collection.delete()
        actor.record(
            AuditEvent.Type.COLLECTION_DELETED,
            collection_id=collection_id,
            summary=f"Deleted collection {name}",
            payload={"slug": slug, "name": name, "documents": len(documents)},
        )
    return redacted


def collection_saved(
    *,
    collection: Collection,
    created: bool,
    changes: dict[str, Any],
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> None:
    """Audit a collection created or changed (in the caller's transaction, if any)."""
    Actor(user=user, meta=meta, name=actor_name).record(
        AuditEvent.Type.COLLECTION_CREATED if created else AuditEvent.Type.COLLECTION_CHANGED,
        collection_id=collection.id,
        summary=f"{'Created' if created else 'Changed'} collection {collection.name}",
        payload={"slug": collection.slug, "name": collection.name, "changes": changes},
    )


def feedback_create(
    *,
    answer: Answer,
    user: User | None,
    helpful: bool,
    comment: str,
    meta: RequestMeta | None = None,
) -> Feedback:
    """Store a user's feedback on an answer, with its audit entry."""
    with audited(user=user, meta=meta) as actor:
        feedback = Feedback.objects.create(
            answer=answer, user=user, helpful=helpful, comment=comment.strip()[:2000]
        )
        actor.record(
            AuditEvent.Type.FEEDBACK,
            collection_id=answer.question.collection_id,
            summary=f"{'Helpful' if helpful else 'Not helpful'}: {answer.question.text}",
            payload={
                "answer_id": answer.id,
                "question_id": answer.question_id,
                "helpful": helpful,
                "comment": feedback.comment,
            },
        )
    return feedback
