"""The lean ASGI plumbing of the proxy API: requests in, JSON and SSE out.

The /v1 path bypasses Django's request handler on purpose: Django's
ASGIHandler spends ~3 ms of CPU per request in thread hops and middleware
(DESIGN.md "The hot path"), more than everything else the gateway does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from oneflow.lib import json

if TYPE_CHECKING:
    from gateway.core import Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientGone(Exception):
    """The client closed the connection before we finished."""


class Request:
    __slots__ = (
        "extra_headers",
        "gateway",
        "headers",
        "method",
        "path",
        "receive",
        "request_id",
        "response_started",
        "scope",
        "send",
        "started",
        "started_wall",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, gateway: Gateway) -> None:
        self.gateway = gateway  # the worker's clients and state (gateway.core)
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.request_id = self.headers.get("x-request-id", "")
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.response_started = False
        # Sent with whatever response this request gets (CORS, for one).
        self.extra_headers: dict[str, str] = {}

    async def body(self) -> bytes:
        chunks = []
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


def _header_list(request: Request, headers: dict[str, str] | None, content_type: bytes) -> list[tuple[bytes, bytes]]:
    raw = [(b"content-type", content_type)]
    for source in (request.extra_headers, headers or {}):
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in source.items()]
    return raw


async def send_json(request: Request, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload)
    raw = [*_header_list(request, headers, b"application/json"), (b"content-length", str(len(body)).encode())]
    request.response_started = True
    await request.send({"type": "http.response.start", "status": status, "headers": raw})
    await request.send({"type": "http.response.body", "body": body})


async def start_stream(request: Request, headers: dict[str, str] | None = None) -> None:
    raw = _header_list(request, headers, b"text/event-stream; charset=utf-8")
    # No buffering by proxies in front (nginx honours X-Accel-Buffering).
    raw += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
    request.response_started = True
    await request.send({"type": "http.response.start", "status": 200, "headers": raw})


async def send_chunk(request: Request, data: bytes) -> None:
    await request.send({"type": "http.response.body", "body": data, "more_body": True})


async def end_stream(request: Request) -> None:
    await request.send({"type": "http.response.body", "body": b"", "more_body": False})


def raw_key(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip() or None
