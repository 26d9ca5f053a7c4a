"""Attempts: the deployments to try, in order, and trying them until one answers
(DESIGN.md steps 4-5): failover, retries with backoff, breakers, the deadline.

Front ends (gateway.openai_api, gateway.anthropic_api) parse their protocol
into the internal OpenAI format, call ``complete`` or ``open_stream`` here, and
render the result in their protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from opentelemetry.trace import Span, SpanKind

from gateway import metrics, strategies
from gateway.breakers import Verdict
from gateway.call import Call
from gateway.errors import GatewayError, bad_request
from gateway.settlement import estimate, genai_operation
from oneflow.lib import tracing
from oneflow.lib.db import in_thread
from providers import tokens
from providers.adapters import Adapter, ErrorKind, Relay, UpstreamError, adapter_for, connection_error
from providers.selectors import DeploymentView
from providers.services import credential_flag

T = TypeVar("T")

# gen_ai.provider.name (OpenTelemetry GenAI semconv) by provider kind; others go by their kind.
GENAI_PROVIDERS = {
    "openai": "openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
}


def plan(call: Call) -> list[DeploymentView]:
    """Deployments to try, in order: the model's strategy, its fallback models,
    the request's provider preferences and the deployments' health."""
    assert call.model is not None and call.key is not None and call.config is not None  # noqa: S101 - admit() ran
    key, config = call.key, call.config
    chosen = strategies.plan(
        call.model,
        catalog_find=lambda name: config.usable(key, name),
        health=call.health,
        preferences=call.preferences,
        sticky=_sticky(call),
        stream=call.stream,
        max_attempts=settings.UPSTREAM_MAX_ATTEMPTS,
    )
    call.route = chosen.route
    deployments = list(chosen.deployments)
    return call.guards.prefer_headroom(deployments) if call.guards else deployments


def _sticky(call: Call) -> str | None:
    """Requests sharing a prompt cache key (or end user) stick to one deployment, so
    the provider's prompt cache keeps working; otherwise each API key sticks to its arm."""
    for name in ("prompt_cache_key", "user"):
        value = call.body.get(name)
        if isinstance(value, str) and value:
            return f"{name}:{value}"
    return f"key:{call.key.key_id}" if call.key else None


def _failed(call: Call, error: UpstreamError) -> GatewayError:
    call.status_code = error.status
    call.error_type = error.kind.value
    headers = call.response_headers()
    if error.retry_after:
        headers["retry-after"] = str(max(1, min(60, round(error.retry_after))))
    retryable = None if error.kind is ErrorKind.TRANSIENT else False
    return GatewayError(
        error.status, error.message, code=f"upstream_{error.kind.value}", headers=headers, retryable=retryable
    )


def _backoff(retry: int, retry_after: float | None) -> float:
    """Full jitter over a doubling ceiling; the provider's Retry-After when it asks for longer."""
    ceiling = min(settings.UPSTREAM_RETRY_MAX_SECONDS, settings.UPSTREAM_RETRY_BASE_SECONDS * 2 ** (retry - 1))
    return max(random.uniform(0, ceiling), retry_after or 0)  # noqa: S311 - jitter, not secrecy


async def _attempts(call: Call, attempt: Callable[[DeploymentView], Awaitable[T]]) -> T:
    """Runs ``attempt`` on the plan's deployments until one succeeds.

    The caller's own mistakes end the request at once; a deployment that
    cannot serve (credentials, model) is left for the next; a transient
    failure moves to the next deployment, or, on the last one, waits its
    backoff and tries it again. At most UPSTREAM_MAX_ATTEMPTS, all inside the
    request's deadline.
    """
    deployments = _carrying(call, _callable(call, plan(call)))
    deadline = time.monotonic() + settings.UPSTREAM_DEADLINE_SECONDS
    index, last = 0, None
    while index < len(deployments) and call.attempts < settings.UPSTREAM_MAX_ATTEMPTS:
        deployment = call.deployment = deployments[index]
        call.attempts += 1
        started = time.perf_counter()
        # The CLIENT span of the attempt (a stream's ends at its first content: past it, no failover).
        with tracing.span("attempt", kind=SpanKind.CLIENT) as span:
            if span.is_recording():
                _attempt_started(span, call, deployment)
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    result = await attempt(deployment)
            except (UpstreamError, TimeoutError) as exc:
                last = exc if isinstance(exc, UpstreamError) else connection_error(exc)
                _attempt_ended(span, last)
            else:
                _attempt_ended(span, None)
                call.attempt_log.append(_attempt_entry(deployment, 200, "", started))
                return result
        _attempt_failed(call, last, started)
        if last.kind is ErrorKind.DEPLOYMENT or index + 1 < len(deployments):
            index += 1
            continue
        delay = _backoff(call.attempts, last.retry_after)
        if time.monotonic() + delay >= deadline or call.attempts >= settings.UPSTREAM_MAX_ATTEMPTS:
            break
        await asyncio.sleep(delay)
    assert last is not None  # noqa: S101 - plan() is never empty
    raise _failed(call, last)


