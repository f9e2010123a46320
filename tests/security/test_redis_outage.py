"""Issue 19: a Redis outage neither loses an upload nor blocks sign-in.

The suite's own Redis (tests/settings.py) is stopped for real: the broker (database 0) and
the rate-limit and lockout counters (database 1) are both gone until it starts again.

- An upload while Redis is down still succeeds: the document is stored and audited, and stays
  queued with no task; once Redis is back, Celery beat's recovery (`ingest.recover`, run by a
  real worker with beat, as `make run` starts it) sends its task and it is ingested, once.
- Sign-in while Redis is down neither crashes nor locks anyone out: failures are not counted
  (fail open) but still audited; once Redis is back, counting and lockout resume.
"""

from __future__ import annotations

import socket

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from ingest.models import Chunk, Document
from launcher import embedded
from tests.conftest import start_worker, wait_for
from tests.factories import grant, make_collection
from tests.workers import RedisOutage

pytestmark = [pytest.mark.django_db(transaction=True)]

PASSWORD = "Reader-Pass-2026!"


@pytest.fixture
def redis_outage():
    outage = RedisOutage()
    if not outage.available:
        pytest.skip("TEST_REDIS_URL is set: that Redis is not the suite's to stop")
    yield outage
    if outage.down:
        outage.start()


@pytest.mark.slow
def test_upload_while_redis_is_down_is_kept_and_ingested_once_redis_is_back(
    client, plain_user, redis_outage, tmp_path
):
    collection = make_collection("Inbox", "inbox")
    grant(collection, plain_user, manage=True)
    client.force_login(plain_user)
    client.raise_request_exception = False  # a crash must show as the 500 a user would get
    memo = b"The night porter locks the east gate at ten and keeps the key in the lodge."

    redis_outage.stop()
    response = client.post(
        reverse("portal:collection", args=["inbox"]),
        {"files": [SimpleUploadedFile("memo.txt", memo)]},
    )
    assert response.status_code == 302, response.content[:2000]
    document = Document.objects.get(collection=collection)
    assert document.status == "queued"
    assert document.dispatched_at is None  # no task reached Redis: left for the recovery
    assert AuditEvent.objects.filter(event_type="document.uploaded").count() == 1

    redis_outage.start()
    log = tmp_path / "worker.log"
    worker = start_worker(
        log,
        name=f"outage@{socket.gethostname()}",
        beat=True,
        env_extra={"INGEST_RECOVER_SECONDS": "1"},
    )
    try:
        wait_for(
            lambda: Document.objects.get(pk=document.pk).status in {"ready", "failed"},
            timeout=120,
            message="the queued document was not picked up once Redis was back",
        )
    finally:
        embedded.stop(worker, timeout=20)
    document.refresh_from_db()
    assert document.status == "ready", document.status_message
    assert document.attempts == 1
    assert Chunk.objects.filter(document=document).count() == document.chunk_count == 1
    assert "ingest.recover" in log.read_text()


def test_sign_in_while_redis_is_down_neither_crashes_nor_locks_out(
    client, plain_user, redis_outage, settings
):
    settings.LOGIN_FAILURE_LIMIT = 2
    client.raise_request_exception = False
    login = reverse("login")

    redis_outage.stop()
    for _ in range(3):  # past the limit: nothing is counted while Redis is down
        wrong = client.post(login, {"username": "reader", "password": "wrong"})
        assert wrong.status_code == 200
        assert "Too many failed sign-ins" not in wrong.content.decode()
    right = client.post(login, {"username": "reader", "password": PASSWORD})
    assert right.status_code == 302
    assert client.session["_auth_user_id"] == str(plain_user.pk)
    # Uncounted, but every failure is still in the audit trail (PostgreSQL).
    assert AuditEvent.objects.filter(event_type="auth.login_failed").count() == 3
    assert not AuditEvent.objects.filter(event_type="auth.locked_out").exists()
    client.logout()

    redis_outage.start()
    for _ in range(2):  # counting resumes with Redis
        client.post(login, {"username": "reader", "password": "wrong"})
    locked = client.post(login, {"username": "reader", "password": PASSWORD})
    assert "Too many failed sign-ins" in locked.content.decode()
    assert AuditEvent.objects.filter(event_type="auth.locked_out").count() == 1
