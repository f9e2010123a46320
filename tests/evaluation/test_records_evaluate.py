"""`evaluate --records` (issue 10) on the first questions of the records benchmark: real
ingestion, real retrieval, answers through question_ask with the extractive backend."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from assistant import llm
from evaluation.records import holds

pytestmark = pytest.mark.django_db

BENCHMARK = (
    Path(__file__).resolve().parents[2].parent / "shared" / "eval" / "records" / "benchmark.json"
)


def test_values_compare_as_dates_and_to_one_decimal():
    assert holds("diagnosed 2018-02-06, resolved", "2018-02-06")
    assert not holds("diagnosed 2018-02-07", "2018-02-06")
    assert holds("Blood Pressure: 126.8469/73.65 mmHg", "126.8/73.7 mmHg")
    assert holds("BMI 22.76 kg/m2", "22.8 kg/m2")
    assert not holds("BMI 22.74 kg/m2", "22.8 kg/m2")
    assert holds("Allergy: allergy to FISH (SNOMED CT 1)", "Allergy to fish")


def test_evaluate_records_reports_hits_answers_and_mixed(settings):
    if not BENCHMARK.exists():
        pytest.fail(f"evaluation data missing: {BENCHMARK}")
    settings.LLM_BACKEND = "extractive"
    llm.get_llm.cache_clear()
    out = StringIO()
    call_command(
        "evaluate",
        str(BENCHMARK),
        "--records",
        "--collection",
        "rec",
        "--ingest",
        "--limit",
        "3",
        "--k",
        "1,4",
        "--json",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    assert report["queries"] == 3
    assert set(report["retrieval_hit"]) >= {"all", "fhir", "text"}
    assert report["retrieval_hit"]["all"]["date_of_birth"]["4"] == 1.0
    answers = report["answers"]
    assert answers["asked"] == 3 and answers["mixed_patient_answers"] == 0
    assert answers["by_category"]["date_of_birth"]["accuracy"] == 1.0