def _attempt_started(span: Span, call: Call, deployment: DeploymentView) -> None:
    """Describes a recorded attempt's span: GenAI semconv, and which deployment it tried."""
    target = deployment.target
    operation = genai_operation(call.endpoint)
    span.update_name(f"{operation} {target.upstream_model}")
    span.set_attributes(
        {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": GENAI_PROVIDERS.get(target.kind, target.kind),
            "gen_ai.request.model": target.upstream_model,
            "oneflow.provider": target.provider_name,
            "oneflow.deployment_id": deployment.id,
            "oneflow.attempt": call.attempts,
        }
    )
    if host := urlsplit(target.base_url).hostname:
        span.set_attribute("server.address", host)


def _attempt_ended(span: Span, error: UpstreamError | None) -> None:
    if not span.is_recording():
        return
    if error is None:
        span.set_attribute("http.response.status_code", 200)
        return
    if error.upstream_status is not None:
        span.set_attribute("http.response.status_code", error.upstream_status)
    span.set_attribute("oneflow.error.kind", error.kind.value)
    tracing.failed(span, error.kind.value)


def _callable(call: Call, deployments: list[DeploymentView]) -> list[DeploymentView]:
    """The plan without deployments whose breaker is open (or being probed by
    another request): with none left the request fails fast, upstream untouched."""
    verdicts = call.guards.verdicts if call.guards else {}
    allowed = [d for d in deployments if verdicts.get(d.id, Verdict.CLOSED).allows]
    if not allowed:
        call.status_code, call.error_type = 503, "circuit_open"
        cooldown = str(min(60, settings.BREAKER_COOLDOWN_SECONDS))
        raise GatewayError(
            503,
            "The model's deployments are failing and are being given time to recover (circuit open). "
            "Try again shortly.",
            code="circuit_open",
            headers={**call.response_headers(), "retry-after": cooldown},
        )
    return allowed


def _attempt_entry(deployment: DeploymentView, status: int, error: str, started: float) -> dict[str, Any]:
    return {
        "deployment_id": deployment.id,
        "provider": deployment.target.provider_name,
        "status": status,
        "error": error,
        "ms": round((time.perf_counter() - started) * 1000),
    }


def _attempt_failed(call: Call, error: UpstreamError, started: float) -> None:
    """Counts a failed attempt; the caller's own mistakes end the request at once."""
    assert call.deployment is not None  # noqa: S101 - set by the attempt loop
    metrics.upstream_failed(call, error)
    call.attempt_log.append(_attempt_entry(call.deployment, error.status, error.kind.value, started))
    credential_id = call.deployment.credential_id
    if error.kind is ErrorKind.DEPLOYMENT and error.upstream_status in (401, 403) and credential_id is not None:
        # Flagged for the operators in a worker thread: the failover must not wait on the database.
        reason = f"refused by provider: {error.upstream_status}"
        call.gateway.spawn(in_thread(lambda: credential_flag(credential_id=credential_id, reason=reason)))
    if error.kind is ErrorKind.REQUEST:
        raise _failed(call, error) from None


def _relays(call: Call, deployment: DeploymentView) -> bool:
    return call.relay is not None and call.relay.protocol in adapter_for(deployment.target.kind).relays


def _carrying(call: Call, deployments: list[DeploymentView]) -> list[DeploymentView]:
    """The plan, narrowed to the deployments that can carry the request: a body the
    translation cannot carry goes only to deployments that speak the client's
    protocol, and with none of those it is the caller's 400, naming the field."""
    if call.untranslatable is None:
        return deployments
    relaying = [deployment for deployment in deployments if _relays(call, deployment)]
    if not relaying:
        call.status_code, call.error_type = 400, "request"
        raise bad_request(call.untranslatable.message, param=call.untranslatable.param)
    return relaying


