"""Audited changes to who may do what: collection grants, users' roles, deleted users.

Each records its audit entry in the caller's transaction (or its own); see actions.py for
the documents' and answers' actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audit.append import Actor, RequestMeta, audited
from audit.models import AuditEvent
from ingest.models import Collection, CollectionGrant

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


def roles_changed(
    *,
    target: User,
    before: list[str],
    after: list[str],
    user: User | None = None,
    meta: RequestMeta | None = None,
    actor_name: str = "",
) -> None:
    """Audit a change of a user's groups (roles); nothing when they are the same."""
    if sorted(before) == sorted(after):
        return
    Actor(user=user, meta=meta, name=actor_name).record(
        AuditEvent.Type.ROLE_CHANGED,
        summary=f"Groups of {target.username}: {', '.join(sorted(after)) or 'none'}",
        payload={
            "user": target.username,
            "user_id": target.id,
            "before": sorted(before),
            "after": sorted(after),
        },
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
