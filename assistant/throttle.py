"""Rate limits and sign-in lockouts, counted in Redis (shared by every web process).

Two lockouts, both for LOGIN_LOCKOUT_SECONDS, both counting failures over a window that long:

- an account (username), after LOGIN_FAILURE_LIMIT failed password sign-ins;
- a client address, after LOGIN_ADDRESS_FAILURE_LIMIT failed password sign-ins under any
  usernames (password spraying: one guess for each of many names stays under the first limit).

`refusal` says whether a sign-in must be refused before its password is checked; the password
backend (assistant/backends.py) asks it on every form (the portal's, the admin's), and an
administrator lifts either lockout with `unlock` (`manage.py users unlock`, the user admin).

When Redis does not answer, nothing is counted and every request is let through (fail open):
an outage of the counters must not lock everyone out of sign-in or uploads. Failed sign-ins
are still recorded in the audit trail (PostgreSQL). docs/security.md says what is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# What the Redis cache raises when Redis is down or does not answer in time.
UNREACHABLE = (RedisError, OSError)


def _unreachable(exc: Exception, what: str) -> None:
    logger.warning("Redis unreachable (%s): %s not counted, request let through", exc, what)


ACCOUNT_LOCKED = "account locked"
ADDRESS_LOCKED = "address locked"


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


def _address_lock_key(address: str) -> str:
    return f"lock-address:{address}"


def _is_set(key: str) -> bool:
    try:
        return cache.get(key) is not None
    except UNREACHABLE as exc:
        _unreachable(exc, "lockout")
        return False


def locked_out(username: str) -> bool:
    return bool(username) and _is_set(_lock_key(username))


def address_locked_out(address: str | None) -> bool:
    return bool(address) and _is_set(_address_lock_key(address or ""))


def refusal(*, username: str, address: str | None) -> str:
    """Why a password sign-in as `username` from `address` is refused now ("" if it is not)."""
    if locked_out(username):
        return ACCOUNT_LOCKED
    if address_locked_out(address):
        return ADDRESS_LOCKED
    return ""


def _count(key: str) -> int:
    cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        return 1


@dataclass(frozen=True)
class Failure:
    """What one failed sign-in locked: the account, the address, or neither."""

    account_locked: bool = False
    address_locked: bool = False


def failed_sign_in(username: str, address: str | None = None) -> Failure:
    """Record a failed password sign-in against the account's and the address's limits
    (nothing is counted while Redis does not answer)."""
    try:
        return _failed_sign_in(username, address)
    except UNREACHABLE as exc:
        _unreachable(exc, "failed sign-in")
        return Failure()


def _failed_sign_in(username: str, address: str | None) -> Failure:
    account = False
    if username and settings.LOGIN_FAILURE_LIMIT > 0:
        count = _count(f"fail:{username.lower()}")
        if count >= settings.LOGIN_FAILURE_LIMIT and not locked_out(username):
            cache.set(_lock_key(username), 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
            cache.delete(f"fail:{username.lower()}")
            account = True
    address_locked = False
    if address and settings.LOGIN_ADDRESS_FAILURE_LIMIT > 0:
        count = _count(f"fail-address:{address}")
        if count >= settings.LOGIN_ADDRESS_FAILURE_LIMIT and not address_locked_out(address):
            cache.set(_address_lock_key(address), 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
            cache.delete(f"fail-address:{address}")
            address_locked = True
    return Failure(account_locked=account, address_locked=address_locked)


def signed_in(username: str) -> None:
    """A good sign-in clears the account's failures (not the address's: a sprayer who owns
    one account must not reset the count by signing in with it)."""
    try:
        cache.delete(f"fail:{username.lower()}")
    except UNREACHABLE as exc:
        _unreachable(exc, "sign-in")


def unlock(username: str) -> bool:
    """Lift an account's lockout and forget its failures; True if it was locked."""
    was_locked = locked_out(username)
    cache.delete_many([_lock_key(username), f"fail:{username.lower()}"])
    return was_locked


def unlock_address(address: str) -> bool:
    """Lift an address's lockout and forget its failures; True if it was locked."""
    was_locked = address_locked_out(address)
    cache.delete_many([_address_lock_key(address), f"fail-address:{address}"])
    return was_locked