def _relay(call: Call, adapter: Adapter) -> Relay | None:
    """The client's own request when this deployment speaks its protocol; otherwise
    None, and the deployment gets the internal translation."""
    relay = call.relay
    return relay if relay is not None and relay.protocol in adapter.relays else None


async def complete(call: Call) -> dict[str, Any]:
    """The non-streaming answer, from the first attempt that gives one: in the
    client's protocol when the deployment relayed it (``call.relayed``), otherwise
    in the internal format."""

    async def attempt(deployment: DeploymentView) -> dict[str, Any]:
        adapter = adapter_for(deployment.target.kind)
        started = time.perf_counter()
        http, target = call.gateway.http, deployment.target
        relay = _relay(call, adapter)
        if relay is not None:
            result = await adapter.relay(http, target, relay)
        elif call.endpoint == "embeddings":
            result = await adapter.embeddings(http, target, call.body)
        else:
            result = await adapter.chat(http, target, call.body)
        call.upstream_ms = (time.perf_counter() - started) * 1000
        call.relayed = relay is not None
        return result

    result = await _attempts(call, attempt)
    if not call.relayed:
        _account_result(call, result)
    return result


def _account_result(call: Call, result: dict[str, Any]) -> None:
    assert call.model is not None  # noqa: S101
    result["model"] = call.model.name
    usage = result.get("usage")
    if isinstance(usage, dict) and "prompt_tokens" in usage:
        call.usage, call.usage_source = usage, "reported"
        return
    call.usage_source = "estimated"
    upstream_model = call.deployment.target.upstream_model if call.deployment else call.model.name
    if call.endpoint == "embeddings":
        prompt = tokens.count_embedding_input(call.body.get("input"), model=upstream_model)
        call.usage = result["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        return
    text = "".join(_message_text(choice.get("message") or {}) for choice in result.get("choices") or [])
    call.usage = result["usage"] = estimate(call, text)


def _message_text(message: dict[str, Any]) -> str:
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    calls = message.get("tool_calls") or []
    return (text or "") + "".join(str((c.get("function") or {}).get("arguments", "")) for c in calls)


async def open_stream(call: Call) -> tuple[Any, AsyncIterator[Any]]:
    """The first chunk and the rest of the stream, from the first attempt that
    reaches the answer's first content: internal-format chunks, or, when the
    deployment relayed the request (``call.relayed``), the events of the
    client's protocol as the upstream sent them.

    Chunks before the first content (the role, empty deltas, a relay's
    preamble) are held back, so a deployment that fails before its first
    content is skipped invisibly: the client has seen nothing yet.
    """

    async def attempt(deployment: DeploymentView) -> tuple[list[Any], AsyncIterator[Any]]:
        adapter = adapter_for(deployment.target.kind)
        relay = _relay(call, adapter)
        chunks, has_content = _opened(call, deployment, adapter, relay)
        held: list[Any] = []
        try:
            async for chunk in chunks:
                held.append(chunk)
                if has_content(chunk):
                    break
        except BaseException:
            with contextlib.suppress(BaseException):
                await chunks.aclose()  # type: ignore[attr-defined]
            raise
        if not held:
            raise UpstreamError("The upstream provider sent an empty stream.", kind=ErrorKind.TRANSIENT, status=502)
        call.relayed = relay is not None
        return held, chunks

    held, rest = await _attempts(call, attempt)
    call.ttft_ms = call.request.elapsed_ms()
    return held[0], _chain(held[1:], rest)


def _opened(
    call: Call, deployment: DeploymentView, adapter: Adapter, relay: Relay | None
) -> tuple[AsyncIterator[Any], Callable[[Any], bool]]:
    """The attempt's stream, and how to tell its first content from what precedes it."""
    if relay is None:
        return adapter.chat_stream(call.gateway.http, deployment.target, call.body), _has_content
    preamble = relay.preamble

    def has_content(event: Any) -> bool:
        return event.event not in preamble

    return adapter.relay_stream(call.gateway.http, deployment.target, relay), has_content


def _has_content(chunk: dict[str, Any]) -> bool:
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or choice.get("finish_reason"):
            return True
    return False


async def _chain(held: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    try:
        for chunk in held:
            yield chunk
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
