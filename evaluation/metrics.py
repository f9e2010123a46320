"""Retrieval metrics and benchmark files, as pure functions (no database, no model).

Span metrics follow ../shared/eval/README.md (the LegalBench-RAG span metric): each retrieved
chunk is a character range of a source document, each gold answer a character range too.

- recall@k: characters of the gold spans covered by the top-k ranges / characters of the gold spans
- precision@k: characters of the top-k ranges that overlap gold spans / characters retrieved
- hit@k: 1 when some top-k range overlaps a gold span, else 0

Overlapping ranges are merged first (per document), so a character counts once: consecutive
chunks share up to CHUNK_OVERLAP characters, and without merging recall could pass 1 and
precision would count the shared characters twice.

Document-level metrics (PubMedQA: one relevant document per question): the retrieved chunks
are reduced to distinct documents in rank order; recall@k is 1 when the relevant document is
among the first k, and the reciprocal rank is 1/rank (0 when it was not retrieved).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64)

# A character range of one document: (document key, start, end), half-open.
Span = tuple[Hashable, int, int]


class BenchmarkError(ValueError):
    """The benchmark file cannot be read; the message says why."""


@dataclass(frozen=True)
class GoldSpan:
    file_path: str  # relative to the folder holding the benchmark file
    start: int
    end: int


@dataclass(frozen=True)
class SpanQuery:
    query: str
    gold: tuple[GoldSpan, ...]
    category: str = ""

    @property
    def files(self) -> set[str]:
        return {g.file_path for g in self.gold}


@dataclass(frozen=True)
class PubMedQuestion:
    pmid: str
    question: str
    text: str  # the abstract: its CONTEXTS joined by blank lines


@dataclass(frozen=True)
class SpanScore:
    recall: float
    precision: float
    hit: float


@dataclass
class RankScore:
    hits: dict[int, float] = field(default_factory=dict)  # k -> 1.0 if found in the first k
    reciprocal_rank: float = 0.0


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ranges covering the same characters (empty ranges dropped)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _by_key(spans: Iterable[Span]) -> dict[Hashable, list[tuple[int, int]]]:
    grouped: dict[Hashable, list[tuple[int, int]]] = defaultdict(list)
    for key, start, end in spans:
        grouped[key].append((start, end))
    return {key: merge_ranges(ranges) for key, ranges in grouped.items()}


def _length(ranges: Iterable[tuple[int, int]]) -> int:
    return sum(end - start for start, end in ranges)


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Characters in both of two merged range lists."""
    total = i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if high > low:
            total += high - low
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def span_score(retrieved: Sequence[Span], gold: Sequence[Span]) -> SpanScore:
    """Recall, precision and hit of retrieved ranges against gold ranges (see module doc)."""
    got = _by_key(retrieved)
    want = _by_key(gold)
    gold_chars = sum(_length(r) for r in want.values())
    got_chars = sum(_length(r) for r in got.values())
    common = sum(_overlap(got[key], want[key]) for key in got.keys() & want.keys())
    return SpanScore(
        recall=common / gold_chars if gold_chars else 0.0,
        precision=common / got_chars if got_chars else 0.0,
        hit=1.0 if common > 0 else 0.0,
    )


def span_scores_at(
    retrieved: Sequence[Span], gold: Sequence[Span], ks: Sequence[int]
) -> dict[int, SpanScore]:
    """span_score of the first k retrieved ranges, for each k (retrieved is best first)."""
    return {k: span_score(retrieved[:k], gold) for k in ks}


def mean_span_scores(per_query: Sequence[dict[int, SpanScore]]) -> dict[int, SpanScore]:
    """Average each metric over queries, per k."""
    if not per_query:
        return {}
    ks = per_query[0].keys()
    n = len(per_query)
    return {
        k: SpanScore(
            recall=sum(q[k].recall for q in per_query) / n,
            precision=sum(q[k].precision for q in per_query) / n,
            hit=sum(q[k].hit for q in per_query) / n,
        )
        for k in ks
    }


def distinct_in_order(keys: Iterable[Hashable]) -> list[Hashable]:
    seen: set[Hashable] = set()
    ordered = []
    for key in keys:
        if key not in seen:
            seen.add(key)
            ordered.append(key)
    return ordered


def rank_score(ranked: Sequence[Hashable], relevant: Hashable, ks: Sequence[int]) -> RankScore:
    """Recall@k (0/1) and reciprocal rank of the one relevant item in a ranked list."""
    distinct = distinct_in_order(ranked)
    rank = distinct.index(relevant) + 1 if relevant in distinct else None
    return RankScore(
        hits={k: 1.0 if rank is not None and rank <= k else 0.0 for k in ks},
        reciprocal_rank=1.0 / rank if rank else 0.0,
    )


def mean_rank_scores(per_query: Sequence[RankScore]) -> tuple[dict[int, float], float]:
    """(recall@k averaged over queries, mean reciprocal rank)."""
    if not per_query:
        return {}, 0.0
    n = len(per_query)
    ks = per_query[0].hits.keys()
    recall = {k: sum(q.hits[k] for q in per_query) / n for k in ks}
    return recall, sum(q.reciprocal_rank for q in per_query) / n


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def parse_ks(raw: str) -> tuple[int, ...]:
    """ "1,2,4" -> (1, 2, 4); each k a positive integer, sorted, without repeats."""
    try:
        ks = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError as exc:
        raise BenchmarkError(f"--k must be comma-separated integers, got {raw!r}") from exc
    if not ks or ks[0] < 1:
        raise BenchmarkError(f"--k must list positive integers, got {raw!r}")
    return tuple(ks)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchmarkError(f"Cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{path} is not valid JSON: {exc}") from exc


def load_span_benchmark(path: Path) -> list[SpanQuery]:
    """Queries of a span benchmark: {"tests": [{"query", "snippets": [{"file_path", "span"}]}]}.

    Queries without snippets are skipped (nothing to find, so no recall to measure).
    """
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise BenchmarkError(f'{path} has no "tests" list: not a span benchmark')
    queries = []
    for index, test in enumerate(data["tests"]):
        try:
            gold = tuple(
                GoldSpan(
                    file_path=str(s["file_path"]), start=int(s["span"][0]), end=int(s["span"][1])
                )
                for s in test.get("snippets", [])
            )
            query = str(test["query"])
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise BenchmarkError(f"{path}: test {index} is malformed ({exc!r})") from exc
        if gold:
            queries.append(
                SpanQuery(query=query, gold=gold, category=str(test.get("category", "")))
            )
    return queries


def load_pubmedqa(path: Path) -> list[PubMedQuestion]:
    """PubMedQA's ori_pqal.json: {PMID: {"QUESTION", "CONTEXTS": [...]}}, in file order."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path} is not a PubMedQA file (expected an object keyed by PMID)")
    questions = []
    for pmid, item in data.items():
        try:
            questions.append(
                PubMedQuestion(
                    pmid=str(pmid),
                    question=str(item["QUESTION"]),
                    text="\n\n".join(str(c) for c in item["CONTEXTS"]),
                )
            )
        except (KeyError, TypeError) as exc:
            raise BenchmarkError(f"{path}: PMID {pmid} is malformed ({exc!r})") from exc
    return questions
