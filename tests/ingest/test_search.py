"""Hybrid search knobs (arm weights, neighbouring-chunk expansion) against the real database and
the real embedding model."""

import pytest

from ingest.embedding import get_embedder
from ingest.models import Chunk, Document
from ingest.selectors import chunk_search
from tests.factories import ingest_bytes, make_collection

pytestmark = pytest.mark.django_db

PARAGRAPHS = [
    "The Supplier shall deliver the goods to the warehouse in Rotterdam within ten days.",
    "Either party may terminate this Agreement upon ninety days written notice to the other.",
    "The Distributor receives a discount of thirty per cent against the current price list.",
    "This Agreement is governed by the laws of the State of Delaware without regard to conflicts.",
    "All notices shall be sent by registered mail to the addresses stated on the first page.",
    "The Licensee shall pay royalties of five per cent of net sales every calendar quarter.",
]


@pytest.fixture
def contract(settings):
    settings.CHUNK_SIZE = 100
    settings.CHUNK_OVERLAP = 0
    collection = make_collection()
    document = ingest_bytes(collection, "contract.txt", "\n\n".join(PARAGRAPHS).encode())
    assert document.status == Document.Status.READY, document.status_message
    other = make_collection("Other", "other")
    ingest_bytes(other, "other.txt", b"The Distributor discount is ninety per cent of the list.")
    return collection, document


def search(collection, question, **kwargs):
    return chunk_search(
        query_text=question,
        query_vector=get_embedder().embed([question])[0],
        collection_ids=[collection.id],
        k=kwargs.pop("k", 3),
        candidates=50,
        rrf_k=60,
        **kwargs,
    )


def test_neighbours_widen_a_hit_to_the_chunks_around_it(contract):
    collection, document = contract
    chunks = list(Chunk.objects.filter(document=document).order_by("ordinal"))
    assert len(chunks) == len(PARAGRAPHS)
    question = "What discount against the price list does the distributor get?"
    plain = search(collection, question, k=1)
    assert "thirty per cent" in plain[0].text
    core = next(c for c in chunks if c.id == plain[0].chunk_id)
    wide = search(collection, question, k=1, neighbours=1)
    assert wide[0].chunk_id == core.id
    before, after = chunks[core.ordinal - 1], chunks[core.ordinal + 1]
    assert (wide[0].start, wide[0].end) == (before.start, after.end)
    assert wide[0].text == document.text[before.start : after.end]
    assert "ten days" not in wide[0].text and "Delaware" in wide[0].text
    first = search(collection, "goods delivered to the warehouse in Rotterdam", k=1, neighbours=2)
    assert first[0].start == chunks[0].start  # clipped at the document's start
    assert first[0].end == chunks[2].end
    assert all(h.collection_id == collection.id for h in wide + first)


def test_a_zero_arm_weight_ranks_as_the_other_arm_alone(contract):
    collection, _ = contract
    question = "notice period to terminate the agreement"
    vector = [h.chunk_id for h in search(collection, question, k=4, mode="vector")]
    text = [h.chunk_id for h in search(collection, question, k=1, mode="text")]
    only_vector = search(collection, question, k=4, text_weight=0.0)
    only_text = search(collection, question, k=1, vector_weight=0.0)
    assert [h.chunk_id for h in only_vector] == vector
    assert [h.chunk_id for h in only_text] == text
    assert "ninety days written notice" in only_text[0].text


def test_ef_search_follows_the_candidates_unless_set():
    from ingest.selectors import hnsw_ef_search

    assert hnsw_ef_search(50) == 50
    assert hnsw_ef_search(10) == 40
    assert hnsw_ef_search(50, 200) == 200
    assert hnsw_ef_search(50, 5000) == 1000


def test_max_terms_keeps_only_the_rarest_question_words(contract):
    from ingest.services import chunk_statistics_refresh

    collection, _ = contract
    chunk_statistics_refresh()
    question = "agreement warehouse"  # "agreement" is in two chunks, "warehouse" in one
    every = search(collection, question, k=5, mode="text", max_df=0.5)
    rarest = search(collection, question, k=5, mode="text", max_df=0.5, max_terms=1)
    assert len(every) == 3
    assert len(rarest) == 1 and "Rotterdam" in rarest[0].text


def test_max_postings_keeps_the_rarest_words_within_the_estimated_matches(contract):
    from ingest.services import chunk_statistics_refresh

    collection, _ = contract
    chunk_statistics_refresh()
    question = "agreement warehouse"  # "agreement" is in two chunks, "warehouse" in one
    unbounded = search(collection, question, k=5, mode="text", max_df=0.5, max_postings=0)
    roomy = search(collection, question, k=5, mode="text", max_df=0.5, max_postings=1_000_000)
    # A budget smaller than any word's matches still keeps the rarest word.
    tight = search(collection, question, k=5, mode="text", max_df=0.5, max_postings=1)
    assert len(unbounded) == len(roomy) == 3
    assert len(tight) == 1 and "Rotterdam" in tight[0].text
    # The candidate is still scored on every word: its share is what the unbounded search says.
    same = next(h for h in unbounded if h.chunk_id == tight[0].chunk_id)
    assert tight[0].text_rank == pytest.approx(same.text_rank) and same.text_rank < 1.0


def test_the_full_text_index_starts_with_the_collection(contract):
    """GIN over (collection_id, search_vector): the full-text arm's bitmap holds only the rows
    of the allowed collections (bench/retrieval.py shows the plan at 1M rows)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'chunk_collection_search_gin'"
        )
        (indexdef,) = cursor.fetchone()
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'chunk_search_vector_gin'")
        assert cursor.fetchone() is None
    assert "USING gin (collection_id, search_vector)" in indexdef
