"""Django admin changes are audited (collections, grants, roles)."""

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEvent
from audit.verify import audit_verify
from ingest.models import Collection, CollectionGrant

pytestmark = pytest.mark.django_db


def _inline(prefix: str = "grants", rows: list[dict] | None = None) -> dict:
    rows = rows or []
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows) or 1),
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"{prefix}-{i}-{key}"] = value
    return data


def test_creating_a_collection_with_a_grant_in_the_admin_is_audited(client, admin_user, roles):
    # Issue 19: the fixtures' own changes (a superuser made, role permissions set) are audited.
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    client.force_login(admin_user)
    readers = roles["user"]
    response = client.post(
        "/admin/ingest/collection/add/",
        {
            "name": "Policies",
            "slug": "policies",
            "description": "",
            **_inline(rows=[{"group": str(readers.id), "can_manage": ""}]),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    collection = Collection.objects.get(slug="policies")
    assert CollectionGrant.objects.filter(collection=collection, group=readers).exists()
    types = list(
        AuditEvent.objects.exclude(event_type__startswith="auth.")
        .filter(id__gt=start)
        .order_by("id")
        .values_list("event_type", flat=True)
    )
    assert types == ["collection.created", "grant.changed"]
    assert audit_verify().ok


def test_role_changes_are_audited(client, admin_user, plain_user, roles):
    client.force_login(admin_user)
    url = f"/admin/auth/user/{plain_user.id}/change/"
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "groups"}
    data.update(
        {
            "username": plain_user.username,
            "groups": [str(roles["compliance"].id)],
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "user_permissions": [],
        }
    )
    data.pop("password", None)
    data.pop("last_login", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(plain_user.groups.values_list("name", flat=True)) == ["compliance"]
    event = AuditEvent.objects.get(event_type="role.changed")
    assert event.payload["after"] == ["compliance"] and event.payload["before"] == []
    assert Group.objects.filter(name="compliance").exists()
