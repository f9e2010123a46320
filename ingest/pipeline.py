"""The ingestion pipeline: a stored document becomes indexed passages, or a failed document
with a reason a person understands.

One way, typed hand-offs: parse(bytes) -> ParsedDocument -> chunk() -> list[ChunkDraft]
-> embed(texts) -> vectors -> index(document, drafts, vectors). Only `document_index` touches
the chunks table, in one transaction that replaces the document's chunks, so a document has
all its chunks or none. A run claims each document under a lease (ingest/leases.py) and
writes only while it holds it, so two workers never ingest one document.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from . import chunking, parsers, records, signals
from .embedding import get_embedder
from .leases import LeaseHolder, LeaseLost, time_limit_message
from .models import Chunk, Document
from .parsers import ParsedDocument, ParseError
from .services import document_create

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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


def _set_status(document: Document, status: str, message: str = "") -> None:
    """Move the document to `status`, only while this run still holds it (its lease_owner);
    a failure also ends the lease. Raises LeaseLost when another worker holds it now."""
    document.status = status
    document.status_message = message
    rows = Document.objects.filter(pk=document.pk)
    if document.lease_owner:
        rows = rows.filter(lease_owner=document.lease_owner)
    lease = {"lease_owner": "", "lease_expires_at": None} if status == "failed" else {}
    if not rows.update(status=status, status_message=message, updated_at=timezone.now(), **lease):
        raise LeaseLost(document.pk)


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
            signals.attachment_stored.send(sender=Document, document=child, parent=document)
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
    transaction; returns their ids. Raises LeaseLost, writing nothing, unless the document's
    `lease_owner` (if set) still holds it: the row is locked first."""
    if len(drafts) != len(vectors):
        raise ValueError("one vector per chunk draft")
    with transaction.atomic():
        if document.lease_owner and not list(
            Document.objects.select_for_update()
            .filter(pk=document.pk, lease_owner=document.lease_owner)
            .values_list("pk", flat=True)
        ):
            raise LeaseLost(document.pk)
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
            lease_owner="",
            lease_expires_at=None,
        )
        return _attachments_create(document=document, parsed=parsed, enqueue=enqueue_attachments)


def document_ingest(
    *, document_id: int, force: bool = False, enqueue_attachments: bool = True
) -> IngestResult:
    """Run the whole pipeline for one document; bad input ends as a failed document.

    Safe to run again (a redelivered task): a ready or cancelled document is skipped unless
    `force`, one that another live worker holds is left to it, and indexing replaces chunks
    atomically, so no partial or duplicate chunks remain.
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
    Results come back in the order of `document_ids`. Leases (ingest/leases.py) are renewed
    in the background while this runs.
    """
    holder = LeaseHolder()
    results: dict[int, IngestResult] = {}
    waiting: list[_Prepared] = []
    # The batches embedding in the background (oldest first), and their documents. The
    # embedder is pure computation (ONNX Runtime releases the GIL), so the next documents are
    # parsed on this thread meanwhile; every database write stays on this thread.
    running: list[tuple[Future[tuple[list[list[float]], float]], list[_Prepared]]] = []

    def finish(result: IngestResult) -> None:
        holder.done(result.document_id)
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
                ids = [p.document.id for p in batch]
                if isinstance(exc, SoftTimeLimitExceeded):
                    logger.warning("time limit reached while embedding documents %s", ids)
                else:
                    logger.exception("embedding failed for documents %s", ids)
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

    try:
        with (
            holder.heartbeat(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool,
        ):
            try:
                for document_id in document_ids:
                    prepared = _prepare(document_id, force=force, holder=holder)
                    if isinstance(prepared, IngestResult):
                        finish(prepared)
                        continue
                    waiting.append(prepared)
                    # The first batch is smaller, so the embedder starts early instead of
                    # idling while the first documents are parsed.
                    if sum(len(p.drafts) for p in waiting) >= (
                        embed_batch if results or running else max(1, embed_batch // 4)
                    ):
                        flush(pool)
                flush(pool)
            finally:
                collect()
    except SoftTimeLimitExceeded:
        # The Celery task's soft time limit struck between stages: say so on what is held.
        holder.fail_all(time_limit_message())
        raise
    except BaseException as exc:
        # Let go at once, so the task's retry (a database error) or the periodic recovery can
        # take the documents again; a database error does not count as an attempt.
        holder.release(refund=isinstance(exc, OperationalError))
        raise
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
    if isinstance(exc, SoftTimeLimitExceeded):
        return time_limit_message()
    return f"Internal error while ingesting ({type(exc).__name__}); see the worker log."


def _fail(document: Document, started: float, timings: StageTimings, message: str) -> IngestResult:
    try:
        _set_status(document, Document.Status.FAILED, message)
    except LeaseLost:
        logger.info("document %s: another worker took it over; not marking it failed", document.id)
    return _result(document, started, timings)


def _prepare(document_id: int, *, force: bool, holder: LeaseHolder) -> _Prepared | IngestResult:
    """Claim, parse and chunk one document; an IngestResult when it goes no further."""
    started = time.monotonic()
    timings = StageTimings()
    document = Document.objects.select_related("collection").defer("text").get(pk=document_id)
    if document.status == Document.Status.FAILED and not document.file:
        return _result(document, started, timings)  # refused at upload; nothing to parse
    # Claim the document: only pending work (or, with `force`, a finished document) that no
    # live worker holds moves on. A cancelled or already-ready document is left as it is, so a
    # redelivered or cancelled task does nothing; so is one another worker is ingesting.
    if not holder.claim(document.pk, force=force):
        return _result(document, started, timings)
    document.status, document.lease_owner = Document.Status.PARSING, holder.owner
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
    except LeaseLost:
        return _result(document, started, timings)
    except ParseError as exc:
        logger.info("document %s failed: %s", document.id, exc)
        return _fail(document, started, timings, str(exc))
    except FileNotFoundError:
        return _fail(document, started, timings, "The stored file is missing.")
    except Exception as exc:
        logger.exception("unexpected error ingesting document %s", document.id)
        return _fail(document, started, timings, _internal(exc))
    try:
        _set_status(document, Document.Status.EMBEDDING)
    except LeaseLost:
        return _result(document, started, timings)
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
    except LeaseLost:
        logger.info("document %s: another worker took it over; its chunks stay", document.id)
        return _result(document, prepared.started, timings)
    except Exception as exc:
        logger.exception("unexpected error indexing document %s", document.id)
        return _fail(document, prepared.started, timings, _internal(exc))
    return _result(document, prepared.started, timings, attachment_ids)
