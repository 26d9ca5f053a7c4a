"""One error format for every JSON API of OneFlow.

The body is OpenAI's: ``{"error": {"message", "type", "param", "code"}}``. The
official SDKs pick their exception class from the status alone, so each error
here pairs the status with the type the SDKs and their users expect.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_is_overloaded",
}


def error_body(
    message: str,
    *,
    status_code: int,
    type: str | None = None,  # noqa: A002 - the wire name
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": type or TYPE_BY_STATUS.get(status_code, "server_error"),
            "param": param,
            "code": code,
        },
    }


def error_response(message: str, *, status_code: int, **fields: Any) -> JsonResponse:
    return JsonResponse(error_body(message, status_code=status_code, **fields), status=status_code)


def _flatten(detail: Any, path: str = "") -> list[tuple[str, str]]:
    """Field errors from DRF's nested detail, as (dotted.path, message) pairs."""
    if isinstance(detail, dict):
        return [pair for key, value in detail.items() for pair in _flatten(value, f"{path}.{key}" if path else key)]
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [(path, str(item)) for item in detail]
        return [pair for i, item in enumerate(detail) for pair in _flatten(item, f"{path}[{i}]")]
    return [(path, str(detail))]


def _validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    pairs = _flatten(exc.detail)
    message = "; ".join(f"{field}: {text}" if field and field != "non_field_errors" else text for field, text in pairs)
    param = next((field for field, _ in pairs if field and field != "non_field_errors"), None)
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else None
    return error_body(message or "Invalid request.", status_code=400, param=param, code=code)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with OneFlow's error body in place of ``{"detail": ...}``."""
    if isinstance(exc, ServiceError):
        body = error_body(exc.message, status_code=exc.status_code, code=exc.code, param=exc.param)
        return Response(body, status=exc.status_code)
    if isinstance(exc, Ratelimited):
        exc = exceptions.Throttled(wait=60, detail="Too many attempts; try again in a minute.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc)
        return response
    detail = getattr(exc, "detail", str(exc))
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    if isinstance(detail, dict):  # simplejwt: {"detail": ..., "code": ..., "messages": [...]}
        codes = detail.get("code")
        detail = detail.get("detail", "Authentication failed.")
    response.data = error_body(
        str(detail),
        status_code=response.status_code,
        code=str(codes) if isinstance(codes, str) else None,
    )
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def ratelimited_view(request: HttpRequest, exception: Exception) -> HttpResponse:
    response = error_response("Too many attempts; try again in a minute.", status_code=429, code="rate_limited")
    response["Retry-After"] = "60"
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_response(f"No route for {request.method} {request.path}.", status_code=404, code="not_found")
    return page_not_found(request, exception or Exception())


def server_error_view(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return error_response("The server had an error processing your request.", status_code=500)
    return server_error(request)


class ServiceError(Exception):
    """A business rule said no. Interfaces render it; services raise it."""

    status_code = 400
    default_code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param


class InvalidInput(ServiceError):
    pass


class NotAllowed(ServiceError):
    status_code = 403
    default_code = "permission_denied"


class NotFound(ServiceError):
    status_code = 404
    default_code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    default_code = "conflict"
