"""bench/records.py's LangChain baseline (issue 10) on a two-patient input: LangChain's own
loaders and splitter, the real MiniLM model, the PGVector-style table in the test database,
scored by evaluation/records.py."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from evaluation import records as records_eval

pytestmark = pytest.mark.django_db

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench_records():
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))  # after the repo, so `ingest` stays the Django app
    spec = importlib.util.spec_from_file_location("bench_records", BENCH / "records.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ANN = "Ann1_Lee1_0a0a0a0a-1111-2222-3333-444444444444"
BOB = "Bob2_Kim2_0b0b0b0b-5555-6666-7777-888888888888"


def _write(root: Path) -> Path:
    (root / "fhir").mkdir()
    (root / "text").mkdir()
    patient = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"given": ["Ann1"], "family": "Lee1"}],
                    "birthDate": "1990-01-02",
                }
            }
        ],
    }
    (root / "fhir" / f"{ANN}.json").write_text(json.dumps(patient, indent=2))
    (root / "text" / f"{ANN}.txt").write_text(
        "Ann1 Lee1\n=========\nBirth Date: 1990-01-02\nCONDITIONS:\n2010-05-06 : Asthma\n"
    )
    (root / "text" / f"{BOB}.txt").write_text(
        "Bob2 Kim2\n=========\nBirth Date: 1985-03-04\nCONDITIONS:\n2011-07-08 : Gout\n"
    )
    ann_docs = [f"fhir/{ANN}.json", f"text/{ANN}.txt"]
    tests = [
        {
            "query": "What is Ann1 Lee1's date of birth?",
            "category": "date_of_birth",
            "answerable": True,
            "answers": ["1990-01-02"],
            "patient_name": "Ann1 Lee1",
            "documents": ann_docs,
        },
        {
            "query": "When was Ann1 Lee1 diagnosed with Gout?",
            "category": "diagnosis_date",
            "answerable": False,
            "answers": [],
            "patient_name": "Ann1 Lee1",
            "documents": ann_docs,
        },
        {
            "query": "What is Bob2 Kim2's date of birth?",
            "category": "date_of_birth",
            "answerable": True,
            "answers": ["1985-03-04"],
            "patient_name": "Bob2 Kim2",
            "documents": [f"text/{BOB}.txt"],
        },
    ]
    path = root / "benchmark.json"
    path.write_text(json.dumps({"tests": tests}))
    return path


def test_patient_is_the_uuid_the_file_name_ends_with():
    bench = _bench_records()
    key = "fhir/Angelique249_Koelpin146_2d88ba8f-b46a-fe33-1c6a-c2d96167fb5a.fhir.json"
    assert bench.patient_of(key) == "2d88ba8f-b46a-fe33-1c6a-c2d96167fb5a"
    assert bench.patient_of(key.replace("fhir/", "ccda/").replace(".fhir.json", ".xml")) == (
        "2d88ba8f-b46a-fe33-1c6a-c2d96167fb5a"
    )


def test_baseline_scores_hits_mixed_patients_and_answers(tmp_path):
    bench = _bench_records()
    benchmark = _write(tmp_path)
    queries = records_eval.load_records_benchmark(benchmark)
    sources = records_eval.record_sources(benchmark=benchmark, queries=queries)

    report, details = bench.baseline(queries=queries, sources=sources, ks=[1, 4], answer_k=4)

    # One chunk per file; the JSON bundle is loaded whole and re-serialised by json.dumps.
    assert report["chunks"] == 3
    assert report["retrieval_hit"]["all"]["date_of_birth"]["4"] == 1.0
    assert report["retrieval_hit"]["all"]["n"] == 2
    assert report["retrieval_hit"]["fhir"]["n"] == 1 and report["retrieval_hit"]["text"]["n"] == 2
    # Top 4 over the whole collection holds both patients' files for every question.
    assert report["answers"]["mixed_patient_answers"] == 3
    assert all(row["mixed"] for row in details)
    assert report["answers"]["answerable_accuracy"] == 1.0
    # The extractive answer quotes Ann's record (and Bob's gout): the baseline does not refuse.
    assert report["answers"]["unanswerable_refusal"] == 0.0

    again, _ = bench.baseline(queries=queries, sources=sources, ks=[1, 4], answer_k=4)
    assert again["ingest"] == {"chunks": 3, "reused": True}
