"""The browser portal: pick a collection, ask, read the cited answer; admins upload."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ingest import selectors as ingest_selectors

from . import admin_actions, receipts, selectors, services, throttle
from .audit import RequestMeta
from .forms import AskForm, UploadForm
from .redaction import must_redact, redact


def _collection_or_404(request: HttpRequest, slug: str):
    try:
        return ingest_selectors.collection_get(user=request.user, slug=slug)
    except ObjectDoesNotExist as exc:
        raise Http404("No such collection") from exc


@login_required
def home(request: HttpRequest) -> HttpResponse:
    collections = ingest_selectors.collection_with_counts(user=request.user)
    recent = selectors.question_list(user=request.user)[:10]
    return render(request, "portal/home.html", {"collections": collections, "recent": recent})


@login_required
@require_http_methods(["GET", "POST"])
def collection_detail(request: HttpRequest, slug: str) -> HttpResponse:
    collection = _collection_or_404(request, slug)
    can_manage = (
        ingest_selectors.collection_list_managed(user=request.user)
        .filter(pk=collection.pk)
        .exists()
    )
    upload_form = UploadForm() if can_manage else None
    if request.method == "POST":
        if not can_manage:
            raise Http404("No such page")
        upload_form = UploadForm(request.POST, request.FILES)
        files = request.FILES.getlist("files")
        if not throttle.allow(
            f"upload:{request.user.pk}",
            limit=settings.UPLOAD_RATE_LIMIT,
            window=settings.RATE_WINDOW_SECONDS,
        ) or (settings.UPLOAD_RATE_LIMIT and len(files) > settings.UPLOAD_RATE_LIMIT):
            messages.error(request, "Too many uploads at once; wait a minute and try again.")
            return redirect("portal:collection", slug=collection.slug)
        if upload_form.is_valid():
            outcomes = admin_actions.documents_upload(
                collection=collection,
                files=((f.name, f.read(), "") for f in upload_form.cleaned_data["files"]),
                user=request.user,
                meta=RequestMeta.from_request(request),
            )
            _upload_messages(request, outcomes)
            return redirect("portal:collection", slug=collection.slug)
    documents = list(ingest_selectors.document_list(collection=collection))
    progress = ingest_selectors.collection_progress(collection=collection)
    return render(
        request,
        "portal/collection.html",
        {
            "collection": collection,
            "documents": documents,
            "progress": progress,
            "counts": _count_rows(progress),
            "pending": progress.pending > 0,
            "can_manage": can_manage,
            "patients": list(ingest_selectors.patient_list(collection=collection)),
            "upload_form": upload_form,
            "ask_form": AskForm(initial={"collection": collection.slug}),
        },
    )


def _names(outcomes, limit: int = 20) -> str:
    names = [o.path or o.name for o in outcomes]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _upload_messages(request: HttpRequest, outcomes) -> None:
    queued = [o for o in outcomes if o.status not in {"duplicate", "failed"}]
    duplicates = [o for o in outcomes if o.status == "duplicate"]
    failed = [o for o in outcomes if o.status == "failed"]
    messages.success(request, f"{len(queued)} file(s) queued for ingestion.")
    if duplicates:
        messages.warning(
            request,
            f"{len(duplicates)} duplicate(s), already in this collection, not ingested again: "
            + _names(duplicates),
        )
    if failed:
        messages.error(
            request,
            f"{len(failed)} file(s) refused: "
            + "; ".join(f"{o.path or o.name}: {o.error}" for o in failed[:20])
            + (f"; and {len(failed) - 20} more" if len(failed) > 20 else ""),
        )


STATUS_ORDER = ("queued", "parsing", "embedding", "ready", "failed", "cancelled")


def _count_rows(progress) -> list[tuple[str, int]]:
    known = [(s, progress.counts.get(s, 0)) for s in STATUS_ORDER]
    extra = [(s, n) for s, n in sorted(progress.counts.items()) if s not in STATUS_ORDER]
    return known + extra


@login_required
@require_GET
def collection_status(request: HttpRequest, slug: str) -> JsonResponse:
    """Every document's state and the counts, for the collection page to poll."""
    collection = _collection_or_404(request, slug)
    progress = ingest_selectors.collection_progress(collection=collection)
    documents = ingest_selectors.document_list(collection=collection).values(
        "id", "status", "status_message", "page_count", "chunk_count"
    )
    return JsonResponse(
        {
            "total": progress.total,
            "done": progress.done,
            "pending": progress.pending,
            "percent": progress.percent,
            "counts": dict(_count_rows(progress)),
            "documents": [
                {
                    "id": d["id"],
                    "status": d["status"],
                    "label": d["status"].capitalize(),
                    "message": d["status_message"],
                    "pages": d["page_count"],
                    "chunks": d["chunk_count"],
                }
                for d in documents
            ],
        }
    )


