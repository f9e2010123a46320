"""Manage users and their roles.

    python manage.py users add NAME --role user|compliance|admin [--group G]... [--password-stdin]
    python manage.py users token NAME [--name LABEL] [--expires-days N]
    python manage.py users tokens NAME
    python manage.py users revoke-token PREFIX
    python manage.py users unlock NAME | --address IP

Without --password-stdin a random password is generated and printed once. Every change is
audited with the actor `cli` (flags and groups by assistant/privileges.py).
"""

from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from assistant.access import sign_in_unlock
from assistant.privileges import acting_as
from assistant.roles import roles_ensure
from audit.append import canonical_ip

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Add users with a role (and extra groups), manage API tokens, lift lockouts."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a user")
        add.add_argument("name")
        add.add_argument("--role", choices=["user", "compliance", "admin"], required=True)
        add.add_argument("--group", action="append", default=[], metavar="G")
        add.add_argument("--password-stdin", action="store_true")
        token = sub.add_parser("token", help="create a REST API token for a user (printed once)")
        token.add_argument("name")
        token.add_argument("--name", dest="label", default="api", help="what the token is for")
        token.add_argument("--expires-days", type=int, default=None, metavar="N")
        tokens = sub.add_parser("tokens", help="list a user's API tokens")
        tokens.add_argument("name")
        revoke = sub.add_parser("revoke-token", help="revoke an API token by its prefix")
        revoke.add_argument("prefix")
        unlock = sub.add_parser(
            "unlock", help="lift the sign-in lockout of an account or of a client address"
        )
        unlock.add_argument("name", nargs="?", default="")
        unlock.add_argument("--address", default="", metavar="IP")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        with acting_as(name="cli"):
            if action == "add":
                self._add(options)
            elif action == "token":
                self._token(options)
            elif action == "tokens":
                self._tokens(options)
            elif action == "revoke-token":
                self._revoke_token(options)
            elif action == "unlock":
                self._unlock(options)

    def _unlock(self, options: dict[str, Any]) -> None:
        name, address = options["name"].strip(), options["address"].strip()
        if bool(name) == bool(address):
            raise CommandError("Give a user name or --address IP (one of them).")
        if address:
            # As the lockout counted it: the form RequestMeta gives a client's address.
            canonical = canonical_ip(address)
            if canonical is None:
                raise CommandError(f"Not an IP address: {address!r}.")
            address = canonical
        was_locked = sign_in_unlock(username=name, address=address, actor_name="cli")
        what = f"user {name!r}" if name else f"address {address}"
        state = "lockout lifted" if was_locked else "was not locked out (failures forgotten)"
        self.stdout.write(f"Sign-in for {what}: {state}.")

    def _user(self, name: str) -> User:
        try:
            return get_user_model().objects.get(username=name)
        except ObjectDoesNotExist as exc:
            raise CommandError(f"No user {name!r}.") from exc

    def _token(self, options: dict[str, Any]) -> None:
        from assistant.api.tokens import token_create

        user = self._user(options["name"])
        if not user.is_active:
            raise CommandError(f"User {user.username!r} is inactive.")
        days = options["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be at least 1.")
        new = token_create(user=user, name=options["label"], expires_days=days, actor_name="cli")
        self.stderr.write(
            f"Token {new.token.prefix}… for {user.username!r}"
            + (f", expires {new.token.expires_at:%Y-%m-%d}" if new.token.expires_at else "")
            + ". It is shown only now; store it safely."
        )
        self.stdout.write(new.key)

    def _tokens(self, options: dict[str, Any]) -> None:
        user = self._user(options["name"])
        for t in user.api_tokens.all():
            state = "revoked" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            self.stdout.write(f"{t.prefix}  {state:8} {t.name}  last used {used}")

    def _revoke_token(self, options: dict[str, Any]) -> None:
        from assistant.api.tokens import token_revoke
        from assistant.models import ApiToken

        matches = list(
            ApiToken.objects.select_related("user").filter(
                prefix__startswith=options["prefix"], revoked_at__isnull=True
            )[:2]
        )
        if len(options["prefix"]) < 6 or len(matches) != 1:
            raise CommandError("Give the token's prefix (at least 6 characters, one live token).")
        token_revoke(token=matches[0], actor_name="cli")
        self.stdout.write(f"Revoked {matches[0].prefix}… of {matches[0].user.username!r}")

    def _add(self, options: dict[str, Any]) -> None:
        User = get_user_model()
        name = options["name"]
        if User.objects.filter(username=name).exists():
            raise CommandError(f"A user named {name!r} already exists.")
        generated = not options["password_stdin"]
        password = secrets.token_urlsafe(12) if generated else sys.stdin.readline().rstrip("\n")
        candidate = User(username=name)
        try:
            password_validation.validate_password(password, candidate)
        except ValidationError as exc:
            raise CommandError("Password rejected: " + " ".join(exc.messages)) from exc
        roles = roles_ensure()
        with transaction.atomic():
            user = User.objects.create_user(username=name, password=password)
            if options["role"] == "admin":
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            groups = [roles[options["role"]]]
            groups += [Group.objects.get_or_create(name=g)[0] for g in options["group"]]
            user.groups.add(*groups)
        self.stdout.write(
            f"Created {options['role']} {name!r} in {', '.join(g.name for g in groups)}"
        )
        if generated:
            self.stdout.write(f"password: {password}")
