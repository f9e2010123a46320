"""The compliance workspace: read-only review of the audit trail (compliance officer role)."""

from __future__ import annotations

import re
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils.html import escape
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET, require_POST

from ingest.redaction import must_redact, redact, redact_value

from . import compliance
from .append import RequestMeta
from .downloads import EXPORT_FORMATS, export_response, receipt_response
from .models import AuditEvent, ChainCheck
from .verify import audit_verify

if TYPE_CHECKING:
    from collections.abc import Callable

PERMISSION = "audit.review_audit"

_P = ParamSpec("_P")
_R = TypeVar("_R", bound=HttpResponseBase)


def reviewer_required(
    view: Callable[Concatenate[HttpRequest, _P], _R],
) -> Callable[Concatenate[HttpRequest, _P], _R]:
    """Compliance officers (and administrators) only; anyone else gets a 404."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not request.user.has_perm(PERMISSION):
            raise Http404("No such page")
        return view(request, *args, **kwargs)

    return wrapper


def _badge() -> ChainCheck | None:
    return ChainCheck.objects.order_by("-checked_at").first()


@require_GET
@reviewer_required
def event_list(request: HttpRequest) -> HttpResponse:
    filters = compliance.AuditFilter.from_params(request.GET)
    try:
        before = int(request.GET.get("before") or 0) or None
    except ValueError:
        before = None
    hidden = must_redact(request.user)
    refused = compliance.filter_refusal(filters) if hidden else {}
    rows, next_before = (
        ([], None)
        if refused
        else compliance.audit_page(filters=filters, before_id=before, size=settings.AUDIT_PAGE_SIZE)
    )
    if hidden:
        for event in rows:  # shown, never saved
            event.summary = redact(event.summary, loose=True)
    params = filters.as_params()
    return render(
        request,
        "compliance/list.html",
        {
            "filters": filters,
            "rows": rows,
            "event_types": AuditEvent.Type.choices,
            "next_url": "?" + urlencode({**params, "before": str(next_before)})
            if next_before
            else "",
            "first_url": "?" + urlencode(params) if before else "",
            "query": urlencode(params),
            "badge": _badge(),
            "refused": list(refused.values()),
            **_patient_report(request, filters, refused="patient" in refused),
        },
    )


def _patient_report(
    request: HttpRequest, filters: compliance.AuditFilter, *, refused: bool
) -> dict[str, Any]:
    """Who the patient filter found (the report's heading, or the candidates to choose from),
    and name suggestions for the filter field. Names are shown only to reviewers who may see
    identifiers; the others see patient numbers, and search by them (`refused` otherwise)."""
    hidden = must_redact(request.user)
    found = compliance.patient_lookup(filters.patient) if filters.patient and not refused else []
    candidates = [
        {
            "id": p.patient_id,
            "label": f"patient #{p.patient_id}"
            if hidden
            else f"{p.name} (born {p.birth_date or 'unknown'})",
            "url": "?" + urlencode({**filters.as_params(), "patient": f"#{p.patient_id}"}),
        }
        for p in found
    ]
    suggestions = [] if hidden else compliance.patient_suggestions()
    return {"patient_matches": candidates, "patient_suggestions": suggestions}


@require_GET
@reviewer_required
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        event = AuditEvent.objects.get(pk=pk)
    except AuditEvent.DoesNotExist as exc:
        raise Http404("No such entry") from exc
    payload = event.payload if isinstance(event.payload, dict) else {}
    if must_redact(request.user):
        payload = redact_value(payload)
        event.summary = redact(event.summary, loose=True)
    is_answer = event.event_type in compliance.ANSWER_TYPES and not event.redacted
    return render(
        request,
        "compliance/detail.html",
        {
            "event": event,
            "is_answer": is_answer,
            "payload": payload,
            "answer_html": compliance_answer_html(payload) if is_answer else "",
            "payload_json": _pretty(payload),
            "badge": _badge(),
        },
    )


@require_GET
@reviewer_required
def event_receipt(request: HttpRequest, pk: int) -> HttpResponse:
    """Any entry's receipt for reviewers (202 while pending, 409 when there can be none)."""
    try:
        event = AuditEvent.objects.get(pk=pk)
    except AuditEvent.DoesNotExist as exc:
        raise Http404("No such entry") from exc
    return receipt_response(event)


_CITATION = re.compile(r"\[(\d{1,2})\]")


def compliance_answer_html(payload: dict[str, Any]) -> SafeString:
    """The recorded answer escaped, each [n] naming a recorded passage a link to it below."""
    shown = {p.get("n") for p in payload.get("passages", []) if isinstance(p, dict)}

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in shown:
            return match.group(0)
        return f'<a class="cite" href="#source-{n}" data-n="{n}">[{n}]</a>'

    return mark_safe(_CITATION.sub(link, str(escape(str(payload.get("answer", ""))))))  # noqa: S308


def _pretty(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)


@require_GET
@reviewer_required
def dashboard(request: HttpRequest) -> HttpResponse:
    series = compliance.dashboard_series(days=30)
    charts = [
        ("Questions per day", compliance.bar_chart([d.questions for d in series])),
        ("Refusals per day", compliance.bar_chart([d.refusals for d in series])),
        (
            "Unsupported-claim rate per day (%)",
            compliance.bar_chart([round(100 * d.unsupported_rate, 1) for d in series]),
        ),
        ("Failed sign-ins per day", compliance.bar_chart([d.failed_logins for d in series])),
    ]
    totals = {
        "questions": sum(d.questions for d in series),
        "refusals": sum(d.refusals for d in series),
        "unsupported": sum(d.unsupported for d in series),
        "failed_logins": sum(d.failed_logins for d in series),
    }
    return render(
        request,
        "compliance/dashboard.html",
        {"charts": charts, "series": series, "totals": totals, "badge": _badge()},
    )


@require_GET
@reviewer_required
def export(request: HttpRequest, fmt: str) -> StreamingHttpResponse | HttpResponseBadRequest:
    if fmt not in EXPORT_FORMATS:
        raise Http404("Export as .csv or .jsonl")
    filters = compliance.AuditFilter.from_params(request.GET)
    refused = compliance.filter_refusal(filters) if must_redact(request.user) else {}
    if refused:
        return HttpResponseBadRequest(" ".join(refused.values()), content_type="text/plain")
    return export_response(
        filters=filters,
        fmt=fmt,
        redact=request.GET.get("redact") in {"1", "on", "true"} or must_redact(request.user),
        user=request.user,
        meta=RequestMeta.from_request(request),
    )


@require_POST
@reviewer_required
def verify(request: HttpRequest) -> HttpResponse:
    report = audit_verify(record=True)
    if report.ok:
        messages.success(
            request,
            f"Chain intact: {report.entries} entries verified ({report.redacted} redacted).",
        )
    else:
        messages.error(request, f"Chain BROKEN at entry {report.first_broken_id}: {report.reason}.")
    return redirect("compliance:list")
