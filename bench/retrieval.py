"""Retrieval at scale: hybrid query latency under a permission filter, ANN recall against exact
search under the same filter, HNSW/GIN build time and size, at 100k and 1M chunks.

    .venv/bin/python bench/retrieval.py [--rows 100000,1000000] [--base 2000] [--queries 200]
        [--collections 10] [--m 16] [--ef-construction 64] [--workers 1]
        [--maintenance-work-mem 4GB] [--cuad ../shared/eval/cuad]

Uses a scratch embedded PostgreSQL (or DATABASE_URL; BENCH_DIR keeps the scratch folder).

How the chunks are made (realistic text and vectors without embedding a million passages):
1. The base corpus: the CUAD contracts (TXT), then the ContractNLI agreements, are chunked
   exactly as ingestion does (CHUNK_SIZE / CHUNK_OVERLAP) and the first `--base` chunks
   (default 8,000: nearly all of CUAD) are embedded once with the product's embedder
   (EMBEDDING_BACKEND); the vectors are cached in BENCH_DIR. At 1M rows each real passage then
   stands for about 125 rows (12 in the collection searched), not 500 as with the earlier
   2,000-chunk base, whose near-duplicate copies made exact top-10 lists near-ties.
2. Row i takes the text of a random base chunk b (so the stored tsvector has real contract
   words with their real frequencies) and the vector
   normalise(v_b + a * (v_c - v_b) + e), with c another random base chunk, a ~ U(0, 0.5) and
   e ~ N(0, sigma^2) per dimension (sigma 0.03, |e| about 0.6): a point between two real
   passages, near the first, never an exact duplicate.
3. Rows belong to `--collections` collections (100 documents each), interleaved, so the
   permission filter (one collection) keeps 1/collections of the rows, spread over the table.
Rows are bulk-loaded with binary COPY with the HNSW and GIN indexes dropped; both are then
built (timed) with maintenance_work_mem raised and parallel maintenance workers. With several
--rows targets the table grows from one to the next (indexes dropped and rebuilt each time).

Queries are real CUAD questions, embedded beforehand (their embedding time is not counted): the
latency is one `chunk_search` call (the product's hybrid SQL, one round trip) as retrieval makes
it, k=RETRIEVAL_K, candidates=RETRIEVAL_CANDIDATES, restricted to one collection. ANN recall@10
compares the vector arm as chunk_search runs it (HNSW, hnsw.iterative_scan=relaxed_order,
ef_search=max(40, candidates), same filter) with exact cosine top-10 over that collection's
rows computed in NumPy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _scratch import REPO, setup_django

SIGMA = 0.03
DOCS_PER_COLLECTION = 100


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def base_corpus(cuad: Path, count: int, cache_dir: Path) -> tuple[list[str], np.ndarray]:
    """The first `count` chunks (as ingestion cuts them) of the CUAD contracts, then of the
    ContractNLI agreements beside them, and their vectors (cached)."""
    from django.conf import settings

    from ingest.chunking import chunk
    from ingest.embedding import get_embedder
    from ingest.parsers.text import parse_text

    texts: list[str] = []
    folders = [cuad / "txt", cuad.parent / "contractnli" / "txt"]
    paths = [p for folder in folders for p in sorted(folder.glob("*.txt"))]
    for path in paths:
        parsed = parse_text(path.read_bytes())
        drafts = chunk(parsed, size=settings.CHUNK_SIZE, overlap=settings.CHUNK_OVERLAP)
        texts.extend(d.text for d in drafts)
        if len(texts) >= count:
            break
    texts = texts[:count]
    key = hashlib.sha256(
        json.dumps([settings.EMBEDDING_BACKEND, settings.EMBEDDING_ONNX_INT8, texts]).encode()
    ).hexdigest()[:16]
    cache = cache_dir / f"base-{key}.npy"
    if cache.exists():
        return texts, np.load(cache)
    started = time.perf_counter()
    vectors = np.asarray(get_embedder().embed(texts), dtype=np.float32)
    print(f"embedded {len(texts)} base chunks in {time.perf_counter() - started:.0f} s")
    np.save(cache, vectors)
    return texts, vectors


def questions(cuad: Path, count: int, cache_dir: Path) -> tuple[list[str], np.ndarray]:
    from ingest.embedding import get_embedder

    tests = json.loads((cuad / "benchmark.json").read_text())["tests"]
    step = max(1, len(tests) // count)
    texts = [t["query"] for t in tests[::step]][:count]
    key = hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]
    cache = cache_dir / f"questions-{key}.npy"
    if cache.exists():
        return texts, np.load(cache)
    vectors = np.asarray(get_embedder().embed(texts), dtype=np.float32)
    np.save(cache, vectors)
    return texts, vectors


def derived(base: np.ndarray, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` vectors near real ones (see the module doc) and the base chunk each takes text from."""
    b = rng.integers(len(base), size=n)
    c = rng.integers(len(base), size=n)
    a = rng.uniform(0, 0.5, size=(n, 1)).astype(np.float32)
    v = base[b] + a * (base[c] - base[b])
    v += rng.normal(0, SIGMA, size=v.shape).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, b


