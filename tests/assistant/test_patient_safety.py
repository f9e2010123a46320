"""Patient answers a clinician can rely on (issue 23): never "nothing recorded" when it is, never
another patient's values. Real pipeline, real database, real embedding model; real Synthea
files from ../shared/eval and small FHIR bundles for patients who share a first name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse

from assistant import llm, patient_answers
from assistant.services import question_ask
from audit.models import AuditEvent
from ingest.models import Patient
from tests.factories import ingest_bytes, ingest_path, make_collection

pytestmark = pytest.mark.django_db

RECORDS = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "records"
ABEL = "Abel832_Muller251_b2990df4-91a3-49bc-8243-0f31889d430f"
ABEL_ALLERGIES = ["mould", "House dust mite", "Dander", "grass pollen", "tree pollen", "fish"]
LOINC = "http://loinc.org"


def _observation(pid: str, n: int, code: str, name: str, when: str, value: dict) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"o{n}-{pid}",
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": name},
        "effectiveDateTime": when,
        **value,
    }


def _bp(systolic: float, diastolic: float) -> dict:
    def part(code: str, name: str, value: float) -> dict:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]"},
        }

    return {
        "component": [
            part("8480-6", "Systolic Blood Pressure", systolic),
            part("8462-4", "Diastolic Blood Pressure", diastolic),
        ]
    }


def bundle(given: str, family: str, birth: str, *, bp: tuple[str, float, float], a1c=None) -> bytes:
    """A FHIR bundle: the patient, one blood pressure, optionally HbA1c and a weight."""
    pid = f"{given}-{family}".lower()
    when, systolic, diastolic = bp
    resources = [
        {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"given": [given], "family": family}],
            "birthDate": birth,
            "identifier": [{"system": "urn:mrn", "value": f"MRN{abs(hash(pid)) % 10**8:08d}"}],
        },
        _observation(pid, 1, "55284-4", "Blood Pressure", when, _bp(systolic, diastolic)),
    ]
    if a1c:
        for n, (day, value) in enumerate(a1c, start=2):
            quantity = {"valueQuantity": {"value": value, "unit": "%"}}
            name = "Hemoglobin A1c/Hemoglobin.total in Blood"
            resources.append(_observation(pid, n, "4548-4", name, day, quantity))
        weight = {"valueQuantity": {"value": 81.2, "unit": "kg"}}
        resources.append(_observation(pid, 9, "29463-7", "Body Weight", a1c[-1][0], weight))
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in resources],
        }
    ).encode()


@pytest.fixture
def ward(settings):
    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    collection = make_collection("Ward 7 records", "ward7")
    for path in (f"fhir/{ABEL}.json", f"text/{ABEL}.txt"):
        found = RECORDS / path
        if not found.exists():
            pytest.fail(f"evaluation data missing: {found}")
        assert ingest_path(collection, found).status == "ready"
    patients = {
        "bergstrom": bundle(
            "Vincenzo126", "Bergstrom287", "1958-03-02", bp=("2019-04-01", 141, 92)
        ),
        "kling": bundle("Vincenzo33", "Kling921", "1971-11-20", bp=("2018-06-12", 118, 76)),
        # The most recent blood pressure of the whole collection is a third patient's.
        "ortiz": bundle(
            "Marta55",
            "Ortiz12",
            "1980-01-05",
            bp=("2024-01-09", 99, 61),
            a1c=[("2021-02-03", 6.1), ("2023-05-06", 7.4), ("2022-08-09", 6.8)],
        ),
    }
    for name, data in patients.items():
        assert ingest_bytes(collection, f"{name}.json", data).status == "ready"
    yield collection
    llm.get_llm.cache_clear()


def ask(collection, user, question: str):
    return question_ask(user=user, collection=collection, question=question, k=4)


def cited_patients(answer) -> set[int | None]:
    return {c.document.patient_id for c in answer.citations.select_related("document")}


def test_allergic_to_anything_lists_every_recorded_allergy(ward, admin_user):
    """Seen: "Is <patient> allergic to anything?" answered "The records ... do not show
    anything" for a patient with recorded allergies."""
    abel = Patient.objects.get(given="Abel832")
    for question in ("Is Abel allergic to anything?", "Does Muller have any allergies?"):
        answer = ask(ward, admin_user, question)
        assert not answer.refused, answer.text
        assert answer.text.startswith("Abel832 Muller251 (born 2000-06-02)")
        assert all(a.lower() in answer.text.lower() for a in ABEL_ALLERGIES), answer.text
        assert cited_patients(answer) == {abel.id}
        assert answer.backend == "record"


