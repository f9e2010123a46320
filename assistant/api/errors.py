"""Every API error is JSON: {"error": "...", "status": N} (plus "fields" for bad input)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def _flatten(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, ObjectDoesNotExist):
        exc = Http404()
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": "Request body too large.", "status": 413}, status=413)
    if isinstance(exc, SuspiciousOperation | MultiPartParserError | UnicodeDecodeError):
        return Response({"error": f"Malformed request: {exc}", "status": 400}, status=400)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            {"error": "Internal error; the server log has the details.", "status": 500},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, Http404):
        message = str(exc) if str(exc) else "Not found."
    elif isinstance(exc, PermissionDenied):
        message = str(exc) or "You may not do this."
    elif isinstance(exc, exceptions.ValidationError):
        body = {"error": "Invalid request: " + _flatten(exc.detail), "status": 400}
        if isinstance(exc.detail, dict):
            body["fields"] = exc.detail
        response.data = body
        return response
    elif isinstance(exc, exceptions.APIException):
        message = _flatten(exc.detail)
    else:
        message = str(exc)
    response.data = {"error": message, "status": response.status_code}
    return response


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/v1/ get JSON too, not the HTML 404 page."""
    return JsonResponse(
        {"error": f"No API endpoint at {request.path}; see /api/v1/schema.", "status": 404},
        status=404,
    )
