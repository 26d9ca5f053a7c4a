"""The proxy API as a lean ASGI application, mounted at /v1 by oneflow.asgi
(through settings.ONEFLOW_PROXY_APP, since nothing but the routing app may
import the gateway)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from django.conf import settings
from opentelemetry import trace
from opentelemetry.trace import Span

from gateway import anthropic_api, idempotency, openai_api, protocol, responses_api
from gateway.core import Gateway
from gateway.errors import GatewayError, bearer_challenge
from gateway.protocol import ClientGone, Message, Receive, Request, Scope, Send
from oneflow.lib import tracing
from oneflow.lib.asgi import send_error, speaks_anthropic

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[None]]

ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): openai_api.chat_completions,
    ("POST", "/v1/embeddings"): openai_api.embeddings,
    ("POST", "/v1/responses"): responses_api.responses,
    ("GET", "/v1/models"): openai_api.models_list,
    ("POST", "/v1/messages"): anthropic_api.messages,
    ("POST", "/v1/messages/count_tokens"): anthropic_api.count_tokens,
}


def _is_anthropic(request: Request) -> bool:
    return speaks_anthropic(request.path, names_version="anthropic-version" in request.headers)


async def _render_error(request: Request, error: GatewayError) -> None:
    span = trace.get_current_span()
    if error.code and span.is_recording():
        span.set_attribute("oneflow.error.code", error.code)
    headers = dict(error.headers)
    if error.status == 401:
        key_sent = bool(request.headers.get("authorization") or request.headers.get("x-api-key"))
        headers.setdefault("www-authenticate", bearer_challenge(key_sent=key_sent))
    if _is_anthropic(request):
        headers["request-id"] = request.request_id
        body = error.anthropic_body(request.request_id)
    else:
        body = error.openai_body()
    await protocol.send_json(request, error.status, body, headers)


def _cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if not origin or origin not in settings.CORS_ALLOWED_ORIGINS:
        return {}
    return {"access-control-allow-origin": origin, "vary": "origin"}


async def _preflight(request: Request) -> None:
    headers = _cors_headers(request)
    if headers:
        headers.update(
            {
                "access-control-allow-methods": "GET, POST, OPTIONS",
                "access-control-allow-headers": request.headers.get("access-control-request-headers", "*"),
                "access-control-max-age": "86400",
            },
        )
    await request.send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await request.send({"type": "http.response.body", "body": b""})


def _route(request: Request) -> Handler | None:
    handler = ROUTES.get((request.method, request.path))
    if handler is None and request.method == "GET" and request.path.startswith("/v1/models/"):
        model_id = request.path.removeprefix("/v1/models/")
        return lambda r: openai_api.model_retrieve(r, model_id)
    return handler


def _http_route(request: Request) -> str:
    """The route template a request matched, "" for none: a span name must not carry ids."""
    if (request.method, request.path) in ROUTES:
        return request.path
    if request.method == "GET" and request.path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return ""


def _traced(request: Request, span: Span) -> None:
    """Describes a recorded request's span, and notes its status as the answer starts."""
    route = _http_route(request)
    span.update_name(f"{request.method} {route}" if route else request.method)
    span.set_attributes(
        {
            "http.request.method": request.method,
            "http.route": route,
            "oneflow.request_id": request.request_id,
            "user_agent.original": request.headers.get("user-agent", ""),
        }
    )
    send = request.send

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            span.set_attribute("http.response.status_code", status)
            if status >= 500:  # a 4xx is the client's error, not the server span's (HTTP semconv)
                tracing.failed(span, str(status))
        await send(message)

    request.send = noting


class GatewayApp:
    """The /v1 ASGI app of one worker. ``start()`` (at lifespan startup) opens the
    worker's Gateway; ``stop()`` (at shutdown) closes it. Requests before the
    start or after the stop are refused with 503, never served half-built.

    Run alone (``uvicorn --factory gateway.asgi:GatewayApp``) it answers lifespan
    events itself; mounted by oneflow.asgi, the server's lifespan calls both.
    """

    def __init__(self) -> None:
        self.gateway: Gateway | None = None

    async def start(self) -> None:
        if self.gateway is None:
            self.gateway = Gateway.open()

    async def stop(self) -> None:
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            await gateway.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        gateway = self.gateway
        if gateway is None:
            logger.error("a /v1 request arrived while the gateway is not started (ASGI lifespan off?)")
            message = "The gateway is starting or stopping; try again."
            await send_error(scope, send, 503, message, code="gateway_unavailable", anthropic_type="overloaded_error")
            return
        request = Request(scope, receive, send, gateway)
        with tracing.server_span(request.method, request.headers) as span:
            if span.is_recording():
                _traced(request, span)
            if request.method == "OPTIONS":
                await _preflight(request)
                return
            request.extra_headers = _cors_headers(request)
            await idempotency.guarded(request, _dispatch, render_error=_render_error)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _dispatch(request: Request) -> None:
    handler = _route(request)
    try:
        if handler is None:
            known = any(path == request.path for _, path in ROUTES)
            status = 405 if known else 404
            raise GatewayError(status, f"No route for {request.method} {request.path}.", code="not_found")
        await handler(request)
    except GatewayError as error:
        if not request.response_started:
            await _render_error(request, error)
    except ClientGone:
        return
    except Exception:
        logger.exception("proxy request failed")
        if not request.response_started:
            await _render_error(request, GatewayError(500, "The server had an error processing your request."))
