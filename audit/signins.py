"""Audit entries for sign-ins, failed sign-ins, lockouts and sign-outs.

The portal's receivers of django.contrib.auth's signals (assistant/signins.py) call these after
counting the attempt against the lockout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from .append import RequestMeta, audit_record
from .models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def sign_in_record(*, user: AbstractBaseUser, meta: RequestMeta) -> None:
    username = user.get_username()
    audit_record(
        event_type=AuditEvent.Type.LOGIN,
        actor=user,
        meta=meta,
        summary=f"{username} signed in",
        payload={"username": username},
    )


def sign_out_record(*, user: AbstractBaseUser, meta: RequestMeta) -> None:
    username = user.get_username()
    audit_record(
        event_type=AuditEvent.Type.LOGOUT,
        actor=user,
        meta=meta,
        summary=f"{username} signed out",
        payload={"username": username},
    )


def sign_in_failure_record(*, username: str, meta: RequestMeta, locked_out: bool) -> None:
    """A failed sign-in; `locked_out` when this failure locked the account (recorded first)."""
    if locked_out:
        audit_record(
            event_type=AuditEvent.Type.LOCKED_OUT,
            actor_username=username,
            meta=meta,
            summary=f"{username!r} locked out after repeated failed sign-ins"[:300],
            payload={"username": username, "lockout_seconds": settings.LOGIN_LOCKOUT_SECONDS},
        )
    audit_record(
        event_type=AuditEvent.Type.LOGIN_FAILED,
        actor_username=username,
        meta=meta,
        summary=f"Failed sign-in as {username!r}"[:300],
        payload={"username": username},
    )
