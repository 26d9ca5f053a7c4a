"""The interface every provider adapter implements, and its typed error.

Adapters speak one provider's wire protocol over the shared HTTP client and
present the gateway's internal format: OpenAI Chat Completions dicts.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from oneflow.lib import json, sse, tracing
from oneflow.lib.http import HttpClient, timeout
from providers.translate.anthropic import UpstreamStreamError


@dataclass(frozen=True, slots=True)
class Target:
    """Everything an adapter needs to call one deployment, resolved in advance."""

    deployment_id: int
    provider_name: str
    kind: str
    base_url: str
    upstream_model: str
    api_key: str = field(repr=False)
    api_version: str = ""
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    simulator: Mapping[str, Any] = field(default_factory=dict)
    propagate_trace_context: bool = False  # send each attempt's W3C traceparent (Provider's switch)


@dataclass(frozen=True, slots=True)
class Relay:
    """A request in a client protocol that some deployments speak as they are.

    A deployment whose adapter ``relays`` the protocol gets ``body`` unchanged
    but for the model name, with the client's protocol ``headers`` (betas,
    version), and answers in that protocol; the others get the request
    translated to the internal format. ``preamble`` names the stream events
    that carry no content yet: they are held back, so a deployment that fails
    before its first content can still be left for the next.
    """

    protocol: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    preamble: frozenset[str] = frozenset()


class ErrorKind(enum.Enum):
    REQUEST = "request"  # the caller's input is wrong: never retried
    DEPLOYMENT = "deployment"  # this deployment cannot serve (credential, model missing): try another
    TRANSIENT = "transient"  # overload, 5xx, timeout, reset: retry with backoff


class UpstreamError(Exception):
    """A failed upstream call, classified, with the status the client should see.

    ``message`` is safe to show the caller: it never carries the provider's
    credential or raw internals.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        status: int,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        mid_stream: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.mid_stream = mid_stream

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.TRANSIENT


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after-ms")
    scale = 1000.0
    if raw is None:
        raw, scale = headers.get("retry-after"), 1.0
    try:
        return float(raw) / scale if raw is not None else None
    except ValueError:
        return None


def classify_status(status: int, message: str, headers: Mapping[str, str]) -> UpstreamError:
    """Maps an upstream HTTP error status onto OneFlow's error classes."""
    if status in (400, 413, 422):
        return UpstreamError(message, kind=ErrorKind.REQUEST, status=400, upstream_status=status)
    if status in (401, 403):
        text = "The upstream provider refused OneFlow's credential for this model."
        return UpstreamError(text, kind=ErrorKind.DEPLOYMENT, status=502, upstream_status=status)
    if status == 404:
        text = "The upstream provider does not know this deployment's model."
        return UpstreamError(text, kind=ErrorKind.DEPLOYMENT, status=502, upstream_status=status)
    if status == 429:
        text = "The upstream provider is rate limiting; try again shortly."
        retry_after = _retry_after(headers)
        return UpstreamError(
            text, kind=ErrorKind.TRANSIENT, status=429, upstream_status=status, retry_after=retry_after
        )
    text = f"The upstream provider failed (HTTP {status})."
    return UpstreamError(text, kind=ErrorKind.TRANSIENT, status=502, upstream_status=status)


def connection_error(exc: BaseException, *, mid_stream: bool = False) -> UpstreamError:
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamError(
            "The upstream provider timed out.", kind=ErrorKind.TRANSIENT, status=504, mid_stream=mid_stream
        )
    return UpstreamError(
        "Could not reach the upstream provider.", kind=ErrorKind.TRANSIENT, status=502, mid_stream=mid_stream
    )


def malformed(mid_stream: bool = False) -> UpstreamError:
    return UpstreamError(
        "The upstream provider sent a malformed response.",
        kind=ErrorKind.TRANSIENT,
        status=502,
        mid_stream=mid_stream,
    )


