"""Shared machinery of the fake upstreams: scripted behaviours, the request log, replies, streaming."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_REPLY = "Hello from the fake upstream."
JSON_REPLY = '{"answer": "fake"}'
MALFORMED_JSON = b'{"id": "broken", "choices": [{"message": '


@dataclass(frozen=True)
class Behave:
    """How the fake answers one request. The defaults are a normal success.

    ``finish_reason`` is in the protocol's own vocabulary ("length", "max_tokens", "MAX_TOKENS").
    ``cached_tokens`` are part of the prompt tokens (Anthropic reports them as cache reads, outside
    ``input_tokens``); ``reasoning_tokens`` are added to the completion tokens (Gemini: thoughtsTokenCount).
    ``cache_write_5m_tokens`` and ``cache_write_1h_tokens`` are part of the prompt tokens too, after the
    cache reads (Anthropic only: ``cache_creation_input_tokens`` with its ``cache_creation`` split).
    ``stall`` seconds of silence follow the ``stall_after``-th content frame of a stream: a stream that
    stops mid-way, unlike ``chunk_delay``, which also delays the first content frame.
    """

    status: int | None = None
    error_type: str | None = None
    message: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    cut_after: int | None = None
    stream_error: bool = False
    no_usage: bool = False
    malformed: bool = False
    reset: bool = False
    text: str | None = None
    tool_call: dict[str, Any] | None = None
    finish_reason: str | None = None
    cached_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    server_tool_requests: int = 0  # Anthropic: web searches the model ran (usage.server_tool_use)
    reasoning_tokens: int = 0
    stall_after: int | None = None
    stall: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any  # parsed body, None when absent or not JSON
    body: bytes
    at: float = 0.0  # time.monotonic() when it arrived: tests measure the gaps between attempts


class UpstreamState:
    """What the handlers (event-loop thread) and the test (main thread) share, behind one lock."""

    def __init__(self, *, api_key: str | None, models: Sequence[str]) -> None:
        self.api_key = api_key
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._script: deque[Behave] = deque()
        self._ids = itertools.count(1)
        self._arrived = threading.Condition(self._lock)
        self._abandoned = 0

    def record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float) -> list[RecordedRequest]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"expected {count} upstream requests, got {len(self._requests)}")
            return list(self._requests)

    def script(self, behaviours: Iterable[Behave]) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def next_behaviour(self) -> Behave:
        with self._lock:
            return self._script.popleft() if self._script else Behave()

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def stream_abandoned(self) -> None:
        with self._lock:
            self._abandoned += 1

    def abandoned_streams(self) -> int:
        with self._lock:
            return self._abandoned

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}fake{next(self._ids):06d}"


STATE = web.AppKey("fake_upstream_state", UpstreamState)


# --- deterministic replies and token counts -------------------------------------------------

_PIECE = re.compile(r"\s*\S+")


def split_reply(text: str) -> list[str]:
    """The stream pieces of a reply: one per word, leading whitespace attached ("Hello", " from", ...)."""
    pieces: list[str] = _PIECE.findall(text)
    tail = text[sum(map(len, pieces)) :]
    if tail and pieces:
        pieces[-1] += tail
    elif tail:
        pieces = [tail]
    return pieces


def count_words(text: str) -> int:
    return len(text.split())


def tool_arguments(tool_call: dict[str, Any]) -> str:
    """The arguments as a JSON string; a str is sent verbatim (to script invalid JSON)."""
    arguments = tool_call.get("arguments", {})
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def completion_tokens(text: str, tool_call: dict[str, Any] | None = None) -> int:
    """Completion tokens of one reply: its pieces, plus 1 + the argument pieces of a tool call."""
    tokens = len(split_reply(text))
    if tool_call is not None:
        tokens += 1 + len(split_reply(tool_arguments(tool_call)))
    return tokens


@dataclass(frozen=True)
class Reply:
    pieces: list[str]
    tool_call: dict[str, Any] | None
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def argument_pieces(self) -> list[str]:
        return split_reply(tool_arguments(self.tool_call)) if self.tool_call is not None else []

    @property
    def tokens(self) -> int:
        return completion_tokens(self.text, self.tool_call)


def plan_reply(behave: Behave, *, json_mode: bool = False, max_tokens: object = None) -> Reply:
    """The reply to send; text replies longer than an integer ``max_tokens`` are truncated to it."""
    if behave.text is not None:
        text = behave.text
    elif behave.tool_call is not None:
        text = ""
    else:
        text = JSON_REPLY if json_mode else DEFAULT_REPLY
    pieces = split_reply(text)
    limit = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None
    truncated = behave.tool_call is None and limit is not None and len(pieces) > limit
    return Reply(pieces[:limit] if truncated else pieces, behave.tool_call, truncated)


# --- request handling -----------------------------------------------------------------------


@dataclass
class Call:
    request: web.Request
    state: UpstreamState
    behave: Behave
    body: Any

    def new_id(self, prefix: str) -> str:
        return self.state.new_id(prefix)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def endpoint(handler: Callable[[Call], Awaitable[web.StreamResponse]]) -> Handler:
    """Records the request, takes the next scripted behaviour, applies ``reset`` and ``delay``."""

    async def serve(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        body = await record(request)
        behave = state.next_behaviour()
        if behave.reset:
            reset_connection(request)
            return web.Response()
        if behave.delay:
            await asyncio.sleep(behave.delay)
        return await handler(Call(request, state, behave, body))

    return serve


async def record(request: web.Request) -> Any:
    """Logs the request; returns its parsed JSON body (None when absent or invalid)."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    request.app[STATE].record(
        RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={name.lower(): value for name, value in request.headers.items()},
            json=body,
            body=raw,
            at=time.monotonic(),
        )
    )
    return body


