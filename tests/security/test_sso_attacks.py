"""Issue 19, "Sign-in and roles": attacks through single sign-on.

The identity provider is a fake one on loopback (tests/security/fake_idp.py), the only external
party; everything on Attest's side is the real code path: the settings `config.settings`
computes for an operator's OIDC_* environment (read in a subprocess, then applied here),
mozilla-django-oidc's views and middleware, config/oidc.py, assistant/sso.py and the REST API.
Before issue 19 each of these attacks worked.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from assistant.api.tokens import token_create
from audit.models import AuditEvent
from tests.conftest import REPO
from tests.security.fake_idp import FakeIdP

# config.urls reads OIDC_ENABLED once, when imported: import it now, with single sign-on off as
# the other tests expect, not first inside a test that turns it on (tests/security/oidc_urls.py).
importlib.import_module("config.urls")

pytestmark = pytest.mark.django_db

# Keycloak sends group paths. The operator maps the role by name, as the old documentation
# said paths would match ("also match by their last segment"), and one path in full.
ROLE_MAP = "attest-admins=admin,/hospital/staff=user"
RENEW_SECONDS = 1  # OIDC_RENEW_SECONDS is at least 60 in production; shortened to wait it out


@pytest.fixture(scope="module")
def idp():
    provider = FakeIdP()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def production_settings(idp) -> dict[str, Any]:
    """What config.settings computes for an operator's OIDC environment (JSON values only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")}
    env.update(idp.env(), OIDC_ROLE_MAP=ROLE_MAP, DJANGO_SETTINGS_MODULE="config.settings")
    env.setdefault("SECRET_KEY", "x" * 50)
    code = (
        "import json\nfrom django.conf import settings as s\n"
        "names = [n for n in dir(s) if n.startswith('OIDC_')]\n"
        "names += ['MIDDLEWARE', 'AUTHENTICATION_BACKENDS', 'LOGIN_REDIRECT_URL_FAILURE']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        out[n] = json.loads(json.dumps(getattr(s, n)))\n"
        "    except (TypeError, ValueError):\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def sso(settings, idp, production_settings):
    for name, value in production_settings.items():
        setattr(settings, name, value)
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = RENEW_SECONDS
    settings.ROOT_URLCONF = "tests.security.oidc_urls"
    idp.accounts.clear()
    idp.signed_in = None
    idp.refresh_grants.clear()
    return idp


def sign_in(client: Client, idp: FakeIdP, sub: str) -> None:
    """The browser's round trip: Attest -> provider -> Attest's callback."""
    idp.signed_in = sub
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(idp.url)
    client.get(idp.authorize(start["Location"]))


def signed_in_as(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_a_reused_username_at_the_provider_cannot_take_over_an_account(client, sso):
    sso.add("sub-ada", "dr.ada", ["/hospital/staff"])
    sign_in(client, sso, "sub-ada")
    ada = signed_in_as(client)
    assert ada is not None and ada.username == "dr.ada"
    # At the provider Ada's account is renamed, and the name goes to someone else.
    sso.accounts["sub-ada"].username = "ada.lovelace"
    sso.add("sub-mallory", "dr.ada", ["/hospital/staff"])
    mallory = Client()
    sign_in(mallory, sso, "sub-mallory")
    assert signed_in_as(mallory) != ada, "a name reused at the provider opened Ada's account"
    assert signed_in_as(mallory) is None
    # Ada, under her new name, still reaches her own account.
    ada_browser = Client()
    sign_in(ada_browser, sso, "sub-ada")
    assert signed_in_as(ada_browser) == ada
    assert User.objects.filter(username__in=["ada.lovelace", "dr.ada"]).count() == 1


def test_a_group_path_in_another_branch_maps_to_no_role(client, sso):
    Group.objects.create(name="cardiology")  # a group collections are granted to
    sso.add("sub-eve", "eve", ["/hospital/staff", "/sandbox/attest-admins", "/sandbox/cardiology"])
    sign_in(client, sso, "sub-eve")
    eve = signed_in_as(client)
    assert eve is not None
    assert list(eve.groups.values_list("name", flat=True)) == ["user"]
    assert not eve.is_staff, "a group named like the admins' in another branch made eve an admin"
    # Only the full path maps: a path alone in another branch is no role at all.
    sso.add("sub-max", "max", ["/sandbox/attest-admins"])
    other = Client()
    sign_in(other, sso, "sub-max")
    assert signed_in_as(other) is None


def test_removal_at_the_provider_ends_the_session_within_the_renewal_time(client, sso):
    sso.add("sub-ben", "ben", ["/hospital/staff"])
    sign_in(client, sso, "sub-ben")
    assert client.get("/").status_code == 200
    # Still at the provider when the renewal is due: renewed silently, the session goes on.
    time.sleep(RENEW_SECONDS + 0.2)
    renew = client.get("/")
    assert renew.status_code == 302 and renew["Location"].startswith(sso.url)
    assert "prompt=none" in renew["Location"]
    back = client.get(sso.authorize(renew["Location"]))
    assert back.status_code == 302 and back["Location"] == "/"
    assert client.get("/").status_code == 200
    # Removed at the provider: the next renewal fails, and the session ends.
    sso.accounts["sub-ben"].enabled = False
    time.sleep(RENEW_SECONDS + 0.2)
    # Nothing is changed meanwhile by a request that cannot be sent through the provider.
    refused = client.post("/ask/", {"collection": "x", "question": "Still here?"})
    assert refused.status_code == 403
    renew = client.get("/")
    assert renew.status_code == 302 and renew["Location"].startswith(sso.url)
    client.get(sso.authorize(renew["Location"]))
    assert signed_in_as(client) is None
    assert client.get("/")["Location"].startswith("/accounts/login/")


def test_a_user_deactivated_in_attest_loses_their_sso_session(client, sso):
    sso.add("sub-dan", "dan", ["/hospital/staff"])
    sign_in(client, sso, "sub-dan")
    assert client.get("/").status_code == 200
    User.objects.filter(username="dan").update(is_active=False)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_api_tokens_of_a_user_the_provider_removed_stop_working(client, sso):
    sso.add("sub-cy", "cy", ["/hospital/staff"])
    sign_in(client, sso, "sub-cy")
    cy = signed_in_as(client)
    assert cy is not None
    key = token_create(user=cy, name="nightly export").key
    api = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    assert api.get("/api/v1/collections", **auth).status_code == 200
    # Past the renewal time the provider is asked again, and still vouches for cy.
    time.sleep(RENEW_SECONDS + 0.2)
    assert api.get("/api/v1/collections", **auth).status_code == 200
    assert sso.refresh_grants == [("sub-cy", 200)]
    # Disabled at the provider: the next renewal is refused, and the token with it.
    sso.accounts["sub-cy"].enabled = False
    time.sleep(RENEW_SECONDS + 0.2)
    assert api.get("/api/v1/collections", **auth).status_code == 401
    assert sso.refresh_grants[-1] == ("sub-cy", 400)
    assert api.get("/api/v1/collections", **auth).status_code == 401
    lapsed = AuditEvent.objects.get(event_type="sso.lapsed")
    assert lapsed.payload["user"] == "cy" and lapsed.payload["status"] == 400
    # Back at the provider and signed in again with SSO: the token works again.
    sso.accounts["sub-cy"].enabled = True
    sign_in(Client(), sso, "sub-cy")
    assert api.get("/api/v1/collections", **auth).status_code == 200


def test_an_unreachable_provider_refuses_api_tokens_without_lapsing_them(client, sso, settings):
    """Fail closed while the provider cannot be asked; nothing lapses, so tokens work again
    once it answers."""
    sso.add("sub-flo", "flo", ["/hospital/staff"])
    sign_in(client, sso, "sub-flo")
    flo = signed_in_as(client)
    assert flo is not None
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=flo, name='etl').key}"}
    api = Client()
    time.sleep(RENEW_SECONDS + 0.2)
    endpoint = settings.OIDC_OP_TOKEN_ENDPOINT
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{closed.getsockname()[1]}/token"
    assert api.get("/api/v1/collections", **auth).status_code == 401
    settings.OIDC_OP_TOKEN_ENDPOINT = endpoint
    assert api.get("/api/v1/collections", **auth).status_code == 200
    assert not AuditEvent.objects.filter(event_type="sso.lapsed").exists()
