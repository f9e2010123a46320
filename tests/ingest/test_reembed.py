"""Issue 3: changing the embedding model re-embeds existing chunks in batches; the model's
name is stored with each vector."""

import numpy as np
import pytest
from django.core.management import call_command

from ingest.embedding import get_embedder
from ingest.models import Chunk
from tests.factories import ingest_bytes, make_collection

pytestmark = pytest.mark.django_db


def test_reembed_replaces_vectors_of_another_model_in_batches(capsys):
    collection = make_collection()
    text = "\n\n".join(
        f"Paragraph {i}: the landlord repairs the roof within {i} days." * 8 for i in range(6)
    )
    document = ingest_bytes(collection, "lease.txt", text.encode())
    chunks = Chunk.objects.filter(document=document)
    assert chunks.count() >= 3
    current = get_embedder().name
    assert set(chunks.values_list("embedding_model", flat=True)) == {current}
    # As if these vectors came from an older model.
    chunks.update(embedding_model="old/model", embedding=[1.0] + [0.0] * 383)
    with pytest.raises(SystemExit):
        call_command("reembed", "--check")
    call_command("reembed", "--batch-size", "2")
    out = capsys.readouterr()
    assert f"{chunks.count()} chunk(s) re-embedded" in out.out
    assert out.err.count("[") >= 2  # one progress line per batch
    rows = list(chunks.order_by("ordinal"))
    assert {c.embedding_model for c in rows} == {current}
    expected = np.asarray(get_embedder().embed([c.text for c in rows]))
    stored = np.asarray([np.asarray(c.embedding) for c in rows])
    assert (stored * expected).sum(axis=1).min() > 0.999
    call_command("reembed", "--check")  # nothing stale: no exit
