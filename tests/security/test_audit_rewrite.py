"""Issue 19: the erasure exception of the append-only trigger changes only what erasure
changes. A session that sets `attest.audit_redaction` itself could rewrite an entry's IP
address and user agent along with a redaction; the trigger now refuses that."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.append import RequestMeta, audit_record
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("column", "value"),
    [("user_agent", "forged-agent/1.0"), ("ip_address", "203.0.113.9")],
)
def test_a_redaction_cannot_rewrite_who_and_from_where(column, value):
    event = audit_record(
        event_type="auth.login",
        payload={"username": "nora"},
        meta=RequestMeta(ip_address="10.0.0.7", user_agent="Firefox"),
        summary="nora signed in",
    )
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL attest.audit_redaction = 'on'")
        cursor.execute(
            f"UPDATE assistant_auditevent SET {column} = %s, redacted = true,"
            " payload = '{\"tombstone\": true}'::json WHERE id = %s",
            [value, event.id],
        )
    kept = AuditEvent.objects.get(pk=event.pk)
    assert (kept.user_agent, kept.ip_address, kept.redacted) == ("Firefox", "10.0.0.7", False)