def _managed_collection_or_404(request: HttpRequest, slug: str):
    collection = _collection_or_404(request, slug)
    if (
        not ingest_selectors.collection_list_managed(user=request.user)
        .filter(pk=collection.pk)
        .exists()
    ):
        raise Http404("No such page")
    return collection


@login_required
@require_POST
def collection_action(request: HttpRequest, slug: str) -> HttpResponse:
    """Managers: cancel the collection's queued documents, or re-ingest all of it."""
    collection = _managed_collection_or_404(request, slug)
    action = request.POST.get("action")
    meta = RequestMeta.from_request(request)
    if action == "cancel":
        n = admin_actions.collection_cancel(collection=collection, user=request.user, meta=meta)
        messages.success(request, f"{n} queued document(s) cancelled.")
    elif action == "reingest":
        n = admin_actions.collection_reingest(collection=collection, user=request.user, meta=meta)
        messages.success(request, f"{n} document(s) queued for ingestion again.")
    else:
        messages.error(request, "Unknown action.")
    return redirect("portal:collection", slug=collection.slug)


@login_required
@require_POST
def document_action(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Managers: retry a failed (or cancelled) document, cancel a queued one, or erase one."""
    collection = _managed_collection_or_404(request, slug)
    document = collection.documents.filter(pk=pk).defer("text").first()
    if document is None:
        raise Http404("No such document")
    action = request.POST.get("action")
    meta = RequestMeta.from_request(request)
    if action == "retry":
        if admin_actions.document_reingest(document=document, user=request.user, meta=meta):
            messages.success(request, f"{document.name} queued again.")
        else:
            messages.error(request, f"{document.name} cannot be retried: upload it again.")
    elif action == "cancel":
        if admin_actions.document_cancel(document=document, user=request.user, meta=meta):
            messages.success(request, f"{document.name} cancelled.")
        else:
            messages.error(request, f"{document.name} is no longer queued.")
    elif action == "delete":
        try:
            admin_actions.document_erase(
                document=document, user=request.user, meta=meta, reason="deleted in the portal"
            )
            messages.success(request, f"{document.name} deleted with its passages.")
        except PermissionDenied as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Unknown action.")
    return redirect("portal:collection", slug=collection.slug)


def _ask_allowed(request: HttpRequest) -> bool:
    return throttle.allow(
        f"ask:{request.user.pk}",
        limit=settings.ASK_RATE_LIMIT,
        window=settings.RATE_WINDOW_SECONDS,
    )


def _follows(request: HttpRequest, form: AskForm, collection):
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
def ask(request: HttpRequest) -> HttpResponse:
    """Ask without JavaScript: answer, then show the answer page."""
    if not _ask_allowed(request):
        messages.error(request, "You are asking too quickly; wait a minute and try again.")
        return redirect("portal:home")
    form = AskForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Type a question first.")
        return redirect("portal:home")
    collection = _collection_or_404(request, form.cleaned_data["collection"])
    answer = services.question_ask(
        user=request.user,
        collection=collection,
        question=form.cleaned_data["question"],
        k=selectors.default_k(),
        meta=RequestMeta.from_request(request),
        follows=_follows(request, form, collection),
    )
    return redirect("portal:answer", pk=answer.question_id)


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@login_required
@require_POST
def ask_stream(request: HttpRequest) -> HttpResponse:
    """Ask with server-sent events: passages, then tokens as the model writes, then the
    checked answer as HTML. Closing the connection stops generation (the partial answer is
    kept and audited as stopped)."""
    if not _ask_allowed(request):
        return JsonResponse({"error": "You are asking too quickly; wait a minute."}, status=429)
    form = AskForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"error": "Type a question first."}, status=400)
    collection = _collection_or_404(request, form.cleaned_data["collection"])
    events = services.question_ask_stream(
        user=request.user,
        collection=collection,
        question=form.cleaned_data["question"],
        k=selectors.default_k(),
        meta=RequestMeta.from_request(request),
        follows=_follows(request, form, collection),
    )

    redact = must_redact(request.user)

    def stream():
        try:
            for event in events:
                if event["type"] == "passages":
                    yield _sse("passages", {"count": len(event["passages"])})
                elif event["type"] == "token" and not redact:
                    # Redacted users get the checked answer at once: a token stream could
                    # split an identifier across events.
                    yield _sse("token", {"text": event["text"]})
                elif event["type"] == "done":
                    answer = event["answer"]
                    html = render_to_string(
                        "portal/_answer_body.html",
                        selectors.answer_context(answer, redact=redact),
                        request,
                    )
                    url = reverse("portal:answer", args=[answer.question_id])
                    yield _sse(
                        "done", {"html": html, "url": url, "question_id": answer.question_id}
                    )
        finally:
            events.close()

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


@login_required
def answer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        question = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such answer") from exc
    context = selectors.answer_context(question.answer, redact=must_redact(request.user))
    context["ask_form"] = (
        AskForm(initial={"collection": question.collection.slug, "follows": question.pk})
        if question.collection
        else None
    )
    context["thread"] = selectors.conversation(question=question)
    context["receipt"] = _receipt_state(question.answer)
    return render(request, "portal/answer.html", context)


def _receipt_state(answer) -> dict:
    """For the answer page: a receipt to download, or why there is none (yet)."""
    event = receipts.answer_event(answer)
    if event is None:
        return {"ready": False, "reason": "This answer has no audit entry."}
    try:
        receipt = receipts.receipt_for_event(event)
    except receipts.ReceiptUnavailable as exc:
        return {"ready": False, "pending": exc.pending, "reason": exc.reason}
    return {"ready": True, "receipt": receipt, "has_record": not event.redacted}


def _answer_event_or_404(request: HttpRequest, pk: int):
    try:
        question = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such answer") from exc
    event = receipts.answer_event(question.answer)
    if event is None:
        raise Http404("No audit entry for this answer")
    return event


@login_required
@require_GET
def answer_receipt(request: HttpRequest, pk: int) -> HttpResponse:
    """The answer's receipt as JSON (a download); 202 while pending, 409 when unavailable."""
    event = _answer_event_or_404(request, pk)
    try:
        receipt = receipts.receipt_for_event(event)
    except receipts.ReceiptUnavailable as exc:
        status = "pending" if exc.pending else "unavailable"
        return JsonResponse(
            {"status": status, "reason": exc.reason}, status=202 if exc.pending else 409
        )
    response = JsonResponse(receipt, json_dumps_params={"indent": 1})
    response["Content-Disposition"] = f'attachment; filename="attest-receipt-{event.id}.json"'
    return response


@login_required
@require_GET
def answer_record(request: HttpRequest, pk: int) -> HttpResponse:
    """The exact record the receipt's payload hash covers (for verify_receipt.py --payload)."""
    event = _answer_event_or_404(request, pk)
    try:
        record = receipts.entry_record(event)
    except receipts.ReceiptUnavailable as exc:
        return JsonResponse({"status": "unavailable", "reason": exc.reason}, status=409)
    response = HttpResponse(record, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="attest-record-{event.id}.json"'
    return response


@login_required
@require_GET
def document_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The document's extracted text with one passage highlighted and its page shown."""
    try:
        document = selectors.document_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such document") from exc
    chunk = None
    chunk_id = request.GET.get("chunk", "")
    if chunk_id.isdigit():
        chunk = document.chunks.filter(pk=int(chunk_id)).first()
    text = document.text
    before, passage, after = (
        (text, "", "")
        if chunk is None
        else (text[: chunk.start], text[chunk.start : chunk.end], text[chunk.end :])
    )
    if must_redact(request.user):
        before, passage, after = redact(before), redact(passage), redact(after)
    return render(
        request,
        "portal/document.html",
        {
            "document": document,
            "chunk": chunk,
            "before": before,
            "passage": passage,
            "after": after,
            "may_download": selectors.document_may_download(user=request.user, document=document),
            "attachments": document.attachments.defer("text").order_by("name"),
        },
    )


@login_required
@require_GET
def document_download(request: HttpRequest, pk: int) -> FileResponse:
    """The original file, for those allowed to download it (others get a 404)."""
    try:
        document = selectors.document_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such document") from exc
    if not document.file or not selectors.document_may_download(
        user=request.user, document=document
    ):
        raise Http404("No such document")
    return FileResponse(
        document.file.open("rb"),
        as_attachment=True,
        filename=document.name,
        content_type=document.mime_type or "application/octet-stream",
    )


@login_required
@require_POST
def answer_feedback(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        question = selectors.question_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such answer") from exc
    verdict = request.POST.get("helpful")
    if verdict not in {"yes", "no"}:
        messages.error(request, "Choose helpful or not helpful.")
        return redirect("portal:answer", pk=pk)
    services.feedback_create(
        answer=question.answer,
        user=request.user,
        helpful=verdict == "yes",
        comment=request.POST.get("comment", ""),
        meta=RequestMeta.from_request(request),
    )
    messages.success(request, "Thank you: your feedback was recorded.")
    return redirect("portal:answer", pk=pk)
