"""Admission: authenticate the key, resolve the model it may call, judge the
request on one configuration and hold what it may cost (DESIGN.md steps 1-3).

The limits' and breakers' scripts ride in the credit hold's round trip; a
refusal gives the hold back in one more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from accounts.selectors import KeyCredentials
from gateway import guards, reservations, strategies
from gateway.call import Call
from gateway.errors import GatewayError, model_not_found
from gateway.protocol import raw_key
from gateway.snapshots import Config
from oneflow.lib import scripts
from oneflow.lib.scripts import Invocation

MAX_MODEL_NAME = 200  # what the request log keeps of a name that resolved to no model
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
    gateway = call.gateway
    config = await gateway.snapshots.current()
    earlier: guards.Guards | None = None  # an admission judged on an older Config
    for _ in range(ADMISSIONS):
        try:
            version = await _admit(call, config, model_name, kind=kind, earlier=earlier)
        except GatewayError:
            if earlier is not None and call.guards is earlier:
                # Refused before the new judgement took it over.
                await scripts.arun_all(gateway.redis, _slots_of(earlier))
            newer = await gateway.snapshots.checked(config)
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
            gateway,
            organization_id=call.key.organization_id,
            hold_id=call.request.request_id,
            reservation=call.reservation,
        )
        call.reservation, earlier = None, call.guards
        config = await gateway.snapshots.newer_than(config)
    raise GatewayError(
        503, "The gateway's configuration is changing; try again.", code="configuration_changing", retryable=True
    )


def _slots_of(admitted: guards.Guards) -> list[Invocation[Any]]:
    """Frees an earlier admission's concurrency slots and keeps what it counted.

    Its counts cannot be given back: the rules it was counted under may have
    changed since, and the counters drain at their rule's rate, so a give-back
    under an old limit of a million an hour would drain a new limit of five in
    milliseconds. The request counts twice in this rare case, never less.
    """
    return admitted.completion(used=admitted.demand, attempts=[], ttft_ms=None)


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
    if isinstance(model_name, str):
        call.requested_model = model_name[:MAX_MODEL_NAME]
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
        policy=call.gateway.breaker_policy,
        version=config.version,
    )
    freed: list[Invocation[Any]] = []
    if earlier is not None and not checks.carry_limits(earlier):
        freed = _slots_of(earlier)
    reservation, replies = await reservations.reserve(
        call.gateway,
        organization_id=organization_id,
        hold_id=call.request.request_id,
        cost=worst,
        budgets=config.budgets.for_request(organization_id, key.key_id),
        extra=[*freed, *checks.admission()],
    )
    checks.take(replies[len(freed) :])
    refusal = checks.refusal() or reservation.refusal
    if refusal is not None:
        await reservations.release(
            call.gateway,
            organization_id=organization_id,
            hold_id=call.request.request_id,
            reservation=reservation,
            extra=checks.completion(used=None, attempts=[], ttft_ms=None),
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
