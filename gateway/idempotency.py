"""``Idempotency-Key`` on the proxy API's POST routes: a repeat within 24 hours
gets the first answer again, byte for byte, and is never charged twice.

As at Stripe, a key belongs to one API key and one request (method, path, SHA-256
of the body). The first request claims the key in Redis with an in-flight
marker and runs; its whole answer (status, headers, body, a stream's whole SSE
transcript) replaces the marker when it completes. A repeat while it runs gets
409, a repeat afterwards the stored answer with ``idempotent-replayed: true``
and no upstream call, hold, charge or usage event; the same key on another
request gets 422. A replay goes only to a key that still authenticates (not one
revoked since). An answer a retry could change (5xx, 408/409/429, a crash, a
client that left) is not stored: the marker goes, and a retry runs again.

Redis cost: one script to claim (or read) the key, one to store or release it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from accounts.keys import raw_key_prefix
from gateway.errors import GatewayError
from gateway.protocol import ClientGone, Message, Request, Send, raw_key
from oneflow.lib import json, redis_keys, scripts
from oneflow.lib.scripts import Invocation, Script

logger = logging.getLogger(__name__)

HEADER = "idempotency-key"
PATHS = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/messages"})
# A request still running after this is taken for dead: a repeat runs it again.
IN_FLIGHT_TTL_SECONDS = 600
STORED_TTL_SECONDS = 24 * 3600
# Answers over this are not stored and their key is released: a repeat runs
# (and is charged) again. Redis memory is worth more than such rare replays.
MAX_STORED_BYTES = 5 * 1024 * 1024
COMPRESS_FROM_BYTES = 1024
# (De)compressing more than this on the event loop would stall other requests.
OFF_LOOP_FROM_BYTES = 256 * 1024

_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
# Hop-by-hop headers, and the ids that belong to each request, not to its answer.
_NOT_STORED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"x-request-id",
        b"request-id",
    }
)
# Entries: a kind byte, the digest of the API key, the request fingerprint,
# then the marker's random token or the stored answer's codec byte and payload.
_PENDING, _DONE = b"p", b"d"
_KEY_DIGEST_BYTES, _FINGERPRINT_BYTES = 8, 32
_HEAD_BYTES = 1 + _KEY_DIGEST_BYTES + _FINGERPRINT_BYTES
_RAW, _ZLIB = b"=", b"z"

# KEYS[1] the entry; ARGV the in-flight marker and its TTL.
# Nil when the key was free and is now ours, else what the key holds.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return false
end
return redis.call('GET', KEYS[1])
"""

