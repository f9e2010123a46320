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
from collections.abc import Iterator
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
from .models import Chunk, Collection, Document
from .parsers import ParsedDocument, ParseError

logger = logging.getLogger(__name__)


@dataclass
class StageTimings:
    """Seconds one document spent in each pipeline stage (bench/ingest.py adds them up)."""

    parse: float = 0.0
    ocr: float = 0.0  # no OCR stage yet
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
) -> tuple[Document, bool]:
    """Store an uploaded file and queue it for ingestion.

    Returns (document, created). The same bytes already in the collection are not stored again:
    the existing document is returned with created=False. A file over the size limit is kept as
    a failed document (its bytes are not stored) so the batch still reports it.
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


def _set_status(document: Document, status: str, message: str = "") -> None:
    document.status = status
    document.status_message = message
    Document.objects.filter(pk=document.pk).update(
        status=status, status_message=message, updated_at=timezone.now()
    )


def document_index(
    *,
    document: Document,
    parsed: ParsedDocument,
    drafts: list[chunking.ChunkDraft],
    vectors: list[list[float]],
    embedding_model: str,
) -> int:
    """Replace the document's chunks with `drafts` and mark it ready, in one transaction."""
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
            chunk_count=len(drafts),
            ingested_at=timezone.now(),
            updated_at=timezone.now(),
        )
    return len(drafts)


def document_ingest(*, document_id: int, force: bool = False) -> IngestResult:
    """Run the whole pipeline for one document; bad input ends as a failed document.

    Safe to run again (a redelivered task): a ready document is skipped unless `force`, and
    indexing replaces chunks atomically, so no partial or duplicate chunks can remain.
    """
    started = time.monotonic()
    timings = StageTimings()
    document = Document.objects.select_related("collection").get(pk=document_id)

    def result(error: str = "") -> IngestResult:
        document.refresh_from_db(fields=["status", "page_count", "chunk_count", "status_message"])
        return IngestResult(
            document_id=document.id,
            status=document.status,
            pages=document.page_count,
            chunks=document.chunk_count,
            error=error or (document.status_message if document.status == "failed" else ""),
            seconds=time.monotonic() - started,
            timings=timings,
        )

    if document.status == Document.Status.READY and not force:
        return result()
    if document.status == Document.Status.FAILED and not document.file:
        return result()  # rejected at upload (e.g. too large); nothing to parse
    try:
        _set_status(document, Document.Status.PARSING)
        with timings.stage("parse"):
            with document.file.open("rb") as handle:
                data = handle.read()
            parsed = parsers.parse(data, document.name)
        with timings.stage("chunk"):
            drafts = chunking.chunk(
                parsed, size=settings.CHUNK_SIZE, overlap=settings.CHUNK_OVERLAP
            )
        if not drafts:
            raise ParseError("The file contains no text.")
        _set_status(document, Document.Status.EMBEDDING)
        embedder = get_embedder()
        with timings.stage("embed"):
            vectors = embedder.embed([d.text for d in drafts])
        with timings.stage("write"):
            document_index(
                document=document,
                parsed=parsed,
                drafts=drafts,
                vectors=vectors,
                embedding_model=embedder.name,
            )
    except ParseError as exc:
        _set_status(document, Document.Status.FAILED, str(exc))
        logger.info("document %s failed: %s", document.id, exc)
    except FileNotFoundError:
        _set_status(document, Document.Status.FAILED, "The stored file is missing.")
    except Exception as exc:
        logger.exception("unexpected error ingesting document %s", document.id)
        _set_status(
            document,
            Document.Status.FAILED,
            f"Internal error while ingesting ({type(exc).__name__}); see the worker log.",
        )
    return result()


def document_requeue_unfinished() -> int:
    """Enqueue every document left queued or half-processed (idempotent: see document_ingest)."""
    ids = list(
        Document.objects.filter(
            status__in=[Document.Status.QUEUED, Document.Status.PARSING, Document.Status.EMBEDDING]
        ).values_list("id", flat=True)
    )
    with transaction.atomic():
        for document_id in ids:
            _enqueue(document_id)
    return len(ids)


def document_delete(*, document: Document) -> None:
    """Remove a document, its chunks and vectors (cascade) and its stored original file."""
    name = document.file.name if document.file else ""
    storage = document.file.storage if document.file else None
    with transaction.atomic():
        document.delete()
        if name and storage is not None:
            transaction.on_commit(lambda: storage.delete(name))


def document_reingest(*, document: Document) -> None:
    """Queue a document to be parsed, chunked and embedded again (its chunks are replaced)."""
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.QUEUED, status_message="", updated_at=timezone.now()
    )
    _enqueue(document.id)


def chunk_statistics_refresh() -> None:
    """Refresh PostgreSQL's statistics on the chunks table now (autovacuum does it on its own
    schedule): full-text search weighs question words by how many chunks contain them, as
    ANALYZE last counted (see ingest/selectors.py)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ingest_chunk")
