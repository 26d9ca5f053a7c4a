"""ASGI wrappers that run before Django sees a request.

They sit outside Django so that they hold for every response, Django's own
error pages and a refused upload included, and cost no thread hop.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from oneflow.lib.errors import error_body
from oneflow.lib.jsonlog import client_request_id_var, request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: Django's and uvicorn's own ASGI types differ in detail.
ASGIApp = Callable[..., Awaitable[None]]

_CLIENT_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_ID_HEADERS = frozenset({b"x-request-id", b"x-client-request-id"})


def _client_request_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The client's own id of the request, if it sent a sane one."""
    sent = dict(headers)
    for name in (b"x-client-request-id", b"x-request-id"):
        value = sent.get(name, b"")
        if _CLIENT_REQUEST_ID.match(value):
            return value
    return None


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Gives every request an id of the server's own, echoed as ``x-request-id``.

    The id is the gateway's billing key (one usage event and one charge per id),
    so a client never chooses it: an id sent by the client (``x-client-request-id``,
    OpenAI's header, or ``x-request-id`` from a proxy in front) is kept beside it
    when well formed, echoed as ``x-client-request-id`` and logged, so that one id
    still follows the request across systems.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_id = new_request_id().encode()
        client_id = _client_request_id(scope["headers"])
        ours = [(b"x-request-id", raw_id), *([(b"x-client-request-id", client_id)] if client_id else [])]
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in _ID_HEADERS] + ours
        token = request_id_var.set(raw_id.decode())
        client_token = client_request_id_var.set(client_id.decode() if client_id else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() not in _ID_HEADERS),
                    *ours,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client_request_id_var.reset(client_token)
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with 413 in the API's format.

    A declared ``Content-Length`` over the limit is refused before reading a
    byte. A chunked body is counted as it arrives: past the limit the app is
    told the client went away (Django then drops the request without a
    response) and the 413 is sent here.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
        if exceeded and not started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"Request body is larger than the limit of {self.limit} bytes."
        body = error_body(message, status_code=413, code="request_too_large")
        if scope.get("path", "").startswith("/v1/messages"):
            body = {"type": "error", "error": {"type": "request_too_large", "message": message}}
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            },
        )
        await send({"type": "http.response.body", "body": payload})


# Coroutines the web process runs at shutdown, registered by the apps it
# mounts (the proxy flushes what it still holds) before connections close.
shutdown_hooks: list[Callable[[], Awaitable[None]]] = []


class LifespanMiddleware:
    """Answers ASGI lifespan events (Django does not) and runs start/stop hooks."""

    def __init__(
        self, app: ASGIApp, *, on_startup: Callable[[], None], on_shutdown: Callable[[], Awaitable[None]]
    ) -> None:
        self.app = app
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


class PathRouter:
    """Sends HTTP requests under a path prefix to another ASGI app, the rest to ``default``."""

    def __init__(self, default: ASGIApp, mounts: dict[str, ASGIApp]) -> None:
        self.default = default
        self.mounts = tuple(mounts.items())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, app in self.mounts:
                if path.startswith(prefix):
                    await app(scope, receive, send)
                    return
        await self.default(scope, receive, send)
