"""Medical records (issue 10): Attest against the common LangChain baseline, same questions,
same run, same scoring.

    .venv/bin/python bench/records.py [BENCHMARK.json] [--limit N] [--k 1,4,8] [--answer-k N]
        [--no-attest] [--no-baseline] [--details FILE] [--save FILE] [--json]

Question sets: the records benchmark (default), or bench/records_natural.json, 80 questions in
clinicians' words (names without digits, possessives, typos, first names, "anything" phrasing,
absent facts, ambiguous names and pronouns; bench/records_natural.md). Each answer is scored on
what a right answer does (`expect`: the gold stated, "not recorded", or asked back), and the
patient-safety figures are printed beside accuracy: answers citing another patient's record,
"not recorded" said where the record holds the answer, and the answers' latency.

Uses a scratch embedded PostgreSQL (or DATABASE_URL; BENCH_KEEP=1 leaves the scratch one
running and prints its URL, so a rerun against it skips what is already ingested). --limit
takes the first N questions and only the files they reference, for both pipelines.

Attest: what `manage.py evaluate --records --ingest` does (`evaluation/records.py`): the
files ingested into the collection "records", retrieval hit@k on the product's path (patient
matched in SQL, search scoped to their documents), each question asked through `question_ask`
with LLM_BACKEND (extractive unless set) and --answer-k passages (default RETRIEVAL_K).

Baseline, as a LangChain tutorial builds it: per file `JSONLoader(jq_schema=".",
text_content=False)` for FHIR JSON (the whole bundle as one document, re-serialised by
`json.dumps`), `TextLoader` for Synthea's text export and the C-CDA XML;
`RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)`; all-MiniLM-L6-v2 through
sentence-transformers on torch; a PGVector-style table (`bench/_langchain.py`); the question
embedded as asked, cosine top k over the whole collection.

Both are scored by `evaluation/records.py`: hit@k when every gold item is in one of the first
k passages that belong to the right patient (baseline: a passage's patient is the uuid its
file's name ends with); per format, the search restricted to the patient's file of that format;
mixed-patient answers when an answer's passages come from more than one patient. The recipe has
no answer generator, so the baseline's answer is Attest's extractive backend
(`grounding.extractive_answer`, its default 3 sentences, the question as asked) over its top
--answer-k passages: right when every gold item is in the quoted text, a refusal when it quotes
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from _scratch import REPO, machine, setup_django

DEFAULT = REPO.parent / "shared" / "eval" / "records" / "benchmark.json"
BASELINE_K = 4  # the common recipe's retriever default


@dataclass(frozen=True)
class Passage:
    """A baseline passage: what `records_eval.hit_at` reads, and where it came from."""

    text: str
    key: str

    @property
    def patient_id(self) -> str:
        return patient_of(self.key)


def patient_of(key: str) -> str:
    """The patient uuid a benchmark file's name ends with (`<Given><n>_<Family><n>_<uuid>`)."""
    return Path(key).name.split("_")[-1].split(".")[0]


def attest_run(*, queries, sources, ks, answer_k: int) -> tuple[dict, list[dict]]:
    from django.conf import settings

    from evaluation import benchmarks
    from evaluation import records as records_eval
    from ingest.models import Chunk
    from ingest.services import collection_get_or_create

    collection = collection_get_or_create(slug="records", create=True)
    started = time.perf_counter()
    counts = benchmarks.benchmark_ingest(collection=collection, sources=sources)
    ingested = time.perf_counter()
    run = records_eval.records_run(
        collection=collection,
        queries=queries,
        sources=sources,
        ks=ks,
        answer=True,
        answer_k=answer_k,
    )
    report = run.report()
    report.update(
        pipeline=f"attest (LLM_BACKEND={settings.LLM_BACKEND}, {answer_k} passages)",
        chunks=Chunk.objects.filter(collection=collection).count(),
        ingest=counts,
        ingest_seconds=round(ingested - started, 1),
        question_seconds=round(time.perf_counter() - ingested, 1),
        missing=run.missing,
    )
    return report, run.details


def baseline_load(source) -> list:
    """LangChain documents of one benchmark file, its key in their metadata."""
    from langchain_community.document_loaders import JSONLoader, TextLoader

    if source.key.endswith(".json"):
        loader = JSONLoader(source.source_path, jq_schema=".", text_content=False)
    else:
        loader = TextLoader(source.source_path, encoding="utf-8")
    docs = loader.load()
    for doc in docs:
        doc.metadata["key"] = source.key
    return docs


