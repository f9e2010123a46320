"""`manage.py evaluate` on tiny benchmarks, with the real database and embedding model."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from ingest.models import Chunk, Document

pytestmark = pytest.mark.django_db

LEASE = (
    "Rent. The tenant shall pay a monthly rent of two thousand euros on the first day of "
    "each month.\n\n"
    "Termination. Either party may terminate this lease by giving ninety days written "
    "notice to the other party.\n\n"
    "Pets. No dogs, cats or other animals may be kept in the apartment.\n"
)
SUPPLY = (
    "Delivery. The supplier shall deliver the widgets to the buyer's warehouse in Rotterdam "
    "within fourteen days of each purchase order.\n\n"
    "Governing law. This agreement is governed by the laws of the Netherlands.\n"
)


def _span(text: str, phrase: str) -> list[int]:
    start = text.index(phrase)
    return [start, start + len(phrase)]


@pytest.fixture
def benchmark(tmp_path, settings):
    settings.CHUNK_SIZE = 150  # one paragraph per chunk
    settings.CHUNK_OVERLAP = 0
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "lease.txt").write_text(LEASE)
    (tmp_path / "txt" / "supply.txt").write_text(SUPPLY)
    rent = "The tenant shall pay a monthly rent of two thousand euros"
    law = "This agreement is governed by the laws of the Netherlands."
    tests = [
        {
            "query": "How much rent does the tenant pay each month?",
            "snippets": [{"file_path": "txt/lease.txt", "span": _span(LEASE, rent)}],
        },
        {
            "query": "Which country's law governs the agreement?",
            "snippets": [{"file_path": "txt/supply.txt", "span": _span(SUPPLY, law)}],
        },
    ]
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps({"tests": tests}))
    return path


def _evaluate(*args: str) -> dict:
    out = io.StringIO()
    call_command("evaluate", *args, "--json", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_evaluate_ingests_the_referenced_files_and_scores_spans(benchmark):
    report = _evaluate(str(benchmark), "--collection", "bench", "--ingest", "--k", "1,2,8")
    assert set(report) == {"queries", "k", "latency_ms"}
    assert report["queries"] == 2
    assert set(report["k"]) == {"1", "2", "8"}
    assert set(report["k"]["1"]) == {"recall", "precision", "hit"}
    # Each answer sits whole in one paragraph-sized chunk, found first.
    assert report["k"]["1"]["hit"] == 1.0
    assert report["k"]["1"]["recall"] == 1.0
    # Precision@1 is the answer's share of the retrieved chunk's characters.
    lease = Document.objects.get(name="lease.txt")
    assert lease.source_path == str((benchmark.parent / "txt" / "lease.txt").resolve())
    rent_chunk = Chunk.objects.get(document=lease, text__contains="monthly rent")
    supply_chunk = Chunk.objects.get(document__name="supply.txt", text__contains="governed")
    expected = (
        len("The tenant shall pay a monthly rent of two thousand euros") / len(rent_chunk.text)
        + len("This agreement is governed by the laws of the Netherlands.") / len(supply_chunk.text)
    ) / 2
    assert report["k"]["1"]["precision"] == pytest.approx(expected, abs=1e-4)
    # More chunks add no recall but dilute precision.
    assert report["k"]["8"]["recall"] == 1.0
    assert report["k"]["8"]["precision"] < report["k"]["1"]["precision"]
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"]

    # Again without --ingest: nothing new is stored and the same figures come back.
    chunks = Chunk.objects.count()
    again = _evaluate(str(benchmark), "--collection", "bench", "--k", "1,2,8")
    assert Chunk.objects.count() == chunks
    assert again["k"] == report["k"]


def test_per_document_search_stays_in_the_gold_document(benchmark, tmp_path):
    details = tmp_path / "details.jsonl"
    report = _evaluate(
        str(benchmark),
        "--collection",
        "bench",
        "--ingest",
        "--per-document",
        "--k",
        "8",
        "--details",
        str(details),
    )
    assert report["k"]["8"]["recall"] == 1.0
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    ids = dict(Document.objects.values_list("name", "id"))
    for row, name in zip(rows, ["lease.txt", "supply.txt"], strict=True):
        assert row["retrieved"], row
        assert {doc for doc, _, _ in row["retrieved"]} == {ids[name]}
    for mode in ("vector", "text"):
        one_arm = _evaluate(str(benchmark), "--collection", "bench", "--mode", mode, "--k", "8")
        assert one_arm["queries"] == 2
        assert one_arm["k"]["8"]["hit"] > 0


def test_pubmedqa_makes_one_document_per_abstract(tmp_path):
    abstracts = {
        "101": {
            "QUESTION": "Does coffee consumption reduce the risk of liver cirrhosis?",
            "CONTEXTS": [
                "We followed 20,000 adults for ten years.",
                "Drinking coffee daily was associated with lower rates of liver cirrhosis.",
            ],
        },
        "102": {
            "QUESTION": "Is knee arthroscopy effective for degenerative meniscal tears?",
            "CONTEXTS": ["Arthroscopic partial meniscectomy was no better than sham surgery."],
        },
        "103": {
            "QUESTION": "Do children who read before bed sleep longer?",
            "CONTEXTS": ["Bedtime reading was linked to forty more minutes of sleep in children."],
        },
    }
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps(abstracts))
    report = _evaluate("--pubmedqa", str(path), "--collection", "pubmed", "--ingest", "--k", "1,2")
    assert report["queries"] == 3
    assert report["k"]["1"]["recall"] == 1.0
    assert report["mrr"] == 1.0
    assert Document.objects.filter(collection__slug="pubmed").count() == 3
    assert Document.objects.get(name="pubmed-102.txt").source_path == f"{path.resolve()}#102"


def test_missing_collection_and_bad_arguments_are_errors(benchmark):
    with pytest.raises(CommandError, match="--ingest"):
        _evaluate(str(benchmark), "--collection", "nowhere")
    with pytest.raises(CommandError, match="either"):
        _evaluate("--collection", "nowhere")
    with pytest.raises(CommandError, match="--k"):
        _evaluate(str(benchmark), "--collection", "nowhere", "--k", "0")
