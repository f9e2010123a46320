"""Load: N concurrent users asking for D seconds against gunicorn on loopback.

    .venv/bin/python bench/load.py [--users 50] [--seconds 60] [--workers 2] [--threads 4]
                                   [--think 0] [--docs 4] [--json]

Sets up a scratch embedded PostgreSQL and Redis (or DATABASE_URL / REDIS_URL), ingests CUAD
contracts into one collection, creates N users granted that collection, each with an API
token, then starts the production-style server exactly as `make run` does (gunicorn
config.wsgi, --workers/--threads, LLM_BACKEND=extractive, DEBUG off) and runs N client
threads. Each user POSTs /api/v1/ask (JSON, the same answer path as the portal: retrieval,
extractive answer, stored with citations, audited in the hash chain) in a closed loop with
a think time between questions (uniform in 0.5-1.5 x `--think` seconds, users starting at
random offsets), for `--seconds`, after a warm-up.

The per-user ask limit (ASK_RATE_LIMIT, 30/min by default) would turn a closed loop into 429s;
the server runs with ASK_RATE_LIMIT=0 unless --keep-rate-limit is given.

Prints throughput (answers/s), latency p50/p95/p99/max, errors (non-200 or connection
failures) by kind, the slowest answers with when they started, and the machine's 1-minute load
average before and after (other processes on the machine show up there).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from _scratch import REPO, setup_django

EVAL = REPO.parent / "shared" / "eval"
QUESTIONS = [
    "What discount does the distributor get?",
    "How long is the term of the agreement?",
    "Which state's law governs this agreement?",
    "Can the agreement be terminated for convenience?",
    "What are the payment terms?",
    "Is there a non-compete clause?",
    "Who owns the intellectual property?",
    "What notice is required to terminate?",
    "Are there minimum purchase requirements?",
    "What happens on a change of control?",
]


def prepare(users: int, docs: int) -> list[str]:
    """Collection + documents + users with grants and tokens; returns the tokens."""
    from django.contrib.auth import get_user_model

    from assistant.api.tokens import token_create
    from ingest.pipeline import document_ingest
    from ingest.services import collection_get_or_create, document_create
    from tests.factories import grant

    collection = collection_get_or_create(slug="load", create=True)
    pdfs = (
        sorted((EVAL / "cuad" / "pdf").glob("*.PDF"))[:docs]
        or sorted((EVAL / "cuad" / "pdf").glob("*.pdf"))[:docs]
    )
    for pdf in pdfs:
        document, created = document_create(
            collection=collection, name=pdf.name, data=pdf.read_bytes(), enqueue=False
        )
        if created:
            document_ingest(document_id=document.id)
    from ingest.services import chunk_statistics_refresh

    chunk_statistics_refresh()
    User = get_user_model()
    tokens = []
    for i in range(users):
        user, _ = User.objects.get_or_create(username=f"load-{i:03d}")
        grant(collection, user, group_name="load-readers")
        tokens.append(token_create(user=user, name="load").key)
    return tokens


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def ask(self, question: str) -> int:
        body = json.dumps({"collection": "load", "question": question})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request("POST", "/api/v1/ask", body=body, headers=self.headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def run(port: int, tokens: list[str], seconds: float, think: float, warmup: float) -> dict:
    latencies: list[float] = []
    slowest: list[tuple[float, float]] = []  # (latency, seconds into the run)
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    def user(i: int) -> None:
        client = Client(port, tokens[i])
        rng = random.Random(i)
        n = i
        if think:  # users do not all start (and so ask) in step
            time.sleep(rng.uniform(0, think))
        while True:
            now = time.monotonic()
            if now >= stop_at:
                return
            question = QUESTIONS[n % len(QUESTIONS)]
            n += 1
            began = time.monotonic()
            try:
                status = client.ask(question)
                error = "" if status == 200 else f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - counted, not raised: the run goes on
                error = type(exc).__name__
            ended = time.monotonic()
            if began >= start_at and ended <= stop_at:
                with lock:
                    if error:
                        errors[error] += 1
                    else:
                        latencies.append(ended - began)
                        slowest.append((ended - began, round(began - start_at, 1)))
            if think:
                time.sleep(rng.uniform(0.5, 1.5) * think)

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return {
        "users": len(tokens),
        "seconds": seconds,
        "answers": len(latencies),
        "throughput_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(pct(0.50) * 1000),
        "p95_ms": round(pct(0.95) * 1000),
        "p99_ms": round(pct(0.99) * 1000),
        "max_ms": round((latencies[-1] if latencies else 0) * 1000),
        "mean_ms": round(statistics.fmean(latencies) * 1000) if latencies else 0,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "slowest_5": [
            {"ms": round(lat * 1000), "at_s": at} for lat, at in sorted(slowest)[-5:][::-1]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--think", type=float, default=0.0)
    parser.add_argument("--docs", type=int, default=4)
    parser.add_argument("--keep-rate-limit", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    os.environ["LLM_BACKEND"] = "extractive"
    os.environ.pop("LLM_BASE_URL", None)
    import tempfile

    from launcher import embedded

    if os.environ.get("BENCH_DIR"):
        root = Path(os.environ["BENCH_DIR"])
    else:
        import atexit
        import shutil

        root = Path(tempfile.mkdtemp(prefix="attest-load-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)  # runs after PostgreSQL stops
    os.environ["BENCH_DIR"] = str(root)
    embedded.ensure_runtime_dir(root)
    redis = None
    if not os.environ.get("REDIS_URL"):  # before Django reads its settings (rate limits)
        redis, url = embedded.start_redis(root / "redis", env=dict(os.environ), persist=False)
        os.environ["REDIS_URL"] = url
    setup_django()
    started = time.monotonic()
    tokens = prepare(args.users, args.docs)
    setup_s = time.monotonic() - started
    from ingest.models import Chunk

    chunks = Chunk.objects.filter(collection__slug="load").count()

    port = embedded.free_port()
    env = dict(os.environ)
    env.update(DEBUG="false", LLM_BACKEND="extractive", DJANGO_SETTINGS_MODULE="config.settings")
    if not args.keep_rate_limit:
        env["ASK_RATE_LIMIT"] = "0"
    log = root / "gunicorn.log"
    server = embedded.spawn(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--reuse-port",
            "--timeout",
            "180",
            "--chdir",
            str(REPO),
        ],
        env=env,
        log=log,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until every worker answers (models loaded on first question)
            try:
                if Client(port, tokens[0]).ask(QUESTIONS[0]) == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(log.read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.5)
        load_before = os.getloadavg()[0]
        result = run(port, tokens, args.seconds, args.think, args.warmup)
        result["load_average_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        if result["errors"]:
            print(log.read_text()[-3000:], file=sys.stderr)
    finally:
        embedded.stop(server)
        if redis is not None:
            embedded.stop(redis)
    result.update(
        workers=args.workers,
        threads=args.threads,
        think_s=args.think,
        ask_rate_limit="unchanged" if args.keep_rate_limit else "off",
        documents=args.docs,
        chunks=chunks,
        cpus=os.cpu_count(),
        setup_s=round(setup_s, 1),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['users']} users, {result['seconds']:.0f} s, gunicorn {args.workers}x"
            f"{args.threads} threads, {chunks} chunks in {args.docs} documents, "
            f"{os.cpu_count()} CPUs"
        )
        print(f"throughput {result['throughput_per_s']} answers/s ({result['answers']} answers)")
        print(
            f"latency p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
            f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
        )
        print(f"errors {result['errors']} {result['errors_by_kind'] or ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
