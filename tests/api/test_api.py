"""REST API /api/v1/ against the real database, Redis, Celery worker and llama.cpp server."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from assistant import llm
from assistant.api.tokens import token_create
from assistant.models import ApiToken, Question
from audit.models import AuditEvent
from ingest.models import Document
from tests.conftest import wait_for
from tests.factories import grant, ingest_bytes, ingest_path, make_collection

pytestmark = pytest.mark.django_db


def bearer(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=user, name='test').key}"}


@pytest.fixture
def extractive(settings):
    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    yield
    llm.get_llm.cache_clear()


@pytest.fixture
def two_collections(plain_user):
    """`ward` readable by plain_user; `secret` not."""
    ward = make_collection("Ward notes", "ward")
    ingest_bytes(ward, "ward.txt", b"Visiting hours on the ward are from two to four.")
    secret = make_collection("Secret", "secret")
    doc = ingest_bytes(
        secret, "board.txt", b"The board approved the merger with Globex on Tuesday."
    )
    grant(ward, plain_user)
    return ward, secret, doc


def test_token_command_prints_a_working_key_once_and_audits_without_it(client, plain_user, capsys):
    call_command("users", "token", plain_user.username, "--name", "ci")
    key = capsys.readouterr().out.strip()
    assert key.startswith("att_")
    token = ApiToken.objects.get(user=plain_user)
    assert token.key_hash != key and key not in token.key_hash
    event = AuditEvent.objects.get(event_type="token.created")
    assert event.actor_username == "cli" and event.payload["user"] == plain_user.username
    assert key not in json.dumps(event.payload)
    response = client.get("/api/v1/collections", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    call_command("users", "revoke-token", token.prefix)
    response = client.get("/api/v1/collections", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid, expired or revoked token."
    assert AuditEvent.objects.filter(event_type="token.revoked").count() == 1


def test_requests_without_a_valid_token_get_json_401(client, plain_user):
    response = client.get("/api/v1/collections")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "credentials were not provided" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    response = client.get("/api/v1/collections", HTTP_AUTHORIZATION="Bearer att_guessed")
    assert response.status_code == 401
    # A signed-in browser session is not an API credential.
    client.force_login(plain_user)
    assert client.get("/api/v1/collections").status_code == 401


def test_unknown_paths_and_bad_bodies_are_json_errors(client, plain_user):
    auth = bearer(plain_user)
    response = client.get("/api/v1/nothing/here", **auth)
    assert response.status_code == 404 and "No API endpoint" in response.json()["error"]
    response = client.post("/api/v1/ask", data="{not json", content_type="application/json", **auth)
    assert response.status_code == 400 and "JSON parse error" in response.json()["error"]
    response = client.post(
        "/api/v1/ask", {"collection": "ward"}, content_type="application/json", **auth
    )
    assert response.status_code == 400
    assert response.json()["fields"]["question"] == ["This field is required."]
    response = client.post(
        "/api/v1/ask",
        {"collection": "x", "question": "q", "k": 500},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 400 and "k:" in response.json()["error"]


def test_collections_and_documents_follow_the_grants(client, plain_user, two_collections):
    _ward, _secret, secret_doc = two_collections
    auth = bearer(plain_user)
    rows = client.get("/api/v1/collections", **auth).json()
    assert [r["slug"] for r in rows] == ["ward"]
    assert rows[0]["ready"] == 1 and rows[0]["can_manage"] is False
    docs = client.get("/api/v1/collections/ward/documents", **auth).json()
    assert [d["name"] for d in docs] == ["ward.txt"]
    ward_doc = docs[0]["id"]
    assert client.get(f"/api/v1/documents/{ward_doc}", **auth).json()["status"] == "ready"
    # The other collection and its document do not exist as far as this token can tell.
    for url in (
        "/api/v1/collections/secret/documents",
        f"/api/v1/documents/{secret_doc.id}",
        "/api/v1/collections/no-such/documents",
        "/api/v1/documents/999999",
    ):
        response = client.get(url, **auth)
        assert response.status_code == 404, url
        assert "board" not in response.content.decode()


def test_ask_json_answers_with_citations_and_audit(client, plain_user, cuad_pdf, extractive):
    contracts = make_collection("Contracts", "contracts")
    ingest_path(contracts, cuad_pdf)
    grant(contracts, plain_user)
    response = client.post(
        "/api/v1/ask",
        {"collection": "contracts", "question": "What discount does the distributor get?"},
        content_type="application/json",
        HTTP_USER_AGENT="attest-tests",
        **bearer(plain_user),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["backend"] == "extractive" and not body["refused"]
    assert any(c["page"] == 5 and c["cited"] for c in body["citations"])
    event = AuditEvent.objects.get(event_type="question.answered")
    assert event.actor_username == plain_user.username
    assert event.user_agent == "attest-tests"
    assert event.payload["answer_id"] == body["answer_id"]
    again = client.get(f"/api/v1/questions/{body['question_id']}", **bearer(plain_user)).json()
    assert again["answer"] == body["answer"]


def test_ask_in_an_unreadable_collection_is_404_and_leaks_nothing(
    client, plain_user, two_collections, extractive, django_user_model
):
    auth = bearer(plain_user)
    response = client.post(
        "/api/v1/ask",
        {"collection": "secret", "question": "What did the board approve?"},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 404
    assert response.json() == {"error": "No collection 'secret'.", "status": 404}
    assert not Question.objects.exists()
    # Someone else's question cannot be read or followed up.
    other = django_user_model.objects.create_user(username="other", password="Other-Pass-2026!")
    grant(two_collections[0], other)
    theirs = client.post(
        "/api/v1/ask",
        {"collection": "ward", "question": "When are visiting hours?"},
        content_type="application/json",
        **bearer(other),
    ).json()
    assert "two to four" in theirs["answer"]
    assert client.get(f"/api/v1/questions/{theirs['question_id']}", **auth).status_code == 404
    response = client.post(
        "/api/v1/ask",
        {"collection": "ward", "question": "and later?", "follows": theirs["question_id"]},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 404


def test_ask_streams_ndjson_events(client, plain_user, two_collections, extractive):
    response = client.post(
        "/api/v1/ask",
        {"collection": "ward", "question": "When are visiting hours?", "stream": "ndjson"},
        content_type="application/json",
        **bearer(plain_user),
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    events = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert events[0]["event"] == "passages" and events[0]["passages"][0]["document"] == "ward.txt"
    assert events[-1]["event"] == "done" and "two to four" in events[-1]["answer"]


def test_ask_streams_sse_tokens_from_llamacpp(client, plain_user, cuad_pdf, use_llamacpp):
    contracts = make_collection("Contracts", "contracts")
    ingest_path(contracts, cuad_pdf)
    grant(contracts, plain_user)
    response = client.post(
        "/api/v1/ask",
        {
            "collection": "contracts",
            "question": "What discount does the distributor get?",
            "stream": "sse",
        },
        content_type="application/json",
        **bearer(plain_user),
    )
    assert response["Content-Type"] == "text/event-stream"
    text = b"".join(response.streaming_content).decode()
    names = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    assert names[0] == "passages" and names[-1] == "done"
    done = json.loads(text.rsplit("data: ", 1)[1])
    assert done["backend"] in {"llamacpp", "extractive"}
    if done["backend"] == "llamacpp":
        assert "token" in names
    assert done["citations"] and done["model"] == "gemma-3-270m"


def test_ask_rate_limit_is_shared_with_the_portal(
    client, plain_user, two_collections, settings, extractive
):
    settings.ASK_RATE_LIMIT = 1
    auth = bearer(plain_user)
    body = {"collection": "ward", "question": "When are visiting hours?"}
    assert (
        client.post("/api/v1/ask", body, content_type="application/json", **auth).status_code == 200
    )
    response = client.post("/api/v1/ask", body, content_type="application/json", **auth)
    assert response.status_code == 429
    assert "Too many ask requests" in response.json()["error"]
    assert response["Retry-After"] == str(settings.RATE_WINDOW_SECONDS)


def test_upload_needs_a_manage_grant(client, plain_user, two_collections):
    auth = bearer(plain_user)
    response = client.post(
        "/api/v1/collections/ward/documents", {"file": _file("a.txt", b"hello")}, **auth
    )
    assert response.status_code == 403
    assert "needs a manage grant" in response.json()["error"]
    response = client.post(
        "/api/v1/collections/secret/documents", {"file": _file("a.txt", b"hello")}, **auth
    )
    assert response.status_code == 404
    grant(two_collections[0], plain_user, manage=True)
    response = client.post("/api/v1/collections/ward/documents", {}, **auth)
    assert response.status_code == 400 and "multipart" in response.json()["error"]


def _file(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_upload_is_ingested_by_the_worker_and_status_is_polled(
    client, django_user_model, celery_worker
):
    user = django_user_model.objects.create_user(username="uploader", password="Upload-Pass-2026!")
    grant(make_collection("Inbox", "inbox"), user, manage=True)
    auth = bearer(user)
    response = client.post(
        "/api/v1/collections/inbox/documents",
        {
            "file": [
                _file("memo.txt", b"The fire drill is on Friday at noon."),
                _file("../../etc/passwd", b"root:x:0:0"),
            ]
        },
        **auth,
    )
    assert response.status_code == 201, response.content
    docs = response.json()
    assert [d["name"] for d in docs] == ["memo.txt", "passwd"]
    assert all(d["status"] == "queued" and not d["duplicate"] for d in docs)

    def status():
        state = client.get(f"/api/v1/documents/{docs[0]['id']}", **auth).json()
        return state if state["status"] in {"ready", "failed"} else None

    final = wait_for(status, timeout=180, message="the worker did not ingest the upload")
    assert final["status"] == "ready" and final["chunks"] == 1
    assert AuditEvent.objects.filter(event_type="document.uploaded").count() == 2
    again = client.post(
        "/api/v1/collections/inbox/documents",
        {"file": _file("memo-copy.txt", b"The fire drill is on Friday at noon.")},
        **auth,
    ).json()
    assert again[0]["duplicate"] is True and again[0]["id"] == docs[0]["id"]
    assert Document.objects.filter(collection__slug="inbox").count() == 2


def test_audit_query_and_export_for_compliance_officers_only(
    client, officer, plain_user, two_collections, extractive
):
    client.post(
        "/api/v1/ask",
        {"collection": "ward", "question": "When are visiting hours?"},
        content_type="application/json",
        **bearer(plain_user),
    )
    auth = bearer(plain_user)
    for url in ("/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/audit/events/1"):
        assert client.get(url, **auth).status_code == 404, url
    auth = bearer(officer)
    page = client.get("/api/v1/audit/events", {"type": "question.answered"}, **auth).json()
    assert len(page["results"]) == 1 and page["next_before"] is None
    row = page["results"][0]
    assert row["actor"] == plain_user.username and "payload" not in row
    detail = client.get(f"/api/v1/audit/events/{row['id']}", **auth).json()
    assert "two to four" in detail["payload"]["answer"]
    response = client.get("/api/v1/audit/export", {"format": "jsonl", "user": "reader"}, **auth)
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert response.status_code == 200 and len(lines) == 1
    assert json.loads(lines[0])["entry_hash"] == row["entry_hash"]
    exported = AuditEvent.objects.get(event_type="audit.exported")
    assert exported.actor_username == officer.username and exported.payload["via"] == "api"
    bad = client.get("/api/v1/audit/export", {"format": "xml"}, **auth)
    assert bad.status_code == 400 and "csv or jsonl" in bad.json()["error"]


def test_schema_describes_the_api(client):
    response = client.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["info"]["title"] == "Attest API"
    for path in ("/api/v1/ask", "/api/v1/collections", "/api/v1/audit/export"):
        assert any(p.rstrip("/") == path for p in schema["paths"]), path
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
