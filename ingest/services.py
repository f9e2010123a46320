"""Writes for collections and documents: create, store, reject, queue, cancel, re-ingest,
delete, and re-embed. Turning a stored document into passages is ingest/pipeline.py's.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from .embedding import get_embedder
from .leases import ClockNow, lease_free
from .models import PENDING_STATUSES, Chunk, Collection, Document

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def collection_create(
    *, name: str, slug: str = "", description: str = "", user: User | None = None
) -> Collection:
    slug = slug or slugify(name)[:100]
    return Collection.objects.create(name=name, slug=slug, description=description, created_by=user)


def collection_get_or_create(*, slug: str, create: bool) -> Collection:
    try:
        return Collection.objects.get(slug=slug)
    except Collection.DoesNotExist:
        if not create:
            raise
        return collection_create(name=slug.replace("-", " ").title(), slug=slug)


# After a failed send, later sends in this process are skipped for this long (each failed try
# costs about a second): their documents stay queued for documents_recover.
BROKER_DOWN_SECONDS = 5.0
_broker = {"down_until": 0.0}


def _enqueue(document_ids: list[int]) -> None:
    """Queue the documents' ingestion once the transaction that stored them commits (their
    dispatched_at is set by the caller, in that transaction)."""
    if document_ids:
        transaction.on_commit(functools.partial(_send, list(document_ids)))


def _send(document_ids: list[int]) -> None:
    """Send one task per document. When Redis cannot be reached the documents stay queued with
    no dispatched_at, and documents_recover sends them once it is back: an upload never fails
    because the queue is down. The task (ingest/tasks.py, "ingest.document") is found by name:
    it runs the pipeline, which stores an e-mail's attachments through this module, so
    importing it here would close a loop."""
    task = current_app.tasks["ingest.document"]
    unsent = list(document_ids)
    while unsent and time.monotonic() >= _broker["down_until"]:
        try:
            # No time limits in the message: the worker's own apply, the ones that keep
            # each task under its own visibility timeout (config/settings.py).
            task.apply_async(args=[unsent[0]], time_limit=None, soft_time_limit=None)
        except (BrokerError, RedisError, OSError) as exc:
            logger.warning("could not send an ingestion task: %s", exc)
            _broker["down_until"] = time.monotonic() + BROKER_DOWN_SECONDS
            break
        unsent.pop(0)
    if unsent:
        logger.warning("Redis is unreachable: %d document(s) left queued", len(unsent))
        Document.objects.filter(pk__in=unsent).update(dispatched_at=None)


def documents_dispatch(document_ids: list[int]) -> None:
    """Hand documents to the workers: note when, and send their tasks on commit."""
    Document.objects.filter(pk__in=document_ids).update(dispatched_at=ClockNow())
    _enqueue(document_ids)


def document_create(
    *,
    collection: Collection,
    name: str,
    data: bytes,
    source_path: str = "",
    user: User | None = None,
    enqueue: bool = True,
    parent: Document | None = None,
) -> tuple[Document, bool]:
    """Store an uploaded file and queue it for ingestion.

    Returns (document, created). The same bytes already in the collection are not stored again:
    the existing document is returned with created=False. A file over the size limit is kept as
    a failed document (its bytes are not stored) so the batch still reports it. `parent` links
    an e-mail attachment to its message.
    """
    name = Path(name).name[:255] or "unnamed"
    digest = hashlib.sha256(data).hexdigest()
    existing = Document.objects.filter(collection=collection, sha256=digest).first()
    if existing is not None:
        return existing, False
    document = Document(
        collection=collection,
        name=name,
        sha256=digest,
        size=len(data),
        source_path=source_path[:1000],
        uploaded_by=user,
        parent=parent,
    )
    too_big = len(data) > settings.UPLOAD_MAX_BYTES
    # Handed over now: to the workers (sent on commit), or to the caller that ingests it.
    document.dispatched_at = timezone.now()
    if too_big:
        document.status = Document.Status.FAILED
        document.status_message = (
            f"The file is {len(data) / 1e6:.1f} MB; the limit is "
            f"{settings.UPLOAD_MAX_BYTES / 1e6:.0f} MB (UPLOAD_MAX_BYTES)."
        )
        document.file.name = ""
        document.save()
        return document, True
    with transaction.atomic():
        document.file.save(name, ContentFile(data), save=False)
        document.save()
        if enqueue:
            _enqueue([document.id])
    return document, True


def document_reject(
    *,
    collection: Collection,
    name: str,
    reason: str,
    key: bytes,
    source_path: str = "",
    user: User | None = None,
) -> tuple[Document, bool]:
    """Record a file that was refused before it could be stored (e.g. a hostile archive entry)
    as a failed document with `reason`, so the batch reports it. `key` identifies the refused
    input (its hash stands in for the content's sha256, so the same refusal is not repeated).
    """
    digest = hashlib.sha256(b"rejected\0" + key).hexdigest()
    existing = Document.objects.filter(collection=collection, sha256=digest).first()
    if existing is not None:
        return existing, False
    document = Document.objects.create(
        collection=collection,
        name=Path(name.replace("\\", "/")).name[:255] or "unnamed",
        sha256=digest,
        size=0,
        source_path=source_path[:1000],
        uploaded_by=user,
        status=Document.Status.FAILED,
        status_message=reason,
    )
    return document, True


def document_requeue_unfinished() -> int:
    """Enqueue every document left queued or half-processed (idempotent: see document_ingest)."""
    ids = list(Document.objects.filter(status__in=PENDING_STATUSES).values_list("id", flat=True))
    with transaction.atomic():
        documents_dispatch(ids)
    return len(ids)


def documents_recover() -> int:
    """Send the task again for every pending document that no live worker holds and whose
    task is gone or may be (Celery beat runs this every INGEST_RECOVER_SECONDS):

    - its task never reached Redis (Redis was down when it was stored or re-queued);
    - the worker that held it stopped (its lease ran out) and it was not sent since;
    - it has waited INGEST_REQUEUE_SECONDS (the visibility timeout) since it was last sent:
      Redis may have lost the message.

    A task sent twice does no harm: the claim (ingest/leases.py) takes a document once.
    Returns how many were sent."""
    stale = timezone.now() - timedelta(seconds=settings.INGEST_REQUEUE_SECONDS)
    lost = (
        Q(dispatched_at__isnull=True)
        | Q(lease_expires_at__isnull=False, dispatched_at__lt=F("lease_expires_at"))
        | Q(dispatched_at__lt=stale)
    )
    ids = list(
        Document.objects.filter(status__in=PENDING_STATUSES)
        .filter(lease_free(), lost)
        .exclude(file="")
        .values_list("id", flat=True)
    )
    if ids:
        logger.info("re-sending %d document(s) whose ingestion task was lost", len(ids))
        with transaction.atomic():
            documents_dispatch(ids)
    return len(ids)


def document_delete(*, document: Document) -> None:
    """Remove a document, its chunks and vectors (cascade) and its stored original file;
    an e-mail's attachments (documents linked to it) go with it, files included."""
    storage = document.file.storage
    names: list[str] = []
    seen: set[int] = set()
    level = [document.pk]
    while level:  # the message, its attachments, their attachments (attached messages)
        seen.update(level)
        rows = Document.objects.filter(pk__in=level).values_list("file", flat=True)
        names.extend(name for name in rows if name)
        level = [
            pk
            for pk in Document.objects.filter(parent_id__in=level).values_list("pk", flat=True)
            if pk not in seen
        ]
    with transaction.atomic():
        document.delete()
        for name in names:
            transaction.on_commit(functools.partial(storage.delete, name))


def document_reingest(*, document: Document) -> bool:
    """Queue a document to be parsed, chunked and embedded again (its chunks are replaced).

    Returns False (and does nothing) for a document without a stored file (refused at upload)
    or one already waiting or in progress."""
    if not document.file:
        return False
    updated = (
        Document.objects.filter(pk=document.pk)
        .exclude(status__in=PENDING_STATUSES)
        .update(**_requeued())
    )
    if updated:
        _enqueue([document.id])
    return bool(updated)


def _requeued() -> dict[str, object]:
    """The fields of a document a person queued again: a fresh count of attempts."""
    now = timezone.now()
    return {
        "status": Document.Status.QUEUED,
        "status_message": "",
        "attempts": 0,
        "dispatched_at": now,
        "updated_at": now,
    }


def document_cancel(*, document: Document) -> bool:
    """Cancel a queued document: its task, when a worker takes it, finds it cancelled and skips
    it. Work already started is not interrupted. Returns whether the document was queued."""
    return bool(
        Document.objects.filter(pk=document.pk, status=Document.Status.QUEUED).update(
            status=Document.Status.CANCELLED,
            status_message="Cancelled before ingestion started.",
            updated_at=timezone.now(),
        )
    )


def collection_reingest(*, collection: Collection) -> list[int]:
    """Queue every stored, not-pending document of the collection again; returns their ids."""
    ids = list(
        collection.documents.exclude(status__in=PENDING_STATUSES)
        .exclude(file="")
        .values_list("id", flat=True)
    )
    with transaction.atomic():
        Document.objects.filter(id__in=ids).update(**_requeued())
        _enqueue(ids)
    return ids


def collection_cancel(*, collection: Collection) -> list[int]:
    """Cancel every queued document of the collection; returns their ids."""
    with transaction.atomic():
        ids = list(
            collection.documents.select_for_update()
            .filter(status=Document.Status.QUEUED)
            .values_list("id", flat=True)
        )
        Document.objects.filter(id__in=ids, status=Document.Status.QUEUED).update(
            status=Document.Status.CANCELLED,
            status_message="Cancelled before ingestion started.",
            updated_at=timezone.now(),
        )
    return ids


def chunk_statistics_refresh() -> None:
    """Refresh PostgreSQL's statistics on the chunks table now (autovacuum does it on its own
    schedule): full-text search weighs question words by how many chunks contain them, as
    ANALYZE last counted (see ingest/selectors.py)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ingest_chunk")


def chunks_reembed(
    *,
    batch_size: int = 256,
    collection: Collection | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Re-embed, in batches, every chunk whose vector came from another model than this
    process's embedder (after EMBEDDING_MODEL changed), and store the model's name with each.

    Each batch commits on its own, so the work can be stopped and resumed (what is done stays
    done); until it finishes, retrieval sees some vectors of each model. `on_batch(done, total)`
    hears of progress. Returns how many chunks were re-embedded.
    """
    embedder = get_embedder()
    stale = Chunk.objects.exclude(embedding_model=embedder.name)
    if collection is not None:
        stale = stale.filter(collection=collection)
    total = stale.count()
    done = last_id = 0
    while True:
        batch = list(stale.filter(id__gt=last_id).order_by("id").only("id", "text")[:batch_size])
        if not batch:
            break
        vectors = embedder.embed([c.text for c in batch])
        for chunk, vector in zip(batch, vectors, strict=True):
            chunk.embedding = vector
            chunk.embedding_model = embedder.name
        with transaction.atomic():
            Chunk.objects.bulk_update(batch, ["embedding", "embedding_model"])
        last_id = batch[-1].id
        done += len(batch)
        if on_batch is not None:
            on_batch(done, total)
    return done
