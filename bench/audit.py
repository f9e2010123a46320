"""Audit trail figures: chained write throughput under concurrent writers, verify speed over a
large trail, and workspace query latency at that size.

    .venv/bin/python bench/audit.py [--writers 8] [--per-writer 250] [--entries 1000000]

Uses a scratch embedded PostgreSQL (or DATABASE_URL). The large trail is bulk-loaded with COPY
as a valid chain (hashes computed exactly as audit_record does) with realistic answer payloads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
from _scratch import setup_django


def payload(i: int) -> dict:
    return {
        "question": f"What is the notice period for termination in contract {i % 500}?",
        "answer": "Either party may terminate on ninety (90) days written notice [1].",
        "backend": "extractive",
        "model": "",
        "refused": i % 17 == 0,
        "passages": [
            {
                "n": n,
                "chunk_id": i * 5 + n,
                "document_id": i % 500,
                "document": f"contract-{i % 500}.pdf",
                "page": n + 1,
                "score": 0.016,
                "text": "Either party may terminate this Agreement upon ninety (90) days "
                "written notice to the other party. " * 4,
            }
            for n in range(1, 4)
        ],
    }


def bench_writers(writers: int, per_writer: int) -> None:
    from django.db import connections

    from assistant.audit import audit_record
    from assistant.models import AuditEvent

    AuditEvent.objects.count()
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(per_writer):
                audit_record(event_type="question.answered", payload=payload(w * per_writer + i),
                             summary="bench", actor_username=f"user{w}")  # fmt: skip
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    total = writers * per_writer
    rate = total / seconds
    print(f"writes: {writers} concurrent writers x {per_writer} = {total} entries "
          f"in {seconds:.2f} s -> {rate:.0f} entries/s; errors: {len(errors)}")  # fmt: skip


def bulk_fill(target: int) -> None:
    """Append entries by COPY until the trail holds `target`, continuing the chain."""
    from django.db import connection

    from assistant.audit import GENESIS_HASH, _canonical_document, _search_text, canonical_json
    from assistant.models import AuditEvent

    have = AuditEvent.objects.count()
    if have >= target:
        return
    prev = AuditEvent.objects.order_by("-id").values_list("entry_hash", flat=True).first()
    prev = prev or GENESIS_HASH
    base = datetime.now(UTC) - timedelta(days=365)
    started = time.monotonic()
    batch = 50_000
    connection.ensure_connection()
    raw = connection.connection
    columns = (
        "created_at, event_type, actor_username, ip_address, user_agent, collection_id, "
        "flagged, summary, search_text, payload, payload_hash, prev_hash, entry_hash, redacted"
    )
    sha = hashlib.sha256
    for start in range(have, target, batch):
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY assistant_auditevent ({columns}) FROM STDIN") as copy,
        ):
            for i in range(start, min(start + batch, target)):
                created = base + timedelta(seconds=i * 30)
                body = orjson.loads(canonical_json(payload(i)))
                event_type = "question.refused" if body["refused"] else "question.answered"
                user = f"user{i % 200}"
                summary = body["question"]
                document = _canonical_document(
                    event_type=event_type, created_at=created, actor_id=None,
                    actor_username=user, ip_address="10.0.0.1", user_agent="bench",
                    collection_id=1 + i % 20, flagged=body["refused"], summary=summary,
                    payload=body,
                )  # fmt: skip
                payload_hash = sha(document).hexdigest()
                entry_hash = sha(bytes.fromhex(prev) + bytes.fromhex(payload_hash)).hexdigest()
                copy.write_row((
                    created, event_type, user, "10.0.0.1", "bench", 1 + i % 20, body["refused"],
                    summary, _search_text(summary, {"q": body["question"]}),
                    json.dumps(body), payload_hash, prev, entry_hash, False,
                ))  # fmt: skip
                prev = entry_hash
        raw.commit()
        print(f"  filled {min(start + batch, target)} entries "
              f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    with raw.cursor() as cursor:
        cursor.execute("ANALYZE assistant_auditevent")
    raw.commit()


def bench_verify() -> None:
    from assistant.audit import audit_verify

    report = audit_verify()
    print(f"verify: {report.entries} entries in {report.seconds:.1f} s -> "
          f"{report.entries / report.seconds:.0f} entries/s; ok={report.ok}")  # fmt: skip


def bench_queries() -> None:
    from assistant.compliance import AuditFilter, audit_page

    cases = {
        "newest page": AuditFilter(),
        "one user": AuditFilter(user="user42"),
        "flagged": AuditFilter(flagged=True),
        "event type": AuditFilter(event_type="question.refused"),
        "free text": AuditFilter(q="notice period contract 123"),
        "user + text": AuditFilter(user="user7", q="termination"),
    }
    for name, filters in cases.items():
        times = []
        for _ in range(7):
            t = time.perf_counter()
            rows, _ = audit_page(filters=filters, before_id=None, size=50)
            times.append((time.perf_counter() - t) * 1000)
        print(f"query {name:12s}: p50 {statistics.median(times):6.1f} ms, "
              f"max {max(times):6.1f} ms, {len(rows)} rows")  # fmt: skip


def bench_dashboard() -> None:
    from assistant.compliance import dashboard_series

    times = []
    for _ in range(5):
        t = time.perf_counter()
        dashboard_series(days=30)
        times.append((time.perf_counter() - t) * 1000)
    print(f"dashboard (30 days): p50 {statistics.median(times):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=250)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    setup_django()
    bench_writers(args.writers, args.per_writer)
    bulk_fill(args.entries)
    bench_verify()
    bench_queries()
    bench_dashboard()


if __name__ == "__main__":
    main()
