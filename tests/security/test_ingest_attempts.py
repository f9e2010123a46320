"""Issue 19: a document that kills its worker is not redelivered forever.

A worker's pool process is SIGKILLed mid-document, the way the kernel's out-of-memory killer
ends one: Celery rejects the unacknowledged task back onto the queue (reject_on_worker_lost),
and the next pool process takes it over once the dead one's lease has run out. Each start
counts an attempt; after INGEST_MAX_ATTEMPTS starts that never finished, the next delivery
fails the document with a reason a person understands instead of ingesting it again. Before
this, nothing counted the deliveries, and the document went round for ever.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
from django.utils import timezone

from ingest.models import Chunk, Document
from ingest.services import document_create
from ingest.tasks import ingest_document
from launcher import embedded
from tests.conftest import start_worker, wait_for
from tests.factories import make_collection
from tests.workers import big_text, pool_children

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUEUE = "attempts-test"


def test_a_document_that_kills_its_worker_fails_after_max_attempts(tmp_path):
    collection = make_collection("Leases", "leases")
    document, _ = document_create(
        collection=collection, name="schedule.txt", data=big_text(600), enqueue=False
    )
    env = {"INGEST_LEASE_SECONDS": "2", "INGEST_MAX_ATTEMPTS": "3"}
    log = tmp_path / "worker.log"
    worker = start_worker(log, name=f"attempts@{socket.gethostname()}", queues=QUEUE, env_extra=env)
    try:
        ingest_document.apply_async(args=[document.id], queue=QUEUE)
        since = timezone.now()
        for attempt in range(1, 4):

            def embedding_again(since=since) -> bool:
                current = Document.objects.get(pk=document.pk)
                return current.status == "embedding" and current.updated_at > since

            wait_for(
                embedding_again,
                timeout=180,
                interval=0.05,
                message=f"attempt {attempt} never reached the embedding stage",
            )
            since = timezone.now()
            children = pool_children(worker.pid)
            assert children, "no pool process to kill"
            for pid in children:
                os.kill(pid, signal.SIGKILL)
        # The fourth delivery finds three unfinished attempts and gives up.
        wait_for(
            lambda: Document.objects.get(pk=document.pk).status in {"ready", "failed"},
            timeout=180,
            message="the document was neither failed nor finished",
        )
        assert worker.poll() is None, "the worker itself died"
    finally:
        embedded.stop(worker, timeout=20)
    document.refresh_from_db()
    assert document.status == "failed"
    assert document.status_message.startswith("Ingestion was started 3 times and never finished")
    assert "INGEST_MAX_ATTEMPTS is 3" in document.status_message
    assert document.attempts == 3
    assert not Chunk.objects.filter(document=document).exists()
    assert log.read_text().count("WorkerLostError") >= 3
