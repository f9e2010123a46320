"""Rate limits and sign-in lockout, counted in Redis (shared by every web process).

When Redis does not answer, nothing is counted and every request is let through (fail open):
an outage of the counters must not lock everyone out of sign-in or uploads. Failed sign-ins
are still recorded in the audit trail (PostgreSQL). docs/security.md says what is lost.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# What the Redis cache raises when Redis is down or does not answer in time.
UNREACHABLE = (RedisError, OSError)


def _unreachable(exc: Exception, what: str) -> None:
    logger.warning("Redis unreachable (%s): %s not counted, request let through", exc, what)


def allow(key: str, *, limit: int, window: int) -> bool:
    """Count one event under `key`; False once more than `limit` fell in the fixed window."""
    if limit <= 0:
        return True
    full = f"rate:{key}"
    try:
        cache.add(full, 0, timeout=window)
        try:
            count = cache.incr(full)
        except ValueError:  # expired between add and incr
            cache.set(full, 1, timeout=window)
            count = 1
    except UNREACHABLE as exc:
        _unreachable(exc, "rate limit")
        return True
    return count <= limit


def _lock_key(username: str) -> str:
    return f"lock:{username.lower()}"


def locked_out(username: str) -> bool:
    if not username:
        return False
    try:
        return cache.get(_lock_key(username)) is not None
    except UNREACHABLE as exc:
        _unreachable(exc, "lockout")
        return False


def failed_sign_in(username: str) -> bool:
    """Record a failed sign-in; True when this failure locks the account out."""
    if not username or settings.LOGIN_FAILURE_LIMIT <= 0:
        return False
    key = f"fail:{username.lower()}"
    try:
        cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        count = cache.incr(key)
        if count >= settings.LOGIN_FAILURE_LIMIT and not locked_out(username):
            cache.set(_lock_key(username), 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
            cache.delete(key)
            return True
    except UNREACHABLE as exc:
        _unreachable(exc, "failed sign-in")
    return False


def signed_in(username: str) -> None:
    try:
        cache.delete(f"fail:{username.lower()}")
    except UNREACHABLE as exc:
        _unreachable(exc, "sign-in")
