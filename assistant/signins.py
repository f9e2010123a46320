"""Receivers of django.contrib.auth's sign-in signals: count attempts against the lockout
(throttle), then record each in the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit.append import RequestMeta
from audit.signins import sign_in_failure_record, sign_in_record, sign_out_record

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
    username = str(credentials.get("username", ""))[:150]
    sign_in_failure_record(
        username=username,
        meta=RequestMeta.from_request(request),
        locked_out=throttle.failed_sign_in(username),
    )
