"""Reads over collections, documents and chunks. `assistant/` reads chunks only through here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.db.models import Count, Prefetch, Q, QuerySet

from .models import PENDING_STATUSES, Chunk, Collection, Document, Patient

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.contrib.auth.models import AnonymousUser, User


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: int
    document_id: int
    document_name: str
    source_path: str
    collection_id: int
    text: str
    start: int
    end: int
    page: int | None
    heading: str
    score: float  # reciprocal-rank-fusion score
    similarity: float  # cosine similarity of the chunk to the question
    text_rank: float  # share (0..1) of the question's weighted search words in the chunk
    document_sha256: str = ""
    patient_id: int | None = None  # the patient a clinical record is about
    sources: tuple[str, ...] = ()  # clinical records: each fact's resource / entry


ADMIN_ROLE = "admin"


def user_sees_everything(user: User | AnonymousUser) -> bool:
    """Superusers and the admin group read every collection. Within a web request the answer
    is remembered on request.user by row_security.apply (that object lives one request)."""
    cached = getattr(user, "_attest_sees_everything", None)
    if cached is not None:
        return cached
    return bool(user.is_superuser or user.groups.filter(name=ADMIN_ROLE).exists())


def collection_list(*, user: User | AnonymousUser | None) -> QuerySet[Collection]:
    """Collections `user` may read and ask in: those granted to one of the user's groups
    (administrators see all). Every surface reads collections through here."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Collection.objects.none()
    if user_sees_everything(user):
        return Collection.objects.all()
    return Collection.objects.filter(grants__group__user=user).distinct()


def collection_list_managed(*, user: User | AnonymousUser | None) -> QuerySet[Collection]:
    """Collections `user` may upload to and erase from."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Collection.objects.none()
    if user_sees_everything(user):
        return Collection.objects.all()
    return Collection.objects.filter(grants__group__user=user, grants__can_manage=True).distinct()


def collection_may_manage(*, user: User | AnonymousUser | None, collection_id: int) -> bool:
    """Whether `user` may upload to, cancel, re-ingest and erase in the collection."""
    return collection_list_managed(user=user).filter(pk=collection_id).exists()


def document_get(*, user: User | AnonymousUser | None, pk: int) -> Document:
    """A document in a collection the user may read (else Document.DoesNotExist)."""
    return Document.objects.select_related("collection", "parent").get(
        pk=pk, collection__in=collection_list(user=user)
    )


def document_may_download(*, user: User | AnonymousUser, document: Document) -> bool:
    """The original file is offered to holders of ingest.download_document and managers of
    its collection."""
    return user.has_perm("ingest.download_document") or collection_may_manage(
        user=user, collection_id=document.collection_id
    )


def document_family_ids(document: Document) -> list[int]:
    """The document and the documents stored from it (an e-mail's attachments, theirs), first
    the document itself."""
    found = [document.pk]
    level = [document.pk]
    while level:
        level = [
            pk
            for pk in Document.objects.filter(parent_id__in=level).values_list("pk", flat=True)
            if pk not in found
        ]
        found.extend(level)
    return found


def collection_get(*, user: User | AnonymousUser | None, slug: str) -> Collection:
    return collection_list(user=user).get(slug=slug)


def collection_with_counts(*, user: User | AnonymousUser | None) -> QuerySet[Collection]:
    return collection_list(user=user).annotate(
        document_count=Count("documents", distinct=True),
        ready_count=Count("documents", filter=Q(documents__status="ready"), distinct=True),
    )


@dataclass(frozen=True)
class IngestProgress:
    """How far a collection's ingestion has got: documents per status, and the share done."""

    counts: dict[str, int]
    total: int
    done: int  # finished one way or another: ready, failed or cancelled

    @property
    def pending(self) -> int:
        return self.total - self.done

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.done / self.total)


def collection_progress(*, collection: Collection) -> IngestProgress:
    rows = collection.documents.values("status").annotate(n=Count("id")).order_by()
    counts = {row["status"]: row["n"] for row in rows}
    total = sum(counts.values())
    done = sum(n for status, n in counts.items() if status not in PENDING_STATUSES)
    return IngestProgress(counts=counts, total=total, done=done)


def document_list(*, collection: Collection) -> QuerySet[Document]:
    # The parent (an attachment's e-mail message) is shown by name: "attachment of ...".
    return (
        collection.documents.defer("text", "parent__text")
        .select_related("parent")
        .order_by("-created_at", "id")
    )


def patient_list(*, collection: Collection) -> QuerySet[Patient]:
    """The collection's patients (clinical records), with their documents."""
    return (
        Patient.objects.filter(collection=collection)
        .prefetch_related(Prefetch("documents", queryset=Document.objects.defer("text")))
        .order_by("family", "given", "id")
    )


def chunk_get(*, chunk_id: int, collection_ids: Sequence[int]) -> Chunk:
    return Chunk.objects.select_related("document").get(
        pk=chunk_id, collection_id__in=list(collection_ids)
    )


