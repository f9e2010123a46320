"""Rate limits and sign-in lockout, counted in Redis (shared by every web process)."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def allow(key: str, *, limit: int, window: int) -> bool:
    """Count one event under `key`; False once more than `limit` fell in the fixed window."""
    if limit <= 0:
        return True
    full = f"rate:{key}"
    cache.add(full, 0, timeout=window)
    try:
        count = cache.incr(full)
    except ValueError:  # expired between add and incr
        cache.set(full, 1, timeout=window)
        count = 1
    return count <= limit


def _lock_key(username: str) -> str:
    return f"lock:{username.lower()}"


def locked_out(username: str) -> bool:
    return bool(username) and cache.get(_lock_key(username)) is not None


def failed_sign_in(username: str) -> bool:
    """Record a failed sign-in; True when this failure locks the account out."""
    if not username or settings.LOGIN_FAILURE_LIMIT <= 0:
        return False
    key = f"fail:{username.lower()}"
    cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
    count = cache.incr(key)
    if count >= settings.LOGIN_FAILURE_LIMIT and not locked_out(username):
        cache.set(_lock_key(username), 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        cache.delete(key)
        return True
    return False


def signed_in(username: str) -> None:
    cache.delete(f"fail:{username.lower()}")
