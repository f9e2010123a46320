"""Optional OpenID Connect single sign-on (Keycloak, Azure AD/Entra ID, Okta, ...).

On when OIDC_RP_CLIENT_ID is set (assistant/settings.py wires it). mozilla-django-oidc does the
authorization-code flow; this backend decides who the user is and which roles they hold:

- The username is the `OIDC_USERNAME_CLAIM` claim (default `preferred_username`). SSO users are
  created without a usable password; a local account with a password is never taken over by an
  SSO login of the same name (the login is refused).
- The groups claim (`OIDC_GROUPS_CLAIM`, default `groups`) is mapped to roles by `OIDC_ROLE_MAP`
  (`idp-group=role,...`; roles admin, compliance, user). Claim groups that exist as Django
  groups (for example groups you granted collections to) are kept as well. Nothing else is.
- At every SSO sign-in the user's groups are set to exactly that (the identity provider is the
  source of truth) and a change is audited as `role.changed`.
- No mapped role and no `OIDC_DEFAULT_ROLE` means the sign-in is refused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from assistant.roles import roles_ensure

from .oidc_claims import claim_groups, roles_from_claims

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from django.contrib.auth.models import User
    from django.db.models import QuerySet

logger = logging.getLogger(__name__)


class AttestOIDCBackend(OIDCAuthenticationBackend):
    def _username(self, claims: Mapping) -> str:
        return str(claims.get(settings.OIDC_USERNAME_CLAIM) or "").strip()[:150]

    def _roles(self, claims: Mapping) -> list[str]:
        return roles_from_claims(
            claims,
            role_map=settings.OIDC_ROLE_MAP,
            claim=settings.OIDC_GROUPS_CLAIM,
            default_role=settings.OIDC_DEFAULT_ROLE,
        )

    def verify_claims(self, claims: Mapping[str, Any]) -> bool:
        username = self._username(claims)
        if not username:
            logger.warning("OIDC sign-in refused: no %s claim", settings.OIDC_USERNAME_CLAIM)
            return False
        if not self._roles(claims):
            logger.warning("OIDC sign-in refused for %s: no group maps to a role", username)
            return False
        # "!" starts Django's unusable password: an account that cannot sign in with one.
        local = self.UserModel.objects.filter(username=username).exclude(
            password__startswith="!"  # noqa: S106
        )
        if local.exists():
            logger.warning("OIDC sign-in refused: %s is a local account with a password", username)
            return False
        return True

    def filter_users_by_claims(self, claims: Mapping[str, Any]) -> QuerySet[User]:
        return self.UserModel.objects.filter(
            username=self._username(claims),
            password__startswith="!",  # noqa: S106 - an unusable password, not a secret
        )

    def describe_user_by_claims(self, claims: Mapping[str, Any]) -> str:
        return f"username {self._username(claims)}"

    def create_user(self, claims: Mapping[str, Any]) -> User:
        user = self.UserModel(username=self._username(claims), email=claims.get("email") or "")
        user.set_unusable_password()
        user.save()
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: Mapping[str, Any]) -> User:
        groups_sync(user, claims)
        return user


def groups_sync(user: User, claims: Mapping[str, Any]) -> None:
    """Set the user's groups to the mapped roles plus the claim groups that exist here."""
    from assistant.privileges import acting_as

    roles = roles_from_claims(
        claims,
        role_map=settings.OIDC_ROLE_MAP,
        claim=settings.OIDC_GROUPS_CLAIM,
        default_role=settings.OIDC_DEFAULT_ROLE,
    )
    role_groups = roles_ensure()
    names: Iterable[str] = claim_groups(claims, settings.OIDC_GROUPS_CLAIM)
    extra = list(Group.objects.filter(name__in=list(names)).exclude(name__in=list(role_groups)))
    wanted = [role_groups[r] for r in roles] + extra
    # Changes are audited by assistant/privileges.py, as made by `oidc`.
    with acting_as(name="oidc"), transaction.atomic():
        user.groups.set(wanted)
        staff = "admin" in roles
        email = claims.get("email") or user.email
        if user.is_staff != staff or user.email != email:
            user.is_staff, user.email = staff, email
            user.save(update_fields=["is_staff", "email"])
