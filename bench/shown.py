"""What the user saw, under faults (issue 19), and the time to the first token.

    .venv/bin/python bench/shown.py [--runs 10] [--ttft 6] [--json]

A scratch embedded PostgreSQL and Redis, and the packaged llama.cpp server (Gemma 3 270M, 2
threads). One collection holds a short licence; a user asks about it through the portal's
streaming view (`portal:ask_stream`, the real view and middleware, in-process through Django's
test client), reading the server-sent events one by one.

Faults (`--runs` each): the moment the first token has been sent, either
- `kill`: the request's database session is ended from another one (pg_terminate_backend), or
- `stop`: PostgreSQL is stopped (`pg_ctl stop -m immediate`, a crash; restarted after the run),
then the stream is read to its end. Counted per kind:
- shown: runs in which tokens reached the user
- done / withdrawn / broken: the stream delivered an answer, withdrew it, or broke off
- shown without an audit entry: tokens were shown and no committed entry of the trail records
  the question (neither a `question.asked` entry nor the answer's own): the target is 0
- answers given without their entry: `done` delivered and no committed `question.answered` or
  `question.refused` entry for that answer: the target is 0
- the chain verifies after all the runs.

Time to first token (`--ttft` pairs, no fault): the time from the request to the first token
event, alternately with the opening entry (as shipped) and without it (`question_open` made a
no-op: the stream as it was before issue 19), on the same server; and the opening append's own
time. Run the script on an older checkout for the figures before the change (it runs there too:
it counts what it finds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from _scratch import setup_django

LICENCE = (
    b"Section 4. Fees.\nThe licensee pays a yearly fee of 100 dollars, due every January.\n\n"
    b"Section 9. Term.\nThis licence runs for five years and renews for one-year terms unless "
    b"either party objects in writing.\n"
)
QUESTION = "How long does the licence run?"


def prepare() -> Any:
    from django.contrib.auth import get_user_model

    from ingest.pipeline import document_ingest
    from ingest.services import collection_get_or_create, document_create
    from tests.factories import grant

    collection = collection_get_or_create(slug="licences", create=True)
    document, _ = document_create(
        collection=collection, name="licence.txt", data=LICENCE, enqueue=False
    )
    document_ingest(document_id=document.id)
    user, _ = get_user_model().objects.get_or_create(username="reader")
    grant(collection, user)
    return user


def ask(client: Any, on_first_token: Any) -> tuple[list[tuple[str, dict]], str, float]:
    """(events, how the stream ended, seconds to the first token)."""
    from django.urls import reverse

    from tests.faults import read_events

    started = time.perf_counter()
    first: list[float] = []

    def at_first_token() -> None:
        first.append(time.perf_counter() - started)
        if on_first_token is not None:
            on_first_token()

    response = client.post(
        reverse("portal:ask_stream"), {"collection": "licences", "question": QUESTION}
    )
    events, error = read_events(response, on_first_token=at_first_token)
    names = [name for name, _ in events]
    ending = (
        "done"
        if "done" in names
        else "withdrawn"
        if "withdrawn" in names
        else f"broken ({type(error).__name__})"
        if error
        else "ended"
    )
    return events, ending, first[0] if first else float("nan")


def entries_after(mark: int) -> list[tuple[str, dict]]:
    from tests.faults import committed_rows

    rows = committed_rows(
        "SELECT event_type, payload::text FROM assistant_auditevent WHERE id > %s"
        " AND event_type LIKE 'question.%%' ORDER BY id",
        [mark],
    )
    return [(kind, json.loads(payload)) for kind, payload in rows]


def last_id() -> int:
    from tests.faults import committed_rows

    return committed_rows("SELECT coalesce(max(id), 0) FROM assistant_auditevent")[0][0]


def faults(client: Any, server: Any, kind: str, runs: int) -> dict[str, Any]:
    from django.db import connection

    from launcher import embedded
    from tests.faults import kill_this_threads_session

    counts = {"runs": runs, "shown": 0, "done": 0, "withdrawn": 0, "broken": 0}
    counts |= {"shown_without_entry": 0, "answers_without_entry": 0}
    stopped: list[bool] = []

    def fault() -> None:
        if kind == "kill":
            kill_this_threads_session()
        else:
            embedded.stop_postgres(server, mode="immediate")
            stopped.append(True)

    for _ in range(runs):
        mark = last_id()
        try:
            events, ending, _ = ask(client, fault)
        finally:
            if stopped:
                embedded.restart_postgres(server)
                stopped.clear()
            connection.close()
        shown = any(name == "token" for name, _ in events)
        found = entries_after(mark)
        question_entries = [k for k, p in found if p.get("question") == QUESTION]
        answered = [
            p
            for k, p in found
            if k in {"question.answered", "question.refused"} and p.get("question") == QUESTION
        ]
        counts["shown"] += shown
        counts[ending if ending in {"done", "withdrawn"} else "broken"] += 1
        counts["shown_without_entry"] += shown and not question_entries
        counts["answers_without_entry"] += ending == "done" and not answered
        counts.setdefault("entries", {})
        for k in question_entries:
            counts["entries"][k] = counts["entries"].get(k, 0) + 1
    return counts


def ttft(client: Any, pairs: int) -> dict[str, Any]:
    from assistant import services

    opening = getattr(services, "question_open", None)
    appends: list[float] = []
    if opening is not None:

        def timed_open(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return opening(*args, **kwargs)
            finally:
                appends.append(time.perf_counter() - began)

        def skipped_open(*args: Any, **kwargs: Any) -> None:
            return None

    with_opening: list[float] = []
    without: list[float] = []
    ask(client, None)  # warm: the model's first prompt, the embedder, the connection
    for n in range(pairs):
        # Each pair in turn starts with one variant or the other, so that neither always
        # follows the other.
        order = [("with", with_opening), ("without", without)]
        for variant, sink in order if n % 2 == 0 else order[::-1]:
            if opening is not None:
                services.question_open = timed_open if variant == "with" else skipped_open
            elif variant == "with":
                continue  # an older checkout: there is no opening entry to time
            sink.append(ask(client, None)[2])
    if opening is not None:
        services.question_open = opening

    def ms(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        values = [v * 1000 for v in values]
        return {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }

    return {
        "pairs": pairs,
        "with_opening_ms": ms(with_opening),
        "without_opening_ms": ms(without),
        # Within each pair (the same minute of the machine's load): with minus without.
        "paired_difference_ms": ms([a - b for a, b in zip(with_opening, without, strict=False)])
        if with_opening
        else {},
        "opening_append_ms": ms(appends),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ttft", type=int, default=6, help="pairs of runs, 0 for none")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import tempfile
    from pathlib import Path

    from launcher import embedded

    root = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="attest-shown-"))
    os.environ["BENCH_DIR"] = str(root)
    os.environ["ASK_RATE_LIMIT"] = "0"
    # One ONNX export of the embedding model for every run of this script.
    os.environ.setdefault("EMBEDDING_ONNX_DIR", str(Path(tempfile.gettempdir()) / "attest-onnx"))
    redis, url = embedded.start_redis(root / "redis", env=dict(os.environ), persist=False)
    os.environ["REDIS_URL"] = url
    if os.environ.get("DATABASE_URL"):
        raise SystemExit("bench/shown.py stops its own scratch PostgreSQL: unset DATABASE_URL")
    model = embedded.ensure_gguf(root / "models")
    llm, base_url = embedded.start_llm(
        model_path=model, port=embedded.free_port(), env=dict(os.environ), threads=2
    )
    try:
        setup_django()
        from django.conf import settings
        from django.test import Client
        from django.test.utils import setup_test_environment

        from assistant import llm as assistant_llm
        from audit.verify import audit_verify

        setup_test_environment()  # the test client's host name is allowed
        settings.LLM_BACKEND, settings.LLM_BASE_URL = "llamacpp", base_url
        settings.LLM_MODEL = embedded.DEFAULT_MODEL_ALIAS
        assistant_llm.get_llm.cache_clear()
        server = embedded.start_postgres(root / "pg")  # the scratch server's handle
        user = prepare()
        client = Client()
        client.force_login(user)
        result: dict[str, Any] = {
            "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        }
        if args.ttft:
            result["ttft"] = ttft(client, args.ttft)
        for kind in ("kill", "stop"):
            if args.runs:
                result[kind] = faults(client, server, kind, args.runs)
        report = audit_verify()
        result["chain_ok"] = report.ok
        result["entries"] = report.entries
    finally:
        embedded.stop(llm)
        embedded.stop(redis)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
