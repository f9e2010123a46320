"""Optional OpenID Connect single sign-on (Keycloak, Azure AD/Entra ID, Okta, ...).

On when OIDC_RP_CLIENT_ID is set (config/settings.py wires it). mozilla-django-oidc does the
authorization-code flow; this module decides who the user is, which roles they hold, and how
long the provider's word lasts:

- A sign-in opens the account linked to the ID token's issuer and subject (`sub`; the userinfo
  must carry the same `sub`), never the account that merely has the same username: providers
  let names change hands. A new identity gets a new account named by `OIDC_USERNAME_CLAIM`
  (default `preferred_username`), without a usable password; it is refused when that name is
  taken (a local account with a password, or an account linked to another identity). An SSO
  account made before accounts were linked is adopted by its name once, audited.
- The groups claim (`OIDC_GROUPS_CLAIM`, default `groups`) is mapped to roles by `OIDC_ROLE_MAP`
  (`idp-group=role,...`; roles admin, compliance, user); a Keycloak group path maps only on its
  full path. Claim groups that exist as Django groups (for example groups you granted
  collections to) are kept as well. Nothing else is.
- At every SSO sign-in and renewal the user's groups are set to exactly that (the identity
  provider is the source of truth); changes are audited as `role.changed` by `oidc`.
- No mapped role and no `OIDC_DEFAULT_ROLE` means the sign-in is refused.
- `SessionRefresh` renews the ID token through the provider every
  OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS (`prompt=none`); a renewal that fails ends the session
  (`CallbackView`), and a user deactivated here or lapsed at the provider (assistant/sso.py)
  has no session at all (`get_user`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.middleware import SessionRefresh as LibrarySessionRefresh
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView

from assistant import sso
from assistant.privileges import acting_as
from assistant.roles import roles_ensure

from .oidc_claims import claim_groups, roles_from_claims

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.contrib.auth.models import User
    from django.db.models import QuerySet
    from django.http import HttpRequest

logger = logging.getLogger(__name__)


class AttestOIDCBackend(OIDCAuthenticationBackend):
    _refresh_token = ""

    def _username(self, claims: Mapping) -> str:
        return str(claims.get(settings.OIDC_USERNAME_CLAIM) or "").strip()[:150]

    def _roles(self, claims: Mapping) -> list[str]:
        return roles_from_claims(
            claims,
            role_map=settings.OIDC_ROLE_MAP,
            claim=settings.OIDC_GROUPS_CLAIM,
            default_role=settings.OIDC_DEFAULT_ROLE,
        )

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = super().get_token(payload)
        self._refresh_token = str(answer.get("refresh_token") or "")
        return answer

    def get_userinfo(self, access_token: str, id_token: str, payload: Mapping) -> dict[str, Any]:
        """The userinfo claims plus the ID token's issuer; the userinfo must be about the ID
        token's subject (OpenID Connect Core 5.3.2), from the configured issuer."""
        claims = dict(super().get_userinfo(access_token, id_token, payload))
        subject, issuer = str(payload.get("sub") or ""), str(payload.get("iss") or "")
        if not subject or str(claims.get("sub") or "") != subject:
            raise SuspiciousOperation("the userinfo's sub is not the ID token's")
        if not issuer or (settings.OIDC_OP_ISSUER and issuer != settings.OIDC_OP_ISSUER):
            raise SuspiciousOperation(f"ID token from an unexpected issuer {issuer!r}")
        return {**claims, "iss": issuer, "sub": subject}

    def verify_claims(self, claims: Mapping[str, Any]) -> bool:
        username = self._username(claims)
        if not username or not claims.get("sub") or not claims.get("iss"):
            logger.warning("OIDC sign-in refused: no %s or sub claim", settings.OIDC_USERNAME_CLAIM)
            return False
        if not self._roles(claims):
            logger.warning("OIDC sign-in refused for %s: no group maps to a role", username)
            return False
        if sso.identity_user(issuer=claims["iss"], subject=claims["sub"]) is not None:
            return True
        # A new identity: its username must be free, or an SSO account from before issue 19.
        taken = self.UserModel.objects.filter(username=username).first()
        if taken is None:
            return True
        if taken.has_usable_password():
            logger.warning("OIDC sign-in refused: %s is a local account with a password", username)
            return False
        if sso.identity_of(taken) is not None:
            logger.warning(
                "OIDC sign-in refused: %s belongs to another identity at the provider", username
            )
            return False
        return True

    def filter_users_by_claims(self, claims: Mapping[str, Any]) -> QuerySet[User]:
        linked = self.UserModel.objects.filter(
            sso_identity__issuer=claims.get("iss"), sso_identity__subject=claims.get("sub")
        )
        if linked.exists():
            return linked
        return self.UserModel.objects.filter(
            username=self._username(claims),
            password__startswith="!",  # noqa: S106 - an unusable password, not a secret
            sso_identity__isnull=True,
        )

    def describe_user_by_claims(self, claims: Mapping[str, Any]) -> str:
        return f"subject {claims.get('sub')} at {claims.get('iss')}"

    def create_user(self, claims: Mapping[str, Any]) -> User:
        with transaction.atomic():
            user = self.UserModel(username=self._username(claims), email=claims.get("email") or "")
            user.set_unusable_password()
            user.save()
            return self._sync(user, claims, adopted=False)

    def update_user(self, user: User, claims: Mapping[str, Any]) -> User:
        return self._sync(user, claims, adopted=sso.identity_of(user) is None)

    def _sync(self, user: User, claims: Mapping[str, Any], *, adopted: bool) -> User:
        with transaction.atomic():
            sso.identity_link(
                user=user,
                issuer=claims["iss"],
                subject=claims["sub"],
                refresh_token=self._refresh_token,
                adopted=adopted,
            )
            groups_sync(user, claims)
        return user

    def get_user(self, user_id: Any) -> User | None:
        """The session's user, unless deactivated here or lapsed at the provider (the library's
        own get_user ignores both)."""
        user = self.UserModel.objects.select_related("sso_identity").filter(pk=user_id).first()
        if user is None or not self.user_can_authenticate(user) or sso.standing_lapsed(user):
            return None
        return user


