"""Redaction of identifiers on a realistic synthetic medical record (Synthea, no real PHI)."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from assistant import llm
from assistant.api.tokens import token_create
from assistant.models import Citation
from ingest.models import Chunk
from ingest.redaction import redact
from tests.conftest import EVAL
from tests.factories import grant, ingest_bytes, make_collection

RECORDS = EVAL / "records"
PATIENT = "Forest317_Conn188_acd3fbc5-870a-4fa1-bcf0-285bfebf7d60"


@pytest.mark.django_db
def test_identifiers_are_replaced_and_clinical_facts_kept():
    text = (
        "MRN: acd3fbc5-870a-4fa1-bcf0-285bfebf7d60. Medical Record Number 00412345.\n"
        "SSN 999-30-3860; social security number 123456789.\n"
        "Call 555-882-4657 or (617) 555-0199 ext 12; mail forest.conn@example.org.\n"
        "Birth Date:          1946-08-15; DOB 08/15/1946; born on August 15, 1946.\n"
        "2010-12-02 Clopidogrel 75 MG; BP 120/80; NDC 0002-8215-01; seen [1] [2]."
    )
    assert redact(text) == (
        "MRN: [MRN]. Medical Record Number [MRN].\n"
        "SSN [SSN]; social security number [SSN].\n"
        "Call [PHONE] or [PHONE]; mail [EMAIL].\n"
        "Birth Date:          [DOB]; DOB [DOB]; born on [DOB].\n"
        "2010-12-02 Clopidogrel 75 MG; BP 120/80; NDC 0002-8215-01; seen [1] [2]."
    )


@pytest.fixture(scope="module")
def record() -> tuple[bytes, dict[str, str]]:
    """The patient's Synthea text export under a registration face sheet carrying the
    identifiers from the patient's FHIR bundle (the e-mail address is made up)."""
    bundle = json.loads((RECORDS / "fhir" / f"{PATIENT}.json").read_text())
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    ids = {i.get("type", {}).get("text", ""): i["value"] for i in patient["identifier"]}
    values = {
        "mrn": ids["Medical Record Number"],
        "ssn": ids["Social Security Number"],
        "phone": patient["telecom"][0]["value"],
        "dob": patient["birthDate"],
        "email": "forest317.conn188@example.org",
    }
    sheet = (
        "REGISTRATION FACE SHEET - FALMOUTH HOSPITAL\n"
        "Patient: Forest317 Conn188\n"
        f"MRN: {values['mrn']}\n"
        f"SSN: {values['ssn']}\n"
        f"Date of birth: {values['dob']}\n"
        f"Home phone: {values['phone']}\n"
        f"E-mail: {values['email']}\n"
        "Emergency contact: spouse, same home phone.\n\n"
    )
    body = (RECORDS / "text" / f"{PATIENT}.txt").read_text()
    return (sheet + body).encode(), values


@pytest.fixture
def chart(db, record, plain_user, settings):
    settings.LLM_BACKEND = "extractive"
    settings.REDACT_IDENTIFIERS = True
    llm.get_llm.cache_clear()
    collection = make_collection("Charts", "charts")
    document = ingest_bytes(collection, "forest-conn.txt", record[0])
    assert document.status == "ready", document.status_message
    grant(collection, plain_user)
    yield document, record[1]
    llm.get_llm.cache_clear()


QUESTION = "What is the home phone of patient Forest317 Conn188?"


def _leaks(text: str, values: dict[str, str]) -> list[str]:
    return [k for k, v in values.items() if v in text]


@pytest.mark.django_db
def test_portal_answer_sources_and_viewer_are_redacted_for_users_without_permission(
    client, plain_user, chart
):
    document, values = chart
    client.force_login(plain_user)
    response = client.post(
        reverse("portal:ask"), {"collection": "charts", "question": QUESTION}, follow=True
    )
    html = response.content.decode()
    assert "Home phone: [PHONE]" in html and "MRN: [MRN]" in html
    assert _leaks(html, values) == []
    # Stored text is unchanged.
    stored = " ".join(Citation.objects.values_list("text", flat=True))
    assert values["phone"] in stored
    assert Chunk.objects.filter(document=document, text__contains=values["ssn"]).exists()
    viewer = client.get(reverse("portal:document", args=[document.id])).content.decode()
    assert "SSN: [SSN]" in viewer and _leaks(viewer, values) == []
    assert "Clopidogrel 75 MG" in viewer and "2010-12-02" in viewer  # clinical facts stay


