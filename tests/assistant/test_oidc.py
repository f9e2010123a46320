"""Optional OpenID Connect sign-on: claim -> role mapping, user sync, settings wiring."""

import os
import subprocess
import sys

import pytest

from audit.models import AuditEvent
from config.oidc import AttestOIDCBackend
from config.oidc_claims import claim_groups, parse_role_map, roles_from_claims
from tests.conftest import REPO

ROLE_MAP = {"attest-admins": "admin", "Compliance Team": "compliance", "staff": "user"}


def test_role_map_parses_and_rejects_unknown_roles():
    assert parse_role_map("attest-admins=admin, Compliance Team = compliance,staff=user") == (
        ROLE_MAP
    )
    assert parse_role_map("") == {}
    with pytest.raises(ValueError, match="idp-group=admin"):
        parse_role_map("root=superuser")
    with pytest.raises(ValueError):
        parse_role_map("no-equals-sign")


def test_claims_map_to_roles():
    claims = {"groups": ["staff", "Compliance Team", "unrelated"]}
    assert roles_from_claims(claims, role_map=ROLE_MAP, claim="groups") == ["compliance", "user"]
    # Keycloak sends group paths: they map only in full (issue 19), never by their last
    # segment, which a group of that name anywhere in the tree would share.
    assert (
        roles_from_claims({"groups": ["/org/attest-admins"]}, role_map=ROLE_MAP, claim="groups")
        == []
    )
    assert roles_from_claims(
        {"groups": ["/org/attest-admins"]},
        role_map={"/org/attest-admins": "admin"},
        claim="groups",
    ) == ["admin"]
    # A single string also counts.
    assert roles_from_claims({"roles": "staff"}, role_map=ROLE_MAP, claim="roles") == ["user"]
    # Nothing maps: no role, unless a default role is configured.
    assert roles_from_claims({"groups": ["x"]}, role_map=ROLE_MAP, claim="groups") == []
    assert roles_from_claims({}, role_map=ROLE_MAP, claim="groups", default_role="user") == ["user"]
    assert claim_groups({"groups": [1, None, " a "]}, "groups") == ["a"]


@pytest.fixture
def oidc_settings(settings):
    settings.OIDC_RP_CLIENT_ID = "attest"
    settings.OIDC_RP_CLIENT_SECRET = "s"
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://idp.example/token"
    settings.OIDC_OP_USER_ENDPOINT = "https://idp.example/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = "https://idp.example/jwks"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_USERNAME_CLAIM = "preferred_username"
    settings.OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_DEFAULT_ROLE = ""
    settings.OIDC_ROLE_MAP = ROLE_MAP
    return settings


@pytest.mark.django_db
def test_sso_users_get_their_roles_and_groups_synced_and_audited(oidc_settings, roles):
    from django.contrib.auth.models import Group

    Group.objects.create(name="cardiology")  # a group collections are granted to
    backend = AttestOIDCBackend()
    claims = {
        # Issue 19: the backend adds the ID token's issuer to the userinfo, whose sub matched.
        "iss": "https://idp.example/realms/attest",
        "sub": "6c1f0e2a",
        "preferred_username": "dr.ada",
        "email": "ada@hospital.example",
        "groups": ["staff", "cardiology", "not-here"],
    }
    assert backend.verify_claims(claims)
    user = backend.create_user(claims)
    assert not user.has_usable_password()
    assert sorted(user.groups.values_list("name", flat=True)) == ["cardiology", "user"]
    assert not Group.objects.filter(name="not-here").exists()
    assert list(backend.filter_users_by_claims(claims)) == [user]
    # Promoted in the identity provider: admin role, staff flag, audited.
    backend.update_user(user, {**claims, "groups": ["attest-admins"]})
    user.refresh_from_db()
    assert user.is_staff and list(user.groups.values_list("name", flat=True)) == ["admin"]
    event = AuditEvent.objects.filter(event_type="role.changed").order_by("-id").first()
    assert event.actor_username == "oidc" and event.payload["after"] == ["admin"]
    # No mapped group: refused.
    assert not backend.verify_claims({**claims, "preferred_username": "x", "groups": ["nobody"]})


