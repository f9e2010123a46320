"""Issue 19, "Identifiers stay redacted for users without view identifiers": each attack the
security review reproduced with REDACT_IDENTIFIERS=true, through the real web stack (Django test
client, real PostgreSQL, real roles and grants, real Synthea records under their hospital file
names). Users with the permission must keep seeing everything."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from assistant import llm
from assistant.api.tokens import token_create
from audit import checkpoints
from audit.models import AuditEvent
from tests.factories import grant, make_collection

from .redaction_data import ABEL, RECORDS, body, leaks, secrets, sign, upload

pytestmark = pytest.mark.django_db
QUESTION = "What allergies does Abel Muller have?"  # patient questions name the patient


@pytest.fixture(autouse=True)
def redacting(settings, tmp_path):
    settings.LLM_BACKEND = "extractive"
    settings.REDACT_IDENTIFIERS = True
    sign(tmp_path, settings)
    llm.get_llm.cache_clear()
    yield
    llm.get_llm.cache_clear()


@pytest.fixture
def ward(plain_user):
    """Ward 7 with Abel832 Muller251's FHIR bundle and text export; the reader may read it."""
    collection = make_collection("Ward 7", "ward-7")
    fhir = upload(collection, RECORDS / "fhir" / f"{ABEL}.json")
    upload(collection, RECORDS / "text" / f"{ABEL}.txt")
    grant(collection, plain_user)
    return fhir, secrets(collection)


@pytest.fixture
def clinician(django_user_model, ward):
    """A reader of the same ward who may see identifiers."""
    user = django_user_model.objects.create_user(username="clinician", password="x" * 16)
    user.user_permissions.add(
        Permission.objects.get(codename="view_identifiers", content_type__app_label="assistant")
    )
    grant(ward[0].collection, user)
    return user


def _ask(client, question: str = QUESTION) -> int:
    response = client.post(
        reverse("portal:ask"), {"collection": "ward-7", "question": question}, follow=True
    )
    assert response.status_code == 200
    return int(response.redirect_chain[-1][0].rstrip("/").split("/")[-1])


def _token(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=user, name='t').key}"}


def _value(values: dict[str, str], kind: str) -> str:
    return next(v for k, v in values.items() if kind in k)


def test_answer_record_is_withheld_from_users_without_view_identifiers(client, plain_user, ward):
    """The page showed [NAME] and [DOB]; /answers/<id>/record.json gave the record unredacted.
    The record is what the receipt's payload hash covers, so it is refused (and its link
    hidden); the receipt, hashes only, stays."""
    _, values = ward
    client.force_login(plain_user)
    pk = _ask(client)
    checkpoints.checkpoint_write()
    page = body(client.get(reverse("portal:answer", args=[pk])), own=QUESTION)
    assert leaks(page, values) == []
    assert "[NAME] [NAME] (born [DOB])" in page and "download the receipt" in page
    assert reverse("portal:record", args=[pk]) not in page
    assert "answer record is offered only to users who may see identifiers" in page
    record = client.get(reverse("portal:record", args=[pk]))
    assert record.status_code == 403
    assert leaks(body(record), values) == []
    assert record.json()["status"] == "withheld"
    receipt = client.get(reverse("portal:receipt", args=[pk]))
    assert receipt.status_code == 200 and len(receipt.json()["payload_hash"]) == 64
    assert leaks(body(receipt), values) == []


def test_users_with_view_identifiers_still_get_the_record_that_verifies(client, clinician, ward):
    client.force_login(clinician)
    pk = _ask(client)
    checkpoints.checkpoint_write()
    page = body(client.get(reverse("portal:answer", args=[pk])))
    assert reverse("portal:record", args=[pk]) in page
    record = client.get(reverse("portal:record", args=[pk])).content
    receipt = client.get(reverse("portal:receipt", args=[pk])).json()
    assert hashlib.sha256(record).hexdigest() == receipt["payload_hash"]
    assert "Abel832 Muller251" in record.decode()


def test_collection_page_redacts_the_patients_table_and_document_names(
    client, plain_user, clinician, ward
):
    """The Patients table showed every patient's name, birth date and MRN, and the documents
    table the hospital file names ("Abel832_Muller251_<id>.json")."""
    _, values = ward
    client.force_login(plain_user)
    html = body(client.get(reverse("portal:collection", args=["ward-7"])))
    assert leaks(html, values) == []
    assert 'id="patients"' in html and "[NAME]_[NAME]_[ID].json" in html
    client.force_login(clinician)
    html = body(client.get(reverse("portal:collection", args=["ward-7"])))
    assert "Abel832 Muller251" in html and f"{ABEL}.json" in html
    assert _value(values, "birth date") in html and _value(values, "MRN") in html