@pytest.mark.django_db
def test_users_with_view_identifiers_see_the_record_as_stored(client, plain_user, chart):
    _, values = chart
    plain_user.user_permissions.add(
        Permission.objects.get(codename="view_identifiers", content_type__app_label="assistant")
    )
    client.force_login(plain_user)
    html = client.post(
        reverse("portal:ask"), {"collection": "charts", "question": QUESTION}, follow=True
    ).content.decode()
    assert values["phone"] in html and values["mrn"] in html


@pytest.mark.django_db
def test_api_answers_are_redacted_and_streams_send_no_raw_tokens(client, plain_user, chart):
    _, values = chart
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=plain_user, name='t').key}"}
    body = client.post(
        "/api/v1/ask",
        {"collection": "charts", "question": QUESTION},
        content_type="application/json",
        **auth,
    ).json()
    assert body["identifiers_redacted"] is True
    assert _leaks(json.dumps(body), values) == []
    assert any("[PHONE]" in c["text"] for c in body["citations"])
    response = client.post(
        "/api/v1/ask",
        {"collection": "charts", "question": QUESTION, "stream": "ndjson"},
        content_type="application/json",
        **auth,
    )
    raw = b"".join(response.streaming_content).decode()
    assert '"event": "token"' not in raw and _leaks(raw, values) == []


@pytest.mark.django_db
def test_audit_export_redacts_when_asked(client, plain_user, chart, tmp_path):
    _, values = chart
    client.force_login(plain_user)
    client.post(reverse("portal:ask"), {"collection": "charts", "question": QUESTION})
    plain = tmp_path / "plain.jsonl"
    redacted = tmp_path / "redacted.jsonl"
    call_command(
        "audit",
        "export",
        "--format",
        "jsonl",
        "--type",
        "question.answered",
        "--output",
        str(plain),
    )
    call_command(
        "audit",
        "export",
        "--format",
        "jsonl",
        "--type",
        "question.answered",
        "--redact",
        "--output",
        str(redacted),
    )
    assert values["ssn"] in plain.read_text()
    row = json.loads(redacted.read_text().splitlines()[0])
    assert row["identifiers_redacted"] is True
    assert _leaks(json.dumps(row), values) == []
    assert any("[SSN]" in p["text"] for p in row["payload"]["passages"])


ABEL = "Abel832_Muller251_b2990df4-91a3-49bc-8243-0f31889d430f"
LISANDRA = "Lisandra920_Schroeder447_5391757e-f451-f2fe-d2f0-90a839d4d9c4"


@pytest.mark.django_db
def test_names_addresses_and_identifiers_in_fhir_ccda_and_text_records_are_redacted():
    """Issue 10: every identifier as it appears in these formats, in every chunk Attest made
    of them; the clinical facts stay readable."""
    from ingest.models import Patient
    from tests.factories import ingest_path

    collection = make_collection("Ward 7", "ward-7")
    for path in (f"fhir/{ABEL}.json", f"text/{ABEL}.txt", f"ccda/{LISANDRA}.xml"):
        document = ingest_path(collection, RECORDS / path)
        assert document.status == "ready", document.status_message
    secrets: list[str] = []
    for patient in Patient.objects.filter(collection=collection):
        secrets += [patient.given, patient.family, patient.birth_date.isoformat()]
        secrets += [i["value"] for i in patient.identifiers]
    bundle = json.loads((RECORDS / "fhir" / f"{ABEL}.json").read_text())
    person = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    secrets += [person["telecom"][0]["value"], person["address"][0]["line"][0]]
    secrets.append("Yost Ranch")  # Lisandra's street, from the C-CDA header
    texts = [c.text for c in Chunk.objects.filter(document__collection=collection)]
    everything = "\n".join(texts)
    assert all(secret in everything for secret in secrets)  # the stored text is unchanged
    shown = "\n".join(redact(t) for t in texts)
    leaked = [secret for secret in secrets if secret in shown]
    assert not leaked, leaked
    for fact in ("Allergy to fish", "2001-05-13", "Fexofenadine hydrochloride 30 MG Oral Tablet"):
        assert fact in shown
    assert "[NAME]" in shown and "[ADDRESS]" in shown and "[ID]" in shown
