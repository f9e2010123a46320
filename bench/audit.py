"""Audit trail figures: chained write throughput (with the Merkle tree) under concurrent
writers, the latency the tree adds to one append, verify speed over a large trail (chain alone,
and against signed checkpoints), receipt generation and offline verification, and workspace
query latency at that size.

    .venv/bin/python bench/audit.py [--writers 8] [--per-writer 250] [--entries 1000000]
                                    [--checkpoint-every 1000] [--parts writes,verify,...]
                                    [--repeat 1]

Uses a scratch embedded PostgreSQL (or DATABASE_URL). The large trail is bulk-loaded with COPY
as a valid chain (hashes computed exactly as audit_record does) with realistic answer payloads,
its tree nodes, and a signed checkpoint every --checkpoint-every entries (as the beat task
would leave them). With BENCH_DIR set, the database and the signing key live there and are
reused: a second run only tops the trail up to --entries, so repeated verify measurements
(`BENCH_DIR=/tmp/audit-1m bench/audit.py --parts verify --repeat 3`) skip the load.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from _scratch import cpu_shares, cpu_times, machine, setup_django


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
    """Appends/s with the tree under concurrent writers, twice: each append on its own (as a
    login or an export records it), then each inside a transaction with its action (as an
    answer records it: the chain's lock is held until the caller's COMMIT comes back)."""
    from django.db import connections, transaction

    from audit.append import audit_record
    from audit.models import AuditEvent

    AuditEvent.objects.count()
    for mode in ("on its own", "in its action's transaction"):
        errors: list[BaseException] = []

        def work(w: int, mode: str = mode, errors: list = errors) -> None:
            try:
                for i in range(per_writer):
                    with transaction.atomic() if mode != "on its own" else nullcontext():
                        audit_record(
                            event_type="question.answered",
                            payload=payload(w * per_writer + i),
                            summary="bench",
                            actor_username=f"user{w}",
                        )
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
        load_before = os.getloadavg()[0]
        cpu_before = cpu_times()
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        busy, steal = cpu_shares(cpu_before, cpu_times())
        total = writers * per_writer
        print(
            f"writes, each {mode}: {writers} concurrent writers x {per_writer} = {total} "
            f"entries in {seconds:.2f} s -> {total / seconds:.0f} entries/s; errors: "
            f"{len(errors)}; load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after; CPU busy {busy:.0%}, stolen by the host "
            f"{steal:.0%}"
        )


def bench_tree_latency(appends: int = 400) -> None:
    """One writer: what the tree adds to each append. The tree is computed and stored by the
    SQL function attest_audit_tree_append inside attest_audit_append; PostgreSQL's function
    statistics (track_functions) give its time in each append's transaction."""
    from django.db import connection, transaction

    from audit.append import audit_record

    with connection.cursor() as cursor:
        cursor.execute("SET track_functions = 'pl'")
    # The backend's pending function statistics (ms) span transactions until they are flushed,
    # so the tree's time is the difference across the append, read in its transaction.
    spent_sql = (
        "SELECT coalesce(pg_stat_get_xact_function_total_time("
        "'attest_audit_tree_append'::regproc), 0)"
    )
    spent, totals = [], []
    for i in range(appends):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(spent_sql)
            before = cursor.fetchone()[0]
            audit_record(event_type="question.answered", payload=payload(i), summary="latency")
            cursor.execute(spent_sql)
            spent.append(cursor.fetchone()[0] - before)
    with connection.cursor() as cursor:
        cursor.execute("RESET track_functions")
    for i in range(appends):
        t = time.perf_counter()
        audit_record(event_type="question.answered", payload=payload(i), summary="latency")
        totals.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles
    print(
        f"tree cost per append ({appends} sequential appends): p50 "
        f"{statistics.median(spent):.3f} ms, p99 {q(spent, n=100)[98]:.3f} ms, "
        f"max {max(spent):.3f} ms; whole audit_record p50 {statistics.median(totals):.2f} ms, "
        f"p99 {q(totals, n=100)[98]:.2f} ms"
    )


def _frontier_at(size: int):
    """The stack of complete subtrees of the stored tree's first `size` leaves."""
    from audit import tree as audit_tree

    keys, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            keys.append((level, start >> level))
            start += 1 << level
    table = audit_tree._fetch(set(keys))
    return [table[k] for k in keys]


