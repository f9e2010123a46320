"""Issue 19, without workers: which documents the periodic recovery sends again, and the claim's
rules (a live lease, used-up attempts). The same rules run under real workers, killed and
raced, in tests/security/test_ingest_*.py and test_redis_outage.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.leases import LeaseHolder
from ingest.models import Document
from ingest.services import document_create, document_reingest, documents_recover
from tests.factories import make_collection

pytestmark = pytest.mark.django_db


def _doc(name: str, **fields) -> Document:
    document, _ = document_create(
        collection=make_collection(name, name.lower()),
        name=f"{name}.txt",
        data=name.encode(),
        enqueue=False,
    )
    Document.objects.filter(pk=document.pk).update(**fields)
    return document


def test_recovery_sends_again_only_the_tasks_that_are_gone(settings):
    now = timezone.now()
    stale = now - timedelta(seconds=settings.INGEST_REQUEUE_SECONDS + 1)
    expired = now - timedelta(seconds=30)
    send = {
        _doc("Unsent", dispatched_at=None).pk,  # Redis was down when it was stored
        _doc("Lost", dispatched_at=stale).pk,  # queued longer than a message is kept unacked
        _doc(  # its worker died and nothing was sent since
            "Orphan",
            status="embedding",
            lease_owner="",
            lease_expires_at=expired,
            dispatched_at=expired - timedelta(seconds=60),
        ).pk,
    }
    keep = {
        _doc("Waiting", dispatched_at=now).pk,  # sent a moment ago: its message is in Redis
        _doc(  # a live worker holds it
            "Held",
            status="embedding",
            lease_owner="w",
            lease_expires_at=now + timedelta(seconds=60),
            dispatched_at=stale,
        ).pk,
        _doc(  # its worker died, but it was sent again after that
            "Resent", status="parsing", lease_expires_at=expired, dispatched_at=now
        ).pk,
        _doc("Done", status="ready", dispatched_at=None).pk,
        _doc("Cancelled", status="cancelled", dispatched_at=None).pk,
    }
    assert documents_recover() == len(send)
    resent = Document.objects.filter(pk__in=send | keep, dispatched_at__gt=now)
    assert set(resent.values_list("pk", flat=True)) == send
    assert documents_recover() == 0  # sent once; not again while the new message waits


@pytest.mark.django_db(transaction=True)  # the heartbeat renews from a thread of its own
def test_a_document_held_by_a_live_worker_is_not_claimed(settings):
    settings.INGEST_LEASE_SECONDS = 2
    document = _doc("Held")
    first, second = LeaseHolder(), LeaseHolder()
    assert first.claim(document.pk)
    with first.heartbeat():  # renewed every 2/3 s: the second sees it renewed and gives up
        assert not second.claim(document.pk)
    document.refresh_from_db()
    assert document.lease_owner == first.owner
    assert document.attempts == 1


def test_a_dead_holders_lease_is_waited_out_and_taken_over(settings):
    settings.INGEST_LEASE_SECONDS = 2
    document = _doc("Orphan")
    assert LeaseHolder().claim(document.pk)  # then never renewed: its holder "died"
    taker = LeaseHolder()
    assert taker.claim(document.pk)
    document.refresh_from_db()
    assert document.lease_owner == taker.owner
    assert document.attempts == 2


def test_used_up_attempts_fail_the_document_with_the_reason(settings):
    settings.INGEST_MAX_ATTEMPTS = 3
    document = _doc("Killer", status="embedding", attempts=3, lease_expires_at=None)
    assert not LeaseHolder().claim(document.pk)
    document.refresh_from_db()
    assert document.status == "failed"
    assert "started 3 times and never finished" in document.status_message
    assert "Re-ingest it to try again" in document.status_message
    # A person re-ingesting it starts a fresh count.
    assert document_reingest(document=document)
    document.refresh_from_db()
    assert (document.status, document.attempts) == ("queued", 0)
    assert LeaseHolder().claim(document.pk)
