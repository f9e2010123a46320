"""The medical-records benchmark (../shared/eval/records, issue 10): retrieval hit@k, answer
accuracy and mixed-patient answers, per category and per format.

- hit@k (value-based, since the product renders FHIR/C-CDA instead of keeping their raw text):
  a query is a hit at k when every gold item is held by one of the first k retrieved chunks
  that belong to the right patient. Dates compare as dates (any YYYY-MM-DD in the chunk),
  numbers to one decimal, names case-insensitively.
- "all" searches the whole collection the way a user's question is answered: the patient's name
  in the question is matched in SQL and retrieval is restricted to that patient's documents.
  Per format (fhir / ccda / text), the search is restricted to the patient's document of that
  format (the per-document setting).
- answer accuracy: each question is asked through `question_ask` (stored and audited like any
  other); answerable -> every gold item is in the answer; unanswerable -> the answer is a refusal.
- mixed: answers whose passages came from more than one patient.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.patients import patient_scope, search_text
from assistant.retrieval import retrieve

from . import benchmarks, metrics
from .metrics import BenchmarkError

if TYPE_CHECKING:
    from pathlib import Path

    from ingest.models import Collection, Document
    from ingest.selectors import ChunkHit

Progress = Callable[[int, int, str, str], None]

_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
REFUSAL = re.compile(
    r"do not answer|does not (?:show|contain|record|mention)|not (?:in|found in) the (?:records|"
    r"documents)|no record of|not recorded|cannot find|Several patients match",
    re.IGNORECASE,
)


ASK_BACK = re.compile(r"Which patient do you mean", re.IGNORECASE)


@dataclass(frozen=True)
class RecordQuery:
    query: str
    category: str
    answerable: bool
    answers: tuple[str, ...]
    patient_name: str
    documents: tuple[str, ...]  # benchmark keys, e.g. "fhir/<stem>.json"
    # What a right answer does: "answer" (states the gold), "not_recorded" (says the record
    # holds no such fact, or refuses), "ask_back" (asks which patient is meant).
    expect: str = "answer"
    phrasing: str = ""  # how the question names the patient (bench/records_natural.md)

    @property
    def label(self) -> str:
        if self.expect == "ask_back":
            return f"{self.category or 'patient'} (ask back)"
        return self.category if self.answerable else f"{self.category} (unanswerable)"


def doc_format(key: str) -> str:
    return key.split("/", 1)[0]


def load_records_benchmark(path: Path) -> list[RecordQuery]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        tests = data["tests"]
        return [
            RecordQuery(
                query=t["query"],
                category=t.get("category", ""),
                answerable=bool(t.get("answerable", True)),
                answers=tuple(str(a) for a in t.get("answers") or ()),
                patient_name=t.get("patient_name") or "",
                documents=tuple(t.get("documents") or ()),
                expect=t.get("expect")
                or ("answer" if t.get("answerable", True) else "not_recorded"),
                phrasing=t.get("phrasing", ""),
            )
            for t in tests
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{path} is not a records benchmark: {exc}") from exc


def record_sources(*, benchmark: Path, queries: Sequence[RecordQuery]) -> list[benchmarks.Source]:
    """The files the queries name, relative to the benchmark's folder, or to its
    `documents_root` (a question set kept apart from the records it asks about)."""
    folder = benchmark.resolve().parent
    try:
        root = json.loads(benchmark.read_text(encoding="utf-8")).get("documents_root")
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"{benchmark} is not a records benchmark: {exc}") from exc
    if root:
        folder = (folder / root).resolve()
    sources = []
    for key in sorted({d for q in queries for d in q.documents}):
        path = (folder / key).resolve()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BenchmarkError(f"Cannot read {path}: {exc.strerror}") from exc
        sources.append(benchmarks.Source(key=key, name=path.name, source_path=str(path), data=data))
    return sources


def _dates(text: str) -> set[str]:
    return {f"{y}-{m}-{d}" for y, m, d in _DATE.findall(text)}


def _numbers(text: str) -> set[float]:
    found = set()
    for raw in _NUMBER.findall(text):
        try:
            found.add(round(float(raw) + 1e-9, 1))
        except ValueError:
            pass
    return found


def holds(text: str, gold: str) -> bool:
    """Whether `text` states the gold item (see the module docstring for the comparison)."""
    gold = gold.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", gold):
        return gold in _dates(text)
    numbers = _NUMBER.findall(gold.replace("/", " "))
    if numbers and re.match(r"^-?\d", gold):
        wanted = [round(float(n) + 1e-9, 1) for n in numbers]
        have = _numbers(text.replace("/", " "))
        return all(w in have for w in wanted)
    return " ".join(gold.lower().split()) in " ".join(text.lower().split())


@dataclass
class Tally:
    n: int = 0
    hits: dict[int, int] = field(default_factory=dict)

    def add(self, hit_at: dict[int, bool]) -> None:
        self.n += 1
        for k, hit in hit_at.items():
            self.hits[k] = self.hits.get(k, 0) + int(hit)

    def rates(self) -> dict[str, float]:
        return (
            {str(k): round(v / self.n, 4) for k, v in sorted(self.hits.items())} if self.n else {}
        )


@dataclass
class RecordsRun:
    queries: int
    retrieval: dict[str, dict[str, Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )  # scope ("all", "fhir", ...) -> category -> tally
    answers: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    answers_by_format: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    mixed: int = 0
    asked: int = 0
    backend: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missing: list[str] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    # Patient safety: answers citing a passage of another patient than the one asked about,
    # "not recorded" said where the record holds the answer, and ask-back questions asked back.
    other_patient: int = 0
    false_not_recorded: int = 0
    by_expect: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    by_phrasing: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    latencies_ms: list[int] = field(default_factory=list)

    def answer_add(
        self,
        query: RecordQuery,
        *,
        text: str,
        refused: bool,
        backend: str,
        patients: set[int | None],
        patient_id: int | None = None,
        latency_ms: int = 0,
    ) -> bool:
        """Score one answer (`patients`: those its passages came from; `patient_id`: the one
        asked about, when known) and count it."""
        self.asked += 1
        self.backend[backend] += 1
        self.latencies_ms.append(latency_ms)
        if len(patients - {None}) > 1:
            self.mixed += 1
        if patient_id is not None and patients - {None, patient_id}:
            self.other_patient += 1
        asked_back = bool(ASK_BACK.search(text))
        if query.expect == "ask_back":
            ok = asked_back
        elif query.answerable:
            ok = not refused and all(holds(text, g) for g in query.answers)
            if refused and not asked_back:
                self.false_not_recorded += 1
        else:
            ok = not asked_back and (refused or bool(REFUSAL.search(text)))
        self.by_expect[query.expect].append(ok)
        if query.phrasing:
            self.by_phrasing[query.phrasing].append(ok)
        self.answers[query.label].append(ok)
        formats = "+".join(sorted({doc_format(d) for d in query.documents}))
        kind = "answerable" if query.answerable else "unanswerable"
        self.answers_by_format[f"{formats} {kind}"].append(ok)
        return ok

    def report(self) -> dict:
        def accuracy(rows: list[bool]) -> float:
            return round(sum(rows) / len(rows), 4) if rows else 0.0

        answerable = [
            ok for label, rows in self.answers.items() if "unanswerable" not in label for ok in rows
        ]
        unanswerable = [
            ok for label, rows in self.answers.items() if "unanswerable" in label for ok in rows
        ]
        return {
            "queries": self.queries,
            "retrieval_hit": {
                scope: {
                    **{category: tally.rates() for category, tally in sorted(by_cat.items())},
                    "ALL": _merge(by_cat.values()).rates(),
                    "n": _merge(by_cat.values()).n,
                }
                for scope, by_cat in self.retrieval.items()
            },
            "answers": {
                "asked": self.asked,
                "answerable_accuracy": accuracy(answerable),
                "unanswerable_refusal": accuracy(unanswerable),
                "by_category": {
                    label: {"n": len(rows), "accuracy": accuracy(rows)}
                    for label, rows in sorted(self.answers.items())
                },
                "by_formats": {
                    label: {"n": len(rows), "accuracy": accuracy(rows)}
                    for label, rows in sorted(self.answers_by_format.items())
                },
                "mixed_patient_answers": self.mixed,
                "backends": dict(self.backend),
                "accuracy": accuracy([ok for rows in self.by_expect.values() for ok in rows]),
                "by_expect": {e: accuracy(rows) for e, rows in sorted(self.by_expect.items())},
                "by_phrasing": {p: accuracy(rows) for p, rows in sorted(self.by_phrasing.items())},
                "other_patient_citations": self.other_patient,
                "false_not_recorded": self.false_not_recorded,
                "latency_ms": {
                    "p50": metrics.percentile(self.latencies_ms, 50),
                    "p95": metrics.percentile(self.latencies_ms, 95),
                },
            },
        }


def _merge(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.n += tally.n
        for k, v in tally.hits.items():
            total.hits[k] = total.hits.get(k, 0) + v
    return total


def hit_at(
    hits: Sequence[ChunkHit], gold: Sequence[str], patient_id: int | None, ks: Sequence[int]
) -> dict[int, bool]:
    """For each k: whether every gold item is in one of the first k `hits` (objects with
    `text` and `patient_id`) that belong to `patient_id` (None: any patient)."""
    result = {}
    for k in ks:
        texts = [h.text for h in hits[:k] if patient_id is None or h.patient_id == patient_id]
        result[k] = bool(gold) and all(any(holds(t, g) for t in texts) for g in gold)
    return result


def records_run(
    *,
    collection: Collection,
    queries: Sequence[RecordQuery],
    sources: Sequence[benchmarks.Source],
    ks: Sequence[int],
    answer: bool,
    answer_k: int,
    progress: Progress | None = None,
) -> RecordsRun:
    from assistant.services import question_ask  # services import retrieval; keep this module light

    documents: dict[str, Document] = benchmarks.benchmark_documents(
        collection=collection, sources=sources
    )
    run = RecordsRun(queries=len(queries))
    run.missing = sorted(s.key for s in sources if s.key not in documents)
    k_max = max(ks)
    for index, query in enumerate(queries, start=1):
        docs = [documents[d] for d in query.documents if d in documents]
        patient_id = docs[0].patient_id if docs else None
        detail: dict = {"query": query.query, "category": query.label, "gold": query.answers}
        if query.answerable and query.expect == "answer":
            scope = patient_scope(question=query.query, collection_ids=[collection.id])
            hits = retrieve(
                question=search_text(query.query) if scope.patients else query.query,
                collection_ids=[collection.id],
                k=k_max,
                document_ids=scope.document_ids,
            )
            found = hit_at(hits, query.answers, patient_id, ks)
            run.retrieval["all"][query.category].add(found)
            detail["hit"] = {str(k): v for k, v in found.items()}
            for key in query.documents:
                if key not in documents:
                    continue
                fmt_hits = retrieve(
                    question=search_text(query.query),
                    collection_ids=[collection.id],
                    k=k_max,
                    document_ids=[documents[key].id],
                )
                run.retrieval[doc_format(key)][query.category].add(
                    hit_at(fmt_hits, query.answers, patient_id, ks)
                )
        if answer:
            result = question_ask(
                user=None, collection=collection, question=query.query, k=answer_k
            )
            cited_patients = {
                c.document.patient_id if c.document is not None else None
                for c in result.citations.select_related("document")
            }
            ok = run.answer_add(
                query,
                text=result.text,
                refused=result.refused,
                backend=result.backend,
                patients=cited_patients,
                patient_id=patient_id if query.expect != "ask_back" else None,
                latency_ms=result.latency_ms,
            )
            detail.update({"answer": result.text, "correct": ok, "backend": result.backend})
        run.details.append(detail)
        if progress is not None:
            progress(index, len(queries), query.query[:60], "")
    return run
