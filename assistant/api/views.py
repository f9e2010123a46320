"""REST API v1: the portal's surfaces for scripts, with the same grants, limits and audit.

Every object is looked up through the selectors the portal uses (`collection_list`,
`question_get`, `document_get`), so a collection or document the token's user may not read is
a 404, exactly as if it did not exist.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from assistant import actions, selectors, services, throttle
from audit import compliance
from audit.append import RequestMeta
from audit.downloads import EXPORT_FORMATS, export_response
from audit.models import AuditEvent
from audit.views import PERMISSION as REVIEW_PERMISSION
from ingest import row_security
from ingest import selectors as ingest_selectors
from ingest.redaction import must_redact, redact_row
from ingest.redaction import redact as redact_text

from . import serializers as s

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from rest_framework.request import Request

    from assistant.request_types import AuthenticatedRequest
    from ingest.models import Collection

ERRORS = {
    400: OpenApiResponse(s.ErrorOut, description="Invalid request"),
    401: OpenApiResponse(s.ErrorOut, description="Missing or invalid token"),
    404: OpenApiResponse(s.ErrorOut, description="Not found, or not yours to read"),
    429: OpenApiResponse(s.ErrorOut, description="Rate limit reached"),
}


def _throttle(request: AuthenticatedRequest, kind: str, limit: int, *, count: int = 1) -> None:
    for _ in range(max(1, count)):
        if not throttle.allow(
            f"{kind}:{request.user.pk}", limit=limit, window=settings.RATE_WINDOW_SECONDS
        ):
            raise exceptions.Throttled(
                wait=settings.RATE_WINDOW_SECONDS,
                detail=f"Too many {kind} requests; at most {limit} per "
                f"{settings.RATE_WINDOW_SECONDS} s.",
            )


def _collection(request: AuthenticatedRequest, slug: str) -> Collection:
    try:
        return ingest_selectors.collection_get(user=request.user, slug=slug)
    except ObjectDoesNotExist as exc:
        raise Http404(f"No collection {slug!r}.") from exc


class AttestAPIView(APIView):
    """Base class: token auth, JSON errors (settings.REST_FRAMEWORK). Once the token is
    authenticated, the database session is limited to the token user's collections (RLS)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        row_security.apply(request.user)