def test_a_shared_first_name_is_asked_back_never_answered_with_another_patients_value(
    ward, admin_user
):
    """Seen: "What was Vincenzo's most recent blood pressure?", two Vincenzos in the collection,
    answered with a third patient's (the collection's most recent) blood pressure."""
    answer = ask(ward, admin_user, "What was Vincenzo's most recent blood pressure?")
    assert answer.refused and not answer.citations.exists()
    assert "Which patient do you mean?" in answer.text
    assert "Vincenzo126 Bergstrom287 (born 1958-03-02)" in answer.text
    assert "Vincenzo33 Kling921 (born 1971-11-20)" in answer.text
    assert "99" not in answer.text  # Marta Ortiz's value
    event = AuditEvent.objects.get(payload__answer_id=answer.id)
    assert len(event.payload["patients_named"]) == 2 and event.payload["patient_ids"] == []
    # Naming one (without the digits, with a typo) answers for that patient alone.
    named = ask(ward, admin_user, "What was Vincenzo Bergstrm's most recent blood pressure?")
    assert named.text.startswith("Vincenzo126 Bergstrom287 (born 1958-03-02)")
    assert "141/92" in named.text and "2019-04-01" in named.text
    bergstrom = Patient.objects.get(family="Bergstrom287")
    assert cited_patients(named) == {bergstrom.id}


def test_a_question_about_a_patient_naming_none_is_asked_back(ward, admin_user):
    for question in ("What was her last blood pressure?", "What was Chris's last BP?"):
        answer = ask(ward, admin_user, question)
        assert answer.refused and "Which patient do you mean?" in answer.text, question
        assert not answer.citations.exists()


def test_the_asked_value_comes_first_with_its_unit_and_date(ward, admin_user):
    answer = ask(ward, admin_user, "What's Marta Ortiz's most recent HbA1c?")
    assert answer.text.startswith("Marta55 Ortiz12 (born 1980-01-05): ")
    assert "7.4 %" in answer.text and "2023-05-06" in answer.text
    assert "6.8" not in answer.text and "81.2" not in answer.text  # other results only on request


def test_not_recorded_only_after_the_section_was_searched_and_names_it(ward, admin_user):
    answer = ask(ward, admin_user, "Is Marta Ortiz allergic to anything?")
    assert answer.refused and answer.text.startswith("Marta55 Ortiz12 (born 1980-01-05)")
    assert "no allergies are recorded" in answer.text
    assert "Searched: the allergies sections of ortiz.json" in answer.text
    # An item the section does not hold is named as such, with the section searched.
    penicillin = ask(ward, admin_user, "Is Abel allergic to penicillin?")
    assert penicillin.refused and "no allergy to penicillin is recorded" in penicillin.text


def test_an_answer_citing_another_patients_record_is_withheld_and_flagged(
    ward, admin_user, monkeypatch
):
    """The safety net under every patient answer: a fault that puts another patient's passage
    under an answer (here injected into the record reader) withholds it, in the portal and
    the audit."""
    real = patient_answers.record_answer
    ortiz = Patient.objects.get(family="Ortiz12")

    def leaky(*, patient, ask):
        answer = real(patient=patient, ask=ask)
        stranger = real(patient=patient_answers_match(ortiz), ask=ask)
        answer.passages = [*answer.passages, *stranger.passages]
        return answer

    monkeypatch.setattr(patient_answers, "record_answer", leaky)
    answer = ask(ward, admin_user, "What was Vincenzo Kling's most recent blood pressure?")
    assert answer.refused and "withheld" in answer.text
    assert "99/61" not in answer.text and "118/76" not in answer.text
    event = AuditEvent.objects.get(payload__answer_id=answer.id)
    assert event.flagged and "another patient's record" in event.payload["withheld"]


def patient_answers_match(patient: Patient):
    from ingest.records import patients_by_id

    return patients_by_id([patient.id])[0]


def test_the_access_report_finds_a_patient_by_name_and_lists_ask_backs_under_each(
    ward, admin_user, client
):
    asked_back = ask(ward, admin_user, "What was Vincenzo's most recent blood pressure?")
    answered = ask(ward, admin_user, "Vincenzo Kling's last blood pressure?")
    other = ask(ward, admin_user, "Is Abel allergic to anything?")
    client.force_login(admin_user)
    url = reverse("compliance:list")

    def entries(patient: str) -> tuple[str, set[int]]:
        response = client.get(url, {"patient": patient})
        assert response.status_code == 200
        ids = {e.payload["answer_id"] for e in response.context["rows"] if "answer_id" in e.payload}
        return response.content.decode(), ids

    page, ids = entries("vincenzo kling")
    assert "Access report: Vincenzo33 Kling921 (born 1971-11-20)" in page
    assert ids == {asked_back.id, answered.id}
    page, ids = entries("Vincenzo126 Bergstrom287 (born 1958-03-02)")  # a suggestion as offered
    assert ids == {asked_back.id}
    page, ids = entries("1958-03-02")  # by birth date
    assert "Access report: Vincenzo126 Bergstrom287" in page
    page, ids = entries("Vincenzo")  # both: say so, offer each
    assert "2 patients match" in page and ids == {asked_back.id, answered.id}
    page, ids = entries("Nobody Known")  # never silently the whole trail
    assert "No patient matches" in page and ids == set()
    assert other.id not in ids
