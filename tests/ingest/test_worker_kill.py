"""Issue 3: a document has all its chunks or none. SIGKILL a real worker in the middle of a
document: no partial chunks remain, and once a new worker starts, the unacknowledged task is
delivered again (acks_late) and the document is ingested, once."""

import os
import signal
import socket
import time

import pytest

from ingest.models import Chunk, Document
from ingest.services import document_create
from ingest.tasks import ingest_document
from tests.conftest import start_worker, wait_for
from tests.factories import make_collection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUEUE = "kill-test"
# Redis redelivers a task whose worker never acknowledged it after this many seconds; the new
# worker takes the document over once the dead one's lease has run out (issue 19).
ENV = {"CELERY_VISIBILITY_TIMEOUT": "5", "INGEST_LEASE_SECONDS": "2"}


def big_text(paragraphs: int) -> bytes:
    return "\n\n".join(
        f"Section {i}. The tenant shall keep unit {i} in good repair and return it in the same "
        f"condition, fair wear excepted; rent for unit {i} is due on day {i % 28 + 1} of each "
        "month, and arrears bear interest at four per cent a year above the base rate. " * 3
        for i in range(paragraphs)
    ).encode()


def test_sigkill_mid_document_leaves_no_partial_chunks_and_it_is_redone(tmp_path):
    collection = make_collection("Leases", "leases")
    document, _ = document_create(
        collection=collection, name="leases.txt", data=big_text(500), enqueue=False
    )
    host = socket.gethostname()
    first = start_worker(tmp_path / "first.log", name=f"kill-a@{host}", queues=QUEUE, env_extra=ENV)
    try:
        ingest_document.apply_async(args=[document.id], queue=QUEUE)
        wait_for(
            lambda: Document.objects.get(pk=document.pk).status == "embedding",
            timeout=120,
            interval=0.05,
            message="the worker never reached the embedding stage",
        )
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool child, no clean-up
        first.wait(10)
    finally:
        os.killpg(first.pid, signal.SIGKILL) if first.poll() is None else None
    document.refresh_from_db()
    assert document.status == "embedding"  # left mid-way by the dead worker
    assert Chunk.objects.filter(document=document).count() == 0

    # A starting worker sweeps Redis once for unacknowledged tasks older than the visibility
    # timeout (then every ~100 s): let the dead worker's task age past it first.
    time.sleep(int(ENV["CELERY_VISIBILITY_TIMEOUT"]) + 1)
    second = start_worker(
        tmp_path / "second.log", name=f"kill-b@{host}", queues=QUEUE, env_extra=ENV
    )
    try:
        wait_for(
            lambda: Document.objects.get(pk=document.pk).status in {"ready", "failed"},
            timeout=400,
            message="the task was not delivered again to the new worker",
        )
    finally:
        from launcher import embedded

        embedded.stop(second, timeout=20)
    document.refresh_from_db()
    assert document.status == "ready", document.status_message
    ordinals = list(Chunk.objects.filter(document=document).values_list("ordinal", flat=True))
    assert len(ordinals) == document.chunk_count > 400
    assert sorted(ordinals) == list(range(len(ordinals)))  # whole, and only once
    assert document.attempts == 2  # the killed start and the one that finished