def bulk_fill(target: int, checkpoint_every: int) -> None:
    """Append entries by COPY until the trail holds `target`, continuing the chain and the
    tree, and leave a signed checkpoint every `checkpoint_every` entries."""
    from django.db import connection

    from audit import checkpoints, merkle
    from audit.append import searchable_text
    from audit.canonical import GENESIS_HASH, canonical_json
    from audit.canonical import canonical_document as _canonical_document
    from audit.models import AuditEvent

    have = AuditEvent.objects.count()
    if have >= target:
        return
    key = checkpoints.load_signing_key()
    prev = AuditEvent.objects.order_by("-seq").values_list("entry_hash", flat=True).first()
    prev = prev or GENESIS_HASH
    stack = _frontier_at(have)
    listed: list[str] = []
    listed_from = have
    base = datetime.now(UTC) - timedelta(days=365)
    started = time.monotonic()
    batch = 50_000
    connection.ensure_connection()
    raw = connection.connection
    columns = (
        "created_at, event_type, actor_username, ip_address, user_agent, collection_id, "
        "flagged, summary, search_text, payload, seq, payload_hash, prev_hash, entry_hash, "
        "redacted"
    )
    sha = hashlib.sha256
    node = merkle.node_hash
    for start in range(have, target, batch):
        nodes: list[tuple[int, int, bytes]] = []
        signed: list = []
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY assistant_auditevent ({columns}) FROM STDIN") as copy,
        ):
            for i in range(start, min(start + batch, target)):
                created = base + timedelta(seconds=i * 30)
                # Stored as audit_record stores it: the canonical text that is hashed.
                text = canonical_json(payload(i))
                body = orjson.loads(text)
                event_type = "question.refused" if body["refused"] else "question.answered"
                user = f"user{i % 200}"
                summary = body["question"]
                document = _canonical_document(
                    event_type=event_type,
                    created_at=created,
                    actor_id=None,
                    actor_username=user,
                    ip_address="10.0.0.1",
                    user_agent="bench",
                    collection_id=1 + i % 20,
                    flagged=body["refused"],
                    summary=summary,
                    payload=body,
                )
                payload_hash = sha(document).hexdigest()
                entry_hash = sha(bytes.fromhex(prev) + bytes.fromhex(payload_hash)).hexdigest()
                copy.write_row(
                    (
                        created,
                        event_type,
                        user,
                        "10.0.0.1",
                        "bench",
                        1 + i % 20,
                        body["refused"],
                        summary,
                        searchable_text(summary, {"q": body["question"]}),
                        text.decode(),
                        i,
                        payload_hash,
                        prev,
                        entry_hash,
                        False,
                    )
                )
                prev = entry_hash
                h, level, n = merkle.leaf_hash(bytes.fromhex(payload_hash)), 0, i
                while n & 1:
                    h = node(stack.pop(), h)
                    level += 1
                    n >>= 1
                    nodes.append((level, n, h))
                stack.append(h)
                listed.append(payload_hash)
                if (i + 1) % checkpoint_every == 0 or i + 1 == target:
                    root = stack[-1]
                    for left in reversed(stack[:-1]):
                        root = node(left, root)
                    signed.append(
                        checkpoints.checkpoint_sign(
                            key,
                            tree_size=i + 1,
                            root_hash=root.hex(),
                            leaves_from=listed_from,
                            leaf_payload_hashes=listed,
                        )
                    )
                    listed, listed_from = [], i + 1
        with (
            raw.cursor() as cursor,
            cursor.copy("COPY assistant_audittreenode (level, index, hash) FROM STDIN") as copy,
        ):
            for row in nodes:
                copy.write_row(row)
        raw.commit()
        for checkpoint in signed:
            checkpoints.checkpoint_store(checkpoint)
        print(
            f"  filled {min(start + batch, target)} entries, {len(signed)} checkpoints "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    with raw.cursor() as cursor:
        cursor.execute("ANALYZE assistant_auditevent")
        cursor.execute("ANALYZE assistant_audittreenode")
    raw.commit()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_verify(repeat: int) -> None:
    from django.conf import settings

    from audit import checkpoints
    from audit.checkpoint_verify import audit_verify_checkpoints
    from audit.verify import audit_verify

    public = checkpoints.load_signing_key().public_key()
    for _ in range(repeat):
        report = audit_verify()
        print(
            f"verify (chain + stored tree): {report.entries} entries in {report.seconds:.1f} s "
            f"-> {report.entries / report.seconds:.0f} entries/s; ok={report.ok}; "
            f"load average after {_load()}"
        )
        result = audit_verify_checkpoints(
            directory=Path(settings.AUDIT_CHECKPOINT_DIR), public_key=public
        )
        print(
            f"verify --checkpoints: {result.entries} entries against {result.checkpoints} "
            f"signed checkpoints in {result.seconds:.1f} s -> "
            f"{result.entries / result.seconds:.0f} entries/s; ok={result.ok} "
            f"{result.first_bad or ''}; load average after {_load()}"
        )


def bench_receipts(samples: int = 200) -> None:
    """Receipt generation (proof from the stored tree) and offline verification."""
    from django.conf import settings

    from audit import checkpoints, receipts
    from audit.models import AuditEvent

    checkpoints.checkpoint_write(force=True)
    size = AuditEvent.objects.count()
    rng = random.Random(9)
    seqs = [rng.randrange(size) for _ in range(samples)]
    events = {e.seq: e for e in AuditEvent.objects.filter(seq__in=seqs)}
    made = []
    for seq in seqs:
        t = time.perf_counter()
        receipt = receipts.receipt_for_event(events[seq])
        made.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles
    print(
        f"receipt generation ({samples} random entries of {size}): p50 "
        f"{statistics.median(made):.2f} ms, p99 {q(made, n=100)[98]:.2f} ms, "
        f"{len(receipt['inclusion_proof'])} proof hashes"
    )

    tool = Path(__file__).resolve().parents[1] / "tools" / "verify_receipt.py"
    spec = importlib.util.spec_from_file_location("verify_receipt", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    folder = Path(tempfile.mkdtemp(prefix="attest-receipt-"))
    receipt_file = folder / "receipt.json"
    receipt_file.write_text(json.dumps(receipt))
    public_file = Path(settings.AUDIT_SIGNING_KEY_FILE).with_suffix(".pub")
    public = module.load_public_key(public_file)
    checks = []
    for _ in range(200):
        t = time.perf_counter()
        module.verify(json.loads(receipt_file.read_text()), public, None)
        checks.append((time.perf_counter() - t) * 1000)
    runs = []
    for _ in range(7):  # a fresh interpreter each time, as a compliance officer runs it
        t = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(tool), str(receipt_file), "--public-key", str(public_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        runs.append((time.perf_counter() - t) * 1000)
    print(
        f"receipt verification (tools/verify_receipt.py): p50 {statistics.median(checks):.2f} "
        f"ms in process; as a fresh process incl. interpreter start p50 "
        f"{statistics.median(runs):.0f} ms, max {max(runs):.0f} ms; "
        f"exit {result.returncode}"
    )


def bench_queries() -> None:
    from audit.compliance import AuditFilter, audit_page

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
        print(
            f"query {name:12s}: p50 {statistics.median(times):6.1f} ms, "
            f"max {max(times):6.1f} ms, {len(rows)} rows"
        )


def bench_dashboard() -> None:
    from audit.compliance import dashboard_series

    times = []
    for _ in range(5):
        t = time.perf_counter()
        dashboard_series(days=30)
        times.append((time.perf_counter() - t) * 1000)
    print(f"dashboard (30 days): p50 {statistics.median(times):.1f} ms")


PARTS = ("writes", "verify", "receipts", "queries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=250)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated, from {','.join(PARTS)} (the trail is filled to --entries first "
        "whenever verify, receipts or queries is asked for)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="verify runs (both kinds) to time")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        parser.error(f"unknown part(s): {', '.join(sorted(parts - set(PARTS)))}")
    if os.environ.get("BENCH_DIR"):
        keys = Path(os.environ["BENCH_DIR"]) / "keys"
    else:
        keys = Path(tempfile.mkdtemp(prefix="attest-bench-keys-"))
    os.environ.setdefault("AUDIT_SIGNING_KEY_FILE", str(keys / "audit_ed25519"))
    os.environ.setdefault("AUDIT_CHECKPOINT_DIR", str(keys / "checkpoints"))
    setup_django()
    from audit import checkpoints

    if not (keys / checkpoints.KEY_FILE_NAME).exists():
        checkpoints.key_generate(directory=keys)
    print(f"machine: {machine()}")
    if "writes" in parts:
        bench_writers(args.writers, args.per_writer)
        bench_tree_latency()
    if parts & {"verify", "receipts", "queries"}:
        checkpoints.checkpoint_write()
        bulk_fill(args.entries, args.checkpoint_every)
    if "verify" in parts:
        bench_verify(args.repeat)
    if "receipts" in parts:
        bench_receipts()
    if "queries" in parts:
        bench_queries()
        bench_dashboard()


if __name__ == "__main__":
    main()
