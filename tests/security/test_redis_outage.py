"""Issue 19: a Redis outage does not block sign-in.

The suite's own Redis (tests/settings.py) is stopped for real: the broker (database 0) and
the rate-limit and lockout counters (database 1) are both gone until it starts again.

- Sign-in while Redis is down neither crashes nor locks anyone out: failures are not counted
  (fail open) but still audited; once Redis is back, counting and lockout resume.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
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
