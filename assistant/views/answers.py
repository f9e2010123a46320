"""The portal's questions and answers: ask (streamed), the answer page, feedback, and the
answer's receipt and record downloads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import (
    Http404,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from assistant import actions, presenters, selectors, services, throttle
from assistant.forms import AskForm
from audit import receipts
from audit.append import RequestMeta
from audit.downloads import receipt_response, record_response
from ingest.redaction import must_redact

from .collections import collection_or_404

if TYPE_CHECKING:
    from collections.abc import Iterator

    from assistant.models import Answer, Question
    from assistant.request_types import AuthenticatedHttpRequest
    from audit.models import AuditEvent
    from ingest.models import Collection


def _ask_allowed(request: AuthenticatedHttpRequest) -> bool:
    return throttle.allow(
        f"ask:{request.user.pk}",
        limit=settings.ASK_RATE_LIMIT,
        window=settings.RATE_WINDOW_SECONDS,
    )


def _follows(
    request: AuthenticatedHttpRequest, form: AskForm, collection: Collection
) -> Question | None:
    """The previous turn a follow-up continues: the user's own, in the same collection."""
    pk = form.cleaned_data.get("follows")
    if not pk:
        return None
    try:
        previous = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such question") from exc
    return previous if previous.collection_id == collection.id else None


@login_required
@require_POST
def ask(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Ask without JavaScript: answer, then show the answer page."""
    if not _ask_allowed(request):
        messages.error(request, "You are asking too quickly; wait a minute and try again.")
        return redirect("portal:home")
    form = AskForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Type a question first.")
        return redirect("portal:home")
    collection = collection_or_404(request, form.cleaned_data["collection"])
    answer = services.question_ask(
        user=request.user,
        collection=collection,
        question=form.cleaned_data["question"],
        k=selectors.default_k(),
        meta=RequestMeta.from_request(request),
        follows=_follows(request, form, collection),
    )
    return redirect("portal:answer", pk=answer.question_id)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@login_required
@require_POST
def ask_stream(request: AuthenticatedHttpRequest) -> JsonResponse | StreamingHttpResponse:
    """Ask with server-sent events: passages, then (a notice that it is a draft) tokens as the
    model writes (`thinking` and `thought` while a reasoning model thinks; `reset` takes back
    text that was its thinking), then the checked answer as HTML, or the withdrawal of an
    answer that could not be recorded. Closing the connection stops generation (the partial
    answer is kept and audited as stopped)."""
    if not _ask_allowed(request):
        return JsonResponse({"error": "You are asking too quickly; wait a minute."}, status=429)
    form = AskForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"error": "Type a question first."}, status=400)
    collection = collection_or_404(request, form.cleaned_data["collection"])
    redact = must_redact(request.user)
    events = services.question_ask_stream(
        user=request.user,
        collection=collection,
        question=form.cleaned_data["question"],
        k=selectors.default_k(),
        meta=RequestMeta.from_request(request),
        follows=_follows(request, form, collection),
        # Redacted users get the checked answer at once: a token stream could split an
        # identifier across events.
        stream_tokens=not redact,
    )

    def stream() -> Iterator[bytes]:
        try:
            for event in events:
                if event["type"] == "passages":
                    yield _sse("passages", {"count": len(event["passages"])})
                elif event["type"] == "draft":
                    yield _sse("draft", {"notice": event["notice"]})
                elif event["type"] == "token":
                    yield _sse("token", {"text": event["text"], "draft": True})
                elif event["type"] == "withdrawn":
                    yield _sse("withdrawn", {"message": event["message"]})
                elif event["type"] in {"thinking", "thought", "reset"}:
                    # A reasoning model: that it thinks and for how long, never what it thinks.
                    yield _sse(event["type"], {"seconds": event.get("seconds")})
                elif event["type"] == "done":
                    answer = event["answer"]
                    html = render_to_string(
                        "portal/_answer_body.html",
                        presenters.answer_context(answer, redact=redact),
                        request,
                    )
                    url = reverse("portal:answer", args=[answer.question_id])
                    yield _sse(
                        "done",
                        {
                            "html": html,
                            "url": url,
                            "question_id": answer.question_id,
                            "draft": event["draft"],
                        },
                    )
        finally:
            events.close()

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


@login_required
def answer_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        question = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such answer") from exc
    context = presenters.answer_context(question.answer, redact=must_redact(request.user))
    context["ask_form"] = (
        AskForm(initial={"collection": question.collection.slug, "follows": question.pk})
        if question.collection
        else None
    )
    context["thread"] = selectors.conversation(question=question)
    context["receipt"] = _receipt_state(question.answer, hide=must_redact(request.user))
    return render(request, "portal/answer.html", context)


# Issue 19: the record is what the receipt's payload hash covers, so a redacted copy could not
# be checked against the receipt; it is offered only to those who may read it whole.
RECORD_WITHHELD = (
    "The answer record holds the identifiers this page redacts, and a redacted copy would not "
    "match the receipt's payload hash, so it is offered only to users who may see identifiers. "
    "The receipt (hashes only) is yours to keep; a user with that permission, the compliance "
    "office or the operator (`manage.py audit receipt ID --record FILE`) can produce the record "
    "that verifies against it."
)


def _receipt_state(answer: Answer, *, hide: bool) -> dict[str, Any]:
    """For the answer page: a receipt to download, or why there is none (yet); the record
    beside it unless the entry was erased or the user may not see identifiers (`hide`)."""
    event = selectors.answer_event(answer)
    if event is None:
        return {"ready": False, "reason": "This answer has no audit entry."}
    try:
        receipt = receipts.receipt_for_event(event)
    except receipts.ReceiptUnavailable as exc:
        return {"ready": False, "pending": exc.pending, "reason": exc.reason}
    return {
        "ready": True,
        "receipt": receipt,
        "has_record": not event.redacted and not hide,
        "record_withheld": hide and not event.redacted,
    }


def _answer_event_or_404(request: AuthenticatedHttpRequest, pk: int) -> AuditEvent:
    try:
        question = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such answer") from exc
    event = selectors.answer_event(question.answer)
    if event is None:
        raise Http404("No audit entry for this answer")
    return event


@login_required
@require_GET
def answer_receipt(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The answer's receipt as JSON (a download); 202 while pending, 409 when unavailable."""
    return receipt_response(_answer_event_or_404(request, pk))


@login_required
@require_GET
def answer_record(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The exact record the receipt's payload hash covers (for verify_receipt.py --payload);
    403 for users without view_identifiers (RECORD_WITHHELD)."""
    event = _answer_event_or_404(request, pk)
    if must_redact(request.user):
        return JsonResponse({"status": "withheld", "reason": RECORD_WITHHELD}, status=403)
    return record_response(event)


@login_required
@require_POST
def answer_feedback(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        question = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such answer") from exc
    verdict = request.POST.get("helpful")
    if verdict not in {"yes", "no"}:
        messages.error(request, "Choose helpful or not helpful.")
        return redirect("portal:answer", pk=pk)
    actions.feedback_create(
        answer=question.answer,
        user=request.user,
        helpful=verdict == "yes",
        comment=request.POST.get("comment", ""),
        meta=RequestMeta.from_request(request),
    )
    messages.success(request, "Thank you: your feedback was recorded.")
    return redirect("portal:answer", pk=pk)