def test_document_names_are_redacted_wherever_they_are_shown(client, plain_user, officer, ward):
    """Document names, citation labels and the API's citations[].document were never
    redacted: the viewer, the answer page, the portal stream, the API's answers, streams,
    documents and history, and the compliance workspace's entries all named the patient."""
    fhir, values = ward
    client.force_login(plain_user)
    auth = _token(plain_user)
    pk = _ask(client)
    ask = {"collection": "ward-7", "question": QUESTION}
    seen = {
        "viewer": client.get(reverse("portal:document", args=[fhir.id])),
        "answer page": client.get(reverse("portal:answer", args=[pk])),
        "portal stream": client.post(reverse("portal:ask_stream"), ask),
        "api ask": client.post("/api/v1/ask", ask, content_type="application/json", **auth),
        "api sse": client.post(
            "/api/v1/ask", {**ask, "stream": "sse"}, content_type="application/json", **auth
        ),
        "api documents": client.get("/api/v1/collections/ward-7/documents", **auth),
        "api document": client.get(f"/api/v1/documents/{fhir.id}", **auth),
        "api questions": client.get("/api/v1/questions", **auth),
    }
    shown = {where: leaks(body(r, own=QUESTION), values) for where, r in seen.items()}
    client.force_login(officer)  # another user's question is no longer "own": not stripped
    for event in AuditEvent.objects.filter(
        event_type__in=["document.uploaded", "question.answered"]
    ):
        page = client.get(reverse("compliance:detail", args=[event.id]))
        shown[f"compliance entry {event.id} {event.event_type}"] = leaks(body(page), values)
    assert shown == {where: [] for where in shown}
    assert "[NAME]_[NAME]_[ID].json" in body(seen["answer page"])
    assert "[NAME]_[NAME]_[ID].json" in body(seen["api ask"])


def test_compliance_list_and_api_events_redact_summaries(client, plain_user, officer, ward):
    """The list page and /api/v1/audit/events showed summaries as stored: other users'
    questions and feedback naming the patient, and "Uploaded <hospital file name>"."""
    _, values = ward
    ssn = _value(values, "Social Security")
    client.force_login(plain_user)
    pk = _ask(client, f"Is {ssn} the SSN of abel muller?")
    client.post(reverse("portal:feedback", args=[pk]), {"helpful": "no", "comment": "wrong"})
    client.force_login(officer)
    page = body(client.get(reverse("compliance:list")))
    api = body(client.get("/api/v1/audit/events", **_token(officer)))
    assert leaks(page, values) == [] and leaks(api, values) == []
    assert "[SSN]" in page and "[NAME]" in page and "[SSN]" in api


def _entries(html: str) -> list[str]:
    """The ids of the entries a list page shows."""
    return sorted(set(re.findall(r'<td><a href="/compliance/events/(\d+)/">', html)))


def test_a_text_filter_that_looks_like_an_identifier_is_refused(
    client, plain_user, officer, ward, django_user_model
):
    """The text filter answered "does this SSN appear anywhere" by the count of matching
    entries (and so did the patient filter, the API and the export). For reviewers without
    view identifiers such a filter is refused, whether or not it matches anything."""
    _, values = ward
    ssn = _value(values, "Social Security")
    mrn = _value(values, "MRN")
    client.force_login(plain_user)
    _ask(client, f"Is {ssn} the SSN of Abel Muller, born {_value(values, 'birth date')}?")
    probes = [
        ssn,
        "999-55-0000",  # an SSN in no entry: refused all the same, so refusal says nothing
        mrn,
        mrn[:8],
        "Muller251",
        "abel",
        _value(values, "birth date"),
        "617-555-0199",
        "abel.muller@example.org",
    ]
    client.force_login(officer)
    auth = _token(officer)
    for probe in probes:
        page = body(client.get(reverse("compliance:list"), {"q": probe}))
        assert _entries(page) == [], probe
        assert "looks like an identifier" in page, probe
        api = client.get("/api/v1/audit/events", {"q": probe}, **auth)
        assert api.status_code == 400 and "identifier" in api.json()["error"], probe
        export = client.get(reverse("compliance:export", args=["jsonl"]), {"q": probe})
        assert export.status_code == 400, probe
        patient = body(client.get(reverse("compliance:list"), {"patient": probe}))
        assert "Access report" not in patient and _entries(patient) == [], probe
    assert _entries(body(client.get(reverse("compliance:list"), {"q": "SSN"})))
    # A reviewer who may see identifiers searches as before.
    reviewer = django_user_model.objects.create_user(username="lead", password="x" * 16)
    reviewer.groups.add(*officer.groups.all())
    reviewer.user_permissions.add(
        Permission.objects.get(codename="view_identifiers", content_type__app_label="assistant")
    )
    client.force_login(reviewer)
    assert len(_entries(body(client.get(reverse("compliance:list"), {"q": ssn})))) == 1
    found = body(client.get(reverse("compliance:list"), {"patient": "Abel Muller"}))
    assert "Access report: Abel832 Muller251" in found
    export = client.get(reverse("compliance:export", args=["jsonl"]), {"q": ssn})
    summaries = [json.loads(line)["summary"] for line in body(export).splitlines()[1:]]
    assert f"Is {ssn} the SSN of Abel Muller, born {_value(values, 'birth date')}?" in summaries
