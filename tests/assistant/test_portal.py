"""The portal through Django's test client against the real database."""

import pytest
from django.urls import reverse

from assistant import llm
from ingest.models import Document
from tests.factories import grant, ingest_path, make_collection

pytestmark = pytest.mark.django_db


def test_pages_need_a_signed_in_user(client):
    response = client.get(reverse("portal:home"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_ask_shows_the_answer_with_document_page_and_passage(
    client, plain_user, cuad_pdf, settings
):
    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    collection = make_collection("Contracts", "contracts")
    ingest_path(collection, cuad_pdf)
    grant(collection, plain_user)
    client.force_login(plain_user)
    response = client.post(
        reverse("portal:ask"),
        {"collection": "contracts", "question": "What discount does the distributor get?"},
        follow=True,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "LUCIDINC_04_15_2011-EX-10.9-DISTRIBUTOR AGREEMENT.PDF" in html
    assert "page 5" in html
    assert 'class="cite" href="/documents/' in html
    assert "<mark>discount</mark>" in html
    assert "Extractive answer" in html


def test_staff_upload_on_the_collection_page_queues_the_files(client, admin_user, cuad_pdf):
    collection = make_collection("Contracts", "contracts")
    client.force_login(admin_user)
    with cuad_pdf.open("rb") as f1:
        response = client.post(
            reverse("portal:collection", args=["contracts"]),
            {"files": [f1]},
            follow=True,
        )
    assert response.status_code == 200
    document = Document.objects.get(collection=collection)
    assert document.status == "queued"
    assert document.name == cuad_pdf.name
    assert "1 file(s) queued" in response.content.decode()


def test_users_cannot_upload_and_unknown_collections_are_404(client, plain_user):
    grant(make_collection("Contracts", "contracts"), plain_user)
    make_collection("Secret", "secret")
    client.force_login(plain_user)
    assert client.get(reverse("portal:collection", args=["contracts"])).status_code == 200
    assert client.get(reverse("portal:collection", args=["secret"])).status_code == 404
    url = reverse("portal:collection", args=["contracts"])
    assert client.post(url, {}).status_code == 404
    assert client.get(reverse("portal:collection", args=["nope"])).status_code == 404
    assert client.get(reverse("portal:answer", args=[999999])).status_code == 404


def test_document_text_is_escaped_in_the_answer_page(client, plain_user, settings):
    from tests.factories import ingest_bytes

    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    collection = make_collection("Notes", "notes")
    grant(collection, plain_user)
    ingest_bytes(
        collection,
        "<img src=x onerror=alert(1)>.txt",
        b"The badge policy: <script>alert('x')</script> staff must wear badges at all times.",
    )
    client.force_login(plain_user)
    response = client.post(
        reverse("portal:ask"),
        {"collection": "notes", "question": "Must staff wear badges?"},
        follow=True,
    )
    html = response.content.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_feedback_is_stored_and_audited(client, plain_user, settings):
    from assistant.models import Feedback
    from assistant.services import question_ask
    from audit.models import AuditEvent
    from tests.factories import ingest_bytes

    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    collection = make_collection("Notes", "notes")
    grant(collection, plain_user)
    ingest_bytes(collection, "badges.txt", b"Staff must wear badges at all times on site.")
    answer = question_ask(
        user=plain_user, collection=collection, question="Must staff wear badges?", k=2
    )
    client.force_login(plain_user)
    url = reverse("portal:feedback", args=[answer.question_id])
    response = client.post(url, {"helpful": "no", "comment": "Too short"}, follow=True)
    assert "feedback was recorded" in response.content.decode()
    feedback = Feedback.objects.get(answer=answer)
    assert feedback.helpful is False and feedback.comment == "Too short"
    event = AuditEvent.objects.get(event_type="answer.feedback")
    assert event.payload == {
        "answer_id": answer.id,
        "question_id": answer.question_id,
        "helpful": False,
        "comment": "Too short",
    }
    # Someone else's answer is a 404, not a 403.
    other = type(plain_user).objects.create_user(username="someone", password="Someone-Pass-2026!")
    client.force_login(other)
    assert client.post(url, {"helpful": "yes"}).status_code == 404


def test_multi_file_and_zip_upload_report_duplicates_and_refusals(client, admin_user):
    """Issue 3: several files and a .zip in one upload; duplicates and bad entries are named."""
    import io
    import zipfile

    from django.core.files.uploadedfile import SimpleUploadedFile

    collection = make_collection("Policies", "policies")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handbook/visitors.txt", b"Visitors sign in at reception.")
        archive.writestr("../escape.txt", b"nope")
        archive.writestr("badges.txt", b"Staff must wear badges.")  # same bytes as below
    client.force_login(admin_user)
    response = client.post(
        reverse("portal:collection", args=["policies"]),
        {
            "files": [
                SimpleUploadedFile("badges.txt", b"Staff must wear badges."),
                SimpleUploadedFile("bundle.zip", buffer.getvalue()),
            ]
        },
        follow=True,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "2 file(s) queued" in html
    assert "1 duplicate(s)" in html and "bundle.zip/badges.txt" in html
    assert "1 file(s) refused" in html and "climbs out of the archive" in html
    statuses = sorted(
        Document.objects.filter(collection=collection).values_list("status", flat=True)
    )
    assert statuses == ["failed", "queued", "queued"]
    # The page shows every document's state, the counts and the progress bar.
    assert 'id="progress-bar"' in html and 'data-count="queued">2<' in html
    assert 'data-count="failed">1<' in html
    status = client.get(reverse("portal:status", args=["policies"])).json()
    assert status["total"] == 3 and status["done"] == 1 and status["percent"] == 33
    assert {d["status"] for d in status["documents"]} == {"queued", "failed"}


def test_manager_buttons_cancel_retry_and_need_manage_access(client, admin_user, plain_user):
    from audit.models import AuditEvent

    collection = make_collection("Policies", "policies")
    grant(collection, plain_user)  # read only
    from ingest.services import document_create

    document, _ = document_create(
        collection=collection, name="a.txt", data=b"Queued text.", enqueue=False
    )
    url = reverse("portal:document_actions", args=["policies", document.id])
    client.force_login(plain_user)
    assert client.post(url, {"action": "cancel"}).status_code == 404
    assert client.get(reverse("portal:status", args=["policies"])).status_code == 200
    client.force_login(admin_user)
    client.post(url, {"action": "cancel"})
    document.refresh_from_db()
    assert document.status == "cancelled"
    client.post(url, {"action": "retry"})
    document.refresh_from_db()
    assert document.status == "queued"
    client.post(reverse("portal:actions", args=["policies"]), {"action": "cancel"})
    document.refresh_from_db()
    assert document.status == "cancelled"
    types = list(AuditEvent.objects.order_by("id").values_list("event_type", flat=True))
    assert types[-3:] == ["documents.cancelled", "document.reingested", "documents.cancelled"]
    # CSRF is enforced on the buttons.
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(url, {"action": "retry"}).status_code == 403
