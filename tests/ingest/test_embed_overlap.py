"""documents_ingest embeds one batch in a background thread while it parses the next documents
(issue 3, speed): every document still ends with all its chunks and the model's vectors, and an
embedding failure fails exactly the documents of that batch, with a reason."""

import numpy as np
import pytest

from ingest import pipeline
from ingest.embedding import get_embedder
from ingest.models import Chunk, Document
from ingest.pipeline import documents_ingest
from ingest.services import document_create
from tests.factories import make_collection

pytestmark = pytest.mark.django_db


def _documents(collection, count: int) -> list[Document]:
    docs = []
    for i in range(count):
        text = "\n\n".join(
            f"{i}.{n} Clause {n} of agreement {i}. The supplier shall deliver lot {i * 10 + n} "
            "within thirty (30) days of the purchase order, at the prices in Schedule B."
            for n in range(12)
        )
        doc, _ = document_create(
            collection=collection, name=f"agreement-{i}.txt", data=text.encode(), enqueue=False
        )
        docs.append(doc)
    return docs


def test_documents_across_background_batches_all_get_their_chunks_and_vectors():
    docs = _documents(make_collection(), 6)
    seen = []
    results = documents_ingest(
        document_ids=[d.id for d in docs], embed_batch=3, on_done=lambda r: seen.append(r)
    )
    assert [r.document_id for r in results] == [d.id for d in docs]
    assert sorted(r.document_id for r in seen) == sorted(d.id for d in docs)
    assert all(r.status == "ready" and r.chunks > 0 for r in results), results
    rows = list(Chunk.objects.filter(document__in=docs).order_by("id"))
    assert len(rows) == sum(r.chunks for r in results)
    expected = np.asarray(get_embedder().embed([c.text for c in rows]))
    stored = np.asarray([np.asarray(c.embedding) for c in rows])
    assert ((expected * stored).sum(axis=1) > 0.999).all()


def test_an_embedding_failure_fails_only_that_batch_with_a_reason(monkeypatch):
    docs = _documents(make_collection(), 4)
    real = get_embedder()
    calls = []

    class Flaky:
        name = real.name
        backend = real.backend
        dimensions = real.dimensions

        def embed(self, texts):
            calls.append(len(texts))
            if len(calls) == 1:
                raise RuntimeError("embedding model crashed")
            return real.embed(texts)

    flaky = Flaky()
    monkeypatch.setattr(pipeline, "get_embedder", lambda: flaky)
    # Each document holds more chunks than embed_batch: one call per document.
    results = documents_ingest(document_ids=[d.id for d in docs], embed_batch=1)
    assert len(calls) == 4
    assert [r.status for r in results] == ["failed", "ready", "ready", "ready"]
    assert results[0].error
    assert not Chunk.objects.filter(document=docs[0]).exists()
    assert Document.objects.get(id=docs[1].id).chunk_count == results[1].chunks > 0
