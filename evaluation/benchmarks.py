"""Run retrieval benchmarks against a collection: ingest what they reference, ask every
question through the product's own `retrieve`, and score with `evaluation.metrics`.

Span benchmarks (CUAD, ContractNLI) reference TXT files by path; a gold span is a range of the
file's text, which equals Document.text for text ingestion, so a retrieved chunk's
(document, start, end) compares with it directly. PubMedQA makes one document per abstract.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.retrieval import retrieve
from ingest.models import Collection, Document
from ingest.pipeline import document_ingest
from ingest.services import chunk_statistics_refresh, document_create

from . import metrics as evaluation

if TYPE_CHECKING:
    from pathlib import Path

    from ingest.selectors import ChunkHit

    from .metrics import PubMedQuestion, SpanQuery, SpanScore

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str, str], None]  # (done, total, name, status)


@dataclass(frozen=True)
class Source:
    """One file a benchmark needs in the collection."""

    key: str  # how the benchmark names it (a relative path, or a PMID)
    name: str
    source_path: str  # what Document.source_path holds for it
    data: bytes


@dataclass
class SpanRun:
    queries: int
    scores: dict[int, SpanScore]
    latencies_ms: list[float]
    missing: list[str] = field(default_factory=list)  # referenced files not in the collection
    mismatched: list[str] = field(default_factory=list)  # Document.text differs from the file
    details: list[dict] = field(default_factory=list)


@dataclass
class RankRun:
    queries: int
    recall: dict[int, float]
    mrr: float
    latencies_ms: list[float]
    missing: list[str] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)


def span_sources(*, benchmark: Path, queries: Sequence[SpanQuery]) -> list[Source]:
    """The files the queries reference, paths taken relative to the benchmark's folder."""
    folder = benchmark.resolve().parent
    keys = sorted({g.file_path for q in queries for g in q.gold})
    sources = []
    for key in keys:
        path = (folder / key).resolve()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise evaluation.BenchmarkError(f"Cannot read {path}: {exc.strerror}") from exc
        sources.append(Source(key=key, name=path.name, source_path=str(path), data=data))
    return sources


def pubmed_sources(*, benchmark: Path, questions: Sequence[PubMedQuestion]) -> list[Source]:
    """One text document per abstract; its source path is the file and the PMID."""
    base = str(benchmark.resolve())
    return [
        Source(
            key=q.pmid,
            name=f"pubmed-{q.pmid}.txt",
            source_path=f"{base}#{q.pmid}",
            data=q.text.encode("utf-8"),
        )
        for q in questions
    ]


def benchmark_ingest(
    *, collection: Collection, sources: Sequence[Source], progress: Progress | None = None
) -> dict[str, int]:
    """Ingest the sources in this process; files already in the collection (same SHA-256) are
    not stored again. Returns counts by outcome (ingested, present, failed)."""
    counts = {"ingested": 0, "present": 0, "failed": 0}
    for index, source in enumerate(sources, start=1):
        document, created = document_create(
            collection=collection,
            name=source.name,
            data=source.data,
            source_path=source.source_path,
            enqueue=False,
        )
        if document.status != Document.Status.READY:
            result = document_ingest(document_id=document.id)
            outcome = "ingested" if result.status == Document.Status.READY else "failed"
            if outcome == "failed":
                logger.warning("%s failed: %s", source.key, result.error)
        else:
            outcome = "ingested" if created else "present"
        counts[outcome] += 1
        if progress is not None:
            progress(index, len(sources), source.name, outcome)
    if counts["ingested"]:
        chunk_statistics_refresh()  # word weights for full-text search, without waiting
    return counts


def benchmark_documents(
    *, collection: Collection, sources: Sequence[Source]
) -> dict[str, Document]:
    """Ready documents of the collection by benchmark key: matched by source path, else by
    content (the same file ingested earlier from another path)."""
    by_path = {
        d.source_path: d
        for d in Document.objects.filter(
            collection=collection,
            status=Document.Status.READY,
            source_path__in=[s.source_path for s in sources],
        )
    }
    found: dict[str, Document] = {}
    by_digest: dict[str, Source] = {}
    for source in sources:
        if source.source_path in by_path:
            found[source.key] = by_path[source.source_path]
        else:
            by_digest[hashlib.sha256(source.data).hexdigest()] = source
    if by_digest:
        for document in Document.objects.filter(
            collection=collection, status=Document.Status.READY, sha256__in=list(by_digest)
        ):
            found[by_digest[document.sha256].key] = document
    return found


