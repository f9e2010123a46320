"""Answer quality and overhead for the local backends (llamacpp, extractive).

    .venv/bin/python bench/answers.py [--pubmedqa 150] [--cuad-docs 12] [--nda-docs 10]
                                      [--backends llamacpp,extractive]

Uses a scratch embedded PostgreSQL (or DATABASE_URL) and starts the packaged llama.cpp server.
Prints, per backend:
- PubMedQA yes/no/maybe accuracy (each abstract a document; the answer's first word decides
  when it is yes/no/maybe, otherwise a negation/hedge rule over the answer text decides), beside
  the published majority baseline of 55.2%;
- on CUAD dev (the first N contracts of the benchmark, whole-collection search), the share of
  answers with a cited passage overlapping a gold span;
- the refusal rate of those CUAD questions asked of the right collection and of a collection of
  ContractNLI NDAs that cannot answer them;
  (bench/refusal.py measures the refusal gate's curve without a model);
- overhead: p50/p95 of the time from the question to the moment the prompt is sent to the model
  (retrieval, embedding, prompt building) — i.e. time to first token minus the model's own time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from pathlib import Path

from _scratch import REPO, setup_django

EVAL = REPO.parent / "shared" / "eval"
NEGATION = re.compile(
    r"\b(no|not|none|neither|nor|without|did not|does not|do not|was not|were not|cannot|"
    r"no significant|failed to|unable)\b",
    re.I,
)
HEDGE = re.compile(r"\b(may|might|unclear|uncertain|possibly|suggest|inconclusive|limited)\b", re.I)


def decide(answer: str) -> str:
    first = answer.strip().lower().split(" ", 1)[0].strip(".,:;!") if answer.strip() else ""
    if first in {"yes", "no", "maybe"}:
        return first
    if NEGATION.search(answer):
        return "no"
    if HEDGE.search(answer):
        return "maybe"
    return "yes"


def set_backend(name: str, base_url: str) -> None:
    from django.conf import settings

    from assistant import llm

    settings.LLM_BACKEND = name
    settings.LLM_BASE_URL = base_url
    settings.LLM_MODEL = "gemma-3-270m"
    llm.get_llm.cache_clear()


def ingest_texts(slug: str, items: list[tuple[str, str, str]]) -> dict[str, int]:
    """(name, text, source_path) -> document id, ingested in-process."""
    from ingest.pipeline import document_ingest
    from ingest.services import collection_get_or_create, document_create

    collection = collection_get_or_create(slug=slug, create=True)
    ids = {}
    for name, text, source in items:
        document, _ = document_create(
            collection=collection, name=name, data=text.encode(), source_path=source, enqueue=False
        )
        document_ingest(document_id=document.id)
        ids[source] = document.id
    return ids


def timed_ask(user, collection, question: str, k: int):
    from assistant.services import question_ask_stream

    started = time.perf_counter()
    overhead = None
    answer = None
    for event in question_ask_stream(user=user, collection=collection, question=question, k=k):
        if event["type"] == "passages" and overhead is None:
            overhead = (time.perf_counter() - started) * 1000
        elif event["type"] == "done":
            answer = event["answer"]
    return answer, overhead or 0.0


def bench_pubmedqa(limit: int, backends: list[str], base_url: str) -> None:
    from ingest.models import Collection

    data = json.loads((EVAL / "pubmedqa" / "ori_pqal.json").read_text())
    items = list(data.items())[:limit]
    ingest_texts(
        "pubmedqa",
        [(f"{pmid}.txt", " ".join(v["CONTEXTS"]), pmid) for pmid, v in items],
    )
    collection = Collection.objects.get(slug="pubmedqa")
    majority = max(("yes", "no", "maybe"), key=[v["final_decision"] for _, v in items].count)
    for backend in backends:
        set_backend(backend, base_url)
        correct = 0
        overheads = []
        for _, v in items:
            answer, overhead = timed_ask(None, collection, v["QUESTION"], 3)
            overheads.append(overhead)
            correct += decide(answer.text) == v["final_decision"]
        print(
            f"pubmedqa[{backend}]: accuracy {correct / len(items):.3f} on {len(items)} questions "
            f"(published majority baseline 0.552; majority here '{majority}' = "
            f"{[v['final_decision'] for _, v in items].count(majority) / len(items):.3f}); "
            f"overhead p50 {statistics.median(overheads):.0f} ms, "
            f"p95 {statistics.quantiles(overheads, n=20)[18]:.0f} ms"
        )


def bench_cuad(docs: int, ndas: int, backends: list[str], base_url: str) -> None:
    from ingest.models import Collection

    bench = json.loads((EVAL / "cuad" / "benchmark.json").read_text())
    files: list[str] = []
    for test in bench["tests"]:
        for snippet in test["snippets"]:
            if snippet["file_path"] not in files:
                files.append(snippet["file_path"])
    chosen = set(files[:docs])
    tests = [t for t in bench["tests"] if {s["file_path"] for s in t["snippets"]} <= chosen]
    ids = ingest_texts(
        "cuad",
        [
            (Path(f).name, (EVAL / "cuad" / f).read_text(encoding="utf-8"), f)
            for f in sorted(chosen)
        ],
    )
    nda_files = sorted((EVAL / "contractnli" / "txt").glob("*.txt"))[:ndas]
    ingest_texts("ndas", [(p.name, p.read_text(encoding="utf-8"), p.name) for p in nda_files])
    cuad = Collection.objects.get(slug="cuad")
    nda = Collection.objects.get(slug="ndas")
    for backend in backends:
        set_backend(backend, base_url)
        overlap = refused_right = refused_wrong = 0
        for test in tests:
            answer, _ = timed_ask(None, cuad, test["query"], 5)
            refused_right += answer.refused
            gold = [(ids[s["file_path"]], *s["span"]) for s in test["snippets"]]
            for c in answer.citations.filter(cited=True):
                if any(c.document_id == d and c.start < e and c.end > s for d, s, e in gold):
                    overlap += 1
                    break
            wrong, _ = timed_ask(None, nda, test["query"], 5)
            refused_wrong += wrong.refused
        n = len(tests)
        print(
            f"cuad[{backend}]: {n} questions over {len(chosen)} contracts: citations overlap a "
            f"gold span in {overlap / n:.3f}; refused {refused_right / n:.3f} of the questions "
            f"in the right collection and {refused_wrong / n:.3f} in a collection of "
            f"{len(nda_files)} NDAs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pubmedqa", type=int, default=150)
    parser.add_argument("--cuad-docs", type=int, default=12)
    parser.add_argument("--nda-docs", type=int, default=10)
    parser.add_argument("--backends", default="llamacpp,extractive")
    args = parser.parse_args()
    root = setup_django()
    from launcher import embedded

    model = embedded.ensure_gguf(root / "models")
    proc, url = embedded.start_llm(
        model_path=model,
        port=embedded.free_port(),
        env=dict(os.environ),
        threads=2,
        log=root / "llm.log",
    )
    try:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        if args.pubmedqa:
            bench_pubmedqa(args.pubmedqa, backends, url)
        if args.cuad_docs:
            bench_cuad(args.cuad_docs, args.nda_docs, backends, url)
    finally:
        embedded.stop(proc)


if __name__ == "__main__":
    main()