class Adapter:
    """One provider protocol. Subclasses implement the calls they support.

    ``relays`` names the client protocols (``Relay.protocol``) the provider
    speaks natively; for those, ``relay`` and ``relay_stream`` pass the
    client's request through instead of translating it.
    """

    relays: frozenset[str] = frozenset()

    async def relay(self, http: HttpClient, target: Target, request: Relay) -> dict[str, Any]:
        raise UpstreamError("This provider cannot relay the request.", kind=ErrorKind.DEPLOYMENT, status=400)

    def relay_stream(self, http: HttpClient, target: Target, request: Relay) -> AsyncIterator[sse.Event]:
        raise UpstreamError("This provider cannot relay the request.", kind=ErrorKind.DEPLOYMENT, status=400)

    async def chat(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        raise UpstreamError("This provider does not serve chat.", kind=ErrorKind.DEPLOYMENT, status=400)

    def chat_stream(self, http: HttpClient, target: Target, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise UpstreamError("This provider does not stream chat.", kind=ErrorKind.DEPLOYMENT, status=400)

    async def embeddings(self, http: HttpClient, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        raise UpstreamError("This provider does not serve embeddings.", kind=ErrorKind.DEPLOYMENT, status=400)


def _traced(headers: Mapping[str, str], target: Target) -> Mapping[str, str]:
    """The headers, with the attempt's W3C trace context when its provider may have it
    (``Provider.propagate_trace_context``) and the attempt is traced."""
    return tracing.with_trace_context(headers) if target.propagate_trace_context else headers


async def post_json(
    client: HttpClient,
    url: str,
    payload: dict[str, Any],
    *,
    headers: Mapping[str, str],
    target: Target,
    error_message: Any,
) -> dict[str, Any]:
    """POSTs JSON and returns the decoded 2xx body, or raises a classified UpstreamError.

    ``error_message(body_bytes)`` extracts the provider's message from an error
    body; it is shown to the caller only for request errors (their input).
    """
    timeouts = timeout(connect=target.connect_timeout, read=target.read_timeout)
    headers = _traced(headers, target)
    try:
        async with client.post(url, data=json.dumps(payload), headers=headers, timeouts=timeouts) as response:
            raw = await response.read()
            if response.status >= 400:
                raise classify_status(response.status, error_message(raw), response.headers)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise connection_error(exc) from None
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        raise malformed() from None
    if not isinstance(body, dict):
        raise malformed()
    return body


async def post_stream(
    client: HttpClient,
    url: str,
    payload: dict[str, Any],
    *,
    headers: Mapping[str, str],
    target: Target,
    error_message: Any,
) -> AsyncIterator[sse.Event]:
    """POSTs JSON and yields the server-sent events of a 2xx answer.

    Errors before the first event are ordinary (the gateway may fail over);
    errors after it carry ``mid_stream=True``.
    """
    timeouts = timeout(connect=target.connect_timeout, read=target.read_timeout)
    headers = _traced(headers, target)
    started = False
    try:
        async with client.post(url, data=json.dumps(payload), headers=headers, timeouts=timeouts) as response:
            if response.status >= 400:
                raw = await response.read()
                raise classify_status(response.status, error_message(raw), response.headers)
            async for event in sse.read_events(response.content):
                started = True
                yield event
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise connection_error(exc, mid_stream=started) from None


def decode_event(data: str, *, mid_stream: bool = True) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except json.JSONDecodeError:
        raise malformed(mid_stream=mid_stream) from None
    if not isinstance(value, dict):
        raise malformed(mid_stream=mid_stream)
    return value


def usage_chunk(*, completion_id: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    """The closing chunk OpenAI sends with ``include_usage``: no choices, full usage."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


async def translated_stream(
    events: AsyncIterator[sse.Event],
    feed: Callable[[sse.Event], list[dict[str, Any]]],
    usage: Callable[[], dict[str, Any] | None],
    *,
    completion_id: str,
    created: int,
    model: str,
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chunks from another protocol's events, closed by a usage chunk.

    ``feed`` turns one event into chunks (raising the translator's stream
    error on an upstream error event); ``usage`` reads what was reported.
    """
    async for event in events:
        try:
            chunks = feed(event)
        except UpstreamStreamError as exc:
            raise UpstreamError(exc.message, kind=ErrorKind.TRANSIENT, status=502, mid_stream=True) from None
        for chunk in chunks:
            yield chunk
    reported = usage()
    if reported is not None:
        yield usage_chunk(completion_id=completion_id, created=created, model=model, usage=reported)
