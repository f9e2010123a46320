"""Audited changes to who may do what: collection grants, deleted users, lifted sign-in
lockouts.

Each records its audit entry in the caller's transaction (or its own); see actions.py for
the documents' and answers' actions. Changes to users' flags, permissions and groups are
recorded whoever makes them, by privileges.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit.append import Actor, RequestMeta, audited
from audit.models import AuditEvent
from audit.signins import unlock_record
from ingest.models import Collection, CollectionGrant

from . import throttle

if TYPE_CHECKING:
    from django.contrib.auth.models import Group, User


def grant_set(
    *,
    collection: Collection,
    group: Group,
    can_manage: bool | None,
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> None:
    """Grant (read, or manage) a collection to a group; `can_manage=None` revokes."""
    with audited(user=user, meta=meta, name=actor_name):
        if can_manage is None:
            CollectionGrant.objects.filter(collection=collection, group=group).delete()
            access = "none"
        else:
            CollectionGrant.objects.update_or_create(
                collection=collection, group=group, defaults={"can_manage": can_manage}
            )
            access = "manage" if can_manage else "read"
        grant_recorded(
            collection=collection,
            group=group,
            access=access,
            user=user,
            meta=meta,
            actor_name=actor_name,
        )


def grant_recorded(
    *,
    collection: Collection,
    group: Group,
    access: str,
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> None:
    """Audit a grant change made elsewhere in the same transaction (e.g. the admin inline)."""
    Actor(user=user, meta=meta, name=actor_name).record(
        AuditEvent.Type.GRANT_CHANGED,
        collection_id=collection.id,
        summary=f"{group.name}: {access} on {collection.slug}",
        payload={"collection": collection.slug, "group": group.name, "access": access},
    )


def user_deleted(
    *, target: User, user: User | None = None, meta: RequestMeta | None = None
) -> None:
    """Audit a user deleted in the caller's transaction (the admin)."""
    Actor(user=user, meta=meta).record(
        AuditEvent.Type.USER_DELETED,
        summary=f"Deleted user {target.username}",
        payload={"user": target.username, "user_id": target.id},
    )


def sign_in_unlock(
    *,
    username: str = "",
    address: str = "",
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> bool:
    """Lift the sign-in lockout of an account (`username`) or of a client address, audited
    either way; True if it was locked."""
    if bool(username) == bool(address):
        raise ValueError("unlock either a username or an address")
    was_locked = throttle.unlock(username) if username else throttle.unlock_address(address)
    unlock_record(
        username=username,
        address=address,
        was_locked=was_locked,
        actor=user,
        actor_name=actor_name,
        meta=meta,
    )
    return was_locked