# Hybrid search in one round trip: HNSW cosine top-N and full-text top-N within the allowed
# collections (and, when given, documents), fused by reciprocal rank. iterative_scan keeps the
# filtered HNSW scan going until it has found enough rows (pgvector 0.8); without it a filter
# can return zero rows.
#
# The full-text arm matches ANY of the question's words (a question's words never all appear in
# the passage that answers it) and ranks by their rarity, BM25-like: each word weighs
# -ln(share of chunks containing it), times a saturating count of its occurrences (ts_rank of
# the single word, scaled to 0..1). The shares come from PostgreSQL's own statistics on the
# tsvector column (pg_stats.most_common_elems, kept by ANALYZE/autovacuum): a word missing from
# them is rarer than the rarest listed one. Words in more than `max_df` of the chunks are left
# out of the query: they weigh little and would make every chunk a candidate. With
# `max_postings`, only chunks holding one of the rarest words are candidates (the "probe"
# words: the rarest ones while the chunks estimated to hold them, share x rows summed, stay
# within that many, and always the rarest one); candidates are still scored on all kept words.
# The arm's work is then bounded however large the table grows; what it gives up is a chunk that
# holds none of the question's rare words. The index is GIN over (collection_id,
# search_vector), so only rows of the allowed collections reach the heap.
# text_rank = the share of the question's kept word weight that the chunk contains (0..1).
SEARCH_MODES = ("hybrid", "vector", "text")

_VEC_CTE = """
vec AS (
    SELECT id, 1 - (embedding <=> %(vec)s::vector) AS similarity,
           row_number() OVER (ORDER BY embedding <=> %(vec)s::vector) AS rnk
    FROM ingest_chunk
    WHERE {where}
    ORDER BY embedding <=> %(vec)s::vector
    LIMIT %(n)s
)"""
_FTS_CTE = """
stats AS (
    SELECT elems, freqs FROM attest_chunk_term_stats(current_schema())
), terms AS (
    SELECT t.lexeme, array_to_tsvector(ARRAY[t.lexeme])::text::tsquery AS tq,
           -ln(GREATEST(COALESCE(
               (SELECT s.freqs[array_position(s.elems, t.lexeme)] FROM stats s),
               (SELECT s.freqs[array_length(s.elems, 1) + 1] / 2 FROM stats s),
               0.01), 1e-6)) AS idf
    FROM unnest(to_tsvector('english', %(q)s)) AS t
), kept AS (
    SELECT tq, idf, row_number() OVER w AS rn, sum(exp(-idf)) OVER w AS shares
    FROM terms WHERE idf >= -ln(%(max_df)s)
    WINDOW w AS (ORDER BY idf DESC, lexeme)
    ORDER BY idf DESC, lexeme LIMIT %(max_terms)s
), probe AS (
    SELECT tq FROM kept
    WHERE rn = 1 OR %(max_postings)s::float8 IS NULL
       OR shares * (SELECT GREATEST(reltuples, 0) FROM pg_class
                    WHERE oid = 'ingest_chunk'::regclass) <= %(max_postings)s::float8
), ortq AS (
    SELECT (SELECT string_agg(tq::text, ' | ')::tsquery FROM probe) AS q,
           (SELECT sum(idf) FROM kept) AS total
), fts AS (
    SELECT c.id, m.matched / o.total AS text_rank,
           row_number() OVER (ORDER BY m.score DESC, c.id) AS rnk
    FROM ingest_chunk c CROSS JOIN ortq o
    CROSS JOIN LATERAL (
        SELECT sum(k.idf * ts_rank(c.search_vector, k.tq) * 10) AS score, sum(k.idf) AS matched
        FROM kept k WHERE c.search_vector @@ k.tq
    ) m
    WHERE {where_c} AND c.search_vector @@ o.q
    ORDER BY m.score DESC, c.id
    LIMIT %(n)s
)"""
_NO_VEC = (
    "vec AS (SELECT NULL::bigint AS id, NULL::float8 AS similarity, NULL::bigint AS rnk LIMIT 0)"
)
_NO_FTS = (
    "fts AS (SELECT NULL::bigint AS id, NULL::float4 AS text_rank, NULL::bigint AS rnk LIMIT 0)"
)
_FUSE = """
fused AS (
    SELECT COALESCE(vec.id, fts.id) AS id,
           COALESCE(%(wvec)s / (%(rrf)s + vec.rnk), 0)
               + COALESCE(%(wfts)s / (%(rrf)s + fts.rnk), 0) AS score,
           vec.similarity, COALESCE(fts.text_rank, 0) AS text_rank
    FROM vec FULL OUTER JOIN fts ON vec.id = fts.id
)
SELECT c.id, c.document_id, d.name, d.source_path, c.collection_id, {text}, {start}, {end},
       c.page, c.heading, f.score,
       COALESCE(f.similarity, 1 - (c.embedding <=> %(vec)s::vector)) AS similarity,
       f.text_rank, d.sha256, d.patient_id, c.sources
FROM (
    SELECT f.* FROM fused f JOIN ingest_chunk c ON c.id = f.id
    WHERE {where_c} ORDER BY f.score DESC, f.id LIMIT %(k)s
) f
JOIN ingest_chunk c ON c.id = f.id
JOIN ingest_document d ON d.id = c.document_id
{expand}
ORDER BY f.score DESC, c.id
"""
# Neighbouring-chunk expansion: a hit becomes the document's text from the start of the chunk
# `neighbours` before it to the end of the one `neighbours` after it (same document).
_EXPAND = """CROSS JOIN LATERAL (
    SELECT min(n.start) AS s, max(n."end") AS e FROM ingest_chunk n
    WHERE n.document_id = c.document_id
      AND n.ordinal BETWEEN c.ordinal - %(nb)s AND c.ordinal + %(nb)s
) x"""


