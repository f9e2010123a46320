"""A small OpenID Connect provider on loopback, the external party of the single sign-on tests.

It speaks the parts of the protocol Attest's real code path uses (mozilla-django-oidc's views
and middleware, config/oidc.py, assistant/sso.py): the token endpoint (authorization code and
refresh token grants), userinfo, and the JWKS, over real HTTP, with RS256-signed ID tokens.
The browser's visit to the authorization endpoint is `authorize(url)`: it answers as a provider
would, with the callback URL carrying a code, or an error (`login_required` for `prompt=none`
when nobody is signed in there or the account was disabled).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "attest"
CLIENT_SECRET = "attest-client-secret"


@dataclass
class Account:
    sub: str
    username: str
    groups: list[str]
    enabled: bool = True


@dataclass
class FakeIdP:
    accounts: dict[str, Account] = field(default_factory=dict)
    signed_in: str | None = None  # the sub of whoever is signed in at the provider
    codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    access: dict[str, str] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)
    refresh_grants: list[tuple[str, int]] = field(default_factory=list)  # (sub, status)
    url: str = ""

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(4)

    @property
    def issuer(self) -> str:
        return self.url + "/realms/attest"

    def add(self, sub: str, username: str, groups: list[str]) -> Account:
        self.accounts[sub] = Account(sub=sub, username=username, groups=groups)
        return self.accounts[sub]

    def authorize(self, url: str) -> str:
        """The browser at the authorization endpoint: the callback URL the provider sends it to."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert query["client_id"] == CLIENT_ID
        account = self.accounts.get(self.signed_in or "")
        back = {"state": query["state"]}
        if account is None or not account.enabled:
            back["error"] = "login_required" if query.get("prompt") == "none" else "access_denied"
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = (account.sub, query.get("nonce"))
            back["code"] = code
        return query["redirect_uri"] + "?" + urllib.parse.urlencode(back)

    def _tokens(self, sub: str, nonce: str | None) -> dict[str, object]:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 300}
        if nonce:
            claims["nonce"] = nonce
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = sub
        self.refresh[refresh] = sub
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return {
            "access_token": access,
            "id_token": id_token,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": 300,
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == "authorization_code":
            sub, nonce = self.codes.pop(form.get("code", ""), ("", None))
            if not sub:
                return 400, {"error": "invalid_grant"}
            return 200, self._tokens(sub, nonce)
        if form.get("grant_type") == "refresh_token":
            sub = self.refresh.pop(form.get("refresh_token", ""), "")
            account = self.accounts.get(sub)
            if account is None or not account.enabled:
                self.refresh_grants.append((sub, 400))
                return 400, {"error": "invalid_grant", "error_description": "Account disabled"}
            self.refresh_grants.append((sub, 200))
            return 200, self._tokens(sub, None)
        return 400, {"error": "unsupported_grant_type"}

    def userinfo(self, bearer: str) -> tuple[int, dict[str, object]]:
        account = self.accounts.get(self.access.get(bearer, ""))
        if account is None or not account.enabled:
            return 401, {"error": "invalid_token"}
        return 200, {
            "sub": account.sub,
            "preferred_username": account.username,
            "email": f"{account.username}@hospital.example",
            "groups": list(account.groups),
        }

    def jwks(self) -> dict[str, object]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def start(self) -> None:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _send(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                if path.endswith("/jwks"):
                    self._send(200, idp.jwks())
                elif path.endswith("/userinfo"):
                    bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    self._send(*idp.userinfo(bearer))
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if urllib.parse.urlsplit(self.path).path.endswith("/token"):
                    self._send(*idp.token(form))
                else:
                    self._send(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        """The environment an operator would set to point Attest at this provider."""
        base = self.issuer + "/protocol/openid-connect"
        return {
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": base + "/auth",
            "OIDC_OP_TOKEN_ENDPOINT": base + "/token",
            "OIDC_OP_USER_ENDPOINT": base + "/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": base + "/certs/jwks",
            "OIDC_OP_ISSUER": self.issuer,
        }
