"""Issue 19: a document is never ingested by two workers at once.

Redis gives a message nobody has acknowledged to another worker once it is older than
CELERY_VISIBILITY_TIMEOUT, even while the first worker is still running the task (acks_late).
Two defences, each tested with real workers on a short visibility timeout:

- every task has a time limit below the visibility timeout (soft: the document fails with the
  reason; hard: the worker process is killed), so a task is over before Redis would redeliver
  it;
- a worker claims a document only when no live worker holds it (a lease with an expiry,
  renewed while the holder works): if a task does outlive the visibility timeout anyway (here
  its message carries a longer time limit of its own, as one sent by a differently configured
  client would), the second delivery leaves the document to its holder. Before this, the
  second worker ingested it again, and the one that indexed second failed it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from ingest.models import PENDING_STATUSES, Chunk, Document
from ingest.services import document_create
from ingest.tasks import ingest_document
from launcher import embedded
from tests.conftest import start_worker, wait_for
from tests.factories import make_collection
from tests.workers import big_text, finished, received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUEUE = "redelivery-test"
VISIBILITY = 4
# 800 chunks, embedded on one thread: tens of seconds, well past the visibility timeout.
PARAGRAPHS = 800


@pytest.fixture
def embedder_ready():
    """The ONNX export exists before any worker starts (shared through EMBEDDING_ONNX_DIR), so
    no worker spends its time limit exporting it."""
    from ingest.embedding import get_embedder

    get_embedder()


def test_a_redelivered_task_leaves_the_document_to_the_worker_that_holds_it(
    tmp_path, embedder_ready
):
    collection = make_collection("Leases", "leases")
    document, _ = document_create(
        collection=collection, name="schedule.txt", data=big_text(PARAGRAPHS), enqueue=False
    )
    env = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY), "INGEST_LEASE_SECONDS": "3"}
    host = socket.gethostname()
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    first = start_worker(
        logs["a"],
        name=f"holder@{host}",
        queues=QUEUE,
        env_extra={**env, "EMBEDDING_THREADS": "1"},  # slower, and a core left for the second
    )
    second = None
    first_chunks: list[int] = []
    try:
        task_id = ingest_document.apply_async(
            args=[document.id], queue=QUEUE, time_limit=900, soft_time_limit=880
        ).id
        wait_for(
            lambda: Document.objects.get(pk=document.pk).status != "queued",
            timeout=60,
            interval=0.05,
            message="the first worker never took the document",
        )
        time.sleep(VISIBILITY + 1)  # the unacknowledged message is now past the timeout
        assert Document.objects.get(pk=document.pk).status in PENDING_STATUSES, (
            "the first worker finished before Redis could redeliver: raise PARAGRAPHS"
        )
        # A starting worker sweeps Redis for such messages and takes this one.
        second = start_worker(logs["b"], name=f"second@{host}", queues=QUEUE, env_extra=env)
        wait_for(
            lambda: received(logs["b"], task_id),
            timeout=60,
            message="Redis did not redeliver the task to the second worker",
        )

        def both_done() -> bool:
            current = Document.objects.get(pk=document.pk)
            if current.status == "ready" and not first_chunks:
                first_chunks.extend(
                    Chunk.objects.filter(document=document).values_list("id", flat=True)
                )
            return finished(logs["a"], task_id) and finished(logs["b"], task_id)

        wait_for(both_done, timeout=600, interval=0.1, message="the workers did not finish")
    finally:
        for proc in (first, second):
            if proc is not None:
                embedded.stop(proc, timeout=20)
    document.refresh_from_db()
    assert document.status == "ready", document.status_message
    chunks = list(Chunk.objects.filter(document=document).values_list("id", "ordinal"))
    # Written once, by the holder: the second delivery did not replace them.
    assert sorted(i for i, _ in chunks) == sorted(first_chunks)
    assert sorted(o for _, o in chunks) == list(range(document.chunk_count))
    assert document.chunk_count > 600
    assert document.attempts == 1
    assert document.lease_owner == "" and document.lease_expires_at is None


def test_an_ingestion_task_ends_before_redis_would_give_it_to_another_worker(
    tmp_path, embedder_ready
):
    from config.celery import app

    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit < visibility
    # A limit at or above the visibility timeout is refused when the settings load.
    refused = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env={**os.environ, "CELERY_VISIBILITY_TIMEOUT": "600", "INGEST_TIME_LIMIT": "600"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "INGEST_TIME_LIMIT (600) must be below CELERY_VISIBILITY_TIMEOUT" in refused.stderr

    # A real worker applies it (visibility 6 s: soft limit 4 s, hard 5 s) to a document that
    # takes far longer: it fails with the reason, and Redis has nothing left to redeliver.
    collection = make_collection("Leases", "leases")
    document, _ = document_create(
        collection=collection, name="schedule.txt", data=big_text(600), enqueue=False
    )
    env = {"CELERY_VISIBILITY_TIMEOUT": "6"}
    host = socket.gethostname()
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    first = start_worker(logs["a"], name=f"limited@{host}", queues=QUEUE, env_extra=env)
    second = None
    try:
        # Sent as ingest.services sends it: with no limits of the sender's, the worker's apply.
        task_id = ingest_document.apply_async(
            args=[document.id], queue=QUEUE, time_limit=None, soft_time_limit=None
        ).id
        wait_for(
            lambda: Document.objects.get(pk=document.pk).status in {"ready", "failed"},
            timeout=300,
            message="the document never finished",
        )
        document.refresh_from_db()
        assert document.status == "failed"
        assert "took longer than the time limit (4 s)" in document.status_message
        time.sleep(6 + 1)
        second = start_worker(logs["b"], name=f"after@{host}", queues=QUEUE, env_extra=env)
        time.sleep(3)
        assert not received(logs["b"], task_id), "the task was delivered a second time"
    finally:
        for proc in (first, second):
            if proc is not None:
                embedded.stop(proc, timeout=20)
    assert not Chunk.objects.filter(document=document).exists()
    assert document.attempts == 1
