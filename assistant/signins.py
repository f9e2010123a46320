"""Receivers of django.contrib.auth's sign-in signals: count attempts against the lockouts
(throttle), then record each in the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit.append import RequestMeta
from audit.signins import (
    sign_in_failure_record,
    sign_in_record,
    sign_in_refused_record,
    sign_out_record,
)

from . import throttle

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest


def on_login(sender: Any, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> None:
    throttle.signed_in(user.get_username())
    sign_in_record(user=user, meta=RequestMeta.from_request(request))


def on_logout(
    sender: Any, request: HttpRequest, user: AbstractBaseUser | None, **kwargs: Any
) -> None:
    if user is None:
        return
    sign_out_record(user=user, meta=RequestMeta.from_request(request))


def on_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """A failed sign-in, or one refused by a lockout (assistant/backends.py raised
    PermissionDenied before checking the password): refusals are recorded, not counted."""
    username = str(credentials.get("username", ""))[:150]
    meta = RequestMeta.from_request(request)
    if "password" not in credentials:  # single sign-on's callback: nothing to count
        sign_in_failure_record(username=username, meta=meta)
        return
    reason = throttle.refusal(username=username, address=meta.ip_address)
    if reason:
        sign_in_refused_record(username=username, meta=meta, reason=reason)
        return
    failure = throttle.failed_sign_in(username, meta.ip_address)
    sign_in_failure_record(
        username=username,
        meta=meta,
        locked_out=failure.account_locked,
        address_locked=failure.address_locked,
    )
