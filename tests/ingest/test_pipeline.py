"""The ingestion pipeline against the real database and the real embedding model."""

import pytest
from django.db import connection

from assistant.retrieval import retrieve
from ingest.models import Chunk, Document
from ingest.pipeline import document_ingest
from ingest.services import document_create
from tests.factories import ingest_bytes, ingest_path, make_collection

pytestmark = pytest.mark.django_db


def test_pdf_is_parsed_chunked_embedded_and_indexed(cuad_pdf):
    collection = make_collection()
    document = ingest_path(collection, cuad_pdf)
    assert document.status == Document.Status.READY, document.status_message
    assert document.page_count == 8
    assert len(document.sha256) == 64
    chunks = list(Chunk.objects.filter(document=document))
    assert len(chunks) == document.chunk_count > 8
    for c in chunks:
        assert document.text[c.start : c.end] == c.text
        assert 1 <= c.page <= 8
        assert len(c.embedding) == 384
        assert c.embedding_model.endswith("all-MiniLM-L6-v2")
    discount = next(c for c in chunks if "thirty (30) per cent" in c.text)
    assert discount.page == 5
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM ingest_chunk WHERE search_vector @@ "
            "websearch_to_tsquery('english', 'discount price list') AND document_id = %s",
            [document.id],
        )
        assert cursor.fetchone()[0] >= 1


def test_hybrid_retrieval_finds_the_clause_and_its_page(cuad_pdf):
    collection = make_collection()
    ingest_path(collection, cuad_pdf)
    other = make_collection("Other", "other")
    ingest_bytes(other, "other.txt", b"The distributor discount is ninety per cent. " * 5)
    hits = retrieve(
        question="What discount against the price list does the distributor receive?",
        collection_ids=[collection.id],
        k=3,
    )
    assert hits, "retrieval returned nothing"
    assert all(h.collection_id == collection.id for h in hits)
    assert "thirty (30) per cent" in hits[0].text
    assert hits[0].page == 5


def test_same_file_twice_is_a_duplicate_not_a_second_document(cuad_pdf):
    collection = make_collection()
    data = cuad_pdf.read_bytes()
    first, created = document_create(collection=collection, name="a.pdf", data=data, enqueue=False)
    again, created_again = document_create(
        collection=collection, name="copy.pdf", data=data, enqueue=False
    )
    assert created and not created_again
    assert again.id == first.id
    assert Document.objects.filter(collection=collection).count() == 1


def test_bad_file_fails_with_a_reason_and_the_rest_still_lands():
    collection = make_collection()
    bad = ingest_bytes(collection, "broken.pdf", b"%PDF-1.4\n this is not really a pdf")
    empty = ingest_bytes(collection, "empty.txt", b"")
    good = ingest_bytes(collection, "policy.txt", b"Staff must wear badges at all times.")
    assert bad.status == "failed" and "PDF" in bad.status_message
    assert empty.status == "failed" and "empty" in empty.status_message
    assert good.status == "ready"
    assert Chunk.objects.filter(document__in=[bad, empty]).count() == 0


def test_oversized_upload_is_kept_as_failed_without_storing_it(settings):
    settings.UPLOAD_MAX_BYTES = 100
    collection = make_collection()
    document, created = document_create(
        collection=collection, name="big.txt", data=b"x" * 500, enqueue=False
    )
    assert created
    assert document.status == "failed"
    assert "limit" in document.status_message
    assert not document.file
    assert document_ingest(document_id=document.id).status == "failed"


def test_reingesting_replaces_chunks_instead_of_duplicating(cuad_pdf):
    collection = make_collection()
    document = ingest_path(collection, cuad_pdf)
    before = Chunk.objects.filter(document=document).count()
    document_ingest(document_id=document.id, force=True)
    assert Chunk.objects.filter(document=document).count() == before
