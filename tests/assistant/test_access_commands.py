"""Operator commands for users and grants, `ask --user`, and production hardening."""

import base64
import os
import secrets
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from ingest.models import CollectionGrant
from tests.conftest import REPO
from tests.factories import ingest_bytes, make_collection

pytestmark = pytest.mark.django_db


def test_users_add_with_role_groups_and_password_from_stdin(monkeypatch, capsys, django_user_model):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("Very-Long-Passphrase-2026\n"))
    call_command(
        "users", "add", "nora", "--role", "compliance", "--group", "nurses", "--password-stdin"
    )
    nora = django_user_model.objects.get(username="nora")
    assert nora.check_password("Very-Long-Passphrase-2026")
    assert sorted(nora.groups.values_list("name", flat=True)) == ["compliance", "nurses"]
    assert nora.has_perm("audit.review_audit")
    assert "password:" not in capsys.readouterr().out
    event = AuditEvent.objects.get(event_type="role.changed")
    assert event.actor_username == "cli" and event.payload["after"] == ["compliance", "nurses"]


def test_users_add_rejects_weak_passwords_and_duplicates(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("password\n"))
    with pytest.raises(CommandError, match="Password rejected"):
        call_command("users", "add", "weak", "--role", "user", "--password-stdin")
    call_command("users", "add", "dup", "--role", "admin")
    with pytest.raises(CommandError, match="already exists"):
        call_command("users", "add", "dup", "--role", "user")


def test_grant_and_revoke_change_what_ask_user_sees(django_user_model, capsys):
    collection = make_collection("Ward notes", "ward")
    ingest_bytes(collection, "notes.txt", b"Visiting hours on the ward are from two to four.")
    call_command("users", "add", "nurse", "--role", "user", "--group", "nurses")
    with pytest.raises(CommandError, match="No collection"):
        call_command("ask", "When are visiting hours?", "--collection", "ward", "--user", "nurse")
    call_command("grant", "ward", "--group", "nurses")
    assert CollectionGrant.objects.filter(collection=collection, group__name="nurses").exists()
    capsys.readouterr()
    call_command("ask", "When are visiting hours?", "--collection", "ward", "--user", "nurse")
    assert "two to four" in capsys.readouterr().out
    call_command("revoke", "ward", "--group", "nurses")
    with pytest.raises(CommandError, match="No collection"):
        call_command("ask", "When are visiting hours?", "--collection", "ward", "--user", "nurse")
    grants = AuditEvent.objects.filter(event_type="grant.changed").order_by("id")
    assert [g.payload["access"] for g in grants] == ["read", "none"]


def test_every_response_carries_a_strict_content_security_policy(client, plain_user):
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.content.decode()


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LLM_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        HTTPS="true",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="attest.example.org",
        # Issue 9: production signs audit checkpoints (without a key, attest.W001 warns).
        AUDIT_SIGNING_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        AUDIT_CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_repeated_failed_sign_ins_lock_the_account_and_are_audited(client, plain_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        response = client.post("/accounts/login/", {"username": "reader", "password": "wrong"})
        assert response.status_code == 200
    locked = client.post(
        "/accounts/login/", {"username": "reader", "password": "Reader-Pass-2026!"}
    )
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    assert (
        AuditEvent.objects.filter(event_type="auth.locked_out", actor_username="reader").count()
        == 1
    )
    assert AuditEvent.objects.filter(event_type="auth.login_failed").count() == 3


def test_asking_too_quickly_is_refused_with_429(client, plain_user, settings):
    from tests.factories import grant

    settings.ASK_RATE_LIMIT = 2
    collection = make_collection("Notes", "notes")
    grant(collection, plain_user)
    ingest_bytes(collection, "n.txt", b"The canteen opens at noon every weekday.")
    client.force_login(plain_user)
    codes = [
        client.post(
            "/ask/stream/", {"collection": "notes", "question": "When does the canteen open?"}
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
