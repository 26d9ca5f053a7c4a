"""Settlement: what a call used and costs, and its usage event, recorded once
however the request ends, before its last byte goes out (DESIGN.md steps 6-7).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from accounts.selectors import KeyCredentials
from billing.holds import Event
from billing.pricing import CACHE_WRITE_1H_MULTIPLE, CACHE_WRITE_5M_MULTIPLE, Terms, Tokens, cost_usd
from billing.usage import UsageRecord, encode
from gateway import access, limits, metrics, protocol, reservations
from gateway.call import Call
from gateway.errors import GatewayError
from oneflow.lib import tracing
from providers import tokens

logger = logging.getLogger(__name__)


def genai_operation(endpoint: str) -> str:
    """gen_ai.operation.name (OpenTelemetry GenAI semconv): every endpoint but embeddings is a chat."""
    return "embeddings" if endpoint == "embeddings" else "chat"


def estimate(call: Call, completion_text: str) -> dict[str, Any]:
    model = call.deployment.target.upstream_model if call.deployment else ""
    completion = tokens.count_text(completion_text, model=model) if completion_text else 0
    return tokens.openai_usage(prompt=tokens.count_chat_prompt(call.body, model=model), completion=completion)


def account_chunk(call: Call, chunk: dict[str, Any]) -> None:
    """Notes usage and generated text from one chunk, and names the public model."""
    assert call.model is not None  # noqa: S101
    chunk["model"] = call.model.name
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        call.usage, call.usage_source = usage, "reported"
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            call.generated.append(delta["content"])
        for tool_call in delta.get("tool_calls") or ():
            arguments = (tool_call.get("function") or {}).get("arguments")
            if arguments:
                call.generated.append(arguments)


def settle_stream(call: Call) -> None:
    """Usage for a stream that ended without a usage report (cut, abandoned, or never sent).

    When the upstream reported the prompt as the stream began (``usage_source``
    "started": Anthropic's ``message_start``, with its cache reads and writes), that
    report stands and only the answer is estimated; otherwise both are.
    """
    if call.usage_source == "reported" or call.deployment is None:
        return
    estimated = estimate(call, "".join(call.generated))
    if call.usage_source == "started" and call.usage:
        reported_so_far = int(call.usage.get("completion_tokens") or 0)
        completion = max(int(estimated["completion_tokens"]), reported_so_far)
        prompt = int(call.usage.get("prompt_tokens") or 0)
        estimated = {**call.usage, "completion_tokens": completion, "total_tokens": prompt + completion}
    call.usage, call.usage_source = estimated, "estimated"


async def finish(call: Call) -> None:
    """Appends the usage event and the metrics of the request, once.

    Called before the last byte goes out, so that whatever the client was
    served is on record by the time it has the whole answer.
    """
    if call.recorded:
        return
    call.recorded = True
    price_call(call)
    call.charged, charged_units = reservations.charge_of(call.reservation, call.cost)
    metrics.request_done(call)
    access.log(call, used=usage_tokens(call.usage))
    span = trace.get_current_span()  # the request's (gateway.asgi)
    if span.is_recording():
        _traced(span, call)
    if call.key is None:
        return
    record = _usage_record(call, call.key)
    event = Event(
        payload=encode(record),
        organization_id=record.organization_id,
        api_key_id=record.api_key_id,
        created_at=record.created_at,
    )
    used = limits.Demand(input_tokens=record.prompt_tokens, output_tokens=record.completion_tokens)
    guards = call.guards
    completion = guards.completion(used=used, attempts=call.attempt_log, ttft_ms=call.ttft_ms) if guards else []
    await reservations.record(
        call.gateway,
        organization_id=record.organization_id,
        hold_id=record.request_id,
        reservation=call.reservation,
        charged_units=charged_units,
        event=event,
        extra=completion,
    )


def _traced(span: Span, call: Call) -> None:
    """Describes the request's span once its call is settled: what was asked, used and by whom.

    The organization, never the key; a failure after the answer started (mid-stream)
    marks the span failed here, its status line having said 200. Few attributes, and
    the zero ones left out: each costs the hot path a microsecond or two per sampled request.
    """
    used = usage_tokens(call.usage)
    attributes: dict[str, str | bool | int | float] = {
        "gen_ai.operation.name": genai_operation(call.endpoint),
        "gen_ai.request.model": call.requested_model,
        "gen_ai.request.stream": call.stream,
        "gen_ai.usage.input_tokens": used.prompt,
        "gen_ai.usage.output_tokens": used.completion,
        "oneflow.attempts": call.attempts,
    }
    extras: dict[str, str | bool | int] = {
        "gen_ai.usage.cache_read.input_tokens": used.cached,
        "gen_ai.usage.cache_creation.input_tokens": used.cache_write_5m + used.cache_write_1h,
        "gen_ai.usage.reasoning.output_tokens": used.reasoning,
        "oneflow.client_disconnected": call.client_disconnected,
        "oneflow.error.type": call.error_type,
    }
    attributes.update((name, value) for name, value in extras.items() if value)
    if call.model is not None:
        attributes["oneflow.model"] = call.model.name  # the public name
    if call.key is not None:
        attributes["oneflow.organization_id"] = call.key.organization_id
    if call.deployment is not None:
        attributes["oneflow.provider"] = call.provider
        attributes["oneflow.deployment_id"] = call.deployment.id
    if call.ttft_ms is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = call.ttft_ms / 1000
    span.set_attributes(attributes)
    if call.status_code >= 500:  # gateway.asgi names the status in error.type once it goes out
        tracing.failed(span, call.error_type or str(call.status_code))


def usage_tokens(usage: dict[str, Any] | None) -> Tokens:
    """A call's tokens by class, read from its usage in the internal (OpenAI) shape that
    every adapter reports (``providers.tokens.openai_usage``): cache reads and writes in
    ``prompt_tokens_details``, reasoning in ``completion_tokens_details``, each a part
    of its total. Counts that do not add up are made to (``Tokens.reported``)."""
    usage = usage or {}
    prompt_details = _details(usage, "prompt_tokens_details")
    completion_details = _details(usage, "completion_tokens_details")
    return Tokens.reported(
        prompt=_count(usage.get("prompt_tokens")),
        cached=_count(prompt_details.get("cached_tokens")),
        cache_write_5m=_count(prompt_details.get("cache_write_5m_tokens")),
        cache_write_1h=_count(prompt_details.get("cache_write_1h_tokens")),
        completion=_count(usage.get("completion_tokens")),
        reasoning=_count(completion_details.get("reasoning_tokens")),
    )


def _details(usage: dict[str, Any], name: str) -> dict[str, Any]:
    details = usage.get(name)
    return details if isinstance(details, dict) else {}


def _count(value: Any) -> int:
    """A reported count; what is not a whole number (a string, a null, NaN) counts as none."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_record(call: Call, key: KeyCredentials) -> UsageRecord:
    # The counts as priced: the drain prices the stored counts by the same rule.
    used = usage_tokens(call.usage)
    return UsageRecord(
        request_id=call.request.request_id,
        organization_id=key.organization_id,
        api_key_id=key.key_id,
        endpoint=call.endpoint,
        public_model=call.model.name if call.model else "",
        requested_model="" if call.model else call.requested_model,
        deployment_id=call.deployment.id if call.deployment else None,
        provider=call.provider,
        stream=call.stream,
        status_code=call.status_code,
        error_type=call.error_type,
        prompt_tokens=used.prompt,
        cached_tokens=used.cached,
        cache_write_5m_tokens=used.cache_write_5m,
        cache_write_1h_tokens=used.cache_write_1h,
        completion_tokens=used.completion,
        reasoning_tokens=used.reasoning,
        server_tool_requests=_count((call.usage or {}).get("server_tool_requests")),
        usage_source=call.usage_source if call.usage else "void",
        latency_ms=call.request.elapsed_ms(),
        ttft_ms=call.ttft_ms,
        attempts=call.attempts,
        client_disconnected=call.client_disconnected,
        created_at=call.request.started_wall,
        provider_cost_usd=str(_provider_cost(call)),
        charged=str(call.charged),
        attempt_log=call.attempt_log,
        traceparent=tracing.traceparent(),  # the request's span, for the drain to link back to
    )


def price_call(call: Call) -> Decimal | None:
    """The call's cost in credits at the price in force when it arrived (shown
    to the client; the usage drain bills with the same rule)."""
    if call.key is None or call.model is None or call.config is None or not call.usage:
        return None
    used = usage_tokens(call.usage)
    _, call.cost = call.config.prices.cost(
        public_model=call.model.name,
        organization_id=call.key.organization_id,
        moment=datetime.fromtimestamp(call.request.started_wall, UTC),
        prompt=used.prompt,
        cached=used.cached,
        completion=used.completion,
        cache_write_5m=used.cache_write_5m,
        cache_write_1h=used.cache_write_1h,
    )
    return call.cost


def _provider_cost(call: Call) -> Decimal:
    """What the deployment's provider charges for this call, USD, from its cost rates.

    A deployment states no cache-write rates: writes cost Anthropic's rule, 1.25x
    (5 minutes) and 2x (1 hour) its input rate, the only provider that bills them.
    """
    deployment, usage = call.deployment, call.usage
    if deployment is None or not usage:
        return Decimal(0)
    rates = Terms(
        input_per_1m=deployment.cost_input_per_1m,
        cached_input_per_1m=deployment.cost_cached_input_per_1m,
        output_per_1m=deployment.cost_output_per_1m,
        cache_write_5m_per_1m=deployment.cost_input_per_1m * CACHE_WRITE_5M_MULTIPLE,
        cache_write_1h_per_1m=deployment.cost_input_per_1m * CACHE_WRITE_1H_MULTIPLE,
    )
    return cost_usd(rates, usage_tokens(usage))


@contextlib.asynccontextmanager
async def recorded(call: Call) -> AsyncIterator[Call]:
    """Records the call's usage event and metrics however the request ends."""
    try:
        yield call
    except GatewayError as error:
        call.status_code = error.status
        metrics.refused(error)
        raise
    except Exception:
        # A bug in OneFlow: the client gets a 500 (gateway.asgi), and the record must say so.
        if not call.recorded:
            call.status_code, call.error_type = 500, "internal"
        raise
    finally:
        await finish(call)


async def respond(call: Call, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    """Sends a whole JSON answer, recording the call before its bytes go out."""
    await finish(call)
    await protocol.send_json(call.request, status, payload, {**call.response_headers(), **(headers or {})})