# KEYS[1] the entry; ARGV our marker, the answer to store ('' releases the key), its TTL.
# Only our own marker is replaced: past its TTL a repeat may own the key.
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 1
"""

Dispatch = Callable[[Request], Awaitable[None]]
RenderError = Callable[[Request, GatewayError], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Entry:
    redis_key: str
    key_digest: bytes  # the whole API key's: a forged key with a known prefix never sees an answer
    fingerprint: bytes
    marker: bytes


CLAIM = Script("idempotency.claim", _CLAIM)
FINISH = Script("idempotency.finish", _FINISH)


def _found(reply: Any) -> bytes | None:
    return reply or None


def claim(entry: _Entry) -> Invocation[bytes | None]:
    """None when the key was free and is now ours, else what it holds."""
    return Invocation(CLAIM, [entry.redis_key], [entry.marker, IN_FLIGHT_TTL_SECONDS], _found)


def finish(entry: _Entry, stored: bytes) -> Invocation[bool]:
    """Stores the answer (``b""`` releases the key) if our marker still holds it."""
    return Invocation(FINISH, [entry.redis_key], [entry.marker, stored, STORED_TTL_SECONDS], bool)


async def guarded(request: Request, dispatch: Dispatch, *, render_error: RenderError) -> None:
    """Runs ``dispatch(request)``, at most once per API key and Idempotency-Key.

    Without the header, or off the idempotent routes, it only dispatches.
    ``dispatch`` must answer every request itself (errors included): what it
    sends is what a repeat gets. Errors of the key itself (malformed, in use,
    reused on another request) go out through ``render_error``.
    """
    value = request.headers.get(HEADER)
    if value is None or request.method != "POST" or request.path not in PATHS:
        await dispatch(request)
        return
    try:
        entry = await _entry(request, value)
        found = None if entry is None else await _claim(request.gateway.redis, entry)
    except ClientGone:
        return
    except GatewayError as error:
        await render_error(request, error)
        return
    if entry is None:
        await dispatch(request)  # no well-formed API key: the handler refuses it
    elif found is None:
        await _run_first(request, entry, dispatch)
    elif found[1 : 1 + _KEY_DIGEST_BYTES] != entry.key_digest:
        await dispatch(request)  # same prefix, another secret: not this key's answer
    elif found[1 + _KEY_DIGEST_BYTES : _HEAD_BYTES] != entry.fingerprint:
        await render_error(request, _reused())
    elif found[:1] == _PENDING:
        await render_error(request, _in_use())
    else:
        try:
            # The key may have been revoked (or expired) since its first answer.
            await (await request.gateway.snapshots.fresh()).authenticate(raw_key(request))
        except GatewayError as error:
            await render_error(request, error)
            return
        await _replay(request, found)


async def _entry(request: Request, value: str) -> _Entry | None:
    if not _VALID_KEY.fullmatch(value):
        raise GatewayError(
            400,
            "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
            code="invalid_idempotency_key",
            param="Idempotency-Key",
        )
    key = raw_key(request)
    prefix = raw_key_prefix(key) if key else None
    if key is None or prefix is None:
        return None
    body = await _read_body(request)
    fingerprint = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), hashlib.sha256(body).digest()):
        fingerprint.update(part + b"\0")
    key_digest = hashlib.sha256(key.encode()).digest()[:_KEY_DIGEST_BYTES]
    return _Entry(
        redis_key=redis_keys.idempotency(prefix, value),
        key_digest=key_digest,
        fingerprint=fingerprint.digest(),
        marker=_PENDING + key_digest + fingerprint.digest() + secrets.token_bytes(16),
    )


async def _read_body(request: Request) -> bytes:
    """The whole body, which the handler then reads again from ``request.receive``."""
    body = await request.body()
    receive = request.receive
    unread = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again() -> Message:
        # Then the real channel: a streaming handler watches it for a disconnect.
        return unread.pop() if unread else await receive()

    request.receive = receive_again
    return body


async def _claim(client: redis.asyncio.Redis, entry: _Entry) -> bytes | None:
    try:
        found = await scripts.arun(client, claim(entry))
    except RedisError:
        # Running without the key could charge a repeat twice: refuse instead.
        logger.warning("idempotency key could not be claimed", exc_info=True)
        raise GatewayError(
            503, "Idempotency keys are unavailable right now; try again.", code="idempotency_unavailable"
        ) from None
    return found


def _reused() -> GatewayError:
    return GatewayError(
        422,
        "This Idempotency-Key was already used with another request (method, path or body). "
        "Use a new key for a new request.",
        code="idempotency_key_reused",
        type="invalid_request_error",
        param="Idempotency-Key",
    )


def _in_use() -> GatewayError:
    return GatewayError(
        409,
        "A request with this Idempotency-Key is still in progress; retry once it has finished.",
        code="idempotency_key_in_use",
        type="invalid_request_error",
        headers={"retry-after": "1"},
    )


@dataclass
class _Recorder:
    """Passes the answer to the client while keeping a copy of it."""

    send_on: Send
    skipped: frozenset[bytes]
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in self.skipped]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            self.size += len(body)
            if self.size <= MAX_STORED_BYTES:
                self.chunks.append(body)
            else:
                self.chunks.clear()
        await self.send_on(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True

    def storable(self) -> bool:
        # 2xx, and the client's own 4xx: a repeat would get the same. Not 401:
        # nothing ran as any key. Not 408/409/425/429: those ask for a retry.
        deterministic = 200 <= self.status < 300 or (
            400 <= self.status < 500 and self.status not in {401, 408, 409, 425, 429}
        )
        return self.complete and deterministic and self.size <= MAX_STORED_BYTES


async def _run_first(request: Request, entry: _Entry, dispatch: Dispatch) -> None:
    # CORS headers follow the origin of each request, not the stored answer.
    skipped = _NOT_STORED | {name.encode("latin-1") for name in request.extra_headers}
    recorder = _Recorder(request.send, skipped)
    request.send = recorder.send
    stored = b""
    try:
        await dispatch(request)
        if recorder.storable():
            stored = await _encode(entry, recorder)
    finally:
        # Also on cancellation: a key left in flight would block retries for its whole TTL.
        await _finish(request.gateway.redis, entry, stored)


async def _finish(client: redis.asyncio.Redis, entry: _Entry, stored: bytes) -> None:
    try:
        await scripts.arun(client, finish(entry, stored))
    except RedisError:
        # The answer is already out; the marker expires with its TTL.
        logger.warning("idempotency key could not be stored or released", exc_info=True)


async def _encode(entry: _Entry, recorder: _Recorder) -> bytes:
    head = {
        "status": recorder.status,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in recorder.headers],
    }
    payload = json.dumps(head) + b"\n" + b"".join(recorder.chunks)
    codec = _RAW
    if len(payload) >= COMPRESS_FROM_BYTES:
        payload = await _off_loop_if_large(zlib.compress, payload)
        codec = _ZLIB
    return _DONE + entry.key_digest + entry.fingerprint + codec + payload


async def _off_loop_if_large(transform: Callable[[bytes], bytes], data: bytes) -> bytes:
    if len(data) >= OFF_LOOP_FROM_BYTES:
        return await asyncio.to_thread(transform, data)
    return transform(data)


async def _replay(request: Request, stored: bytes) -> None:
    payload = stored[_HEAD_BYTES + 1 :]
    if stored[_HEAD_BYTES : _HEAD_BYTES + 1] == _ZLIB:
        payload = await _off_loop_if_large(zlib.decompress, payload)
    head, _, body = payload.partition(b"\n")
    meta = json.loads(head)
    extra = {**request.extra_headers, "idempotent-replayed": "true"}
    if request.path == "/v1/messages":
        extra["request-id"] = request.request_id
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in [*meta["headers"], *extra.items()]]
    request.response_started = True
    await request.send({"type": "http.response.start", "status": meta["status"], "headers": headers})
    await request.send({"type": "http.response.body", "body": body})
