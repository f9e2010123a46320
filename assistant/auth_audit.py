"""Audit entries for sign-ins, failed sign-ins and sign-outs."""

from __future__ import annotations

from django.conf import settings

from . import throttle
from .audit import RequestMeta, audit_record
from .models import AuditEvent


def on_login(sender, request, user, **kwargs) -> None:
    throttle.signed_in(user.username)
    audit_record(
        event_type=AuditEvent.Type.LOGIN,
        actor=user,
        meta=RequestMeta.from_request(request),
        summary=f"{user.username} signed in",
        payload={"username": user.username},
    )


def on_logout(sender, request, user, **kwargs) -> None:
    if user is None:
        return
    audit_record(
        event_type=AuditEvent.Type.LOGOUT,
        actor=user,
        meta=RequestMeta.from_request(request),
        summary=f"{user.username} signed out",
        payload={"username": user.username},
    )


def on_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:150]
    if throttle.failed_sign_in(username):
        audit_record(
            event_type=AuditEvent.Type.LOCKED_OUT,
            actor_username=username,
            meta=RequestMeta.from_request(request),
            summary=f"{username!r} locked out after repeated failed sign-ins"[:300],
            payload={"username": username, "lockout_seconds": settings.LOGIN_LOCKOUT_SECONDS},
        )
    audit_record(
        event_type=AuditEvent.Type.LOGIN_FAILED,
        actor_username=username,
        meta=RequestMeta.from_request(request),
        summary=f"Failed sign-in as {username!r}"[:300],
        payload={"username": username},
    )
