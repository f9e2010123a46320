"""Single sign-on identities: who a user is at the identity provider, and whether the provider
still vouches for them.

- A sign-in is matched on the ID token's issuer and subject (`SsoIdentity`), never on the
  username; config/oidc.py's backend calls `identity_user` and `identity_link`.
- API tokens work without a browser, so nothing renews them through the provider. For an SSO
  user, `standing_confirmed` (called by every token lookup) asks the provider at most every
  OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS, with the refresh token of the user's last sign-in. When
  the provider refuses the grant (`invalid_grant`: the account was disabled or deleted, the
  session revoked) the identity lapses, audited as `sso.lapsed`: the user's tokens and
  sessions stop until they sign in with SSO again. When the provider cannot be reached, the
  token is refused for that request only (fail closed, nothing lapses).

Refresh tokens are stored encrypted (Fernet, with a key derived from SECRET_KEY); after a change
of SECRET_KEY they no longer decrypt, and SSO users' tokens wait for their next sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import requests
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.utils import timezone

from audit.append import audit_record
from audit.models import AuditEvent

from .models import SsoIdentity

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"attest.sso.refresh_token:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _seal(token: str) -> str:
    return _fernet().encrypt(token.encode()).decode() if token else ""


def _unseal(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode() if sealed else ""
    except InvalidToken:
        return ""


def identity_user(*, issuer: str, subject: str) -> User | None:
    """The account linked to this identity at this provider, if any."""
    identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject)
    found = identity.first()
    return found.user if found is not None else None


def identity_of(user: User) -> SsoIdentity | None:
    try:
        return user.sso_identity
    except ObjectDoesNotExist:
        return None


def identity_link(
    *, user: User, issuer: str, subject: str, refresh_token: str, adopted: bool = False
) -> None:
    """After a successful SSO sign-in (or renewal): link the account to the identity the first
    time (audited; `adopted`: an SSO account made before issue 19, matched by its username this
    once), keep the new refresh token, and restore a lapsed standing."""
    now = timezone.now()
    with transaction.atomic():
        identity, created = SsoIdentity.objects.select_for_update().get_or_create(
            user=user, defaults={"issuer": issuer, "subject": subject}
        )
        if (identity.issuer, identity.subject) != (issuer, subject):
            # The backend matched the user on this very pair, so this cannot happen; never
            # re-point an account at another identity.
            raise ValueError(f"{user.username} is linked to another identity")
        identity.refresh_token = _seal(refresh_token)
        identity.confirmed_at = now
        identity.lapsed_at = None
        identity.save()
        if created:
            audit_record(
                event_type=AuditEvent.Type.SSO_LINKED,
                actor_username="oidc",
                summary=f"{user.username} linked to {subject} at {issuer}"[:300],
                payload={
                    "user": user.username,
                    "user_id": user.pk,
                    "issuer": issuer,
                    "subject": subject,
                    "adopted": adopted,
                },
            )


def standing_lapsed(user: User) -> bool:
    """True when the provider refused to renew this SSO user's sign-in (no query for a user
    fetched with select_related("sso_identity"))."""
    identity = identity_of(user)
    return identity is not None and identity.lapsed_at is not None


def _fresh(identity: SsoIdentity) -> bool:
    window = timedelta(seconds=settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS)
    return identity.confirmed_at is not None and timezone.now() - identity.confirmed_at < window


def standing_confirmed(user: User) -> bool:
    """Whether the identity provider still vouches for `user` (always true of a local account)."""
    identity = identity_of(user)
    if identity is None:
        return True
    if identity.lapsed_at is not None:
        return False
    if not getattr(settings, "OIDC_ENABLED", False):
        return False  # single sign-on turned off: nobody can vouch for its users
    if _fresh(identity):
        return True
    with transaction.atomic():
        # One renewal at a time per user: whoever waits here finds it fresh (or lapsed).
        locked = SsoIdentity.objects.select_for_update().get(pk=identity.pk)
        if locked.lapsed_at is not None:
            return False
        if _fresh(locked):
            return True
        return _renew(locked, user)


def _renew(identity: SsoIdentity, user: User) -> bool:
    from mozilla_django_oidc.auth import OIDCAuthenticationBackend

    refresh_token = _unseal(identity.refresh_token)
    if not refresh_token:
        logger.warning("No refresh token for %s: their API tokens wait for an SSO sign-in", user)
        return False
    payload = {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "client_secret": settings.OIDC_RP_CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }
    try:
        # The library's token request: same endpoint, client authentication, TLS and timeout.
        answer = OIDCAuthenticationBackend().get_token(payload)
    except requests.HTTPError as exc:
        response = exc.response
        status = response.status_code if response is not None else 0
        error = _error(response)
        if error == "invalid_grant":
            _lapse(identity, user, status=status, error=error)
        else:
            logger.error("The identity provider refused to renew %s: %s %s", user, status, error)
        return False
    except (requests.RequestException, ValueError):
        logger.exception("The identity provider could not renew %s", user)
        return False
    identity.refresh_token = _seal(str(answer.get("refresh_token") or refresh_token))
    identity.confirmed_at = timezone.now()
    identity.save(update_fields=["refresh_token", "confirmed_at"])
    return True


def _error(response: requests.Response | None) -> str:
    try:
        return str(response.json().get("error") or "") if response is not None else ""
    except (ValueError, AttributeError):
        return ""


def _lapse(identity: SsoIdentity, user: User, *, status: int, error: str) -> None:
    identity.lapsed_at = timezone.now()
    identity.refresh_token = ""
    identity.save(update_fields=["lapsed_at", "refresh_token"])
    audit_record(
        event_type=AuditEvent.Type.SSO_LAPSED,
        actor_username="oidc",
        summary=f"The identity provider no longer renews {user.username}'s sign-in"[:300],
        payload={
            "user": user.username,
            "user_id": user.pk,
            "issuer": identity.issuer,
            "subject": identity.subject,
            "status": status,
            "error": error,
        },
    )
