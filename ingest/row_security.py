"""Defence in depth: PostgreSQL row-level security for web requests.

Each web request switches its database session to the non-superuser role `attest_app`
(`SET ROLE`) and states which collections it may read (`attest.readable_collections`, a comma
list, or `attest.rls_bypass = on` for administrators). The policies on ingest_document and
ingest_chunk (migration ingest 0004) then hide every other row, even from a query that forgot
its collection filter. The request's own filters (`collection_list`) still apply first; this
is the second layer. At the end of the request (after a streamed body is sent) the session
goes back to the connecting role.

Celery workers, migrations and management commands never switch role: as the tables' owner
they are not subject to RLS (it is enabled, not forced), and they apply grants in their
queries (`ask --user`).

DB_ROW_SECURITY: `auto` (default) uses it when the role exists and may be assumed, else logs a
warning once; `on` refuses to serve a request without it; `off` never switches role.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished
from django.db import connection

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import AnonymousUser, User
    from django.http import HttpRequest, HttpResponseBase

logger = logging.getLogger(__name__)

ROLE = "attest_app"
_available: bool | None = None


def available() -> bool:
    """Whether this database has the role and policies and we may assume the role (cached)."""
    global _available
    mode = getattr(settings, "DB_ROW_SECURITY", "auto")
    if mode == "off":
        return False
    if _available is None:
        with connection.cursor() as c:
            c.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)"
                " AND pg_has_role(current_user, %s, 'MEMBER')"
                " AND (SELECT relrowsecurity FROM pg_class WHERE oid = 'ingest_chunk'::regclass)",
                [ROLE, ROLE],
            )
            _available = bool(c.fetchone()[0])
        if not _available:
            if mode == "on":
                raise ImproperlyConfigured(
                    f"DB_ROW_SECURITY=on but the database role {ROLE} or the row-level security "
                    "policies are missing, or this user may not SET ROLE to it (docs/security.md)"
                )
            logger.warning("row-level security is not available; grants are checked in queries")
    return _available


def apply(user: User | AnonymousUser | None) -> None:
    """Switch this request's session to the application role, limited to what `user` reads."""
    if not available():
        return
    from .selectors import collection_list, user_sees_everything

    bypass = False
    ids = ""
    if user is not None and user.is_authenticated and user.is_active:
        bypass = user_sees_everything(user)
        # Kept on request.user, which every selector asks again (user_sees_everything).
        user._attest_sees_everything = bypass  # type: ignore[attr-defined]  # a dynamic cache
        if not bypass:
            pks = collection_list(user=user).values_list("pk", flat=True)
            ids = ",".join(str(pk) for pk in pks)
    with connection.cursor() as c:  # one round trip; set_config('role', ...) is SET ROLE
        c.execute(
            "SELECT set_config('attest.readable_collections', %s, false),"
            " set_config('attest.rls_bypass', %s, false), set_config('role', %s, false)",
            [ids, "on" if bypass else "off", ROLE],
        )


def reset(**kwargs: Any) -> None:
    """Back to the connecting role, with nothing readable stated (end of every request)."""
    if not _available or connection.connection is None:
        return
    try:
        with connection.cursor() as c:
            c.execute(
                "SELECT set_config('role', 'none', false),"
                " set_config('attest.readable_collections', '', false),"
                " set_config('attest.rls_bypass', 'off', false)"
            )
    except Exception:  # noqa: BLE001 - a broken connection: Django discards it
        logger.warning("could not reset the row-security role; closing the connection")
        connection.close()


class RowSecurityMiddleware:
    """After AuthenticationMiddleware: every request runs under the application role. The API
    authenticates tokens in the view, so it applies the token user's set again there."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        request_finished.connect(reset, dispatch_uid="attest-row-security-reset")

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path.startswith("/api/"):  # the API applies it once the token is known
            apply(getattr(request, "user", None))
        return self.get_response(request)