def baseline_ingest(*, sources, model) -> tuple[uuid.UUID, dict]:
    """Load, split, embed and store the files; a collection already filled with these very
    files (same keys and contents) is reused."""

    import _langchain
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.key.encode() + hashlib.sha256(source.data).digest())
    collection_id = uuid.uuid5(uuid.NAMESPACE_URL, f"attest-records-baseline:{digest.hexdigest()}")
    _langchain.table_create()
    chunks = _langchain.count(collection_id=collection_id)
    if chunks:
        return collection_id, {"chunks": chunks, "reused": True}
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    started = time.perf_counter()
    for source in sources:
        splits = splitter.split_documents(baseline_load(source))
        vectors = _langchain.embed(model, [s.page_content for s in splits])
        _langchain.store(collection_id=collection_id, splits=splits, vectors=vectors)
        chunks += len(splits)
    return collection_id, {"chunks": chunks, "seconds": round(time.perf_counter() - started, 1)}


def baseline_run(*, queries, collection_id, model, ks, answer_k: int):
    """Retrieve and answer every question the baseline's way; scored into a RecordsRun."""
    import _langchain

    from assistant import grounding, prompt
    from evaluation import records as records_eval

    run = records_eval.RecordsRun(queries=len(queries))
    k_max = max(*ks, answer_k)

    def search(vector, metadata=None) -> list[Passage]:
        rows = _langchain.search(
            collection_id=collection_id, vector=vector, k=k_max, metadata=metadata
        )
        return [Passage(text=text, key=meta["key"]) for text, meta in rows]

    for query in queries:
        vector = _langchain.embed(model, [query.query])[0]
        hits = search(vector)
        patient = patient_of(query.documents[0]) if query.documents else None
        detail: dict = {"query": query.query, "category": query.label, "gold": query.answers}
        if query.answerable:
            hit_at = records_eval.hit_at(hits, query.answers, patient, ks)
            run.retrieval["all"][query.category].add(hit_at)
            detail["hit"] = {str(k): v for k, v in hit_at.items()}
            for key in query.documents:
                run.retrieval[records_eval.doc_format(key)][query.category].add(
                    records_eval.hit_at(search(vector, {"key": key}), query.answers, patient, ks)
                )
        top = hits[:answer_k]
        text = grounding.extractive_answer(
            question=query.query,
            passages=[
                prompt.Passage(
                    n=n, document_name=Path(p.key).name, page=None, heading="", text=p.text
                )
                for n, p in enumerate(top, start=1)
            ],
        )
        ok = run.answer_add(
            query,
            text=text,
            refused=not text,
            backend="extractive",
            patients={p.patient_id for p in top},
        )
        detail.update(
            answer=text,
            correct=ok,
            passages=[p.key for p in top],
            mixed=len({p.patient_id for p in top}) > 1,
        )
        run.details.append(detail)
    return run


def baseline(*, queries, sources, ks, answer_k: int) -> tuple[dict, list[dict]]:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import _langchain

    model = _langchain.model_load()
    collection_id, ingest = baseline_ingest(sources=sources, model=model)
    started = time.perf_counter()
    run = baseline_run(
        queries=queries, collection_id=collection_id, model=model, ks=ks, answer_k=answer_k
    )
    report = run.report()
    report.update(
        pipeline=(
            "baseline (LangChain JSONLoader/TextLoader, RecursiveCharacterTextSplitter(1000, "
            f"200), MiniLM on torch, PGVector-style cosine top {answer_k}, extractive answer)"
        ),
        chunks=ingest["chunks"],
        ingest=ingest,
        ingest_seconds=ingest.get("seconds"),
        question_seconds=round(time.perf_counter() - started, 1),
    )
    return report, run.details


