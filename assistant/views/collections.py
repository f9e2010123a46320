"""The portal's collection and document pages: browse, upload, follow ingestion, read a
document with the cited passage highlighted, download the original (managers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
)
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from assistant import actions, presenters, selectors, throttle
from assistant.forms import AskForm, UploadForm
from audit.append import RequestMeta
from ingest import selectors as ingest_selectors
from ingest.redaction import must_redact, redact

if TYPE_CHECKING:
    from collections.abc import Sequence

    from assistant.actions import UploadOutcome
    from assistant.request_types import AuthenticatedHttpRequest
    from ingest.models import Collection
    from ingest.selectors import IngestProgress


def collection_or_404(request: AuthenticatedHttpRequest, slug: str) -> Collection:
    try:
        return ingest_selectors.collection_get(user=request.user, slug=slug)
    except ObjectDoesNotExist as exc:
        raise Http404("No such collection") from exc


@login_required
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    collections = ingest_selectors.collection_with_counts(user=request.user)
    recent = selectors.question_list(user=request.user)[:10]
    return render(request, "portal/home.html", {"collections": collections, "recent": recent})


@login_required
@require_http_methods(["GET", "POST"])
def collection_detail(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    collection = collection_or_404(request, slug)
    can_manage = ingest_selectors.collection_may_manage(
        user=request.user, collection_id=collection.pk
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
            outcomes = actions.documents_upload(
                collection=collection,
                files=((f.name, f.read(), "") for f in upload_form.cleaned_data["files"]),
                user=request.user,
                meta=RequestMeta.from_request(request),
            )
            _upload_messages(request, outcomes)
            return redirect("portal:collection", slug=collection.slug)
    hide = must_redact(request.user)
    documents = ingest_selectors.document_list(collection=collection)
    patients = ingest_selectors.patient_list(collection=collection)
    progress = ingest_selectors.collection_progress(collection=collection)
    return render(
        request,
        "portal/collection.html",
        {
            "collection": collection,
            "documents": presenters.document_rows(documents, redact=hide),
            "progress": progress,
            "counts": _count_rows(progress),
            "pending": progress.pending > 0,
            "can_manage": can_manage,
            "can_erase": can_manage and ingest_selectors.user_sees_everything(request.user),
            "patients": presenters.patient_rows(patients, redact=hide),
            "upload_form": upload_form,
            "ask_form": AskForm(initial={"collection": collection.slug}),
        },
    )


def _names(outcomes: Sequence[UploadOutcome], limit: int = 20) -> str:
    names = [o.path or o.name for o in outcomes]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _upload_messages(request: HttpRequest, outcomes: Sequence[UploadOutcome]) -> None:
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


def _count_rows(progress: IngestProgress) -> list[tuple[str, int]]:
    known = [(s, progress.counts.get(s, 0)) for s in STATUS_ORDER]
    extra = [(s, n) for s, n in sorted(progress.counts.items()) if s not in STATUS_ORDER]
    return known + extra


@login_required
@require_GET
def collection_status(request: AuthenticatedHttpRequest, slug: str) -> JsonResponse:
    """Every document's state and the counts, for the collection page to poll."""
    collection = collection_or_404(request, slug)
    progress = ingest_selectors.collection_progress(collection=collection)
    documents = ingest_selectors.document_list(collection=collection).values(
        "id", "status", "status_message", "page_count", "chunk_count"
    )
    hide = must_redact(request.user)
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
                    "message": presenters.name_shown(d["status_message"], redact=hide),
                    "pages": d["page_count"],
                    "chunks": d["chunk_count"],
                }
                for d in documents
            ],
        }
    )


def _managedcollection_or_404(request: AuthenticatedHttpRequest, slug: str) -> Collection:
    collection = collection_or_404(request, slug)
    if not ingest_selectors.collection_may_manage(user=request.user, collection_id=collection.pk):
        raise Http404("No such page")
    return collection


@login_required
@require_POST
def collection_action(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Managers: cancel the collection's queued documents, or re-ingest all of it."""
    collection = _managedcollection_or_404(request, slug)
    action = request.POST.get("action")
    meta = RequestMeta.from_request(request)
    if action == "cancel":
        n = actions.collection_cancel(collection=collection, user=request.user, meta=meta)
        messages.success(request, f"{n} queued document(s) cancelled.")
    elif action == "reingest":
        n = actions.collection_reingest(collection=collection, user=request.user, meta=meta)
        messages.success(request, f"{n} document(s) queued for ingestion again.")
    else:
        messages.error(request, "Unknown action.")
    return redirect("portal:collection", slug=collection.slug)


@login_required
@require_POST
def document_action(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    """Managers: retry a failed (or cancelled) document, cancel a queued one, delete one;
    administrators also erase one (with its quotes in answers and the audit trail)."""
    collection = _managedcollection_or_404(request, slug)
    document = collection.documents.filter(pk=pk).defer("text").first()
    if document is None:
        raise Http404("No such document")
    action = request.POST.get("action")
    meta = RequestMeta.from_request(request)
    name = presenters.name_shown(document.name, redact=must_redact(request.user))
    if action == "retry":
        if actions.document_reingest(document=document, user=request.user, meta=meta):
            messages.success(request, f"{name} queued again.")
        else:
            messages.error(request, f"{name} cannot be retried: upload it again.")
    elif action == "cancel":
        if actions.document_cancel(document=document, user=request.user, meta=meta):
            messages.success(request, f"{name} cancelled.")
        else:
            messages.error(request, f"{name} is no longer queued.")
    elif action in {"delete", "erase"}:
        try:
            if action == "erase":
                actions.document_erase(
                    document=document, user=request.user, meta=meta, reason="erased in the portal"
                )
                messages.success(request, f"{name} erased with its quotes.")
            else:
                actions.document_delete(document=document, user=request.user, meta=meta)
                messages.success(request, f"{name} deleted with its passages.")
        except PermissionDenied as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Unknown action.")
    return redirect("portal:collection", slug=collection.slug)


@login_required
@require_GET
def document_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The document's extracted text with one passage highlighted and its page shown."""
    try:
        document = ingest_selectors.document_get(user=request.user, pk=pk)
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
    heading = chunk.heading if chunk is not None else ""
    hide = must_redact(request.user)
    if hide:
        before, passage, after = redact(before), redact(passage), redact(after)
        heading = redact(heading)
    attachments = document.attachments.defer("text").order_by("name")
    return render(
        request,
        "portal/document.html",
        {
            "document": document,
            "name": presenters.name_shown(document.name, redact=hide),
            "parent_name": presenters.name_shown(document.parent.name, redact=hide)
            if document.parent
            else "",
            "chunk": chunk,
            "heading": heading,
            "before": before,
            "passage": passage,
            "after": after,
            "may_download": ingest_selectors.document_may_download(
                user=request.user, document=document
            ),
            "attachments": [(a, presenters.name_shown(a.name, redact=hide)) for a in attachments],
        },
    )


@login_required
@require_GET
def document_download(request: AuthenticatedHttpRequest, pk: int) -> FileResponse:
    """The original file, for those allowed to download it (others get a 404)."""
    try:
        document = ingest_selectors.document_get(user=request.user, pk=pk)
    except ObjectDoesNotExist as exc:
        raise Http404("No such document") from exc
    if not document.file or not ingest_selectors.document_may_download(
        user=request.user, document=document
    ):
        raise Http404("No such document")
    return FileResponse(
        document.file.open("rb"),
        as_attachment=True,
        filename=document.name,
        content_type=document.mime_type or "application/octet-stream",
    )
