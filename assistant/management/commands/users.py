"""Manage users and their roles.

    python manage.py users add NAME --role user|compliance|admin [--group G]... [--password-stdin]

Without --password-stdin a random password is generated and printed once.
"""

from __future__ import annotations

import secrets
import sys

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from assistant.admin_actions import roles_changed
from assistant.roles import roles_ensure


class Command(BaseCommand):
    help = "Add users with a role (and extra groups)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a user")
        add.add_argument("name")
        add.add_argument("--role", choices=["user", "compliance", "admin"], required=True)
        add.add_argument("--group", action="append", default=[], metavar="G")
        add.add_argument("--password-stdin", action="store_true")

    def handle(self, *args, action: str, **options) -> None:
        if action == "add":
            self._add(options)

    def _add(self, options) -> None:
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
            roles_changed(
                target=user, before=[], after=[g.name for g in groups],
                actor_name="cli",
            )  # fmt: skip
        self.stdout.write(
            f"Created {options['role']} {name!r} in {', '.join(g.name for g in groups)}"
        )
        if generated:
            self.stdout.write(f"password: {password}")
