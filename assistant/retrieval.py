"""Find the passages for a question: embed it, then hybrid search within allowed collections."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from ingest.embedding import get_embedder
from ingest.selectors import ChunkHit, chunk_search


def retrieve(
    *,
    question: str,
    collection_ids: Sequence[int],
    k: int,
    document_ids: Sequence[int] | None = None,
    mode: str = "hybrid",
) -> list[ChunkHit]:
    """The k best passages for `question` in the given collections (and documents, if given).

    `mode` "vector" or "text" searches with one arm only (for evaluation); "hybrid" fuses both.
    """
    vector = get_embedder().embed([question])[0]
    return chunk_search(
        query_text=question,
        query_vector=vector,
        collection_ids=collection_ids,
        k=k,
        candidates=max(settings.RETRIEVAL_CANDIDATES, k),
        rrf_k=settings.RETRIEVAL_RRF_K,
        document_ids=document_ids,
        mode=mode,
        max_df=settings.RETRIEVAL_TEXT_MAX_DF,
        vector_weight=settings.RETRIEVAL_VECTOR_WEIGHT,
        text_weight=settings.RETRIEVAL_TEXT_WEIGHT,
        neighbours=settings.RETRIEVAL_NEIGHBOURS,
        ef_search=settings.RETRIEVAL_EF_SEARCH,
        max_terms=settings.RETRIEVAL_TEXT_MAX_TERMS,
    )


def is_relevant(hit: ChunkHit) -> bool:
    """A passage counts when it holds the question's search words (RETRIEVAL_MIN_TEXT_MATCH of
    their weight) or its meaning is close enough (RETRIEVAL_MIN_SIMILARITY)."""
    words = hit.text_rank > 0 and hit.text_rank >= settings.RETRIEVAL_MIN_TEXT_MATCH - 1e-9
    return words or hit.similarity >= settings.RETRIEVAL_MIN_SIMILARITY
