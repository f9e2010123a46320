"""The retrieval metrics of `evaluation.metrics` (pure functions, no database)."""

import json

import pytest

from evaluation import metrics as evaluation
from evaluation.metrics import SpanScore, merge_ranges, rank_score, span_score


def test_merge_ranges_joins_overlapping_and_touching_ranges():
    assert merge_ranges([(10, 20), (0, 5), (15, 30), (30, 31), (40, 40)]) == [(0, 5), (10, 31)]


def test_span_score_counts_covered_gold_characters_and_relevant_retrieved_ones():
    gold = [("a", 100, 200)]
    # 50 of the 100 gold characters are covered; 50 of the 150 retrieved characters are gold.
    got = [("a", 150, 250), ("b", 100, 150)]
    assert span_score(got, gold) == SpanScore(recall=0.5, precision=50 / 150, hit=1.0)


def test_overlapping_chunks_count_each_character_once():
    gold = [("a", 0, 100)]
    # Two chunks sharing 50 characters (chunk overlap): recall cannot pass 1, precision is 1.
    got = [("a", 0, 80), ("a", 30, 100)]
    assert span_score(got, gold) == SpanScore(recall=1.0, precision=1.0, hit=1.0)


def test_same_offsets_in_another_document_do_not_count():
    assert span_score([("b", 0, 100)], [("a", 0, 100)]) == SpanScore(0.0, 0.0, 0.0)


def test_several_gold_spans_and_nothing_retrieved():
    gold = [("a", 0, 10), ("a", 20, 30), ("b", 0, 20)]
    assert span_score([("a", 5, 25)], gold).recall == pytest.approx(10 / 40)
    assert span_score([], gold) == SpanScore(0.0, 0.0, 0.0)


def test_scores_at_k_use_the_first_k_results_and_average_over_queries():
    gold = [("a", 0, 10)]
    got = [("x", 0, 10), ("a", 0, 10)]
    at = evaluation.span_scores_at(got, gold, [1, 2])
    assert at[1].hit == 0.0 and at[2].recall == 1.0 and at[2].precision == 0.5
    mean = evaluation.mean_span_scores([at, {1: SpanScore(1, 1, 1), 2: SpanScore(1, 0.5, 1)}])
    assert mean[1] == SpanScore(recall=0.5, precision=0.5, hit=0.5)
    assert mean[2] == SpanScore(recall=1.0, precision=0.5, hit=1.0)


def test_rank_score_ranks_distinct_documents():
    # Chunks of documents 7, 7, 3, 9: document 3 is the second distinct document.
    score = rank_score([7, 7, 3, 9], 3, [1, 2, 4])
    assert score.hits == {1: 0.0, 2: 1.0, 4: 1.0}
    assert score.reciprocal_rank == 0.5
    assert rank_score([7], 3, [1]).reciprocal_rank == 0.0
    recall, mrr = evaluation.mean_rank_scores([score, rank_score([3], 3, [1, 2, 4])])
    assert recall == {1: 0.5, 2: 1.0, 4: 1.0}
    assert mrr == 0.75


def test_percentile_interpolates():
    assert evaluation.percentile([1, 2, 3, 4], 50) == 2.5
    assert evaluation.percentile([10.0], 95) == 10.0
    assert evaluation.percentile(list(range(101)), 95) == 95


def test_parse_ks():
    assert evaluation.parse_ks("8,1, 2,8") == (1, 2, 8)
    for bad in ("", "0,1", "a"):
        with pytest.raises(evaluation.BenchmarkError):
            evaluation.parse_ks(bad)


def test_load_span_benchmark_skips_queries_without_gold(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "tests": [
                    {
                        "query": "q1",
                        "category": "c",
                        "snippets": [{"file_path": "t/a.txt", "span": [1, 5]}],
                    },
                    {"query": "q2", "snippets": []},
                ]
            }
        )
    )
    (query,) = evaluation.load_span_benchmark(path)
    assert query.query == "q1" and query.category == "c"
    assert query.gold == (evaluation.GoldSpan("t/a.txt", 1, 5),)
    path.write_text('{"questions": []}')
    with pytest.raises(evaluation.BenchmarkError, match="tests"):
        evaluation.load_span_benchmark(path)


def test_load_pubmedqa_joins_contexts(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps({"123": {"QUESTION": "Q?", "CONTEXTS": ["One.", "Two."]}}))
    assert evaluation.load_pubmedqa(path) == [
        evaluation.PubMedQuestion(pmid="123", question="Q?", text="One.\n\nTwo.")
    ]
