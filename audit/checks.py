"""`manage.py check --deploy`: warn when the audit trail is not being signed (issue 9)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.apps import AppConfig


@register(Tags.security, deploy=True)
def audit_signing_check(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    from .checkpoints import SigningKeyMissing, load_signing_key

    problems: list[Warning] = []
    try:
        load_signing_key()
    except SigningKeyMissing as exc:
        problems.append(
            Warning(
                f"Audit checkpoints cannot be signed: {exc}.",
                hint="Run `python manage.py audit keygen --out DIR`, set AUDIT_SIGNING_KEY_FILE "
                "to DIR/audit_ed25519 and give DIR/audit_ed25519.pub to the compliance office. "
                "Without it answers have no receipts and a database superuser's edits to the "
                "audit trail go unnoticed.",
                id="attest.W001",
            )
        )
    directory = Path(settings.AUDIT_CHECKPOINT_DIR)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the folder is created on first write
    if not os.access(probe, os.W_OK):
        problems.append(
            Warning(
                f"AUDIT_CHECKPOINT_DIR ({directory}) is not writable: no checkpoints are kept.",
                id="attest.W002",
            )
        )
    return problems
