"""API tokens: create (audited, key shown once), revoke (audited), and look up by key."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from assistant.models import ApiToken
from assistant.sso import standing_confirmed
from audit.append import audit_record
from audit.models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import User

KEY_PREFIX = "att_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    key: str  # the only time the key exists in clear


def token_create(
    *,
    user: User,
    name: str,
    expires_days: int | None = None,
    actor: User | None = None,
    actor_name: str = "",
) -> NewToken:
    """A new token for `user`; the audit entry records who created it (never the key)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name[:100],
            prefix=key[:12],
            key_hash=_hash(key),
            expires_at=expires_at,
        )
        audit_record(
            event_type=AuditEvent.Type.TOKEN_CREATED,
            actor=actor,
            actor_username=actor_name,
            summary=f"API token {token.prefix}… created for {user.username}",
            payload={
                "token_id": token.id,
                "prefix": token.prefix,
                "name": token.name,
                "user": user.username,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return NewToken(token=token, key=key)


def token_revoke(*, token: ApiToken, actor: User | None = None, actor_name: str = "") -> None:
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        audit_record(
            event_type=AuditEvent.Type.TOKEN_REVOKED,
            actor=actor,
            actor_username=actor_name,
            summary=f"API token {token.prefix}… revoked for {token.user.username}",
            payload={"token_id": token.id, "prefix": token.prefix, "user": token.user.username},
        )


def token_lookup(key: str) -> ApiToken | None:
    """The live token with this key (not revoked, not expired, active user, and for a single
    sign-on user one the identity provider still vouches for: assistant/sso.py), else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user", "user__sso_identity")
        .filter(key_hash=_hash(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if not standing_confirmed(token.user):
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
