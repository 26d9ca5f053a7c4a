"""ASGI wrappers that run before Django sees a request.

They sit outside Django so that they hold for every response, Django's own
error pages and a refused upload included, and cost no thread hop.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

logger = logging.getLogger(__name__)

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


def speaks_anthropic(path: str, *, names_version: bool) -> bool:
    """Whether an error goes out in Anthropic's shape: on its paths, and on any path to
    a client that names an Anthropic API version (every Anthropic SDK does)."""
    return path.startswith("/v1/messages") or names_version


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    *,
    code: str,
    anthropic_type: str = "invalid_request_error",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """An answer of these wrappers' own, in the shape the path's clients parse:
    Anthropic's on /v1/messages, OpenAI's (which /api shares) everywhere else."""
    sent = dict(scope["headers"])
    if speaks_anthropic(scope.get("path", ""), names_version=b"anthropic-version" in sent):
        request_id = sent.get(b"x-request-id", b"").decode("latin-1")
        body: dict[str, Any] = {"type": "error", "error": {"type": anthropic_type, "message": message}}
        body |= {"request_id": request_id} if request_id else {}
    else:
        body = error_body(message, status_code=status, code=code)
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*raw, *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class RequestBodyMiddleware:
    """Bounds a request body in size (413) and in time (408), in one wrapper.

    Size: a declared ``Content-Length`` over ``limit`` is refused before a byte
    is read; a chunked body is counted as it arrives, and past the limit the app
    is told the client went away (Django then drops the request without
    answering) and the 413 is sent here.

    Time: a client that sends its headers and then drips the body would hold a
    connection forever (uvicorn has no body timeout and restarts its keep-alive
    timer on every byte). Past ``seconds`` after the headers the app is told the
    client went away and 408 is sent with ``Connection: close``.

    An answer that starts before the body is complete (the 413, say) first waits
    for the rest of it, within the same deadline, and throws it away: closing on
    unread data would reset the connection and lose the answer to an honest
    client still sending, while keeping it open would let the server read a drip
    with no deadline at all. Past the deadline the answer goes out with
    ``Connection: close``.
    """

    def __init__(self, app: ASGIApp, *, limit: int, seconds: float) -> None:
        self.app = app
        self.limit = limit
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(receive, deadline=asyncio.get_running_loop().time() + self.seconds, limit=self.limit)
        # Nothing to wait for without a body (a GET): the app may never call receive().
        body.complete = not _has_body(scope["headers"])

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                body.started = True
                await body.drain()
                if not body.complete:
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            body.exceeded = True
        else:
            await self.app(scope, body.receive, guarded_send)
        if body.started:
            return
        if body.exceeded:
            message = f"Request body is larger than the limit of {self.limit} bytes."
            await send_error(
                scope, guarded_send, 413, message, code="request_too_large", anthropic_type="request_too_large"
            )
        elif body.timed_out:
            logger.warning("request body not received in time", extra={"path": scope.get("path", "")})
            message = f"The request body was not received within {self.seconds:g} seconds."
            close = [(b"connection", b"close")]
            await send_error(
                scope, send, 408, message, code="request_timeout", anthropic_type="timeout_error", headers=close
            )


class _Body:
    """One request's body as the app reads it: counted, and read before a deadline."""

    def __init__(self, receive: Receive, *, deadline: float, limit: int) -> None:
        self._receive = receive
        self.deadline = deadline
        self.limit = limit
        self.seen = 0
        self.complete = self.exceeded = self.timed_out = self.started = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._read()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def _read(self) -> Message:
        if self.timed_out:
            return {"type": "http.disconnect"}
        if self.complete:
            # After the body, receive() waits for a disconnect as long as a response runs.
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            return {"type": "http.disconnect"}
        self.complete = message["type"] != "http.request" or not message.get("more_body")
        return message

    async def drain(self) -> None:
        """Reads and drops the rest of the body, until it ends, the client leaves or time is up."""
        while not self.complete and not self.timed_out:
            if (await self._read())["type"] == "http.disconnect":
                return


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


class SecurityHeadersMiddleware:
    """Adds ``headers`` to every answer that does not set them itself.

    Django's SecurityMiddleware covers the responses that pass through Django's
    middleware; this covers the rest: the /v1 proxy (JSON, event streams and
    errors), the answers of the wrappers here (413, 408) and the few answers
    Django's handler sends before any middleware runs.
    """

    def __init__(self, app: ASGIApp, *, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def decorating_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [header for header in self.headers if header[0] not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, decorating_send)


class LifespanMiddleware:
    """Answers ASGI lifespan events (Django does not) and runs start/stop hooks."""

    def __init__(
        self, app: ASGIApp, *, on_startup: Callable[[], Awaitable[None]], on_shutdown: Callable[[], Awaitable[None]]
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
                try:
                    await self.on_startup()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
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
