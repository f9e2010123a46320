"""Request types for the views only a signed-in user reaches (`login_required`, or the API's
`IsAuthenticated`): there `request.user` is a `User`, never `AnonymousUser`. For annotations
only (django-stubs' `AuthenticatedHttpRequest` pattern); nothing here changes a request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from rest_framework.request import Request

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class AuthenticatedRequest(Request):
    user: User