def reset_connection(request: web.Request) -> None:
    """Abort with a TCP reset: no status line, no bytes."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def cut_connection(request: web.Request) -> None:
    """Close after flushing what was written: the chunked body ends without its terminating chunk."""
    transport = request.transport
    if transport is not None:
        transport.close()


def json_response(payload: object, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload).encode(), content_type="application/json", headers=headers
    )


def malformed_response(headers: dict[str, str]) -> web.Response:
    return web.Response(status=200, body=MALFORMED_JSON, content_type="application/json", headers=headers)


@dataclass(frozen=True)
class Frame:
    data: bytes
    content: bool = False  # counts for cut_after; stream_error is injected after the first one


async def send_stream(
    call: Call,
    frames: Sequence[Frame],
    *,
    headers: dict[str, str],
    content_type: str = "text/event-stream; charset=utf-8",
    error_frame: bytes | None = None,
) -> web.StreamResponse:
    """Writes the frames with ``chunk_delay`` between them, honouring ``cut_after`` and ``stream_error``.

    ``cut_after=N`` closes the connection after min(N, content frames) content frames, so whatever
    follows the content (finish reason, usage, terminator) is never sent.
    """
    behave = call.behave
    response = web.StreamResponse(status=200, headers={**headers, "Content-Type": content_type})
    response.headers.setdefault("Cache-Control", "no-cache")
    await response.prepare(call.request)
    total = sum(frame.content for frame in frames)
    cut = None if behave.cut_after is None else min(behave.cut_after, total)
    try:
        return await _write_frames(call, response, frames, cut=cut, error_frame=error_frame)
    except (asyncio.CancelledError, ConnectionResetError):
        # The client (the gateway) went away mid-stream: tests assert on it.
        call.state.stream_abandoned()
        raise


async def _write_frames(
    call: Call, response: web.StreamResponse, frames: Sequence[Frame], *, cut: int | None, error_frame: bytes | None
) -> web.StreamResponse:
    behave = call.behave
    sent = 0
    for position, frame in enumerate(frames):
        if frame.content and cut is not None and sent >= cut:
            cut_connection(call.request)
            return response
        if position and behave.chunk_delay:
            await asyncio.sleep(behave.chunk_delay)
        await response.write(frame.data)
        if not frame.content:
            continue
        sent += 1
        if behave.stream_error and error_frame is not None:
            await response.write(error_frame)
            return response
        if cut is not None and sent >= cut:
            cut_connection(call.request)
            return response
        if sent == behave.stall_after:
            await asyncio.sleep(behave.stall)
    return response


def sse(payload: object, *, event: str | None = None, separator: str = "\n\n") -> bytes:
    prefix = f"event: {event}\n" if event is not None else ""
    return f"{prefix}data: {json.dumps(payload)}{separator}".encode()


def bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None
