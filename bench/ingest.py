"""Ingestion throughput: Attest's pipeline against the common LangChain baseline, same run.

    .venv/bin/python bench/ingest.py FOLDER [--limit N] [--no-baseline] [--json]

Uses a scratch embedded PostgreSQL (or DATABASE_URL). Models are loaded before the clocks
start, for both pipelines.

Attest: every file is stored (`document_create`), then `documents_ingest` parses, chunks,
embeds (EMBEDDING_BACKEND, by default ONNX Runtime int8, several documents per call) and
writes each document's chunks in one transaction (bulk insert, HNSW and full-text indexes
maintained). Prints pages/s, chunks/s and the share of wall time in each stage (parse, OCR,
chunk, embed, write; "other" is the rest: storing the upload, status updates, the loop).

Baseline, as a LangChain tutorial builds it: per file, `PyPDFLoader(path).load()` (pypdf, one
document per page), `RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
.split_documents`, embeddings from sentence-transformers on torch (what `HuggingFaceEmbeddings`
calls: `SentenceTransformer.encode(texts)`, batch 32), and a PGVector-style table
(`langchain_pg_embedding`: uuid, collection, vector(384), document, jsonb metadata, no vector
index) filled row by row in one transaction per file. PyPDFLoader and the splitter are
LangChain's own (the `bench` extra); the embedding wrapper and the PGVector insert are
reimplemented in `bench/_langchain.py` (shared with `bench/records.py`), because
`langchain-huggingface` and `langchain-postgres` pin older `huggingface_hub` and `pgvector`
than Attest uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from _scratch import cpu_shares, cpu_times, machine, setup_django

STAGES = ("parse", "ocr", "chunk", "embed", "write")


def attest_run(files: list[Path]) -> dict:
    from ingest.embedding import get_embedder
    from ingest.models import Chunk
    from ingest.pipeline import StageTimings, documents_ingest
    from ingest.services import collection_create, document_create

    embedder = get_embedder()
    embedder.embed(["warm up the model before the clock starts"])
    collection = collection_create(name=f"bench {uuid.uuid4().hex[:8]}")
    totals = StageTimings()
    started = time.perf_counter()
    ids = []
    for path in files:
        document, _ = document_create(
            collection=collection, name=path.name, data=path.read_bytes(), enqueue=False
        )
        ids.append(document.id)
    store = time.perf_counter() - started
    results = documents_ingest(document_ids=ids)
    wall = time.perf_counter() - started
    for result in results:
        for stage in STAGES:
            setattr(totals, stage, getattr(totals, stage) + getattr(result.timings, stage))
    pages = sum(r.pages or 0 for r in results)
    chunks = Chunk.objects.filter(collection=collection).count()
    failed = [r for r in results if r.status != "ready"]
    return {
        "pipeline": f"attest ({embedder.backend})",
        "files": len(files),
        "failed": len(failed),
        "pages": pages,
        "chunks": chunks,
        "seconds": wall,
        "stages": {**{s: getattr(totals, s) for s in STAGES}, "store": store},
    }


def baseline_run(files: list[Path]) -> dict:
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import _langchain
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    model = _langchain.model_load()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    _langchain.table_create()
    collection_id = uuid.uuid4()
    stages = dict.fromkeys(STAGES, 0.0)
    pages = chunks = failed = 0
    started = time.perf_counter()
    for path in files:
        t0 = time.perf_counter()
        try:
            docs = PyPDFLoader(str(path)).load()
        except Exception:  # noqa: BLE001 - the baseline's failures are counted
            failed += 1
            continue
        t1 = time.perf_counter()
        splits = splitter.split_documents(docs)
        t2 = time.perf_counter()
        vectors = _langchain.embed(model, [d.page_content for d in splits])
        t3 = time.perf_counter()
        _langchain.store(collection_id=collection_id, splits=splits, vectors=vectors)
        t4 = time.perf_counter()
        stages["parse"] += t1 - t0
        stages["chunk"] += t2 - t1
        stages["embed"] += t3 - t2
        stages["write"] += t4 - t3
        pages += len(docs)
        chunks += len(splits)
    wall = time.perf_counter() - started
    return {
        "pipeline": "baseline (LangChain PyPDFLoader + splitter, torch, row inserts)",
        "files": len(files),
        "failed": failed,
        "pages": pages,
        "chunks": chunks,
        "seconds": wall,
        "stages": stages,
    }


def _with_cpu(run, files: list[Path]) -> dict:
    """The run, with the machine's CPU busy and host-steal shares while it ran (a virtual
    machine's host can take a varying part of the CPU time, which moves every figure)."""
    before = cpu_times()
    result = run(files)
    busy, steal = cpu_shares(before, cpu_times())
    result["cpu"] = {"busy": round(busy, 3), "stolen_by_host": round(steal, 3)}
    return result


def report(run: dict) -> str:
    wall = run["seconds"]
    lines = [
        f"{run['pipeline']}",
        f"  files {run['files']} (failed {run['failed']}), pages {run['pages']}, "
        f"chunks {run['chunks']}, wall {wall:.1f} s",
        f"  pages/s {run['pages'] / wall:.2f}   chunks/s {run['chunks'] / wall:.2f}",
    ]
    accounted = sum(run["stages"].values())
    shares = [f"{name} {100 * sec / wall:.1f}%" for name, sec in run["stages"].items()]
    shares.append(f"other {100 * max(wall - accounted, 0) / wall:.1f}%")
    lines.append("  share of wall time: " + ", ".join(shares))
    if "cpu" in run:
        lines.append(
            f"  CPU busy {run['cpu']['busy']:.0%}, stolen by the host "
            f"{run['cpu']['stolen_by_host']:.0%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (sorted)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.iterdir() if p.is_file())
    if args.limit:
        files = files[: args.limit]
    if not files:
        sys.exit(f"no files in {args.folder}")
    setup_django()
    runs = [_with_cpu(attest_run, files)]
    if not args.no_baseline:
        runs.append(_with_cpu(baseline_run, files))
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    print(f"input: {args.folder} ({len(files)} files); machine: {machine()}")
    for run in runs:
        print(report(run))
    if len(runs) == 2:
        a, b = runs
        speedup = (a["pages"] / a["seconds"]) / (b["pages"] / b["seconds"])
        print(
            f"attest / baseline: pages/s x{speedup:.2f}, "
            f"wall time x{b['seconds'] / a['seconds']:.2f}"
        )


if __name__ == "__main__":
    main()
