"""Entries recorded on what other apps report rather than call: attachments the ingestion
worker stores from an e-mail are uploads too, each with its own `document.uploaded` entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .append import audit_record
from .models import AuditEvent

if TYPE_CHECKING:
    from ingest.models import Document


def on_attachment_stored(sender: Any, document: Document, parent: Document, **kwargs: Any) -> None:
    """Runs in the indexing transaction: the attachment and its entry commit together."""
    audit_record(
        event_type=AuditEvent.Type.DOCUMENT_UPLOADED,
        actor_username="system",
        collection_id=document.collection_id,
        summary=f"Stored {document.name}, an attachment of {parent.name}",
        payload={
            "collection": document.collection.slug,
            "document_id": document.id,
            "name": document.name,
            "sha256": document.sha256,
            "size": document.size,
            "status": document.status,
            "status_message": document.status_message,
            "attachment_of": parent.id,
        },
    )
