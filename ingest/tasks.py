"""Thin Celery tasks: primitive ids in, one service call."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from . import pipeline


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