def ensure_collections(count: int) -> tuple[list[int], dict[int, int]]:
    """`count` bench collections with DOCS_PER_COLLECTION documents each; returns the
    collection ids and {document index: document id}."""
    from ingest.models import Collection, Document

    cols = []
    for n in range(count):
        col, _ = Collection.objects.get_or_create(slug=f"bench-{n}", defaults={"name": f"B{n}"})
        cols.append(col)
    docs: dict[int, int] = {}
    for n in range(count * DOCS_PER_COLLECTION):
        col = cols[n % count]
        doc, _ = Document.objects.get_or_create(
            collection=col,
            name=f"bench-{n}.txt",
            defaults={"sha256": f"{n:064x}", "status": Document.Status.READY},
        )
        docs[n] = doc.id
    return [c.id for c in cols], docs


def drop_indexes(cursor) -> None:
    cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    cursor.execute("DROP INDEX IF EXISTS chunk_collection_search_gin")


def fill(conn, *, start: int, stop: int, texts, base, docs, collections, rng) -> float:
    """COPY rows start..stop-1 (explicit ids); returns seconds."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    n_docs = len(docs)
    started = time.perf_counter()
    batch = 50_000
    with conn.cursor() as cursor:
        for lo in range(start, stop, batch):
            hi = min(stop, lo + batch)
            vectors, b = derived(base, rng, hi - lo)
            columns = (
                'id, document_id, collection_id, ordinal, text, start, "end", page, page_end, '
                "heading, embedding, embedding_model, sources"
            )
            with cursor.copy(
                f"COPY ingest_chunk ({columns}) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(
                    [
                        "int8",
                        "int8",
                        "int8",
                        "int4",
                        "text",
                        "int4",
                        "int4",
                        "int4",
                        "int4",
                        "varchar",
                        "vector",
                        "varchar",
                        "jsonb",
                    ]
                )
                for j in range(hi - lo):
                    i = lo + j
                    doc = i % n_docs
                    text = texts[b[j]]
                    copy.write_row(
                        (
                            i + 1,
                            docs[doc],
                            collections[doc % len(collections)],
                            i // n_docs,
                            text,
                            0,
                            len(text),
                            1,
                            1,
                            "",
                            vectors[j],
                            "bench",
                            "[]",
                        )
                    )
            conn.commit()
            print(f"  loaded {hi:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('ingest_chunk', 'id'), "
            "(SELECT max(id) FROM ingest_chunk))"
        )
    conn.commit()
    return time.perf_counter() - started


def build_indexes(conn, *, m: int, ef_construction: int, workers: int, mem: str) -> dict:
    out = {}
    with conn.cursor() as cursor:
        cursor.execute(f"SET maintenance_work_mem = '{mem}'")
        cursor.execute(f"SET max_parallel_maintenance_workers = {workers}")
        started = time.perf_counter()
        cursor.execute(
            "CREATE INDEX chunk_embedding_hnsw ON ingest_chunk USING hnsw "
            f"(embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction})"
        )
        conn.commit()
        out["hnsw_build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute(
            "CREATE INDEX chunk_collection_search_gin ON ingest_chunk "
            "USING gin (collection_id, search_vector)"
        )
        conn.commit()
        out["gin_build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute("ANALYZE ingest_chunk")
        out["analyze_s"] = time.perf_counter() - started
        for name in ("chunk_embedding_hnsw", "chunk_collection_search_gin"):
            cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
            out[f"{name}_mb"] = cursor.fetchone()[0] / 2**20
        cursor.execute("SELECT pg_total_relation_size('ingest_chunk')")
        out["table_total_mb"] = cursor.fetchone()[0] / 2**20
    conn.commit()
    return out


def _plan_nodes(node: dict) -> list[str]:
    name = node["Node Type"] + (f" using {node['Index Name']}" if "Index Name" in node else "")
    return [name] + [n for child in node.get("Plans", []) for n in _plan_nodes(child)]


def _walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def hybrid_plan(*, text: str, vec, target_col: int) -> dict:
    """EXPLAIN ANALYZE of the hybrid SQL as chunk_search sends it for one question: the plan's
    nodes, the full-text index's condition and how many rows its bitmap handed to the heap."""
    from django.conf import settings
    from django.db import connection, transaction

    from ingest.selectors import chunk_search, hnsw_ef_search

    captured: list = []

    def capture(execute, sql, params, many, context):
        if sql.lstrip().startswith("WITH"):
            captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        chunk_search(
            query_text=text,
            query_vector=vec.tolist(),
            collection_ids=[target_col],
            k=settings.RETRIEVAL_K,
            candidates=settings.RETRIEVAL_CANDIDATES,
            rrf_k=settings.RETRIEVAL_RRF_K,
            max_df=settings.RETRIEVAL_TEXT_MAX_DF,
            max_terms=settings.RETRIEVAL_TEXT_MAX_TERMS,
            max_postings=settings.RETRIEVAL_TEXT_MAX_POSTINGS,
        )
    sql, params = captured[0]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(
            f"SET LOCAL hnsw.ef_search = {hnsw_ef_search(settings.RETRIEVAL_CANDIDATES)}"
        )
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    nodes = list(_walk(plan[0]["Plan"]))
    out = {
        "hybrid_plan": " > ".join(_plan_nodes(plan[0]["Plan"])),
        "hybrid_explain_ms": plan[0]["Execution Time"],
    }
    for node in nodes:
        if node.get("Index Name") == "chunk_collection_search_gin":
            out["text_index_cond"] = node.get("Index Cond")
            out["text_index_rows"] = node.get("Actual Rows")
        if node["Node Type"] == "Bitmap Heap Scan":
            out["text_heap_blocks"] = node.get("Exact Heap Blocks", 0) + node.get(
                "Lossy Heap Blocks", 0
            )
    return out


