"""The browser portal: pick a collection, ask, read the cited answer; admins upload."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
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

from . import admin_actions, selectors, services, throttle
from .audit import RequestMeta
from .forms import AskForm, UploadForm


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
            added = duplicates = 0
            for f in upload_form.cleaned_data["files"]:
                _, created = admin_actions.document_upload(
                    collection=collection,
                    name=f.name,
                    data=f.read(),
                    user=request.user,
                    meta=RequestMeta.from_request(request),
                )
                if created:
                    added += 1
                else:
                    duplicates += 1
            messages.success(
                request,
                f"{added} file(s) queued for ingestion"
                + (f"; {duplicates} already in this collection" if duplicates else "")
                + ".",
            )
            return redirect("portal:collection", slug=collection.slug)
    documents = list(ingest_selectors.document_list(collection=collection))
    return render(
        request,
        "portal/collection.html",
        {
            "collection": collection,
            "documents": documents,
            "patients": list(ingest_selectors.patient_list(collection=collection)),
            "pending": any(d.is_pending for d in documents),
            "upload_form": upload_form,
            "ask_form": AskForm(initial={"collection": collection.slug}),
        },
    )


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

    def stream():
        try:
            for event in events:
                if event["type"] == "passages":
                    yield _sse("passages", {"count": len(event["passages"])})
                elif event["type"] == "token":
                    yield _sse("token", {"text": event["text"]})
                elif event["type"] == "done":
                    answer = event["answer"]
                    html = render_to_string(
                        "portal/_answer_body.html", selectors.answer_context(answer), request
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
    context = selectors.answer_context(question.answer)
    context["ask_form"] = (
        AskForm(initial={"collection": question.collection.slug, "follows": question.pk})
        if question.collection
        else None
    )
    context["thread"] = selectors.conversation(question=question)
    return render(request, "portal/answer.html", context)


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
