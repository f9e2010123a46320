"""Ingestion through a real Celery worker process and the real Redis broker."""

import pytest

from ingest.models import Chunk, Document
from ingest.services import document_create
from tests.conftest import wait_for
from tests.factories import make_collection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_uploaded_document_is_ingested_by_the_worker(celery_worker, cuad_pdf):
    collection = make_collection()
    document, created = document_create(
        collection=collection, name=cuad_pdf.name, data=cuad_pdf.read_bytes()
    )
    assert created
    # Enqueued on commit (this test runs outside a transaction, so immediately).
    wait_for(
        lambda: Document.objects.get(pk=document.pk).status in {"ready", "failed"},
        timeout=180,
        message="the worker did not finish the document",
    )
    document.refresh_from_db()
    assert document.status == "ready", document.status_message
    assert document.page_count == 8
    assert Chunk.objects.filter(document=document).count() == document.chunk_count > 0


def test_a_broken_file_fails_in_the_worker_without_stopping_it(celery_worker):
    collection = make_collection()
    bad, _ = document_create(collection=collection, name="x.pdf", data=b"%PDF-1.4 junk")
    good, _ = document_create(collection=collection, name="ok.txt", data=b"Visitors sign in.")
    wait_for(
        lambda: (
            not Document.objects.filter(
                pk__in=[bad.pk, good.pk], status__in=["queued", "parsing", "embedding"]
            ).exists()
        ),
        timeout=120,
    )
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == "failed" and bad.status_message
    assert good.status == "ready"
    assert celery_worker.poll() is None, "the worker process died"