def measure(
    *,
    target_col: int,
    q_texts,
    q_vecs,
    allowed_ids: np.ndarray,
    allowed_vecs: np.ndarray,
    ef_values: list[int],
) -> dict:
    from django.conf import settings
    from django.db import connection, transaction

    from ingest.selectors import chunk_search, hnsw_ef_search

    k, candidates = settings.RETRIEVAL_K, settings.RETRIEVAL_CANDIDATES
    result: dict = {}
    runs = [("hybrid", 0), ("vector", 0), ("text", 0)]
    runs += [("vector", ef) for ef in ef_values if ef]
    for mode, ef, first in [(m, e, f) for m, e in runs for f in (True, False)]:
        times = []
        for n, (text, vec) in enumerate(zip(q_texts, q_vecs, strict=True)):
            started = time.perf_counter()
            hits = chunk_search(
                query_text=text,
                query_vector=vec.tolist(),
                collection_ids=[target_col],
                k=k,
                candidates=candidates,
                rrf_k=settings.RETRIEVAL_RRF_K,
                mode=mode,
                max_df=settings.RETRIEVAL_TEXT_MAX_DF,
                ef_search=ef,
                max_terms=settings.RETRIEVAL_TEXT_MAX_TERMS,
                max_postings=settings.RETRIEVAL_TEXT_MAX_POSTINGS,
            )
            elapsed = (time.perf_counter() - started) * 1000
            assert all(h.collection_id == target_col for h in hits)
            if n >= 5:  # the first few warm the connection
                times.append(elapsed)
        # Each mode runs the questions twice: the first pass reads index and table pages that
        # are not yet in memory; the second is the steady state of a serving database.
        name = f"{mode}@ef{hnsw_ef_search(candidates, ef)}" + (" first pass" if first else "")
        result[name] = {
            "p50_ms": statistics.median(times),
            "p95_ms": percentile(times, 95),
            "max_ms": max(times),
        }
    # The vector arm as chunk_search runs it: `candidates` rows from the filtered HNSW scan
    # (relaxed_order: nearly sorted), ranked by their exact distance; its first 10.
    sql = (
        "SELECT id, embedding <=> %s::vector AS d FROM ingest_chunk "
        "WHERE collection_id = ANY(%s) ORDER BY embedding <=> %s::vector LIMIT %s"
    )
    for ef in sorted({hnsw_ef_search(candidates, ef) for ef in [0, *ef_values]}):
        recalls = []
        for vec in q_vecs:
            literal = "[" + ",".join(f"{x:.7f}" for x in vec) + "]"
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                cursor.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                cursor.execute(sql, [literal, [target_col], literal, candidates])
                ann = [r[0] for r in sorted(cursor.fetchall(), key=lambda r: r[1])][:10]
            exact = allowed_ids[np.argsort(-(allowed_vecs @ vec))[:10]]
            recalls.append(len(set(ann) & set(exact.tolist())) / 10)
        result[f"ann_recall_at_10@ef{ef}"] = statistics.mean(recalls)
        result[f"ann_recall_at_10_min@ef{ef}"] = min(recalls)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(f"SET LOCAL hnsw.ef_search = {hnsw_ef_search(candidates)}")
        literal = "[" + ",".join(f"{x:.7f}" for x in q_vecs[0]) + "]"
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, [literal, [target_col], literal, candidates])
        result["vector_plan"] = " > ".join(_plan_nodes(cursor.fetchone()[0][0]["Plan"]))
    result.update(hybrid_plan(text=q_texts[0], vec=q_vecs[0], target_col=target_col))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--base", type=int, default=8000, help="real chunks to embed")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--collections", type=int, default=10)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="parallel maintenance workers")
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--cuad", default=str(REPO.parent / "shared" / "eval" / "cuad"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--ef-search", default="100,200", help="hnsw.ef_search values to measure as well"
    )
    args = parser.parse_args()
    targets = [int(x) for x in args.rows.split(",")]

    root = setup_django(keep=True)
    import psycopg
    from django.conf import settings
    from django.db import connection

    cuad = Path(args.cuad)
    texts, base = base_corpus(cuad, args.base, root)
    q_texts, q_vecs = questions(cuad, args.queries, root)
    collections, docs = ensure_collections(args.collections)
    target_col = collections[0]
    rng = np.random.default_rng(args.seed)
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(os.environ["DATABASE_URL"])
    register_vector(conn)
    report = []
    for target in targets:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM ingest_chunk")
            have = cursor.fetchone()[0]
            cursor.execute("SELECT to_regclass('chunk_embedding_hnsw') IS NOT NULL")
            indexed = cursor.fetchone()[0]
        if have == target and indexed:
            print(f"{target:,} rows and indexes already there: measuring only", flush=True)
            load_s, built = None, {}
        else:
            with conn.cursor() as cursor:
                drop_indexes(cursor)
            conn.commit()
            print(f"{target:,} rows: have {have:,}; loading", flush=True)
            load_s = fill(
                conn,
                start=have,
                stop=target,
                texts=texts,
                base=base,
                docs=docs,
                collections=collections,
                rng=rng,
            )
            print(f"  building indexes (m={args.m}, ef_construction={args.ef_construction})")
            built = build_indexes(
                conn,
                m=args.m,
                ef_construction=args.ef_construction,
                workers=args.workers,
                mem=args.maintenance_work_mem,
            )
            print("  " + json.dumps({"rows": target, **built}), flush=True)
        ids, vecs = [], []
        with conn.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT id, embedding FROM ingest_chunk WHERE collection_id = %s", [target_col]
            )
            for row_id, vector in cursor:
                ids.append(row_id)
                array = vector.to_numpy() if hasattr(vector, "to_numpy") else vector
                vecs.append(np.asarray(array, dtype=np.float32))
        conn.commit()
        allowed_ids, allowed_vecs = np.array(ids), np.vstack(vecs)
        connection.close()
        figures = measure(
            target_col=target_col,
            q_texts=q_texts,
            q_vecs=q_vecs,
            allowed_ids=allowed_ids,
            allowed_vecs=allowed_vecs,
            ef_values=[int(x) for x in args.ef_search.split(",") if x],
        )
        row = {
            "rows": target,
            "allowed_rows": len(allowed_ids),
            "load_s": load_s,
            **built,
            **figures,
            "m": args.m,
            "ef_construction": args.ef_construction,
            "workers": args.workers,
            "text_max_terms": settings.RETRIEVAL_TEXT_MAX_TERMS,
            "text_max_postings": settings.RETRIEVAL_TEXT_MAX_POSTINGS,
            "load_average_1_5_15": os.getloadavg(),
        }
        report.append(row)
        print(json.dumps(row, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