class AskView(AttestAPIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        summary="Ask a question of a collection",
        description=(
            "Retrieves passages, answers with citations, stores and audits the answer. "
            'With `"stream": "sse"` the reply is `text/event-stream` (events `passages`, '
            "`draft`, `token`, then `done` or `withdrawn`; a reasoning model adds `thinking`, "
            "then `thought` with the seconds it thought, and `reset` when text already sent was "
            'its thinking); with `"stream": "ndjson"` '
            "it is `application/x-ndjson`, one JSON object per line with an `event` field. "
            "Tokens are an unchecked draft (`draft: true`; the `draft` event before them "
            "says so): `done` carries the checked answer and whether it replaced the draft, "
            "and `withdrawn` ends a stream whose answer could not be recorded in the audit "
            "trail, so was not given. Closing the connection stops the answer (it is stored "
            "and audited as stopped)."
        ),
        request=s.AskRequest,
        responses={200: s.AnswerOut, **ERRORS},
    )
    def post(self, request: AuthenticatedRequest) -> Response | StreamingHttpResponse:
        _throttle(request, "ask", settings.ASK_RATE_LIMIT)
        form = s.AskRequest(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        collection = _collection(request, data["collection"])
        follows = None
        if data.get("follows"):
            try:
                follows = selectors.question_get(user=request.user, pk=data["follows"])
            except ObjectDoesNotExist as exc:
                raise Http404(f"No question {data['follows']}.") from exc
            if follows.collection_id != collection.id:
                raise exceptions.ValidationError(
                    {"follows": ["That question was asked in another collection."]}
                )
        kwargs: dict[str, Any] = {
            "user": request.user,
            "collection": collection,
            "question": data["question"],
            "k": data.get("k") or selectors.default_k(),
            "meta": RequestMeta.from_request(request),
            "follows": follows,
        }
        if not data["stream"]:
            answer = services.question_ask(**kwargs)
            return Response(s.answer_data(answer, redact=must_redact(request.user)))
        redact = must_redact(request.user)
        return _stream(
            # No tokens for redacted users: see views.ask_stream.
            services.question_ask_stream(**kwargs, stream_tokens=not redact),
            data["stream"],
            redact=redact,
        )


def _stream(
    events: Generator[dict[str, Any], None, None], fmt: str, *, redact: bool
) -> StreamingHttpResponse:
    def encode(event: str, body: dict[str, Any]) -> bytes:
        if fmt == "sse":
            return f"event: {event}\ndata: {json.dumps(body)}\n\n".encode()
        return (json.dumps({"event": event, **body}) + "\n").encode()

    def generate() -> Iterator[bytes]:
        try:
            for event in events:
                if event["type"] == "passages":
                    passages = [
                        {
                            "n": n,
                            "document": redact_text(h.document_name, loose=True)
                            if redact
                            else h.document_name,
                            "page": h.page,
                        }
                        for n, h in enumerate(event["passages"], start=1)
                    ]
                    yield encode("passages", {"count": len(passages), "passages": passages})
                elif event["type"] == "draft":
                    yield encode("draft", {"notice": event["notice"]})
                elif event["type"] == "token":
                    yield encode("token", {"text": event["text"], "draft": True})
                elif event["type"] == "withdrawn":
                    yield encode("withdrawn", {"message": event["message"]})
                elif event["type"] in {"thinking", "thought", "reset"}:
                    yield encode(event["type"], {"seconds": event.get("seconds")})
                elif event["type"] == "done":
                    body = s.answer_data(event["answer"], redact=redact)
                    yield encode("done", {**body, "draft": event["draft"]})
        finally:
            events.close()

    response = StreamingHttpResponse(
        generate(),
        content_type="text/event-stream" if fmt == "sse" else "application/x-ndjson",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class QuestionListView(AttestAPIView):
    @extend_schema(
        operation_id="questions_list",
        summary="Your recent questions with their answers",
        parameters=[OpenApiParameter("limit", int, description="At most 100 (default 20)")],
        responses={200: s.AnswerOut(many=True), **ERRORS},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        try:
            limit = min(100, max(1, int(request.query_params.get("limit") or 20)))
        except ValueError as exc:
            raise exceptions.ValidationError({"limit": ["Must be a whole number."]}) from exc
        questions = selectors.question_list(user=request.user)[:limit]
        redact = must_redact(request.user)
        return Response(
            [s.answer_data(q.answer, redact=redact) for q in questions if hasattr(q, "answer")]
        )


class QuestionDetailView(AttestAPIView):
    @extend_schema(summary="One of your questions with its answer", responses={200: s.AnswerOut})
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        try:
            question = selectors.question_get(user=request.user, pk=pk)
        except ObjectDoesNotExist as exc:
            raise Http404(f"No question {pk}.") from exc
        return Response(s.answer_data(question.answer, redact=must_redact(request.user)))


class CollectionListView(AttestAPIView):
    @extend_schema(
        operation_id="collections_list",
        summary="Collections you may read",
        responses={200: s.CollectionOut(many=True), **ERRORS},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        managed = set(
            ingest_selectors.collection_list_managed(user=request.user).values_list("pk", flat=True)
        )
        rows = ingest_selectors.collection_with_counts(user=request.user).order_by("name")
        return Response([s.collection_data(c, can_manage=c.pk in managed) for c in rows])


class CollectionDocumentsView(AttestAPIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="collection_documents_list",
        summary="Documents in a collection",
        responses={200: s.DocumentOut(many=True), **ERRORS},
    )
    def get(self, request: AuthenticatedRequest, slug: str) -> Response:
        collection = _collection(request, slug)
        documents = ingest_selectors.document_list(collection=collection).select_related(
            "collection"
        )
        redact = must_redact(request.user)
        return Response([s.document_data(d, redact=redact) for d in documents])

    @extend_schema(
        summary="Upload documents (multipart, field `file`, repeatable)",
        description=(
            "Needs a *manage* grant on the collection. Each file is stored and queued for "
            "ingestion; poll `GET /api/v1/documents/{id}` for its status. A file already in "
            "the collection (same sha256) is returned with `duplicate: true`."
        ),
        request={"multipart/form-data": s.UploadRequest},
        responses={201: s.DocumentOut(many=True), 403: s.ErrorOut, **ERRORS},
    )
    def post(self, request: AuthenticatedRequest, slug: str) -> Response:
        collection = _collection(request, slug)
        if not ingest_selectors.collection_may_manage(
            user=request.user, collection_id=collection.pk
        ):
            raise exceptions.PermissionDenied(
                f"You may read {collection.slug!r} but not upload to it (needs a manage grant)."
            )
        files = request.FILES.getlist("file")
        if not files:
            raise exceptions.ValidationError(
                {"file": ["Send one or more files as multipart/form-data field 'file'."]}
            )
        _throttle(request, "upload", settings.UPLOAD_RATE_LIMIT, count=len(files))
        out = []
        for f in files:
            document, created = actions.document_upload(
                collection=collection,
                name=f.name or "unnamed",
                data=f.read(),
                user=request.user,
                meta=RequestMeta.from_request(request),
            )
            out.append(
                {
                    **s.document_data(document, redact=must_redact(request.user)),
                    "duplicate": not created,
                }
            )
        return Response(out, status=status.HTTP_201_CREATED)


class DocumentDetailView(AttestAPIView):
    @extend_schema(
        summary="A document's ingestion status", responses={200: s.DocumentOut, **ERRORS}
    )
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        try:
            document = ingest_selectors.document_get(user=request.user, pk=pk)
        except ObjectDoesNotExist as exc:
            raise Http404(f"No document {pk}.") from exc
        return Response(s.document_data(document, redact=must_redact(request.user)))


AUDIT_FILTERS = [
    OpenApiParameter("user", str, description="Actor's username"),
    OpenApiParameter("collection", str, description="Collection slug (or id if deleted)"),
    OpenApiParameter("since", OpenApiTypes.DATE),
    OpenApiParameter("until", OpenApiTypes.DATE),
    OpenApiParameter("type", str, description="Event type, e.g. question.answered"),
    OpenApiParameter("q", str, description="Full-text search in the entries"),
    OpenApiParameter("flagged", bool),
]


def _reviewer(request: AuthenticatedRequest) -> None:
    if not request.user.has_perm(REVIEW_PERMISSION):
        raise Http404("No such endpoint.")


def _audit_filters(request: AuthenticatedRequest) -> compliance.AuditFilter:
    """The request's audit filters; a 400 for a search that looks like an identifier from a
    reviewer without view_identifiers (compliance.filter_refusal)."""
    filters = compliance.AuditFilter.from_params(request.query_params)
    refused = compliance.filter_refusal(filters) if must_redact(request.user) else {}
    if refused:
        raise exceptions.ValidationError({name: [why] for name, why in refused.items()})
    return filters


class AuditListView(AttestAPIView):
    @extend_schema(
        operation_id="audit_events_list",
        summary="Query the audit trail (compliance officers)",
        description="Newest first; pass `before=<next_before>` for the next page.",
        parameters=[
            *AUDIT_FILTERS,
            OpenApiParameter("before", int),
            OpenApiParameter("size", int, description="At most 500 (default AUDIT_PAGE_SIZE)"),
        ],
        responses={200: s.AuditPageOut, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        _reviewer(request)
        filters = _audit_filters(request)
        try:
            before = int(request.query_params.get("before") or 0) or None
            size = int(request.query_params.get("size") or settings.AUDIT_PAGE_SIZE)
        except ValueError as exc:
            raise exceptions.ValidationError(
                {"before": ["before and size must be whole numbers."]}
            ) from exc
        rows, next_before = compliance.audit_page(
            filters=filters, before_id=before, size=min(500, max(1, size))
        )
        results = [s.audit_data(e, with_payload=False) for e in rows]
        if must_redact(request.user):
            results = [redact_row(row) for row in results]
        return Response({"results": results, "next_before": next_before})


class AuditDetailView(AttestAPIView):
    @extend_schema(summary="One audit entry with its payload", responses={200: s.AuditEventOut})
    def get(self, request: AuthenticatedRequest, pk: int) -> Response:
        _reviewer(request)
        try:
            event = AuditEvent.objects.get(pk=pk)
        except AuditEvent.DoesNotExist as exc:
            raise Http404(f"No audit entry {pk}.") from exc
        data = s.audit_data(event, with_payload=True)
        return Response(redact_row(data) if must_redact(request.user) else data)


class AuditExportView(AttestAPIView):
    @extend_schema(
        summary="Export the filtered audit trail as CSV or JSONL (audited)",
        parameters=[
            OpenApiParameter("format", str, enum=["csv", "jsonl"], description="Default jsonl"),
            OpenApiParameter("redact", bool, description="Replace identifiers in the rows"),
            *AUDIT_FILTERS,
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request: AuthenticatedRequest) -> StreamingHttpResponse:
        _reviewer(request)
        fmt = request.query_params.get("format") or "jsonl"
        if fmt not in EXPORT_FORMATS:
            raise exceptions.ValidationError({"format": ["Use csv or jsonl."]})
        return export_response(
            filters=_audit_filters(request),
            fmt=fmt,
            redact=request.query_params.get("redact") in {"1", "true", "on"}
            or must_redact(request.user),
            user=request.user,
            meta=RequestMeta.from_request(request),
            via="api",
        )
