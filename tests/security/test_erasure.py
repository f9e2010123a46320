"""Issue 19, erasure that is exact and complete. Real pipeline, real database, real trail:

- only administrators erase; a collection manager deletes and the trail keeps what it recorded;
- erasing a document removes exactly its passages' text from the entries that quote it (other
  users' questions, other documents' passages stay) and its text from stored answers and
  citations;
- an e-mail's attachments go with it, in every entry that quotes them, and attachments the
  worker stores get their own `document.uploaded` entry.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied

from assistant import actions, llm
from assistant.models import Answer, Citation
from assistant.services import question_ask
from audit.models import AuditEvent
from audit.verify import audit_verify
from ingest.models import Document
from tests.factories import grant, ingest_bytes, make_collection
from tests.ingest.formats import eml_with_attachments

pytestmark = pytest.mark.django_db

LEAVE = b"Staff receive twenty-five days of annual leave each calendar year."
PARKING = b"Staff may park in the north car park from seven in the morning."


@pytest.fixture
def policies(settings):
    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    collection = make_collection("Policies", "policies")
    leave = ingest_bytes(collection, "leave.txt", LEAVE)
    parking = ingest_bytes(collection, "parking.txt", PARKING)
    yield collection, leave, parking
    llm.get_llm.cache_clear()


def _entry(answer: Answer) -> AuditEvent:
    return AuditEvent.objects.get(payload__answer_id=answer.id)


def test_a_manager_cannot_erase_and_deleting_keeps_the_trail(policies, plain_user, client):
    collection, leave, _ = policies
    grant(collection, plain_user, manage=True)
    answer = question_ask(
        user=plain_user, collection=collection, question="How many days of annual leave?", k=3
    )
    with pytest.raises(PermissionDenied, match="Only an administrator"):
        actions.document_erase(document=leave, user=plain_user)
    client.force_login(plain_user)
    url = f"/collections/{collection.slug}/documents/{leave.pk}/actions/"
    response = client.post(url, {"action": "erase"}, follow=True)
    assert "Only an administrator" in response.content.decode()
    assert Document.objects.filter(pk=leave.pk).exists()
    assert "Erase" not in client.get(f"/collections/{collection.slug}/").content.decode()
    leave_id = leave.pk
    client.post(url, {"action": "delete"})
    assert not Document.objects.filter(pk=leave_id).exists()
    entry = _entry(answer)
    assert not entry.redacted and "twenty-five" in json.dumps(entry.payload)
    deleted = AuditEvent.objects.get(event_type="document.deleted")
    assert deleted.payload["document_id"] == leave_id and deleted.actor == plain_user


def test_erasing_removes_exactly_the_documents_text(policies, admin_user, plain_user):
    collection, leave, parking = policies
    grant(collection, plain_user)
    # Another user's question whose passages come from both documents.
    answer = question_ask(
        user=plain_user,
        collection=collection,
        question="What do staff receive for annual leave, and where may staff park?",
        k=4,
    )
    before = _entry(answer)
    shown = {p["document_id"] for p in before.payload["passages"]}
    assert shown == {leave.pk, parking.pk}, before.payload["passages"]
    assert "twenty-five days" in answer.text

    leave_id = leave.pk  # deleting clears the instance's pk
    actions.document_erase(document=leave, user=admin_user, reason="data subject request")

    after = _entry(answer)
    assert after.redacted and after.payload_hash == before.payload_hash
    assert after.payload["question"] == before.payload["question"]  # the user's own words stay
    passages = {p["document_id"]: p for p in after.payload["passages"]}
    assert passages[leave_id]["text"] == "" and passages[leave_id]["erased"] is True
    assert passages[leave_id]["text_sha256"]  # what was there can still be proven
    assert passages[parking.pk]["text"] == PARKING.decode()  # other documents stay
    assert "twenty-five" not in json.dumps(after.payload) + after.search_text
    # Exactly the erased document's sentence goes from the answer, nothing else of it.
    expected = before.payload["answer"].replace(LEAVE.decode(), "[erased]")
    assert after.payload["answer"] == expected != before.payload["answer"]
    stored = Answer.objects.get(pk=answer.pk)
    assert stored.text == answer.text.replace(LEAVE.decode(), "[erased]")
    assert not Citation.objects.filter(answer=answer, text__contains="twenty-five").exists()
    assert audit_verify().ok


def test_an_emails_attachments_are_erased_with_it_everywhere(admin_user, settings):
    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    collection = make_collection("Mail", "mail")
    inventory = b"The inventory of unit 4B lists a blue sofa and two oak chairs."
    message = ingest_bytes(collection, "lease.eml", eml_with_attachments(b"%PDF-1.4", inventory))
    attachment = Document.objects.get(parent=message, name="inventory.txt")
    uploaded = AuditEvent.objects.get(
        event_type="document.uploaded", payload__document_id=attachment.pk
    )
    assert uploaded.payload["attachment_of"] == message.pk  # stored by the worker, recorded
    answer = question_ask(
        user=admin_user,
        collection=collection,
        question="What does the unit 4B inventory list?",
        k=4,
    )
    assert any(p["document_id"] == attachment.pk for p in _entry(answer).payload["passages"])

    actions.document_erase(document=message, user=admin_user, reason="request")

    assert not Document.objects.filter(pk=attachment.pk).exists()
    assert "oak chairs" not in json.dumps(_entry(answer).payload)
    assert AuditEvent.objects.get(pk=uploaded.pk).payload.get("tombstone") is True
    erased = AuditEvent.objects.get(event_type="document.erased")
    assert attachment.pk in erased.payload["attachments_erased"]  # with the (broken) lease.pdf
    assert audit_verify().ok
