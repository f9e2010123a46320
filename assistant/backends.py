"""The password backend, behind the sign-in lockouts (throttle.py).

Every password sign-in goes through `django.contrib.auth.authenticate()`, whichever form asks
(the portal's, the admin's, any later one), so the lockout is enforced here rather than in a
form. A locked account or address raises PermissionDenied before the password is checked:
`authenticate()` then stops trying backends and sends `user_login_failed`, whose receiver
(signins.py) records the refused attempt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from audit.append import RequestMeta

from . import throttle

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest


class LockoutModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if password is None:  # not a password sign-in (single sign-on's callback, say)
            return None
        if username is None:
            username = kwargs.get(self._username_field())
        reason = throttle.refusal(
            username=str(username or ""), address=RequestMeta.from_request(request).ip_address
        )
        if reason:
            raise PermissionDenied(reason)
        return super().authenticate(request, username=username, password=password, **kwargs)

    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        # ModelBackend's own async check would skip the lockout.
        return await sync_to_async(self.authenticate)(
            request, username=username, password=password, **kwargs
        )

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
