"""Audit entries for every change to who holds which rights, whoever makes it.

A user's superuser, staff and active flags, their own permissions (`review_audit`,
`view_identifiers`, ...), their groups (roles) and a group's permissions change through the
admin, a command, single sign-on, or `manage.py shell` through the ORM. Recording them where
each caller changes them would miss the callers nobody wrote (the shell), so the models'
signals are the one place they are seen: post_save on the user (with pre_save reading the
flags as stored), m2m_changed on the three relations, from either side
(`user.groups.add(g)` and `g.user_set.add(user)` alike). This is the project's exception to
"no signals for domain flow": an audit record, not a step of the flow.

- `user.flags_changed`: the flags before and after (a new user: only one created with the
  staff or superuser flag).
- `role.changed`: a user's groups before and after.
- `permission.changed`: a user's or a group's permissions added and removed.

Each entry is appended in the transaction of the change where there is one (the admin, the
commands, m2m changes, which Django wraps in one); a lone `user.save()` in autocommit commits
before its entry is appended. Who made the change is whoever `acting_as` names: the signed-in
user of a web request (`ActingUserMiddleware`), `cli` for the `users` command, `oidc` for
single sign-on; anything else runs in a process someone started on the server, recorded as
`cli:<operating-system user>`.

Not seen: `QuerySet.update()` and raw SQL, which send no signals.
"""

from __future__ import annotations

import functools
import getpass
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_save, pre_save

from audit.append import Actor, RequestMeta
from audit.models import AuditEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.models import Model
    from django.http import HttpRequest
    from django.http.response import HttpResponseBase

FLAGS = ("is_active", "is_staff", "is_superuser")

_acting: ContextVar[Actor | None] = ContextVar("attest_acting", default=None)


@contextmanager
def acting_as(
    *,
    user: AbstractBaseUser | AnonymousUser | None = None,
    meta: RequestMeta | None = None,
    name: str = "",
) -> Iterator[None]:
    """Privilege changes made inside are recorded as made by `user` (or `name`)."""
    token = _acting.set(Actor(user=user, meta=meta, name=name))
    try:
        yield
    finally:
        _acting.reset(token)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry for the uid (some containers)
        return "unknown"


def _actor() -> Actor:
    return _acting.get() or Actor(name=f"cli:{_operator()}")


class ActingUserMiddleware:
    """Names the signed-in user (and their address) as who makes a request's changes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with acting_as(user=request.user, meta=RequestMeta.from_request(request), name="web"):
            return self.get_response(request)


# --- Flags -----------------------------------------------------------------------------------


def _flags(instance: Any) -> dict[str, bool]:
    return {flag: bool(getattr(instance, flag)) for flag in FLAGS}


def _flags_before(
    sender: type[Model],
    instance: Any,
    raw: bool = False,
    using: str = "default",
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    """Read the flags as stored before a save that may change them."""
    if raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not set(FLAGS) & set(update_fields):
        return
    stored = sender._default_manager.using(using).filter(pk=instance.pk).values(*FLAGS).first()
    instance.__dict__["_attest_flags_before"] = stored


def _flags_after(
    sender: type[Model], instance: Any, created: bool = False, raw: bool = False, **kwargs: Any
) -> None:
    if raw:
        return
    after = _flags(instance)
    before = instance.__dict__.pop("_attest_flags_before", None)
    if created:
        if not (after["is_staff"] or after["is_superuser"]):
            return
    elif before is None or before == after:
        return
    changed = [
        f"{flag}={after[flag]}" for flag in FLAGS if before is None or before[flag] != after[flag]
    ]
    username = instance.get_username()
    _actor().record(
        AuditEvent.Type.USER_FLAGS_CHANGED,
        summary=f"{'Created' if created else 'Changed'} {username}: {', '.join(changed)}",
        payload={
            "user": username,
            "user_id": instance.pk,
            "created": created,
            "before": before,
            "after": after,
        },
    )


# --- Groups and permissions ------------------------------------------------------------------


@dataclass(frozen=True)
class _Relation:
    """One many-to-many relation that confers rights: its owner side is who holds them."""

    through: type[Model]
    owner: type[Model]
    owner_field: str  # the through model's field for the owner: "user" or "group"
    item_field: str  # "group" or "permission"

    def owners_of(self, item_id: Any) -> list[Any]:
        rows = self.through._default_manager.filter(**{f"{self.item_field}_id": item_id})
        return list(rows.values_list(f"{self.owner_field}_id", flat=True))

    def items(self, owner_ids: Iterable[Any]) -> dict[Any, set[str]]:
        """Each owner's items by name: group names, or permissions as `app_label.codename`."""
        held: dict[Any, set[str]] = {owner: set() for owner in owner_ids}
        rows = self.through._default_manager.filter(**{f"{self.owner_field}_id__in": list(held)})
        if self.item_field == "group":
            for owner, name in rows.values_list(f"{self.owner_field}_id", "group__name"):
                held[owner].add(name)
        else:
            values = rows.values_list(
                f"{self.owner_field}_id",
                "permission__content_type__app_label",
                "permission__codename",
            )
            for owner, app_label, codename in values:
                held[owner].add(f"{app_label}.{codename}")
        return held


