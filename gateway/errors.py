"""Errors of the proxy API, rendered exactly as the official SDKs expect them
(PROTOCOLS.md §1.4 for OpenAI, §2.2 for Anthropic)."""

from __future__ import annotations

from typing import Any

from oneflow.lib.errors import TYPE_BY_STATUS

# OpenAI's error type by status; anything else is a server_error.
OPENAI_TYPES = {**TYPE_BY_STATUS, 401: "invalid_request_error", 404: "invalid_request_error"}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """Ends a proxy request with an error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,  # noqa: A002 - the wire name
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.headers = dict(headers or {})
        if retryable is False:
            # The SDKs retry 429/5xx unless told that it cannot help.
            self.headers["x-should-retry"] = "false"

    def openai_body(self) -> dict[str, Any]:
        kind = self.type or OPENAI_TYPES.get(self.status, "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def anthropic_body(self, request_id: str) -> dict[str, Any]:
        kind = ANTHROPIC_TYPES.get(self.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}, "request_id": request_id}


def bearer_challenge(*, key_sent: bool) -> str:
    """``WWW-Authenticate`` of every 401 (RFC 9110 §11.6.1) in RFC 6750's form:
    ``error="invalid_token"`` only when a key was sent, since a request that sent
    none gets no error code (RFC 6750 §3.1)."""
    realm = 'Bearer realm="OneFlow"'
    return f'{realm}, error="invalid_token"' if key_sent else realm


def invalid_key(message: str | None = None) -> GatewayError:
    return GatewayError(
        401,
        message or "Incorrect API key provided. You can find your API keys in the OneFlow dashboard.",
        code="invalid_api_key",
        type="invalid_request_error",
    )


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def model_not_found(name: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{name}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )
