"""Writes for ingestion: create collections and documents, run the pipeline, index chunks.

Pipeline (one way, typed hand-offs): parse(bytes) -> ParsedDocument -> chunk() -> list[ChunkDraft]
-> embed(texts) -> vectors -> index(document, drafts, vectors). Only `document_index` touches
the chunks table, in one transaction that replaces the document's chunks, so a document has
all its chunks or none.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from . import chunking, parsers, records
from .embedding import get_embedder
from .models import PENDING_STATUSES, Chunk, Collection, Document
from .parsers import ParsedDocument, ParseError

logger = logging.getLogger(__name__)


@dataclass
class StageTimings:
    """Seconds one document spent in each pipeline stage (bench/ingest.py adds them up)."""

    parse: float = 0.0
    ocr: float = 0.0  # part of parsing: pages read by Tesseract (measured by the parser)
    chunk: float = 0.0
    embed: float = 0.0
    write: float = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)


@dataclass(frozen=True)
class IngestResult:
    document_id: int
    status: str
    pages: int | None
    chunks: int
    error: str
    seconds: float
    timings: StageTimings = field(default_factory=StageTimings)
    # Documents created from this one's attachments (e-mail), already queued unless the
    # caller asked to ingest them itself (document_ingest(enqueue_attachments=False)).
    attachment_ids: tuple[int, ...] = ()


def collection_create(*, name: str, slug: str = "", description: str = "", user=None) -> Collection:
    slug = slug or slugify(name)[:100]
    return Collection.objects.create(name=name, slug=slug, description=description, created_by=user)


def collection_get_or_create(*, slug: str, create: bool) -> Collection:
    try:
        return Collection.objects.get(slug=slug)
    except Collection.DoesNotExist:
        if not create:
            raise
        return collection_create(name=slug.replace("-", " ").title(), slug=slug)


def _enqueue(document_id: int) -> None:
    from .tasks import ingest_document  # tasks import services; keep the import one-way at load

    transaction.on_commit(lambda: ingest_document.delay(document_id))


def document_create(
    *,
    collection: Collection,
    name: str,
    data: bytes,
    source_path: str = "",
    user=None,
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
            _enqueue(document.id)
    return document, True


def document_reject(
    *, collection: Collection, name: str, reason: str, key: bytes, source_path: str = "", user=None
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


def _set_status(document: Document, status: str, message: str = "") -> None:
    document.status = status
    document.status_message = message
    Document.objects.filter(pk=document.pk).update(
        status=status, status_message=message, updated_at=timezone.now()
    )


def _page_records(parsed: ParsedDocument) -> list[dict]:
    return [
        {"page": p.number, "ocr": p.ocr, "confidence": p.confidence}
        if p.ocr
        else {"page": p.number, "ocr": False}
        for p in parsed.pages
    ]


def _attachments_create(
    *, document: Document, parsed: ParsedDocument, enqueue: bool
) -> tuple[int, ...]:
    """Store an e-mail's attachments as documents of the same collection, linked to it.

    Runs inside document_index's transaction. An attachment already in the collection (same
    bytes) is not stored twice and keeps its own place (it is not re-linked).
    """
    ids = []
    for attachment in parsed.attachments:
        child, created = document_create(
            collection=document.collection,
            name=attachment.name,
            data=attachment.data,
            source_path=document.source_path,
            user=document.uploaded_by,
            enqueue=enqueue,
            parent=document,
        )
        if created:
            ids.append(child.id)
    return tuple(ids)


def document_index(
    *,
    document: Document,
    parsed: ParsedDocument,
    drafts: list[chunking.ChunkDraft],
    vectors: list[list[float]],
    embedding_model: str,
    enqueue_attachments: bool = True,
) -> tuple[int, ...]:
    """Replace the document's chunks with `drafts` and mark it ready, in one transaction.

    Attachments the parser found are stored as documents of their own in the same
    transaction; returns their ids."""
    if len(drafts) != len(vectors):
        raise ValueError("one vector per chunk draft")
    with transaction.atomic():
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document=document,
                    collection_id=document.collection_id,
                    ordinal=d.ordinal,
                    text=d.text,
                    start=d.start,
                    end=d.end,
                    page=d.page,
                    page_end=d.page_end,
                    heading=d.heading[:500],
                    sources=records.chunk_sources(parsed, d.start, d.end) if parsed.refs else [],
                    embedding=v,
                    embedding_model=embedding_model,
                )
                for d, v in zip(drafts, vectors, strict=True)
            ],
            batch_size=500,
        )
        if parsed.patient is not None:
            records.patient_link(document=document, identity=parsed.patient)
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.READY,
            status_message="",
            text=parsed.text,
            mime_type=parsed.mime_type,
            page_count=parsed.page_count,
            pages=_page_records(parsed),
            chunk_count=len(drafts),
            ingested_at=timezone.now(),
            updated_at=timezone.now(),
        )
        attachment_ids = _attachments_create(
            document=document, parsed=parsed, enqueue=enqueue_attachments
        )
    return attachment_ids


def document_ingest(
    *, document_id: int, force: bool = False, enqueue_attachments: bool = True
) -> IngestResult:
    """Run the whole pipeline for one document; bad input ends as a failed document.

    Safe to run again (a redelivered task): a ready or cancelled document is skipped unless
    `force`, and indexing replaces chunks atomically, so no partial or duplicate chunks remain.
    An e-mail's attachments become documents of their own, queued for the workers, or, with
    enqueue_attachments=False, left for the caller to ingest (IngestResult.attachment_ids).
    """
    return documents_ingest(
        document_ids=[document_id], force=force, enqueue_attachments=enqueue_attachments
    )[0]


@dataclass
class _Prepared:
    """A document parsed and chunked, waiting for its vectors."""

    document: Document
    parsed: ParsedDocument
    drafts: list[chunking.ChunkDraft]
    started: float
    timings: StageTimings


def documents_ingest(
    *,
    document_ids: list[int],
    force: bool = False,
    embed_batch: int = 128,
    on_done: Callable[[IngestResult], None] | None = None,
    enqueue_attachments: bool = True,
) -> list[IngestResult]:
    """Ingest several documents, embedding their chunks together.

    Documents are parsed and chunked one by one; their chunks are embedded in calls of at least
    `embed_batch` texts across documents (fewer, larger calls: the embedder groups texts of
    similar length, so less padding), then each document is indexed in its own transaction.
    A call runs in a background thread while the next documents are parsed.
    Each document ends ready or failed on its own; `on_done` hears of each as it finishes.
    Results come back in the order of `document_ids`.
    """
    results: dict[int, IngestResult] = {}
    waiting: list[_Prepared] = []
    # The batches embedding in the background (oldest first), and their documents. The
    # embedder is pure computation (ONNX Runtime releases the GIL), so the next documents are
    # parsed on this thread meanwhile; every database write stays on this thread.
    running: list[tuple[Future[tuple[list[list[float]], float]], list[_Prepared]]] = []

    def finish(result: IngestResult) -> None:
        results[result.document_id] = result
        if on_done is not None:
            on_done(result)

    def embed(texts: list[str]) -> tuple[list[list[float]], float]:
        started = time.perf_counter()
        vectors = get_embedder().embed(texts)
        return vectors, time.perf_counter() - started

    def collect(keep: int = 0) -> None:
        """Wait for the oldest batches in the background, oldest first, and index their
        documents, until at most `keep` batches are left running."""
        while len(running) > keep:
            future, batch = running.pop(0)
            try:
                vectors, seconds = future.result()
                name = get_embedder().name
            except Exception as exc:
                logger.exception(
                    "embedding failed for documents %s", [p.document.id for p in batch]
                )
                for p in batch:
                    finish(_fail(p.document, p.started, p.timings, _internal(exc)))
                continue
            share = seconds / max(len(vectors), 1)
            offset = 0
            for p in batch:
                n = len(p.drafts)
                p.timings.embed += share * n
                vectors_of = vectors[offset : offset + n]
                finish(_index(p, vectors_of, name, enqueue_attachments=enqueue_attachments))
                offset += n

    def flush(pool: ThreadPoolExecutor) -> None:
        # The new batch is queued first, so the embedder goes straight on to it while this
        # thread indexes the previous batch's documents (one batch at a time embeds; at most
        # two are held).
        if waiting:
            batch = list(waiting)
            waiting.clear()
            running.append((pool.submit(embed, [d.text for p in batch for d in p.drafts]), batch))
        collect(keep=1)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool:
        try:
            for document_id in document_ids:
                prepared = _prepare(document_id, force=force)
                if isinstance(prepared, IngestResult):
                    finish(prepared)
                    continue
                waiting.append(prepared)
                # The first batch is smaller, so the embedder starts early instead of idling
                # while the first documents are parsed.
                if sum(len(p.drafts) for p in waiting) >= (
                    embed_batch if results or running else max(1, embed_batch // 4)
                ):
                    flush(pool)
            flush(pool)
        finally:
            collect()
    return [results[i] for i in document_ids]


def _result(
    document: Document,
    started: float,
    timings: StageTimings,
    attachment_ids: tuple[int, ...] = (),
) -> IngestResult:
    document.refresh_from_db(fields=["status", "page_count", "chunk_count", "status_message"])
    return IngestResult(
        document_id=document.id,
        status=document.status,
        pages=document.page_count,
        chunks=document.chunk_count,
        error=document.status_message if document.status == "failed" else "",
        seconds=time.monotonic() - started,
        timings=timings,
        attachment_ids=attachment_ids,
    )


def _internal(exc: Exception) -> str:
    return f"Internal error while ingesting ({type(exc).__name__}); see the worker log."


def _fail(document: Document, started: float, timings: StageTimings, message: str):
    _set_status(document, Document.Status.FAILED, message)
    return _result(document, started, timings)


def _prepare(document_id: int, *, force: bool) -> _Prepared | IngestResult:
    """Claim, parse and chunk one document; an IngestResult when it goes no further."""
    started = time.monotonic()
    timings = StageTimings()
    document = Document.objects.select_related("collection").defer("text").get(pk=document_id)
    if document.status == Document.Status.FAILED and not document.file:
        return _result(document, started, timings)  # refused at upload; nothing to parse
    # Claim the document: only pending work (or, with `force`, a finished document) moves on.
    # A cancelled or already-ready document is left as it is, so a redelivered or cancelled
    # task does nothing.
    claimable = list(PENDING_STATUSES)
    if force:
        claimable += [Document.Status.READY, Document.Status.FAILED, Document.Status.CANCELLED]
    claimed = Document.objects.filter(pk=document.pk, status__in=claimable).update(
        status=Document.Status.PARSING, status_message="", updated_at=timezone.now()
    )
    if not claimed:
        return _result(document, started, timings)
    try:
        with timings.stage("parse"):
            with document.file.open("rb") as handle:
                data = handle.read()
            parsed = parsers.parse(
                data,
                document.name,
                on_ocr=lambda: _set_status(document, Document.Status.OCR),
            )
        # OCR runs inside parsing; the parser measures it so the stages add up.
        timings.ocr = parsed.ocr_seconds
        timings.parse -= parsed.ocr_seconds
        with timings.stage("chunk"):
            drafts = chunking.chunk(
                parsed, size=settings.CHUNK_SIZE, overlap=settings.CHUNK_OVERLAP
            )
        if not drafts:
            raise ParseError("The file contains no text.")
    except ParseError as exc:
        logger.info("document %s failed: %s", document.id, exc)
        return _fail(document, started, timings, str(exc))
    except FileNotFoundError:
        return _fail(document, started, timings, "The stored file is missing.")
    except Exception as exc:
        logger.exception("unexpected error ingesting document %s", document.id)
        return _fail(document, started, timings, _internal(exc))
    _set_status(document, Document.Status.EMBEDDING)
    return _Prepared(document, parsed, drafts, started, timings)


def _index(
    prepared: _Prepared, vectors: list[list[float]], model: str, *, enqueue_attachments: bool
) -> IngestResult:
    document, timings = prepared.document, prepared.timings
    try:
        with timings.stage("write"):
            attachment_ids = document_index(
                document=document,
                parsed=prepared.parsed,
                drafts=prepared.drafts,
                vectors=vectors,
                embedding_model=model,
                enqueue_attachments=enqueue_attachments,
            )
    except Exception as exc:
        logger.exception("unexpected error indexing document %s", document.id)
        return _fail(document, prepared.started, timings, _internal(exc))
    return _result(document, prepared.started, timings, attachment_ids)


def document_requeue_unfinished() -> int:
    """Enqueue every document left queued or half-processed (idempotent: see document_ingest)."""
    ids = list(Document.objects.filter(status__in=PENDING_STATUSES).values_list("id", flat=True))
    with transaction.atomic():
        for document_id in ids:
            _enqueue(document_id)
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
            transaction.on_commit(lambda name=name: storage.delete(name))


def document_reingest(*, document: Document) -> bool:
    """Queue a document to be parsed, chunked and embedded again (its chunks are replaced).

    Returns False (and does nothing) for a document without a stored file (refused at upload)
    or one already waiting or in progress."""
    if not document.file:
        return False
    updated = (
        Document.objects.filter(pk=document.pk)
        .exclude(status__in=PENDING_STATUSES)
        .update(status=Document.Status.QUEUED, status_message="", updated_at=timezone.now())
    )
    if updated:
        _enqueue(document.id)
    return bool(updated)


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
        Document.objects.filter(id__in=ids).update(
            status=Document.Status.QUEUED, status_message="", updated_at=timezone.now()
        )
        for document_id in ids:
            _enqueue(document_id)
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
