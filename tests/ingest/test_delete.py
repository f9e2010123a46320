"""Issue 3: deleting a document or a collection removes the stored file, the chunks and the
vectors (searching for its text afterwards finds nothing), and is audited."""

from pathlib import Path

import pytest

from assistant import actions as admin_actions
from assistant.retrieval import retrieve
from audit.models import AuditEvent
from ingest.models import Chunk, Document
from tests.factories import ingest_bytes, make_collection

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit file removal really runs

SECRET = b"The vault combination for the Zanzibar archive is kept by the quartermaster Pelham."
QUESTION = "Who keeps the vault combination for the Zanzibar archive?"


def found(collection_ids) -> list:
    return [
        h
        for h in retrieve(question=QUESTION, collection_ids=collection_ids, k=5)
        if "Zanzibar" in h.text
    ]


def test_deleting_a_document_leaves_nothing_to_find(admin_user):
    collection = make_collection("Vault", "vault")
    document = ingest_bytes(collection, "vault.txt", SECRET)
    keep = ingest_bytes(collection, "other.txt", b"The canteen opens at eight.")
    path, document_id = document.file.path, document.pk
    assert Path(path).exists() and found([collection.id])
    admin_actions.document_erase(document=document, user=admin_user, reason="test")
    assert not Document.objects.filter(pk=document_id).exists()
    assert not Chunk.objects.filter(document_id=document_id).exists()
    assert found([collection.id]) == []  # neither the vector nor the full-text arm has it
    assert not Path(path).exists()
    assert Chunk.objects.filter(document=keep).exists()
    erased = AuditEvent.objects.get(event_type="document.erased")
    assert erased.actor == admin_user and erased.payload["document_id_erased"] == document_id


def test_deleting_a_collection_leaves_nothing_to_find(admin_user):
    collection = make_collection("Vault", "vault")
    document = ingest_bytes(collection, "vault.txt", SECRET)
    path = document.file.path
    collection_id = collection.id
    admin_actions.collection_delete(collection=collection, user=admin_user)
    assert not Chunk.objects.filter(collection_id=collection_id).exists()
    assert found([collection_id]) == []
    assert not Path(path).exists()
    assert AuditEvent.objects.filter(event_type="collection.deleted").count() == 1


def test_portal_delete_button_erases_the_document(client, admin_user):
    collection = make_collection("Vault", "vault")
    document = ingest_bytes(collection, "vault.txt", SECRET)
    client.force_login(admin_user)
    response = client.post(
        f"/collections/vault/documents/{document.pk}/actions/", {"action": "delete"}, follow=True
    )
    assert response.status_code == 200 and "deleted with its passages" in response.content.decode()
    assert found([collection.id]) == []
