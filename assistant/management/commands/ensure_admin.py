"""Create the first admin account with a random password, once, and say how to sign in."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

if TYPE_CHECKING:
    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Create the first admin (random password) if there is no superuser yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        User = get_user_model()
        password_file = settings.DATA_DIR / "admin-password.txt"
        port = os.environ.get("PORT", "8000")
        url = f"http://127.0.0.1:{port}/"
        if User.objects.filter(is_superuser=True).exists():
            hint = f" (first password saved in {password_file})" if password_file.exists() else ""
            self.stdout.write(f"[attest] Sign in at {url} with your admin account{hint}.")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(f"{username}\n{password}\n")
        password_file.chmod(0o600)
        self.stdout.write(
            "[attest] Created the first admin account.\n"
            f"[attest]   Sign in at {url}\n"
            f"[attest]   username: {username}\n"
            f"[attest]   password: {password}\n"
            f"[attest]   (saved in {password_file}; change it with "
            f"`.venv/bin/python manage.py changepassword {username}`)"
        )