def groups_sync(user: User, claims: Mapping[str, Any]) -> None:
    """Set the user's groups to the mapped roles plus the claim groups that exist here
    (audited by assistant/privileges.py, as `oidc`)."""
    roles = roles_from_claims(
        claims,
        role_map=settings.OIDC_ROLE_MAP,
        claim=settings.OIDC_GROUPS_CLAIM,
        default_role=settings.OIDC_DEFAULT_ROLE,
    )
    role_groups = roles_ensure()
    names = claim_groups(claims, settings.OIDC_GROUPS_CLAIM)
    extra = list(Group.objects.filter(name__in=names).exclude(name__in=list(role_groups)))
    wanted = [role_groups[r] for r in roles] + extra
    with acting_as(name="oidc"), transaction.atomic():
        user.groups.set(wanted)
        staff = "admin" in roles
        email = claims.get("email") or user.email
        if user.is_staff != staff or user.email != email:
            user.is_staff, user.email = staff, email
            user.save(update_fields=["is_staff", "email"])


class SessionRefresh(LibrarySessionRefresh):
    """The library's renewal of the ID token (a GET is sent through the provider with
    `prompt=none` once OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS have passed), and a refusal of any
    other request while a renewal is due: a POST cannot be sent through the provider, and
    letting it through would let a user the provider removed go on acting."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if request.method != "GET" and self._renewal_due(request):
            message = "Your single sign-on session needs renewing: reload the page."
            if request.path.startswith("/api/") or request.headers.get("x-requested-with"):
                return JsonResponse({"error": message, "status": 403}, status=403)
            return HttpResponse(message, status=403, content_type="text/plain; charset=utf-8")
        response: HttpResponse | None = super().process_request(request)
        return response

    def _renewal_due(self, request: HttpRequest) -> bool:
        backend = request.session.get(BACKEND_SESSION_KEY)
        if not backend or not issubclass(import_string(backend), OIDCAuthenticationBackend):
            return False
        if not request.user.is_authenticated or request.path in self.exempt_urls:
            return False
        if any(pattern.match(request.path) for pattern in self.exempt_url_patterns):
            return False
        expires: float = request.session.get("oidc_id_token_expiration", 0)
        return expires <= time.time()


class CallbackView(OIDCAuthenticationCallbackView):
    """The library's callback, except that a sign-in or renewal that fails for any reason
    (the provider's error, a refused claim, a lapsed standing) ends the session: the library
    ends it only on the provider's error, and a renewal refused here would keep it alive."""

    def login_failure(self) -> HttpResponse:
        if self.request.user.is_authenticated:
            auth.logout(self.request)
        response: HttpResponse = super().login_failure()
        return response