@functools.cache
def _relations() -> dict[type[Model], _Relation]:
    user = get_user_model()
    relations = [
        _Relation(user.groups.through, user, "user", "group"),
        _Relation(user.user_permissions.through, user, "user", "permission"),
        _Relation(Group.permissions.through, Group, "group", "permission"),
    ]
    return {relation.through: relation for relation in relations}


def _stash_key(relation: _Relation) -> str:
    return f"_attest_before_{relation.through._meta.db_table}"


def _m2m_changed(
    sender: type[Model],
    instance: Any,
    action: str,
    reverse: bool,
    pk_set: set[Any] | None,
    **kwargs: Any,
) -> None:
    relation = _relations().get(sender)
    if relation is None:
        return
    if action.startswith("pre_"):
        if not reverse:
            owners: list[Any] = [instance.pk]
        elif pk_set is not None:
            owners = list(pk_set)
        else:  # clear() from the item's side: whoever holds it now
            owners = relation.owners_of(instance.pk)
        instance.__dict__[_stash_key(relation)] = relation.items(owners)
        return
    before: dict[Any, set[str]] | None = instance.__dict__.pop(_stash_key(relation), None)
    if not before:
        return
    after = relation.items(before)
    changed = [owner for owner in before if before[owner] != after[owner]]
    if not changed:
        return
    name_field = "name" if relation.owner is Group else get_user_model().USERNAME_FIELD
    names = dict(
        relation.owner._default_manager.filter(pk__in=changed).values_list("pk", name_field)
    )
    actor = _actor()
    for owner in changed:
        _record(relation, actor, owner, str(names.get(owner, owner)), before[owner], after[owner])


def _record(
    relation: _Relation, actor: Actor, owner: Any, name: str, before: set[str], after: set[str]
) -> None:
    if relation.item_field == "group":
        actor.record(
            AuditEvent.Type.ROLE_CHANGED,
            summary=f"Groups of {name}: {', '.join(sorted(after)) or 'none'}",
            payload={
                "user": name,
                "user_id": owner,
                "before": sorted(before),
                "after": sorted(after),
            },
        )
        return
    target = "group" if relation.owner is Group else "user"
    added, removed = sorted(after - before), sorted(before - after)
    change = " ".join([*(f"+{p}" for p in added), *(f"-{p}" for p in removed)])
    actor.record(
        AuditEvent.Type.PERMISSION_CHANGED,
        summary=f"Permissions of {target} {name}: {change}",
        payload={"target": target, "name": name, "id": owner, "added": added, "removed": removed},
    )


def connect() -> None:
    """Connect the receivers (AssistantConfig.ready)."""
    user = get_user_model()
    pre_save.connect(_flags_before, sender=user, dispatch_uid="attest-flags-before")
    post_save.connect(_flags_after, sender=user, dispatch_uid="attest-flags-after")
    for through in _relations():
        m2m_changed.connect(
            _m2m_changed, sender=through, dispatch_uid=f"attest-m2m-{through._meta.db_table}"
        )