def _search_sql(*, mode: str, by_document: bool, expand: bool = False) -> str:
    def where(alias: str = "") -> str:
        # bigint[]: psycopg sends small ids as smallint[], which the GIN index's bigint
        # operator class (btree_gin) cannot use.
        clause = f"{alias}collection_id = ANY(%(cols)s::bigint[])"
        if by_document:
            clause += f" AND {alias}document_id = ANY(%(docs)s::bigint[])"
        return clause

    vec = _VEC_CTE.format(where=where()) if mode in {"hybrid", "vector"} else _NO_VEC
    fts = _FTS_CTE.format(where_c=where("c.")) if mode in {"hybrid", "text"} else _NO_FTS
    if expand:
        select = {"text": "substr(d.text, x.s + 1, x.e - x.s)", "start": "x.s", "end": "x.e"}
    else:
        select = {"text": "c.text", "start": "c.start", "end": 'c."end"'}
    fuse = _FUSE.format(where_c=where("c."), expand=_EXPAND if expand else "", **select)
    return f"WITH {vec}, {fts}, {fuse}"


def hnsw_ef_search(candidates: int, ef_search: int = 0) -> int:
    """The hnsw.ef_search a search with `candidates` uses (pgvector allows 1..1000)."""
    return min(1000, max(1, int(ef_search) if ef_search else max(40, int(candidates))))


def _json_list(value: str | list[Any] | None) -> tuple[str, ...]:
    # Django's psycopg setup hands jsonb over as text in raw queries.
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(str(v) for v in value or ())


def chunk_search(
    *,
    query_text: str,
    query_vector: Sequence[float],
    collection_ids: Sequence[int],
    k: int,
    candidates: int,
    rrf_k: int,
    document_ids: Sequence[int] | None = None,
    mode: str = "hybrid",
    max_df: float = 0.2,
    vector_weight: float = 1.0,
    text_weight: float = 1.0,
    neighbours: int = 0,
    ef_search: int = 0,
    max_terms: int = 0,
    max_postings: int = 0,
) -> list[ChunkHit]:
    """Top-k chunks of the given collections for a question, best first.

    `document_ids` further restricts the search to those documents (inside the SQL, like the
    collection filter). `mode` is "hybrid" (both arms fused), "vector" or "text" (one arm).
    `vector_weight` / `text_weight` scale each arm's reciprocal-rank score in the fusion.
    `neighbours` > 0 widens each hit to the text from `neighbours` chunks before it to as many
    after it in its document (start/end/text change; score, page and heading stay the hit's).
    `ef_search` is the HNSW scan's candidate list size (0: max(40, candidates)).
    `max_terms` > 0 keeps only that many of the question's rarest words in the full-text arm.
    `max_postings` > 0 makes only chunks holding one of the question's rarest words candidates
    of the full-text arm: the rarest words while their estimated matching chunks (over the whole
    table) stay within it, and at least the rarest word. Candidates are scored on all words.
    """
    if mode not in SEARCH_MODES:
        raise ValueError(f"mode must be one of {SEARCH_MODES}, got {mode!r}")
    if not collection_ids or (document_ids is not None and not document_ids):
        return []
    vec = "[" + ",".join(f"{x:.7f}" for x in query_vector) + "]"
    params: dict[str, str | int | float | list[int] | None] = {
        "vec": vec,
        "q": query_text,
        "cols": list(collection_ids),
        "docs": list(document_ids or []),
        "n": candidates,
        "k": k,
        "rrf": rrf_k,
        "max_df": max_df,
        "wvec": float(vector_weight),
        "wfts": float(text_weight),
        "nb": int(neighbours),
        "max_terms": int(max_terms) if max_terms > 0 else None,  # LIMIT NULL: all
        "max_postings": float(max_postings) if max_postings > 0 else None,
    }
    sql = _search_sql(mode=mode, by_document=document_ids is not None, expand=neighbours > 0)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(f"SET LOCAL hnsw.ef_search = {hnsw_ef_search(candidates, ef_search)}")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        ChunkHit(
            chunk_id=r[0],
            document_id=r[1],
            document_name=r[2],
            source_path=r[3],
            collection_id=r[4],
            text=r[5],
            start=r[6],
            end=r[7],
            page=r[8],
            heading=r[9],
            score=float(r[10]),
            similarity=float(r[11]),
            text_rank=float(r[12]),
            document_sha256=r[13],
            patient_id=r[14],
            sources=_json_list(r[15]),
        )
        for r in rows
    ]
