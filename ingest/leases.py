"""Leases: which worker holds a document while it ingests it, and until when.

A worker claims a document with one conditional UPDATE: only a document in a claimable state
that no live worker holds (no lease, or one past its expiry) and that has not used up
INGEST_MAX_ATTEMPTS is taken, and taking it counts an attempt. The holder renews its leases
from a background thread every third of INGEST_LEASE_SECONDS while it works, so a lease
outlives a dead holder by at most that long. A task delivered twice (Redis hands a message to
another worker after CELERY_VISIBILITY_TIMEOUT) finds the document held and leaves it alone;
one whose holder died (SIGKILL, out of memory) takes it once the lease has run out. Every later
write of the holder (stage, failure, chunks) is conditional on still holding the lease, so a
holder that lost it writes nothing.

Times are the database's clock (`clock_timestamp()`), so workers on several hosts agree, and
it moves inside a transaction (`now()` would not).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError, connection, models
from django.db.models import ExpressionWrapper, F, Func, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from .models import PENDING_STATUSES, Document

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)


class ClockNow(Func):
    """PostgreSQL's clock_timestamp(): the time now, also inside a long transaction."""

    template = "clock_timestamp()"
    output_field = models.DateTimeField()


def lease_expiry() -> ExpressionWrapper:
    return ExpressionWrapper(
        ClockNow() + timedelta(seconds=settings.INGEST_LEASE_SECONDS),
        output_field=models.DateTimeField(),
    )


def lease_free() -> Q:
    """No worker holds the document: no lease, or one its holder stopped renewing."""
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=ClockNow())


def attempts_message(attempts: int) -> str:
    return (
        f"Ingestion was started {attempts} times and never finished: each time, the worker "
        "ingesting this file stopped before it was done (killed, out of memory or past the "
        f"time limit). It is not tried again on its own (INGEST_MAX_ATTEMPTS is "
        f"{settings.INGEST_MAX_ATTEMPTS}): the file may be too large or damaged. Re-ingest it "
        "to try again, or split it into smaller files."
    )


def time_limit_message() -> str:
    return (
        f"Ingestion took longer than the time limit ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s) "
        "and was stopped. The file may be very large (many pages to read with OCR): split it, "
        "or raise CELERY_VISIBILITY_TIMEOUT and INGEST_TIME_LIMIT."
    )


class LeaseLost(Exception):
    """Another worker took the document over (this one's lease ran out): write nothing."""


class LeaseHolder:
    """The documents one ingestion run holds under one owner name (host:pid:token)."""

    def __init__(self) -> None:
        self.owner = f"{socket.gethostname()[:120]}:{os.getpid()}:{secrets.token_hex(6)}"
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)

    def claim(self, document_id: int, *, force: bool = False) -> bool:
        """Take the document: True when this holder may ingest it now.

        False when it is finished or cancelled (unless `force`), when a live worker holds it
        (it renews its lease while we look), or when it has used up its attempts, in which
        case it is marked failed with the reason. A lease nobody renews is waited out (at most
        INGEST_LEASE_SECONDS): that is a holder that died, and its document is taken over.
        """
        claimable = list(PENDING_STATUSES)
        if force:
            claimable += [Document.Status.READY, Document.Status.FAILED, Document.Status.CANCELLED]
        limit = settings.INGEST_MAX_ATTEMPTS
        free = Document.objects.filter(pk=document_id, status__in=claimable).filter(lease_free())
        deadline = time.monotonic() + 2 * settings.INGEST_LEASE_SECONDS + 1
        seen = None
        while True:
            taken = (free if force else free.filter(attempts__lt=limit)).update(
                status=Document.Status.PARSING,
                status_message="",
                lease_owner=self.owner,
                lease_expires_at=lease_expiry(),
                attempts=Value(1) if force else F("attempts") + 1,
                updated_at=timezone.now(),
            )
            if taken:
                with self._lock:
                    self._held.add(document_id)
                return True
            state = (
                Document.objects.filter(pk=document_id)
                .values("status", "attempts", "lease_expires_at", "lease_owner", now=ClockNow())
                .first()
            )
            if state is None or state["status"] not in claimable:
                return False
            expires = state["lease_expires_at"]
            if expires is not None and expires >= state["now"]:
                if (seen is not None and expires != seen) or time.monotonic() > deadline:
                    logger.info(
                        "document %s is being ingested by %s; leaving it to that worker",
                        document_id,
                        state["lease_owner"],
                    )
                    return False
                seen = expires
                time.sleep(min(1.0, max(0.05, (expires - state["now"]).total_seconds())))
                continue
            if not force and state["attempts"] >= limit:
                self._give_up(document_id, state["attempts"], limit)
                return False
            if time.monotonic() > deadline:  # pragma: no cover - only under constant races
                return False

    def _give_up(self, document_id: int, attempts: int, limit: int) -> None:
        failed = (
            Document.objects.filter(
                pk=document_id, status__in=PENDING_STATUSES, attempts__gte=limit
            )
            .filter(lease_free())
            .update(
                status=Document.Status.FAILED,
                status_message=attempts_message(attempts),
                lease_owner="",
                lease_expires_at=None,
                updated_at=timezone.now(),
            )
        )
        if failed:
            logger.warning("document %s failed after %s unfinished attempts", document_id, attempts)

    def done(self, document_id: int) -> None:
        """The document was finished (its last write cleared the lease)."""
        with self._lock:
            self._held.discard(document_id)

    def renew(self) -> int:
        held = self.held()
        if not held:
            return 0
        return Document.objects.filter(
            pk__in=held, lease_owner=self.owner, status__in=PENDING_STATUSES
        ).update(lease_expires_at=lease_expiry())

    def release(self, *, refund: bool) -> None:
        """Let go of every held document at once (the run is ending with an error), so the
        task's retry or the periodic recovery can take it; `refund` does not count the attempt
        (the error was the database's, not the document's)."""
        held = self.held()
        if not held:
            return
        changes: dict[str, object] = {"lease_owner": "", "lease_expires_at": ClockNow()}
        if refund:
            changes["attempts"] = Greatest(F("attempts") - 1, 0)
        try:
            Document.objects.filter(pk__in=held, lease_owner=self.owner).update(**changes)
        except DatabaseError:
            logger.warning("could not release the leases of %s; they expire on their own", held)

    def fail_all(self, message: str) -> None:
        """Mark every document still held failed with `message` (the time limit was hit)."""
        held = self.held()
        if held:
            Document.objects.filter(
                pk__in=held, lease_owner=self.owner, status__in=PENDING_STATUSES
            ).update(
                status=Document.Status.FAILED,
                status_message=message,
                lease_owner="",
                lease_expires_at=None,
                updated_at=timezone.now(),
            )

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew the held leases every third of INGEST_LEASE_SECONDS while the block runs.

        Not inside a transaction: nobody else sees its claims until it commits, and the
        renewing thread would wait on the rows this thread has locked."""
        if connection.in_atomic_block:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            try:
                while not stop.wait(settings.INGEST_LEASE_SECONDS / 3):
                    try:
                        self.renew()
                    except DatabaseError:
                        logger.warning("could not renew the leases of %s", self.owner)
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
