"""Issue 19, "Sign-in and roles": attacks on password sign-in and on who holds which rights.

Each test is an attack that worked before issue 19: the lockout skipped /admin/login/, attempts
while locked left no trace, one address could spray passwords over many usernames, a lockout
could only wait out its time, privilege changes outside the user admin's groups went unaudited,
and a superuser could delete the chain-check results. Real database, real Redis.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent, ChainCheck
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db

READER_PASSWORD = "Reader-Pass-2026!"
ADMIN_PASSWORD = "Correct-Horse-Battery-9"


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _fail(client: Client, url: str, username: str, times: int, **extra: str) -> None:
    for _ in range(times):
        client.post(url, {"username": username, "password": "not-the-password"}, **extra)


# --- The lockout holds on every sign-in form ---------------------------------------------------


def test_the_admin_sign_in_honours_the_lockout(client, admin_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    _fail(client, "/admin/login/", "root-admin", 3)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "root-admin", "password": ADMIN_PASSWORD}
    )
    assert not _signed_in(client), "the right password got past the lockout at /admin/login/"
    assert "Too many failed sign-ins" in response.content.decode()
    # Locked at the portal's form, refused at the admin's as well.
    settings.LOGIN_FAILURE_LIMIT = 2
    other = Client()
    _fail(other, "/accounts/login/", "reader", 2)
    other.post("/admin/login/", {"username": "reader", "password": READER_PASSWORD})
    assert not _signed_in(other)


def test_attempts_while_locked_out_are_audited(client, plain_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    _fail(client, "/accounts/login/", "reader", 2)
    client.post("/accounts/login/", {"username": "reader", "password": READER_PASSWORD})
    client.post("/admin/login/", {"username": "reader", "password": "another-guess"})
    refused = AuditEvent.objects.filter(event_type="auth.login_refused").order_by("id")
    assert [e.payload["username"] for e in refused] == ["reader", "reader"]
    assert {e.payload["reason"] for e in refused} == {"account locked"}
    assert all(e.ip_address == "127.0.0.1" for e in refused)
    # Refusals are not failures: they neither count again nor lock again.
    assert AuditEvent.objects.filter(event_type="auth.login_failed").count() == 2
    assert AuditEvent.objects.filter(event_type="auth.locked_out").count() == 1
    assert not _signed_in(client)


def test_password_spraying_from_one_address_is_stopped(client, plain_user, settings):
    """Many usernames, one password each, from one address: each name stays under the
    per-account limit, so only a per-address limit stops it."""
    settings.LOGIN_FAILURE_LIMIT = 5
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 6
    sprayer = {"REMOTE_ADDR": "203.0.113.9"}
    for name in ["ana", "bo", "cy", "dee", "eli", "fay"]:
        client.post("/accounts/login/", {"username": name, "password": "Spring2026!"}, **sprayer)
    # The spray reaches a real account with its real password: refused, at both forms.
    page = client.post(
        "/accounts/login/", {"username": "reader", "password": READER_PASSWORD}, **sprayer
    )
    assert not _signed_in(client), "a sprayed password got in after the address's limit"
    assert "from this network address" in page.content.decode()
    client.post("/admin/login/", {"username": "reader", "password": READER_PASSWORD}, **sprayer)
    assert not _signed_in(client)
    locked = AuditEvent.objects.get(event_type="auth.address_locked")
    assert locked.payload["address"] == "203.0.113.9" and locked.ip_address == "203.0.113.9"
    refused = AuditEvent.objects.filter(event_type="auth.login_refused")
    assert {e.payload["reason"] for e in refused} == {"address locked"} and refused.count() == 2
    # The account itself is not locked: its owner signs in from their own desk.
    desk = Client(REMOTE_ADDR="198.51.100.7")
    desk.post("/accounts/login/", {"username": "reader", "password": READER_PASSWORD})
    assert _signed_in(desk)


# --- An administrator lifts a lockout, and it is audited ----------------------------------------


def test_an_administrator_unlocks_from_the_command_line(client, plain_user, settings, capsys):
    settings.LOGIN_FAILURE_LIMIT = 2
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    _fail(client, "/accounts/login/", "reader", 2, REMOTE_ADDR="192.0.2.5")
    _fail(client, "/accounts/login/", "nobody", 1, REMOTE_ADDR="192.0.2.5")
    call_command("users", "unlock", "reader")
    assert "reader" in capsys.readouterr().out
    # The account is open again, the address still locked until the operator lifts it too.
    client.post(
        "/accounts/login/",
        {"username": "reader", "password": READER_PASSWORD},
        REMOTE_ADDR="192.0.2.5",
    )
    assert not _signed_in(client)
    call_command("users", "unlock", "--address", "192.0.2.5")
    client.post(
        "/accounts/login/",
        {"username": "reader", "password": READER_PASSWORD},
        REMOTE_ADDR="192.0.2.5",
    )
    assert _signed_in(client)
    unlocks = AuditEvent.objects.filter(event_type="auth.unlocked").order_by("id")
    assert [
        (e.actor_username, e.payload.get("username"), e.payload.get("address")) for e in unlocks
    ] == [
        ("cli", "reader", None),
        ("cli", None, "192.0.2.5"),
    ]
    assert [e.payload["was_locked"] for e in unlocks] == [True, True]


def test_an_administrator_unlocks_accounts_in_the_admin(client, admin_user, plain_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    reader = Client()
    _fail(reader, "/accounts/login/", "reader", 2)
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/", {"action": "unlock_sign_in", "_selected_action": [plain_user.pk]}
    )
    assert response.status_code == 302
    reader.post("/accounts/login/", {"username": "reader", "password": READER_PASSWORD})
    assert _signed_in(reader)
    event = AuditEvent.objects.get(event_type="auth.unlocked")
    assert event.actor == admin_user and event.payload["username"] == "reader"


# --- Privilege changes are audited, whoever makes them -----------------------------------------


def _last_id() -> int:
    """Entries after this one are the test's (fixtures record their own: a superuser made)."""
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _entries(event_type: str, after: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type, id__gt=after).order_by("id"))


