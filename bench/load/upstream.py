"""A fake OpenAI chat-completions upstream, fast enough to share two cores with the gateway.

Raw asyncio protocol on uvloop with httptools' C parser: no framework between the socket
and the answer, about a tenth of the CPU of an ASGI app. It answers

    POST …/chat/completions   JSON, or SSE chunks when "stream": true (usage in the last
                              chunk when stream_options.include_usage), as OpenAI does
    GET  …/models             the model list
    GET  /__fake/stats        counters: requests, streams, injected errors, connections
    POST /__fake/stall?ms=N   hold every answer byte due in the next N ms until then
    GET  /health

A request's answer length and timing come from the ``[fake id=.. tokens=.. first_ms=..]``
instruction its prompt carries (bench/load/traffic.py): the first byte goes out after
``first_ms``, then one SSE event per ``--chunk-tokens`` tokens at ``--token-rate``. A request
without one (the gateway's health probes) gets a short answer at once and never an error.
Errors are drawn per attempt from a hash of (seed, request id, attempt), so a request the
gateway retries can succeed the second time, and the same run draws the same errors.

    python -m bench.load.upstream --port 18081 [--error-share 0.02] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
import zlib
from collections.abc import Callable
from typing import cast

import httptools
import orjson
import uvloop

WORDS = ("The quick brown fox jumps over the lazy dog while the farmer counts his sheep again. " * 400).encode()
INSTRUCTION = re.compile(rb"\[fake id=(\d+) tokens=(\d+) first_ms=([\d.]+)\]")
STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
MODELS = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "fake"}],
    }
)
ERROR = b'{"error":{"message":"The fake upstream failed on purpose.","type":"server_error","code":null}}'
ERROR_GENERATIONS_SECONDS = 60.0  # how long a request's failed attempts are remembered


class Upstream:
    """The server's settings and counters, shared by its connections."""

    def __init__(self, *, error_share: float, seed: int, token_rate: float, chunk_tokens: int) -> None:
        self.error_share = error_share
        self.seed = seed
        self.chunk_tokens = max(1, chunk_tokens)
        self.chunk_seconds = self.chunk_tokens / token_rate
        self.stall_until = 0.0
        self.stats: dict[str, int] = {
            "requests": 0,
            "chat": 0,
            "streams": 0,
            "errors_injected": 0,
            "connections": 0,
            "open_connections": 0,
            "max_open_connections": 0,
            "aborted": 0,
        }
        # Failed attempts by request id, in two generations: a retry comes within seconds,
        # and memory must not grow over an hour's soak.
        self._failed: dict[int, int] = {}
        self._failed_before: dict[int, int] = {}
        self._rotated = time.monotonic()

    def attempt_fails(self, request_id: int) -> bool:
        now = time.monotonic()
        if now - self._rotated > ERROR_GENERATIONS_SECONDS:
            self._failed_before, self._failed, self._rotated = self._failed, {}, now
        attempt = self._failed.get(request_id) or self._failed_before.get(request_id) or 0
        draw = zlib.crc32(b"%d:%d" % (request_id, attempt), self.seed) / 2**32
        if draw < self.error_share:
            self._failed[request_id] = attempt + 1
            return True
        return False

    def due(self, loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], None]) -> None:
        """Runs ``callback`` after ``delay`` seconds, or at the end of a stall if later."""
        at = time.monotonic() + delay
        if at < self.stall_until:
            delay += self.stall_until - at
        if delay <= 0:
            callback()
        else:
            loop.call_later(delay, callback)


