"""Clinical records (issue 10): FHIR, C-CDA and Synthea text through the real pipeline (real
database, real embedding model), from real Synthea files in ../shared/eval/records."""

from pathlib import Path

import pytest

from ingest import parsers
from ingest.models import Chunk, Document, Patient
from ingest.parsers import ParseError
from tests.factories import ingest_bytes, ingest_path, make_collection

pytestmark = pytest.mark.django_db

RECORDS = Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "records"
ABEL = "Abel832_Muller251_b2990df4-91a3-49bc-8243-0f31889d430f"
NESTOR = "Nestor901_Carroll471_7aa9e024-e01b-a999-b719-cdbc94a84250"
LISANDRA = "Lisandra920_Schroeder447_5391757e-f451-f2fe-d2f0-90a839d4d9c4"


def record(path: str) -> Path:
    found = RECORDS / path
    if not found.exists():
        pytest.fail(f"evaluation data missing: {found}")
    return found


def section(text: str, name: str) -> str:
    start = text.index(name.upper() + "\n")
    end = text.find("\n\n\n", start)
    return text[start : end if end != -1 else len(text)]


def test_stu3_bundle_renders_sections_with_dates_codes_units_and_sources():
    collection = make_collection("Records", "records")
    document = ingest_path(collection, record(f"fhir/{ABEL}.json"))
    assert document.status == Document.Status.READY, document.status_message
    assert document.mime_type == "application/fhir+json"
    text = document.text
    assert "Date of birth: 2000-06-02." in section(text, "Demographics")
    current = section(text, "Current medications")
    assert (
        "Fexofenadine hydrochloride 30 MG Oral Tablet (RxNorm 997488), prescribed 2001-05-13"
        in current
    )
    assert "Acetaminophen" not in current  # stopped: under past medications
    assert "Acetaminophen 325 MG Oral Tablet (RxNorm 313782)" in section(text, "Past medications")
    assert "Allergy to fish (SNOMED CT 417532002)" in section(text, "Allergies")
    assert "Viral sinusitis (disorder) (SNOMED CT 444814009), diagnosed 2018-02-06" in text
    latest = section(text, "Latest results and vitals")
    assert "Body Mass Index (LOINC 39156-5)" in latest and "kg/m2, on 2018-05-18" in latest
    chunks = list(Chunk.objects.filter(document=document))
    # A short section stays in one chunk, with the references of its facts.
    meds = [c for c in chunks if c.heading == "CURRENT MEDICATIONS"]
    assert len(meds) == 1 and "Fexofenadine" in meds[0].text
    assert any(s.startswith("MedicationRequest/") for s in meds[0].sources)
    assert all(c.sources for c in chunks)
    # No chunk crosses a section.
    for c in chunks:
        assert (
            sum(1 for h in ("ALLERGIES\n", "PROBLEMS\n", "PAST MEDICATIONS\n") if h in c.text) <= 1
        )
    patient = document.patient
    assert (patient.given, patient.family, str(patient.birth_date)) == (
        "Abel832",
        "Muller251",
        "2000-06-02",
    )
    assert any(i.get("type") == "MRN" for i in patient.identifiers)


def test_r4_bundle_decodes_document_reference_notes_with_their_dates():
    document = ingest_path(make_collection(), record(f"fhir/{NESTOR}.json"))
    assert document.status == Document.Status.READY, document.status_message
    notes = section(document.text, "Notes")
    assert "Note of 2024-04-11: History and physical note. 2024-04-11 Chief Complaint" in notes
    assert "1991-04-28" in section(document.text, "Demographics")
    chunk = Chunk.objects.filter(document=document, text__contains="Chief Complaint").first()
    assert chunk is not None and any(
        s.startswith(("DocumentReference/", "DiagnosticReport/")) for s in chunk.sources
    )


def test_ccda_is_detected_by_content_and_read_from_its_sections():
    data = record(f"ccda/{LISANDRA}.xml").read_bytes()
    assert parsers.detect_type(data, "export.dat") == "application/cda+xml"
    document = ingest_bytes(make_collection(), "lisandra.xml", data)
    assert document.status == Document.Status.READY, document.status_message
    text = document.text
    assert "Date of birth: 2010-10-07." in text
    assert "COVID-19 (SNOMED CT 840539006), diagnosed 2020-02-29" in section(text, "Problems")
    assert "Body Weight (LOINC 29463-7): 53.3 kg, on 2020-02-29" in text
    sources = {s for c in Chunk.objects.filter(document=document) for s in c.sources}
    assert "C-CDA Problems/conditions-desc-8" in sources


def test_synthea_text_export_keeps_its_text_and_sections():
    path = record(f"text/{ABEL}.txt")
    document = ingest_path(make_collection(), path)
    assert document.status == Document.Status.READY, document.status_message
    assert document.text == path.read_text(encoding="utf-8")  # offsets into the file
    headings = set(Chunk.objects.filter(document=document).values_list("heading", flat=True))
    assert {"ALLERGIES", "MEDICATIONS", "CONDITIONS", "OBSERVATIONS"} <= headings
    meds = Chunk.objects.get(document=document, heading="MEDICATIONS")
    assert "2001-05-13[CURRENT] : Fexofenadine" in meds.text and "CONDITIONS" not in meds.text


def test_one_patient_in_three_formats_is_one_patient():
    collection = make_collection("Records", "records")
    fhir = ingest_path(collection, record(f"fhir/{ABEL}.json"))
    text = ingest_path(collection, record(f"text/{ABEL}.txt"))  # no identifier: name + birth date
    ccda = ingest_path(collection, record(f"ccda/{LISANDRA}.xml"))
    converted = ingest_path(collection, record(f"fhir/{LISANDRA}.fhir.json"))  # same id value
    assert fhir.patient_id == text.patient_id is not None
    assert converted.status == "ready", converted.status_message
    assert ccda.patient_id == converted.patient_id is not None
    assert fhir.patient_id != ccda.patient_id
    assert Patient.objects.filter(collection=collection).count() == 2


def test_ndjson_with_two_patients_is_refused_with_a_reason():
    lines = [
        b'{"resourceType": "Patient", "id": "a", "name": [{"given": ["Ann"], "family": "Lee"}], "birthDate": "1980-01-01"}',
        b'{"resourceType": "Patient", "id": "b", "name": [{"given": ["Bo"], "family": "Kim"}], "birthDate": "1990-01-01"}',
        b'{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/a"}, "code": {"text": "Asthma"}}',
    ]
    data = b"\n".join(lines) + b"\n"
    assert parsers.detect_type(data, "export.ndjson") == "application/fhir+ndjson"
    with pytest.raises(ParseError, match="2 patients"):
        parsers.parse(data, "export.ndjson")
    document = ingest_bytes(make_collection(), "export.ndjson", data)
    assert document.status == Document.Status.FAILED
    assert "one patient per document" in document.status_message
    assert not Chunk.objects.filter(document=document).exists()


def test_single_patient_ndjson_is_read():
    data = (
        b'{"resourceType": "Patient", "id": "a", "name": [{"given": ["Ann"], "family": "Lee"}], "birthDate": "1980-01-01"}\n'
        b'{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/a"}, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma"}]}, "onsetDateTime": "2001-02-03"}\n'
    )
    parsed = parsers.parse(data, "bulk.ndjson")
    assert "Asthma (SNOMED CT 195967001), diagnosed 2001-02-03" in parsed.text
    assert parsed.patient.name == "Ann Lee"
