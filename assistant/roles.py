"""The three roles as Django groups: admin, user, compliance (idempotent set-up)."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    "admin": [
        ("ingest", f"{action}_{model}")
        for model in ("collection", "document", "collectiongrant")
        for action in ("add", "change", "delete", "view")
    ]
    + [("ingest", "download_document"), ("assistant", "view_identifiers")],
    "user": [],
    "compliance": [("audit", "view_auditevent"), ("audit", "review_audit")],
}


def roles_ensure() -> dict[str, Group]:
    """Create the role groups with their permissions if missing; return them by name."""
    groups = {}
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, codename in perms:
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        groups[role] = group
    return groups
