"""Find the passages for a question: embed it, then hybrid search within allowed collections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from ingest.embedding import get_embedder
from ingest.selectors import ChunkHit, chunk_search

from .text import content_words

if TYPE_CHECKING:
    from collections.abc import Sequence


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
        max_postings=settings.RETRIEVAL_TEXT_MAX_POSTINGS,
    )


def is_relevant(hit: ChunkHit) -> bool:
    """A passage counts when it holds the question's search words (RETRIEVAL_MIN_TEXT_MATCH of
    their weight) or its meaning is close enough (RETRIEVAL_MIN_SIMILARITY)."""
    words = hit.text_rank > 0 and hit.text_rank >= settings.RETRIEVAL_MIN_TEXT_MATCH - 1e-9
    return words or hit.similarity >= settings.RETRIEVAL_MIN_SIMILARITY


@dataclass(frozen=True)
class Evidence:
    """How much the retrieved passages say about the question, measured without a model."""

    similarity: float  # best cosine similarity of a passage to the question
    text_match: float  # best share of the question's weighted search words in one passage
    coverage: float  # share of the question's content words found in the passages together


def evidence(*, question: str, hits: Sequence[ChunkHit]) -> Evidence:
    """The gate's signals for `question` over the passages retrieved for it."""
    if not hits:
        return Evidence(similarity=0.0, text_match=0.0, coverage=0.0)
    asked = set(content_words(question))
    found: set[str] = set()
    for hit in hits:
        found.update(content_words(hit.text))
    return Evidence(
        similarity=max(h.similarity for h in hits),
        text_match=max(h.text_rank for h in hits),
        coverage=len(asked & found) / len(asked) if asked else 0.0,
    )


def answerable(found: Evidence) -> bool:
    """The refusal gate: the passages answer when the best one is similar enough to the question
    (GATE_MIN_SIMILARITY; 0 turns the gate off), or when they hold the question's words: one
    passage with GATE_MIN_TEXT_MATCH of its rarity-weighted search words (0 turns this rule off)
    and the passages together with GATE_MIN_COVERAGE of its content words. Short questions
    ("What is the term?") are far from every passage in meaning but are answered by their words.
    Measured and chosen in docs/answers.md ("Refusal gate")."""
    if found.similarity >= settings.GATE_MIN_SIMILARITY - 1e-9:
        return True
    return (
        settings.GATE_MIN_TEXT_MATCH > 0
        and found.text_match >= settings.GATE_MIN_TEXT_MATCH - 1e-9
        and found.coverage >= settings.GATE_MIN_COVERAGE - 1e-9
    )
