"""The compliance workspace: who may see it, filters, replay, exports, parallel requests."""

import csv
import io
import json
import threading
import urllib.parse
import urllib.request

import pytest
from django.urls import reverse

from assistant.services import question_ask
from audit.append import audit_record
from audit.models import AuditEvent
from audit.verify import audit_verify
from tests.factories import grant, ingest_path, make_collection

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(cuad_pdf, plain_user, admin_user):
    collection = make_collection("Contracts", "contracts")
    ingest_path(collection, cuad_pdf)
    grant(collection, plain_user)
    mine = question_ask(
        user=plain_user,
        collection=collection,
        question="What discount does the distributor get?",
        k=3,
    )
    other = question_ask(
        user=admin_user, collection=collection, question="How long is the initial term?", k=3
    )
    return mine, other


def test_only_reviewers_see_the_workspace(client, plain_user, officer):
    client.force_login(plain_user)
    assert client.get(reverse("compliance:list")).status_code == 404
    assert client.get(reverse("compliance:export", args=["csv"])).status_code == 404
    client.force_login(officer)
    assert client.get(reverse("compliance:list")).status_code == 200
    assert client.get(reverse("compliance:dashboard")).status_code == 200


def test_officer_cannot_change_anything_in_the_admin(client, officer):
    event = audit_record(event_type="x", payload={"a": 1})
    client.force_login(officer)
    # Not staff: the admin is closed to them; the workspace has no write paths but verify.
    response = client.post(f"/admin/audit/auditevent/{event.id}/delete/", {"post": "yes"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_officer_cannot_ask_in_collections_not_granted(client, officer, answered):
    client.force_login(officer)
    response = client.post(
        reverse("portal:ask"), {"collection": "contracts", "question": "What is the term?"}
    )
    assert response.status_code == 404


def test_filter_by_user_and_open_a_replay(client, officer, answered, plain_user):
    mine, _ = answered
    client.force_login(officer)
    response = client.get(reverse("compliance:list"), {"user": plain_user.username})
    html = response.content.decode()
    assert "What discount does the distributor get?" in html
    assert "How long is the initial term?" not in html
    event = AuditEvent.objects.get(payload__answer_id=mine.id)
    detail = client.get(reverse("compliance:detail", args=[event.id])).content.decode()
    assert "Answer as shown" in detail
    assert "LUCIDINC_04_15_2011-EX-10.9-DISTRIBUTOR AGREEMENT.PDF" in detail
    assert "page 5" in detail
    assert "prompt_version" not in detail  # rendered as a replay, not raw JSON
    assert "chunk_size" in detail  # the settings used


def test_free_text_type_date_and_flagged_filters(client, officer, answered):
    audit_record(
        event_type="question.refused", flagged=True, summary="Who won the cup?", payload={}
    )
    client.force_login(officer)
    url = reverse("compliance:list")
    assert "initial term" in client.get(url, {"q": "initial term"}).content.decode()
    assert "initial term" not in client.get(url, {"q": "penguins"}).content.decode()
    flagged = client.get(url, {"flagged": "1"}).content.decode()
    assert "Who won the cup?" in flagged and "initial term" not in flagged
    typed = client.get(url, {"type": "question.refused"}).content.decode()
    assert "Who won the cup?" in typed
    assert "No entries match" in client.get(url, {"until": "2001-01-01"}).content.decode()


def test_keyset_pagination(client, officer, settings):
    settings.AUDIT_PAGE_SIZE = 5
    for i in range(12):
        audit_record(event_type="x", summary=f"entry number {i:02d}", payload={})
    client.force_login(officer)
    first = client.get(reverse("compliance:list"))
    assert "entry number 11" in first.content.decode()
    older = first.context["next_url"]
    second = client.get(reverse("compliance:list") + older).content.decode()
    assert "entry number 06" in second and "entry number 11" not in second


def test_csv_and_jsonl_exports_are_audited(client, officer, answered, plain_user):
    client.force_login(officer)
    response = client.get(reverse("compliance:export", args=["csv"]), {"user": plain_user.username})
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["actor"] for r in rows] == [plain_user.username]
    assert json.loads(rows[0]["payload"])["question"] == "What discount does the distributor get?"
    jsonl = client.get(reverse("compliance:export", args=["jsonl"]), {"type": "question.answered"})
    lines = [json.loads(x) for x in b"".join(jsonl.streaming_content).decode().splitlines()]
    assert len(lines) == 2
    exports = AuditEvent.objects.filter(event_type="audit.exported").order_by("id")
    assert [e.payload["format"] for e in exports] == ["csv", "jsonl"]
    assert exports[0].actor == officer and exports[0].payload["entries"] == 1
    assert audit_verify().ok


def test_verify_button_records_the_badge(client, officer):
    audit_record(event_type="x", payload={})
    client.force_login(officer)
    response = client.post(reverse("compliance:verify"), follow=True)
    assert "Chain intact" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_parallel_requests_keep_the_chain_whole(live_server):
    """Eight clients fail to sign in at once: every attempt is audited, the chain holds."""
    login = live_server.url + reverse("login")
    errors: list[BaseException] = []

    def attempt(n: int) -> None:
        try:
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
            page = opener.open(login).read().decode()
            token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
            for i in range(3):
                data = urllib.parse.urlencode(
                    {
                        "username": f"intruder{n}",
                        "password": f"guess{i}",
                        "csrfmiddlewaretoken": token,
                    }
                ).encode()
                request = urllib.request.Request(login, data=data, headers={"Referer": login})  # noqa: S310
                opener.open(request).read()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    failed = AuditEvent.objects.filter(event_type="auth.login_failed")
    assert failed.count() == 24
    assert failed.exclude(ip_address="127.0.0.1").count() == 0
    assert audit_verify().ok