def test_privilege_changes_through_the_orm_are_audited(plain_user, roles):
    """What an operator could do in `manage.py shell`: no admin, no command, no service."""
    start = _last_id()
    plain_user.first_name = "Rea"
    plain_user.save()
    assert not _entries("user.flags_changed", start)  # an ordinary save records nothing
    plain_user.is_superuser = True
    plain_user.is_staff = True
    plain_user.save()
    plain_user.is_active = False
    plain_user.save(update_fields=["is_active"])
    flags = _entries("user.flags_changed", start)
    assert [(e.payload["before"], e.payload["after"]) for e in flags] == [
        (
            {"is_active": True, "is_staff": False, "is_superuser": False},
            {"is_active": True, "is_staff": True, "is_superuser": True},
        ),
        (
            {"is_active": True, "is_staff": True, "is_superuser": True},
            {"is_active": False, "is_staff": True, "is_superuser": True},
        ),
    ]
    assert all(e.payload["user"] == "reader" and e.actor_username.startswith("cli") for e in flags)

    review = Permission.objects.get(codename="review_audit")
    identifiers = Permission.objects.get(codename="view_identifiers")
    plain_user.user_permissions.add(review, identifiers)
    plain_user.user_permissions.remove(review)
    review.user_set.clear()  # nothing left to clear for review_audit: no entry
    identifiers.user_set.remove(plain_user)  # from the permission's side
    roles["user"].permissions.add(identifiers)
    roles["user"].permissions.clear()
    perms = _entries("permission.changed", start)
    assert [(e.payload["target"], e.payload["added"], e.payload["removed"]) for e in perms] == [
        ("user", ["assistant.view_identifiers", "audit.review_audit"], []),
        ("user", [], ["audit.review_audit"]),
        ("user", [], ["assistant.view_identifiers"]),
        ("group", ["assistant.view_identifiers"], []),
        ("group", [], ["assistant.view_identifiers"]),
    ]
    assert perms[3].payload["name"] == "user"

    plain_user.groups.add(roles["admin"])
    roles["admin"].user_set.remove(plain_user)
    changed = _entries("role.changed", start)
    assert [(e.payload["before"], e.payload["after"]) for e in changed] == [
        ([], ["admin"]),
        (["admin"], []),
    ]
    assert audit_verify().ok


def test_privilege_changes_in_the_admin_name_the_administrator(
    client, admin_user, plain_user, roles
):
    start = _last_id()
    client.force_login(admin_user)
    url = f"/admin/auth/user/{plain_user.id}/change/"
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.pop("password", None)
    data.pop("last_login", None)
    identifiers = Permission.objects.get(codename="view_identifiers")
    data.update(
        {
            "is_active": "on",
            "is_staff": "on",
            "groups": [],
            "user_permissions": [str(identifiers.id)],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        }
    )
    assert client.post(url, data).status_code == 302
    [flags] = _entries("user.flags_changed", start)
    assert flags.actor == admin_user and flags.payload["after"]["is_staff"] is True
    assert flags.payload["user"] == "reader" and flags.ip_address == "127.0.0.1"
    [perm] = _entries("permission.changed", start)
    assert perm.actor == admin_user and perm.payload["added"] == ["assistant.view_identifiers"]
    # A group's permissions, in the group admin.
    group = Group.objects.create(name="auditors")
    review = Permission.objects.get(codename="review_audit")
    response = client.post(
        f"/admin/auth/group/{group.id}/change/", {"name": "auditors", "permissions": [review.id]}
    )
    assert response.status_code == 302
    entry = _entries("permission.changed", start)[-1]
    assert entry.actor == admin_user
    assert entry.payload == {
        "target": "group",
        "name": "auditors",
        "id": group.id,
        "added": ["audit.review_audit"],
        "removed": [],
    }


def test_privilege_changes_by_a_command_name_the_command(roles):
    call_command("users", "add", "boss", "--role", "admin")
    flags = AuditEvent.objects.get(event_type="user.flags_changed")
    assert flags.actor_username == "cli" and flags.payload["after"]["is_staff"] is True
    role = AuditEvent.objects.get(event_type="role.changed")
    assert role.actor_username == "cli" and role.payload["after"] == ["admin"]


def test_creating_a_superuser_is_audited(django_user_model):
    django_user_model.objects.create_superuser(username="backdoor", password="Xx-backdoor-2026")
    entry = AuditEvent.objects.get(event_type="user.flags_changed")
    assert entry.payload["user"] == "backdoor" and entry.payload["created"] is True
    assert entry.payload["after"] == {"is_active": True, "is_staff": True, "is_superuser": True}


# --- Chain-check results are evidence ----------------------------------------------------------


def test_a_superuser_cannot_delete_a_chain_check_result(client, admin_user):
    check = ChainCheck.objects.create(
        checked_at=timezone.now(), entries=9, ok=False, first_broken_id=4, reason="hash mismatch"
    )
    client.force_login(admin_user)
    response = client.post(f"/admin/audit/chaincheck/{check.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    client.post(
        "/admin/audit/chaincheck/",
        {"action": "delete_selected", "_selected_action": [check.pk], "post": "yes"},
    )
    assert ChainCheck.objects.filter(pk=check.pk).exists()
