"""Audit entries for sign-ins, failed and refused sign-ins, lockouts, unlocks and sign-outs.

The portal's receivers of django.contrib.auth's signals (assistant/signins.py) call these after
counting the attempt against the lockouts; `unlock_record` is for whoever lifts one.
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


def sign_in_failure_record(
    *, username: str, meta: RequestMeta, locked_out: bool = False, address_locked: bool = False
) -> None:
    """A failed sign-in; `locked_out` / `address_locked` when this failure locked the account
    or the client address (those entries are recorded first)."""
    if locked_out:
        audit_record(
            event_type=AuditEvent.Type.LOCKED_OUT,
            actor_username=username,
            meta=meta,
            summary=f"{username!r} locked out after repeated failed sign-ins"[:300],
            payload={"username": username, "lockout_seconds": settings.LOGIN_LOCKOUT_SECONDS},
        )
    if address_locked:
        audit_record(
            event_type=AuditEvent.Type.ADDRESS_LOCKED,
            actor_username=username,
            meta=meta,
            summary=f"Address {meta.ip_address} locked out after failed sign-ins as many users",
            payload={
                "address": meta.ip_address,
                "username": username,
                "failures": settings.LOGIN_ADDRESS_FAILURE_LIMIT,
                "lockout_seconds": settings.LOGIN_LOCKOUT_SECONDS,
            },
        )
    audit_record(
        event_type=AuditEvent.Type.LOGIN_FAILED,
        actor_username=username,
        meta=meta,
        summary=f"Failed sign-in as {username!r}"[:300],
        payload={"username": username},
    )


def sign_in_refused_record(*, username: str, meta: RequestMeta, reason: str) -> None:
    """A sign-in refused without checking its password: the account or the address is locked."""
    audit_record(
        event_type=AuditEvent.Type.LOGIN_REFUSED,
        actor_username=username,
        meta=meta,
        summary=f"Sign-in as {username!r} refused: {reason}"[:300],
        payload={"username": username, "reason": reason},
    )


def unlock_record(
    *,
    username: str = "",
    address: str = "",
    was_locked: bool,
    actor: AbstractBaseUser | None = None,
    actor_name: str = "",
    meta: RequestMeta | None = None,
) -> None:
    """An administrator lifted the lockout of an account or of a client address."""
    what = f"account {username!r}" if username else f"address {address}"
    payload: dict[str, object] = {"was_locked": was_locked}
    payload.update({"username": username} if username else {"address": address})
    audit_record(
        event_type=AuditEvent.Type.UNLOCKED,
        actor=actor,
        actor_username=actor_name,
        meta=meta,
        summary=f"Sign-in lockout lifted for {what}"[:300],
        payload=payload,
    )