def _timed_retrieve(**kwargs: Any) -> tuple[list[ChunkHit], float]:
    started = time.perf_counter()
    hits = retrieve(**kwargs)
    return hits, (time.perf_counter() - started) * 1000


def span_benchmark_run(
    *,
    collection: Collection,
    queries: Sequence[SpanQuery],
    sources: Sequence[Source],
    ks: Sequence[int],
    mode: str = "hybrid",
    per_document: bool = False,
    progress: Progress | None = None,
) -> SpanRun:
    """Ask every query (k = the largest of ks) and score the top-k chunks' ranges per k.

    `per_document` restricts each query to the document(s) its gold spans are in.
    """
    documents = benchmark_documents(collection=collection, sources=sources)
    run = SpanRun(queries=len(queries), scores={}, latencies_ms=[])
    run.missing = sorted(s.key for s in sources if s.key not in documents)
    texts = {s.key: s.data for s in sources}
    for key, document in sorted(documents.items()):
        if document.text != _file_text(texts[key]):
            run.mismatched.append(key)
    per_query: list[dict[int, SpanScore]] = []
    k_max = max(ks)
    for index, query in enumerate(queries, start=1):
        gold = [
            (documents[g.file_path].id if g.file_path in documents else g.file_path, g.start, g.end)
            for g in query.gold
        ]
        document_ids = None
        if per_document:
            document_ids = sorted({documents[f].id for f in query.files if f in documents})
        hits, ms = _timed_retrieve(
            question=query.query,
            collection_ids=[collection.id],
            k=k_max,
            document_ids=document_ids,
            mode=mode,
        )
        run.latencies_ms.append(ms)
        got = [(h.document_id, h.start, h.end) for h in hits]
        scores = evaluation.span_scores_at(got, gold, ks)
        per_query.append(scores)
        run.details.append(
            {
                "query": query.query,
                "category": query.category,
                "gold": [[g.file_path, g.start, g.end] for g in query.gold],
                "retrieved": [[h.document_id, h.start, h.end] for h in hits],
                "recall": {str(k): round(s.recall, 4) for k, s in scores.items()},
                "ms": round(ms, 2),
            }
        )
        if progress is not None:
            progress(index, len(queries), query.query[:60], "")
    run.scores = evaluation.mean_span_scores(per_query)
    return run


def _file_text(data: bytes) -> str:
    # As the benchmark defines offsets: the file read as UTF-8 text with universal newlines.
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def pubmedqa_run(
    *,
    collection: Collection,
    questions: Sequence[PubMedQuestion],
    sources: Sequence[Source],
    ks: Sequence[int],
    mode: str = "hybrid",
    progress: Progress | None = None,
) -> RankRun:
    """Ask every question; rank documents by their best chunk; score the question's abstract.

    Twice max(ks) chunks are retrieved so that (abstracts being one or two chunks) about
    max(ks) distinct documents are ranked; MRR counts 0 when the abstract is not among them.
    """
    documents = benchmark_documents(collection=collection, sources=sources)
    run = RankRun(queries=len(questions), recall={}, mrr=0.0, latencies_ms=[])
    run.missing = sorted(s.key for s in sources if s.key not in documents)
    per_query = []
    for index, question in enumerate(questions, start=1):
        hits, ms = _timed_retrieve(
            question=question.question, collection_ids=[collection.id], k=2 * max(ks), mode=mode
        )
        run.latencies_ms.append(ms)
        target = documents[question.pmid].id if question.pmid in documents else None
        score = evaluation.rank_score([h.document_id for h in hits], target, ks)
        per_query.append(score)
        run.details.append(
            {
                "pmid": question.pmid,
                "query": question.question,
                "rank": round(1 / score.reciprocal_rank) if score.reciprocal_rank else None,
                "ms": round(ms, 2),
            }
        )
        if progress is not None:
            progress(index, len(questions), question.question[:60], "")
    run.recall, run.mrr = evaluation.mean_rank_scores(per_query)
    return run