class Connection(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.busy = False  # an answer is being written; a pipelined request waits for it
        self.waiting: list[tuple[bytes, bytes, bytes, bool]] = []

    # --- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        stats = self.upstream.stats
        stats["connections"] += 1
        stats["open_connections"] += 1
        stats["max_open_connections"] = max(stats["max_open_connections"], stats["open_connections"])

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.stats["open_connections"] -= 1
        if self.busy:
            self.upstream.stats["aborted"] += 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", close=True)

    # --- httptools
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = (self.parser.get_method(), self.url, b"".join(self.body), self.parser.should_keep_alive())
        if self.busy:
            self.waiting.append(request)
        else:
            self._handle(*request)

    # --- answers
    def _write(self, data: bytes, *, close: bool = False) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        if close:
            self.transport.close()
        return True

    def _done(self, keep_alive: bool) -> None:
        self.busy = False
        if not keep_alive and self.transport is not None:
            self.transport.close()
        elif self.waiting:
            self._handle(*self.waiting.pop(0))

    def _handle(self, method: bytes, url: bytes, body: bytes, keep_alive: bool) -> None:
        upstream = self.upstream
        upstream.stats["requests"] += 1
        path = url.split(b"?", 1)[0].rstrip(b"/")
        self.busy = True
        if method == b"POST" and path.endswith(b"/chat/completions"):
            self._chat(body, keep_alive)
        elif path.endswith(b"/models"):
            self._respond(200, MODELS, keep_alive)
        elif path == b"/__fake/stats":
            self._respond(200, orjson.dumps(upstream.stats), keep_alive)
        elif path == b"/__fake/stall":
            query = dict(part.split(b"=", 1) for part in url.partition(b"?")[2].split(b"&") if b"=" in part)
            upstream.stall_until = time.monotonic() + float(query.get(b"ms", b"1000")) / 1000
            self._respond(200, b'{"stalled":true}', keep_alive)
        elif path in (b"/health", b""):
            self._respond(200, b'{"status":"ok"}', keep_alive)
        else:
            self._respond(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}', keep_alive)

    def _respond(self, status: int, payload: bytes, keep_alive: bool) -> None:
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
            status,
            b"OK" if status == 200 else b"Error",
            len(payload),
            b"" if keep_alive else b"Connection: close\r\n",
        )
        self._write(head + payload)
        self._done(keep_alive)

    def _chat(self, body: bytes, keep_alive: bool) -> None:
        upstream = self.upstream
        upstream.stats["chat"] += 1
        found = INSTRUCTION.search(body)
        request_id, tokens, first = (int(found[1]), int(found[2]), float(found[3]) / 1000) if found else (-1, 16, 0.0)
        loop = asyncio.get_running_loop()
        if request_id >= 0 and upstream.attempt_fails(request_id):
            upstream.stats["errors_injected"] += 1
            status = 500 if request_id % 2 else 529  # half "server error", half "overloaded"
            upstream.due(loop, 0.0, lambda: self._respond(status, ERROR, keep_alive))
            return
        prompt_tokens = max(1, len(body) // 4)
        usage = b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
            prompt_tokens,
            tokens,
            prompt_tokens + tokens,
        )
        ident = b"chatcmpl-fake%012x" % max(request_id, 0)
        created = int(time.time())
        if STREAM_FLAG.search(body):
            upstream.stats["streams"] += 1
            stream = _Stream(
                self,
                ident=ident,
                created=created,
                tokens=tokens,
                usage=usage,
                keep_alive=keep_alive,
                include_usage=b"include_usage" in body,
            )
            upstream.due(loop, first, stream.start)
            return
        text = WORDS[: tokens * 4]
        answer = (
            b'{"id":"%s","object":"chat.completion","created":%d,"model":"gpt-4o-mini","system_fingerprint":"fp_fake",'
            b'"choices":[{"index":0,"message":{"role":"assistant","content":"%s","refusal":null},'
            b'"logprobs":null,"finish_reason":"stop"}],"usage":%s}' % (ident, created, text, usage)
        )
        upstream.due(loop, first, lambda: self._respond(200, answer, keep_alive))


class _Stream:
    """One SSE answer: the first event at the planned time, then one per chunk interval."""

    def __init__(
        self,
        connection: Connection,
        *,
        ident: bytes,
        created: int,
        tokens: int,
        usage: bytes,
        keep_alive: bool,
        include_usage: bool,
    ) -> None:
        self.connection = connection
        self.tokens = tokens
        self.sent = 0
        self.events = 0
        self.started = 0.0
        self.usage = usage
        self.keep_alive = keep_alive
        self.usage_null = b',"usage":null' if include_usage else b""
        self.include_usage = include_usage
        self.prefix = (
            b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"gpt-4o-mini",'
            b'"system_fingerprint":"fp_fake","choices":' % (ident, created)
        )

    def _event(self, choices: bytes, extra: bytes) -> bytes:
        data = self.prefix + choices + extra + b"}\n\n"
        return b"%x\r\n%s\r\n" % (len(data), data)

    def start(self) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n%s\r\n" % (b"" if self.keep_alive else b"Connection: close\r\n")
        )
        role = (
            b'[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
            b'"logprobs":null,"finish_reason":null}]'
        )
        self.started = time.monotonic()
        if self.connection._write(head + self._event(role, self.usage_null)):
            self.step()

    def step(self) -> None:
        upstream = self.connection.upstream
        count = min(upstream.chunk_tokens, self.tokens - self.sent)
        text = WORDS[self.sent * 4 : (self.sent + count) * 4]
        self.sent += count
        delta = b'[{"index":0,"delta":{"content":"%s"},"logprobs":null,"finish_reason":null}]' % text
        out = self._event(delta, self.usage_null)
        if self.sent >= self.tokens:
            out += self._event(b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]', self.usage_null)
            if self.include_usage:
                out += self._event(b"[]", b',"usage":' + self.usage)
            data = b"data: [DONE]\n\n"
            out += b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
            if self.connection._write(out):
                self.connection._done(self.keep_alive)
            return
        if self.connection._write(out):
            # Due times count from the first event, so timer lateness does not add up over an answer.
            self.events += 1
            due = self.started + self.events * upstream.chunk_seconds - time.monotonic()
            upstream.due(asyncio.get_running_loop(), max(0.0, due), self.step)


async def serve(args: argparse.Namespace) -> None:
    upstream = Upstream(
        error_share=args.error_share, seed=args.seed, token_rate=args.token_rate, chunk_tokens=args.chunk_tokens
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), args.host, args.port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{args.host}:{args.port}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--error-share", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--token-rate", type=float, default=100.0)
    parser.add_argument("--chunk-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
