"""One proxied call, independent of the wire protocol the client speaks:
authenticate, resolve the model, try deployments in order, count usage,
record the usage event.

Front ends (gateway.openai_api, gateway.anthropic_api) parse their protocol
into the internal OpenAI format, call ``complete`` or ``stream`` here, and
render the result in their protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings

from accounts.selectors import KeyCredentials
from billing.holds import Event
from billing.pricing import Terms, Tokens, cost_usd
from billing.usage import UsageRecord, encode
from gateway import guards, limits, metrics, protocol, reservations, strategies
from gateway.breakers import Verdict
from gateway.call import Call
from gateway.errors import GatewayError, model_not_found
from gateway.protocol import raw_key
from gateway.snapshots import Config, snapshots
from oneflow.lib import redis
from oneflow.lib.db import in_thread
from oneflow.lib.redis import ScriptCall, run_scripts
from providers import tokens
from providers.adapters import ErrorKind, UpstreamError, adapter_for, connection_error
from providers.selectors import DeploymentView
from providers.services import credential_flag

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Credential flags being written off the request path; held here because the
# event loop keeps only weak references to its tasks.
_flagging: set[asyncio.Task[bool]] = set()


ADMISSIONS = 4  # judgements of one request on ever newer Configs before it gives up


async def admit(call: Call, model_name: Any, *, kind: str) -> None:
    """Authenticates the key, resolves the model it may call and holds the credits it may cost.

    The request is judged on one Config (gateway.snapshots). The hold script
    reads the configuration version in the same step as it holds: when that
    is not the Config's version, the hold is given back and the request is
    judged again on a newer Config, so nothing admits it on configuration it
    did not read (a revoked key, a new budget, a disabled deployment, a new
    price). A refusal is judged again when the version moved too.
    """
    config = await snapshots.current()
    earlier: guards.Guards | None = None  # an admission judged on an older Config
    for _ in range(ADMISSIONS):
        try:
            version = await _admit(call, config, model_name, kind=kind, earlier=earlier)
        except GatewayError:
            if earlier is not None and call.guards is earlier:
                await _release_limits(earlier)  # refused before the new judgement took it over
            newer = await snapshots.checked(config)
            if newer is config:
                raise
            config, earlier = newer, None
            continue
        if version == config.version:
            call.config = config
            # OneFlow's to read, not the upstream's: providers refuse unknown parameters.
            call.body.pop("provider", None)
            return
        assert call.key is not None and call.reservation is not None  # noqa: S101 - _admit set them
        await reservations.release(
            organization_id=call.key.organization_id, hold_id=call.request.request_id, reservation=call.reservation
        )
        call.reservation, earlier = None, call.guards
        config = await snapshots.newer_than(config)
    raise GatewayError(
        503, "The gateway's configuration is changing; try again.", code="configuration_changing", retryable=True
    )


async def _release_limits(admitted: guards.Guards) -> None:
    if calls := _slots_of(admitted):
        await run_scripts(redis.loop_client(), calls)


def _slots_of(admitted: guards.Guards) -> list[ScriptCall]:
    """Frees an earlier admission's concurrency slots and keeps what it counted.

    Its counts cannot be given back: the rules it was counted under may have
    changed since, and the counters drain at their rule's rate, so a give-back
    under an old limit of a million an hour would drain a new limit of five in
    milliseconds. The request counts twice in this rare case, never less.
    """
    return admitted.completion_calls(used=admitted.demand, attempts=[], ttft_ms=None)


async def _admit(
    call: Call, config: Config, model_name: Any, *, kind: str, earlier: guards.Guards | None
) -> bytes | None:
    """One judgement of the request on ``config``; the hold's configuration version.

    ``earlier``: the request's admission on an older Config. Its rate-limit
    verdict is kept (the request counted once) when the rules are the same;
    when the newer Config changed them, its slots are freed and the request is
    judged anew on the new rules (see _slots_of).
    """
    call.key = await config.authenticate(raw_key(call.request))
    if not isinstance(model_name, str) or not model_name:
        raise GatewayError(400, "you must provide a model parameter", param="model", code="missing_model")
    model = config.catalog.find(model_name)
    allowed = call.key.allowed_models
    # A model the organization may not see does not exist for it, whatever the key's list names.
    if model is None or model.kind != kind or not config.organization_sees(model, call.key):
        raise model_not_found(model_name)
    if allowed and model.name not in allowed and model_name not in allowed:
        raise GatewayError(
            403, f"This API key may not use the model `{model_name}`.", code="model_not_allowed", param="model"
        )
    if config.prices.at(model.name, datetime.now(UTC)) is None:
        raise GatewayError(
            403,
            f"The model `{model.name}` has no price, so it cannot be billed; an operator must price it first.",
            code="model_not_priced",
            param="model",
            retryable=False,
        )
    if not model.deployments and not model.fallback_models:
        raise GatewayError(503, f"No deployment can serve `{model.name}` right now.", code="model_unavailable")
    if problem := _billing_problem(config, model.name, call.key):
        raise GatewayError(
            403,
            f"This request cannot be billed as OneFlow is configured: {problem}. Fix or delete it, or ask an operator.",
            code="billing_configuration_invalid",
            retryable=False,
        )
    if "provider" in call.body:
        call.preferences = strategies.preferences_parse(call.body["provider"])
    call.model = model
    organization_id = call.key.organization_id
    bounds = reservations.request_bounds(body=call.body, endpoint=call.endpoint)
    worst = reservations.worst_case_cost(
        bounds=bounds, model=model, organization_id=organization_id, prices=config.prices
    )
    key = call.key
    checks = call.guards = guards.Guards.of(
        request_id=call.request.request_id,
        key=key,
        model=model,
        catalog_find=lambda name: config.usable(key, name),
        body=call.body,
        bounds=bounds,
    )
    freed = []
    if earlier is not None and not checks.carry_limits(earlier):
        freed = _slots_of(earlier)
    reservation, replies = await reservations.reserve(
        organization_id=organization_id,
        hold_id=call.request.request_id,
        cost=worst,
        budgets=config.budgets.for_request(organization_id, key.key_id),
        extra=[*freed, *checks.admission_calls()],
    )
    checks.take(replies[len(freed) :])
    refusal = checks.refusal() or reservation.refusal
    if refusal is not None:
        await reservations.release(
            organization_id=organization_id,
            hold_id=call.request.request_id,
            reservation=reservation,
            extra=checks.completion_calls(used=None, attempts=[], ttft_ms=None),
        )
        raise refusal
    call.reservation, call.health = reservation, checks.health
    return reservation.version


def _billing_problem(config: Config, model_name: str, key: KeyCredentials) -> str | None:
    """A stored price, markup or budget this request would be billed by that cannot
    be applied: it degrades its own model or organization, not the gateway."""
    return (
        config.prices.broken_models.get(model_name)
        or config.prices.broken_organizations.get(key.organization_id)
        or config.budgets.problem(key.organization_id, key.key_id)
    )


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
    deployments = _callable(call, plan(call))
    deadline = time.monotonic() + settings.UPSTREAM_DEADLINE_SECONDS
    index, last = 0, None
    while index < len(deployments) and call.attempts < settings.UPSTREAM_MAX_ATTEMPTS:
        deployment = call.deployment = deployments[index]
        call.attempts += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                result = await attempt(deployment)
        except (UpstreamError, TimeoutError) as exc:
            last = exc if isinstance(exc, UpstreamError) else connection_error(exc)
            _attempt_failed(call, last, started)
        else:
            call.attempt_log.append(_attempt_entry(deployment, 200, "", started))
            return result
        if last.kind is ErrorKind.DEPLOYMENT or index + 1 < len(deployments):
            index += 1
            continue
        delay = _backoff(call.attempts, last.retry_after)
        if time.monotonic() + delay >= deadline or call.attempts >= settings.UPSTREAM_MAX_ATTEMPTS:
            break
        await asyncio.sleep(delay)
    assert last is not None  # noqa: S101 - plan() is never empty
    raise _failed(call, last)


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
        task = asyncio.get_running_loop().create_task(
            in_thread(lambda: credential_flag(credential_id=credential_id, reason=reason))
        )
        _flagging.add(task)
        task.add_done_callback(_flagging.discard)
    if error.kind is ErrorKind.REQUEST:
        raise _failed(call, error) from None


async def complete(call: Call) -> dict[str, Any]:
    """The non-streaming answer, from the first attempt that gives one."""

    async def attempt(deployment: DeploymentView) -> dict[str, Any]:
        adapter = adapter_for(deployment.target.kind)
        started = time.perf_counter()
        if call.endpoint == "embeddings":
            result = await adapter.embeddings(deployment.target, call.body)
        else:
            result = await adapter.chat(deployment.target, call.body)
        call.upstream_ms = (time.perf_counter() - started) * 1000
        return result

    result = await _attempts(call, attempt)
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
    call.usage = result["usage"] = _estimate(call, text)


def _message_text(message: dict[str, Any]) -> str:
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    calls = message.get("tool_calls") or []
    return (text or "") + "".join(str((c.get("function") or {}).get("arguments", "")) for c in calls)


def _estimate(call: Call, completion_text: str) -> dict[str, Any]:
    model = call.deployment.target.upstream_model if call.deployment else ""
    completion = tokens.count_text(completion_text, model=model) if completion_text else 0
    return tokens.openai_usage(prompt=tokens.count_chat_prompt(call.body, model=model), completion=completion)


async def open_stream(call: Call) -> tuple[dict[str, Any], AsyncIterator[dict[str, Any]]]:
    """The first chunk and the rest of the stream, from the first attempt that
    reaches the answer's first content.

    Chunks before it (the role, empty deltas) are held back, so a deployment
    that fails before its first content is skipped invisibly: the client has
    seen nothing yet.
    """

    async def attempt(deployment: DeploymentView) -> tuple[list[dict[str, Any]], AsyncIterator[dict[str, Any]]]:
        chunks = adapter_for(deployment.target.kind).chat_stream(deployment.target, call.body)
        held: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                held.append(chunk)
                if _has_content(chunk):
                    return held, chunks
        except BaseException:
            with contextlib.suppress(BaseException):
                await chunks.aclose()  # type: ignore[attr-defined]
            raise
        if not held:
            raise UpstreamError("The upstream provider sent an empty stream.", kind=ErrorKind.TRANSIENT, status=502)
        return held, chunks

    held, rest = await _attempts(call, attempt)
    call.ttft_ms = call.request.elapsed_ms()
    return held[0], _chain(held[1:], rest)


def _has_content(chunk: dict[str, Any]) -> bool:
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or choice.get("finish_reason"):
            return True
    return False


async def _chain(held: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    try:
        for chunk in held:
            yield chunk
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


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
    """Usage for a stream that ended without a usage report (cut, abandoned, or never sent)."""
    if call.usage_source != "reported" and call.deployment is not None:
        call.usage = _estimate(call, "".join(call.generated))
        call.usage_source = "estimated"


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
    completion = (
        call.guards.completion_calls(used=used, attempts=call.attempt_log, ttft_ms=call.ttft_ms) if call.guards else []
    )
    replies = await reservations.record(
        organization_id=record.organization_id,
        hold_id=record.request_id,
        reservation=call.reservation,
        charged_units=charged_units,
        event=event,
        extra=completion,
    )
    if call.guards is not None and replies:
        try:
            call.guards.completed(replies)
        except Exception:
            # The answer is served and recorded; only the metrics missed a breaker change.
            logger.exception("breaker outcomes could not be read")


def _usage_record(call: Call, key: KeyCredentials) -> UsageRecord:
    usage = call.usage or {}
    details = usage.get("prompt_tokens_details") or {}
    return UsageRecord(
        request_id=call.request.request_id,
        organization_id=key.organization_id,
        api_key_id=key.key_id,
        endpoint=call.endpoint,
        public_model=call.model.name if call.model else "",
        deployment_id=call.deployment.id if call.deployment else None,
        provider=call.provider,
        stream=call.stream,
        status_code=call.status_code,
        error_type=call.error_type,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        usage_source=call.usage_source if call.usage else "void",
        latency_ms=call.request.elapsed_ms(),
        ttft_ms=call.ttft_ms,
        attempts=call.attempts,
        client_disconnected=call.client_disconnected,
        created_at=call.request.started_wall,
        provider_cost_usd=str(_provider_cost(call)),
        charged=str(call.charged),
        attempt_log=call.attempt_log,
    )


def price_call(call: Call) -> Decimal | None:
    """The call's cost in credits at the price in force when it arrived (shown
    to the client; the usage drain bills with the same rule)."""
    if call.key is None or call.model is None or call.config is None or not call.usage:
        return None
    usage = call.usage
    _, call.cost = call.config.prices.cost(
        public_model=call.model.name,
        organization_id=call.key.organization_id,
        moment=datetime.fromtimestamp(call.request.started_wall, UTC),
        prompt=int(usage.get("prompt_tokens") or 0),
        cached=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        completion=int(usage.get("completion_tokens") or 0),
    )
    return call.cost


def _provider_cost(call: Call) -> Decimal:
    """What the deployment's provider charges for this call, USD, from its cost rates."""
    deployment, usage = call.deployment, call.usage
    if deployment is None or not usage:
        return Decimal(0)
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = min(prompt, int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0))
    rates = Terms(deployment.cost_input_per_1m, deployment.cost_cached_input_per_1m, deployment.cost_output_per_1m)
    return cost_usd(rates, Tokens(prompt=prompt, cached=cached, completion=int(usage.get("completion_tokens") or 0)))


@contextlib.asynccontextmanager
async def recorded(call: Call) -> AsyncIterator[Call]:
    """Records the call's usage event and metrics however the request ends."""
    try:
        yield call
    except GatewayError as error:
        call.status_code = error.status
        raise
    finally:
        await finish(call)


async def respond(call: Call, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    """Sends a whole JSON answer, recording the call before its bytes go out."""
    await finish(call)
    await protocol.send_json(call.request, status, payload, {**call.response_headers(), **(headers or {})})
