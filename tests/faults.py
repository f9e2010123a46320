"""Faults in the middle of an answer, for the tests of issue 19 ("the audit trail records what
the user saw") and bench/shown.py: read a streamed answer event by event and act the moment
the first token has been sent (kill the database session, stop PostgreSQL), and a scripted
OpenAI-compatible model server for answers that must be replaced after they were shown."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import connection

from launcher import embedded

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from django.http import StreamingHttpResponse


def read_events(
    response: StreamingHttpResponse,
    *,
    ndjson: bool = False,
    on_first_token: Callable[[], None] | None,
) -> tuple[list[tuple[str, dict[str, Any]]], BaseException | None]:
    """The events of a streamed answer (SSE, or the API's NDJSON) as (name, data), calling
    `on_first_token` as soon as the first token event has arrived, before asking for more.
    Also returns what the stream raised, if it broke off instead of ending."""
    events: list[tuple[str, dict[str, Any]]] = []
    buffer = ""
    separator = "\n" if ndjson else "\n\n"
    try:
        for chunk in response.streaming_content:
            buffer += chunk.decode()
            while separator in buffer:
                block, buffer = buffer.split(separator, 1)
                if not block.strip():
                    continue
                if ndjson:
                    data = json.loads(block)
                    name = data.pop("event")
                else:
                    lines = dict(line.split(": ", 1) for line in block.splitlines())
                    name, data = lines["event"], json.loads(lines["data"])
                events.append((name, data))
                if name == "token" and on_first_token is not None:
                    on_first_token()
                    on_first_token = None
    except Exception as exc:  # noqa: BLE001 - the caller asserts on it
        return events, exc
    finally:
        # Ends the request (request_finished: the row-security role is reset) even when the
        # stream, or on_first_token, broke off.
        response.close()
    return events, None


def tokens(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(data["text"] for name, data in events if name == "token")


def database_url() -> str:
    """The URL of the database this thread's connection uses (the test database)."""
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{
            k: v
            for k, v in params.items()
            if k in {"host", "port", "dbname", "user", "password"} and v
        }
    )


def kill_this_threads_session() -> int:
    """End this thread's database session from another one (pg_terminate_backend), as a
    database restart or a network cut would: the next statement on it fails. Returns its pid."""
    assert connection.connection is not None, "no session to kill"
    pid = connection.connection.info.backend_pid
    with psycopg.connect(database_url(), autocommit=True) as other:
        killed = other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
    assert killed == (True,)
    return pid


@contextmanager
def postgres_stopped_on_demand() -> Iterator[Callable[[], None]]:
    """A function that stops the test suite's embedded PostgreSQL; whatever happens, it runs
    again when the block ends, and this thread's broken connection is dropped."""
    import tests.settings as test_settings

    server = test_settings.EMBEDDED_POSTGRES
    if server is None:
        import pytest

        pytest.skip("TEST_DATABASE_URL names a server of your own: it is not stopped")
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        embedded.stop_postgres(server)

    try:
        yield stop
    finally:
        if stopped:
            embedded.restart_postgres(server)
        connection.close()


def committed_rows(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows as another session sees them: only what is committed. (Without params, `%` in
    `sql` is a plain character.)"""
    with psycopg.connect(database_url(), autocommit=True) as other:
        return other.execute(sql, params).fetchall()


class ScriptedModel:
    """An OpenAI-compatible chat server on loopback that streams the deltas it is given: a
    model that writes exactly what a test needs it to (a figure no passage holds)."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for delta in script.deltas:
                    chunk = {
                        "id": "scripted",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "scripted",
                        "choices": [{"index": 0, "delta": {"content": delta}}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
