"""Thin Celery tasks: primitive ids in, one service call.

Every task ends before Redis would hand its message to another worker: the time limits
(CELERY_TASK_SOFT_TIME_LIMIT, CELERY_TASK_TIME_LIMIT = INGEST_TIME_LIMIT) stay below
CELERY_VISIBILITY_TIMEOUT (config/settings.py).
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from . import pipeline, services


@shared_task(
    name="ingest.document",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def ingest_document(document_id: int) -> str:
    return pipeline.document_ingest(document_id=document_id).status


@shared_task(name="ingest.recover")
def recover_documents() -> int:
    """Celery beat's periodic recovery: send again the tasks Redis never had or lost."""
    return services.documents_recover()
