"""Thin Celery tasks of the audit app: the periodic signed checkpoint."""

from __future__ import annotations

import logging

from celery import shared_task

from . import checkpoints

logger = logging.getLogger(__name__)


@shared_task(name="audit.checkpoint", ignore_result=True)
def audit_checkpoint() -> str:
    """Sign and write a checkpoint when the audit tree has grown (Celery beat, issue 9)."""
    try:
        written = checkpoints.checkpoint_write()
    except checkpoints.SigningKeyMissing as exc:
        logger.warning("audit checkpoint skipped: %s", exc)
        return "no signing key"
    return written.file_name if written else "unchanged"
