"""Downloads of the trail, one response shape each: an entry's receipt, the record its
payload hash covers, and the audited export. The portal, the workspace and the API use them
after their own permission checks."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from . import compliance, receipts
from .append import RequestMeta, audit_record
from .models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

EXPORT_FORMATS = ("csv", "jsonl")


def receipt_response(event: AuditEvent) -> HttpResponse:
    """The entry's receipt as a JSON download; 202 while pending, 409 when there can be none."""
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


def record_response(event: AuditEvent) -> HttpResponse:
    """The exact record the receipt's payload hash covers (for verify_receipt.py --payload)."""
    try:
        record = receipts.entry_record(event)
    except receipts.ReceiptUnavailable as exc:
        return JsonResponse({"status": "unavailable", "reason": exc.reason}, status=409)
    response = HttpResponse(record, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="attest-record-{event.id}.json"'
    return response


def export_response(
    *,
    filters: compliance.AuditFilter,
    fmt: str,
    redact: bool,
    user: AbstractBaseUser | AnonymousUser,
    meta: RequestMeta,
    via: str = "",
) -> StreamingHttpResponse:
    """The filtered trail as CSV or JSONL. The export is recorded before any row leaves, in
    its own committed entry; `via` names the surface when it is not the workspace ("api")."""
    count = compliance.audit_query(filters=filters).count()
    payload = {"format": fmt, "filters": filters.as_dict(), "entries": count}
    if via:
        payload["via"] = via
    payload["redact"] = redact
    audit_record(
        event_type=AuditEvent.Type.AUDIT_EXPORTED,
        actor=user,
        meta=meta,
        summary=f"Exported {count} entries as {fmt}" + (f" ({via.upper()})" if via else ""),
        payload=payload,
    )
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    response = StreamingHttpResponse(
        compliance.export_lines(filters=filters, fmt=fmt, redact=redact),
        content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
    )
    response["Content-Disposition"] = f'attachment; filename="attest-audit-{stamp}.{fmt}"'
    return response