def table(reports: dict[str, dict], ks: list[int]) -> str:
    """The pipelines' figures side by side."""
    names = list(reports)
    first = reports[names[0]]
    hit = first["retrieval_hit"]
    by_category = first["answers"]["by_category"]
    asked = first["answers"]["asked"]
    n_answerable = sum(r["n"] for label, r in by_category.items() if "unanswerable" not in label)
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, value) -> None:
        cells = []
        for report in reports.values():
            try:
                got = value(report)
            except (KeyError, TypeError):
                got = None
            cells.append("-" if got is None else f"{got:.3f}" if isinstance(got, float) else got)
        rows.append((name, [str(c) for c in cells]))

    row("chunks", lambda r: r["chunks"])
    row("ingest seconds (0: reused)", lambda r: r["ingest_seconds"] or 0)
    row("question seconds", lambda r: r["question_seconds"])
    for scope in ("all", "fhir", "text", "ccda"):
        if scope in hit:
            where = "patient's files" if scope == "all" else f"{scope} file only"
            for k in ks:
                row(
                    f"hit@{k}, {where} (n={hit[scope]['n']})",
                    lambda r, s=scope, k=k: r["retrieval_hit"][s]["ALL"][str(k)],
                )
    row(
        f"answer accuracy, answerable (n={n_answerable})",
        lambda r: r["answers"]["answerable_accuracy"],
    )
    row(
        f"refusal, unanswerable (n={asked - n_answerable})",
        lambda r: r["answers"]["unanswerable_refusal"],
    )
    row(f"mixed-patient answers (of {asked})", lambda r: r["answers"]["mixed_patient_answers"])
    row("accuracy, every question", lambda r: r["answers"]["accuracy"])
    for expect in first["answers"].get("by_expect", {}):
        row(f"  expect {expect}", lambda r, e=expect: r["answers"]["by_expect"][e])
    row(
        "answers citing another patient's record",
        lambda r: r["answers"]["other_patient_citations"],
    )
    row('false "not recorded" (answerable)', lambda r: r["answers"]["false_not_recorded"])
    row("answer latency p50 ms", lambda r: r["answers"]["latency_ms"]["p50"])
    row("answer latency p95 ms", lambda r: r["answers"]["latency_ms"]["p95"])
    if first["answers"].get("by_phrasing"):
        rows.append(("accuracy by phrasing", [""] * len(names)))
        for phrasing in first["answers"]["by_phrasing"]:
            row(f"  {phrasing}", lambda r, p=phrasing: r["answers"]["by_phrasing"][p])
    k4 = 4 if 4 in ks else ks[-1]
    rows.append((f"hit@{k4} by category", [""] * len(names)))
    for category in hit.get("all", {}):
        if category not in ("ALL", "n"):
            row(f"  {category}", lambda r, c=category: r["retrieval_hit"]["all"][c][str(k4)])
    rows.append(("answer accuracy by category", [""] * len(names)))
    for label, counts in by_category.items():
        row(
            f"  {label} (n={counts['n']})",
            lambda r, label=label: r["answers"]["by_category"][label]["accuracy"],
        )
    width = max(len(name) for name, _ in rows) + 2
    lines = [" " * width + "".join(f"{name:>10}" for name in names)]
    lines += [f"{name:<{width}}" + "".join(f"{c:>10}" for c in cells) for name, cells in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--k", default="1,4,8", help="hit@k for these k (comma-separated)")
    parser.add_argument(
        "--answer-k", type=int, default=None, help="Attest's passages per answer (RETRIEVAL_K)"
    )
    parser.add_argument("--no-attest", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--details", type=Path, help="per-question results of both (JSONL)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args()
    root = setup_django(keep=os.environ.get("BENCH_KEEP") == "1")
    print(f"DATABASE_URL={os.environ['DATABASE_URL']} (scratch in {root})", file=sys.stderr)
    from django.conf import settings

    from evaluation import metrics as evaluation
    from evaluation import records as records_eval

    ks = evaluation.parse_ks(args.k)
    queries = records_eval.load_records_benchmark(args.benchmark)[: args.limit]
    sources = records_eval.record_sources(benchmark=args.benchmark, queries=queries)
    reports: dict[str, dict] = {}
    details: list[dict] = []
    if not args.no_attest:
        answer_k = args.answer_k or settings.RETRIEVAL_K
        reports["attest"], rows = attest_run(
            queries=queries, sources=sources, ks=ks, answer_k=answer_k
        )
        details += [{"pipeline": "attest", **row} for row in rows]
        print(f"attest done: {json.dumps(reports['attest']['answers'])}", file=sys.stderr)
    if not args.no_baseline:
        reports["baseline"], rows = baseline(
            queries=queries, sources=sources, ks=ks, answer_k=BASELINE_K
        )
        details += [{"pipeline": "baseline", **row} for row in rows]
    if args.details:
        with args.details.open("w", encoding="utf-8") as handle:
            for row in details:
                handle.write(json.dumps(row) + "\n")
    answerable = sum(q.answerable for q in queries)
    summary = {
        "benchmark": str(args.benchmark),
        "questions": len(queries),
        "answerable": answerable,
        "files": len(sources),
        "patients": len({patient_of(s.key) for s in sources}),
    }
    if args.save:
        args.save.write_text(json.dumps({"input": summary, **reports}, indent=2))
    if args.json:
        print(json.dumps({"input": summary, **reports}, indent=2))
        return
    print(f"machine: {machine()}")
    print(
        f"input: {summary['benchmark']}: {summary['questions']} questions "
        f"({answerable} answerable), {summary['files']} files, {summary['patients']} patients"
    )
    for name, report in reports.items():
        print(
            f"{name}: {report['pipeline']}; questions {report['question_seconds']} s; "
            f"backends {report['answers']['backends']}"
        )
    print(table(reports, ks))


if __name__ == "__main__":
    main()
