"""Request validation and response shapes of the REST API (also what the schema shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from ingest.models import Collection, Document
from ingest.redaction import redact as redact_text
from ingest.redaction import redact_value

if TYPE_CHECKING:
    from assistant.models import Answer
    from audit.models import AuditEvent


class AskRequest(serializers.Serializer):
    collection = serializers.SlugField(max_length=100, help_text="The collection's slug")
    question = serializers.CharField(max_length=2000)
    k = serializers.IntegerField(
        min_value=1, max_value=50, required=False, help_text="Passages to retrieve"
    )
    follows = serializers.IntegerField(
        min_value=1, required=False, help_text="Id of your earlier question this follows up"
    )
    stream = serializers.ChoiceField(
        choices=["", "sse", "ndjson"],
        required=False,
        default="",
        help_text="Stream events as server-sent events or newline-delimited JSON",
    )


class CitationOut(serializers.Serializer):
    n = serializers.IntegerField()
    document_id = serializers.IntegerField(allow_null=True)
    document = serializers.CharField()
    page = serializers.IntegerField(allow_null=True)
    heading = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    text = serializers.CharField()
    score = serializers.FloatField()
    cited = serializers.BooleanField()


class AnswerOut(serializers.Serializer):
    question_id = serializers.IntegerField()
    answer_id = serializers.IntegerField()
    collection = serializers.CharField()
    question = serializers.CharField()
    answer = serializers.CharField()
    refused = serializers.BooleanField()
    stopped = serializers.BooleanField()
    backend = serializers.CharField()
    model = serializers.CharField()
    fallback_reason = serializers.CharField()
    unsupported = serializers.ListField(child=serializers.DictField())
    removed_citations = serializers.ListField(child=serializers.IntegerField())
    latency_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    citations = CitationOut(many=True)


class CollectionOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    documents = serializers.IntegerField()
    ready = serializers.IntegerField()
    can_manage = serializers.BooleanField()


class DocumentOut(serializers.Serializer):
    id = serializers.IntegerField()
    collection = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Document.Status.choices)
    status_message = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    pages = serializers.IntegerField(allow_null=True)
    chunks = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    ingested_at = serializers.DateTimeField(allow_null=True)
    duplicate = serializers.BooleanField(required=False)


class UploadRequest(serializers.Serializer):
    file = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        help_text="One or more files (repeat the field)",
    )


class AuditEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    event_type = serializers.CharField()
    actor = serializers.CharField()
    ip_address = serializers.CharField(allow_null=True)
    user_agent = serializers.CharField()
    collection_id = serializers.IntegerField(allow_null=True)
    flagged = serializers.BooleanField()
    summary = serializers.CharField()
    redacted = serializers.BooleanField()
    payload_hash = serializers.CharField()
    prev_hash = serializers.CharField()
    entry_hash = serializers.CharField()
    payload = serializers.JSONField(required=False)
    identifiers_redacted = serializers.BooleanField(
        required=False, help_text="Identifiers in the summary and payload were replaced"
    )


class AuditPageOut(serializers.Serializer):
    results = AuditEventOut(many=True)
    next_before = serializers.IntegerField(allow_null=True)


class ErrorOut(serializers.Serializer):
    error = serializers.CharField()
    status = serializers.IntegerField()


def answer_data(answer: Answer, *, redact: bool = False) -> dict[str, Any]:
    """The answer as the API returns it; with `redact`, identifiers in the answer, its
    sentences, its passages and their documents' names and headings are replaced (the question
    is the asker's own text)."""
    data = _answer_data(answer)
    if redact:
        data["answer"] = redact_text(data["answer"])
        data["unsupported"] = redact_value(data["unsupported"])
        for c in data["citations"]:
            c["text"] = redact_text(c["text"])
            c["heading"] = redact_text(c["heading"])
            c["document"] = redact_text(c["document"], loose=True)
        data["identifiers_redacted"] = True
    return data


def _answer_data(answer: Answer) -> dict[str, Any]:
    question = answer.question
    return {
        "question_id": question.id,
        "answer_id": answer.id,
        "collection": question.collection.slug if question.collection else "",
        "question": question.text,
        "answer": answer.text,
        "refused": answer.refused,
        "stopped": answer.stopped,
        "backend": answer.backend,
        "model": answer.model,
        "fallback_reason": answer.fallback_reason,
        "unsupported": answer.unsupported,
        "removed_citations": answer.removed_citations,
        "latency_ms": answer.latency_ms,
        "created_at": answer.created_at.isoformat(),
        "citations": [
            {
                "n": c.n,
                "document_id": c.document_id,
                "document": c.document_name,
                "page": c.page,
                "heading": c.heading,
                "start": c.start,
                "end": c.end,
                "text": c.text,
                "score": c.score,
                "cited": c.cited,
            }
            for c in answer.citations.order_by("n")
        ],
    }


def collection_data(collection: Collection, *, can_manage: bool) -> dict[str, Any]:
    return {
        "slug": collection.slug,
        "name": collection.name,
        "description": collection.description,
        "documents": getattr(collection, "document_count", 0),
        "ready": getattr(collection, "ready_count", 0),
        "can_manage": can_manage,
    }


def document_data(document: Document, *, redact: bool = False) -> dict[str, Any]:
    """A document as the API returns it; with `redact`, patient names and identifiers in its
    name and status message are replaced (hospital file names hold them)."""
    shown = (lambda text: redact_text(text, loose=True)) if redact else str
    return {
        "id": document.id,
        "collection": document.collection.slug,
        "name": shown(document.name),
        "status": document.status,
        "status_message": shown(document.status_message),
        "size": document.size,
        "sha256": document.sha256,
        "pages": document.page_count,
        "chunks": document.chunk_count,
        "created_at": document.created_at.isoformat(),
        "ingested_at": document.ingested_at.isoformat() if document.ingested_at else None,
    }


def audit_data(event: AuditEvent, *, with_payload: bool) -> dict[str, Any]:
    from audit.compliance import event_row

    return event_row(event, with_payload=with_payload)