@pytest.mark.django_db
def test_sso_cannot_take_over_a_local_password_account(oidc_settings, django_user_model):
    django_user_model.objects.create_user(username="admin", password="Local-Admin-Pass-9")
    backend = AttestOIDCBackend()
    claims = {
        "iss": "https://idp.example/realms/attest",
        "sub": "f00d",
        "preferred_username": "admin",
        "groups": ["attest-admins"],
    }
    assert not backend.verify_claims(claims)
    assert not backend.filter_users_by_claims(claims).exists()


def _settings_in_subprocess(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")}
    env.update(SECRET_KEY="x" * 50, DJANGO_SETTINGS_MODULE="config.settings", **extra_env)
    code = (
        "from django.conf import settings as s;"
        "print(s.AUTHENTICATION_BACKENDS);"
        "print('mozilla_django_oidc' in s.INSTALLED_APPS);"
        "m = s.MIDDLEWARE;"
        "print(m[m.index('django.contrib.auth.middleware.AuthenticationMiddleware') + 1])"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
    )


def test_settings_wire_the_backend_only_when_configured():
    off = _settings_in_subprocess({})
    assert off.returncode == 0, off.stderr
    assert off.stdout.splitlines() == [
        "['assistant.backends.LockoutModelBackend']",
        "False",
        "assistant.privileges.ActingUserMiddleware",
    ]
    on = _settings_in_subprocess(
        {
            "OIDC_RP_CLIENT_ID": "attest",
            "OIDC_RP_CLIENT_SECRET": "secret",
            "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.example/auth",
            "OIDC_OP_TOKEN_ENDPOINT": "https://idp.example/token",
            "OIDC_OP_USER_ENDPOINT": "https://idp.example/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": "https://idp.example/jwks",
            "OIDC_ROLE_MAP": "attest-admins=admin",
        }
    )
    assert on.returncode == 0, on.stderr
    assert on.stdout.splitlines() == [
        "['config.oidc.AttestOIDCBackend', 'assistant.backends.LockoutModelBackend']",
        "True",
        # Issue 19: the ID token is renewed through the provider (the session ends when the
        # provider removed the user).
        "config.oidc.SessionRefresh",
    ]
    missing = _settings_in_subprocess({"OIDC_RP_CLIENT_ID": "attest"})
    assert missing.returncode != 0
    assert "OIDC_OP_AUTHORIZATION_ENDPOINT is required" in missing.stderr
    bad_map = _settings_in_subprocess(
        {
            "OIDC_RP_CLIENT_ID": "attest",
            "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.example/auth",
            "OIDC_OP_TOKEN_ENDPOINT": "https://idp.example/token",
            "OIDC_OP_USER_ENDPOINT": "https://idp.example/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": "https://idp.example/jwks",
            "OIDC_ROLE_MAP": "x=root",
        }
    )
    assert "OIDC_ROLE_MAP: bad OIDC_ROLE_MAP entry" in bad_map.stderr


@pytest.mark.django_db
def test_login_page_has_no_sso_link_when_off(client):
    html = client.get("/accounts/login/").content.decode()
    assert "single sign-on" not in html


@pytest.mark.django_db
def test_an_sso_account_from_before_issue_19_is_adopted_once(oidc_settings, django_user_model):
    """Accounts made when SSO matched usernames have no identity yet: the first sign-in links
    them (audited); after that only that identity opens them."""
    legacy = django_user_model.objects.create_user(username="dr.ada", password=None)
    backend = AttestOIDCBackend()
    claims = {
        "iss": "https://idp.example/realms/attest",
        "sub": "6c1f0e2a",
        "preferred_username": "dr.ada",
        "groups": ["staff"],
    }
    assert backend.verify_claims(claims)
    assert list(backend.filter_users_by_claims(claims)) == [legacy]
    backend.update_user(legacy, claims)
    linked = AuditEvent.objects.get(event_type="sso.linked")
    assert linked.payload["adopted"] is True and linked.payload["subject"] == "6c1f0e2a"
    # Another identity under the same name is now refused.
    other = {**claims, "sub": "99"}
    assert not backend.verify_claims(other)
    assert list(backend.filter_users_by_claims(other)) == []
