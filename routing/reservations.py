"""Credits in the hot path (DESIGN.md steps 3 and 7): before calling upstream,
hold the request's worst-case cost; after, settle to the actual cost, never
more than the hold. Overspending is impossible, not unlikely: the hold is one
atomic Redis script, whatever the number of workers and replicas.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from billing.holds import UNITS_PER_CREDIT, AsyncHolds, to_units
from billing.selectors import credits_balance
from oneflow.lib import redis
from oneflow.lib.db import in_thread
from providers import tokens
from providers.selectors import ModelView
from routing.errors import GatewayError
from routing.snapshots import snapshots

_holds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncHolds] = weakref.WeakKeyDictionary()


def _loop_holds() -> AsyncHolds:
    loop = asyncio.get_running_loop()
    holds = _holds.get(loop)
    if holds is None:
        holds = _holds[loop] = AsyncHolds(redis.loop_client())
    return holds


def worst_case_cost(*, body: dict[str, Any], endpoint: str, model: ModelView, organization_id: int) -> Decimal:
    """The most a request can cost: its prompt, and every output token it may ask for."""
    prompt = tokens.prompt_upper_bound(body)
    if endpoint == "embeddings":
        completion = 0
    else:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        completion = int(limit or settings.HOLD_DEFAULT_MAX_OUTPUT_TOKENS) * int(body.get("n") or 1)
    _, cost = snapshots.prices.cost(
        public_model=model.name,
        organization_id=organization_id,
        moment=datetime.now(UTC),
        prompt=prompt,
        cached=0,
        completion=completion,
    )
    return cost


async def reserve(*, organization_id: int, hold_id: str, cost: Decimal) -> int | None:
    """Holds ``cost`` (rounded up to units) and returns the units held, or refuses with 429."""
    if cost <= 0:
        return None
    units = to_units(cost, round_up=True)
    holds = _loop_holds()
    result = await holds.hold(organization_id=organization_id, hold_id=hold_id, units=units)
    if not result.seeded:
        balance = await in_thread(lambda: credits_balance(organization_id=organization_id))
        await holds.seed(organization_id=organization_id, ledger_units=to_units(balance, round_up=False))
        result = await holds.hold(organization_id=organization_id, hold_id=hold_id, units=units)
    if not result.granted:
        raise GatewayError(
            429,
            "You exceeded your current quota: the credits left cannot cover this request "
            f"(up to {cost.normalize():f} credits). Top up, or lower max_tokens.",
            type="insufficient_quota",
            code="insufficient_quota",
            retryable=False,
        )
    return units


async def settle(*, organization_id: int, hold_id: str, held_units: int, cost: Decimal) -> Decimal:
    """Converts the hold into the charge (at most the hold), frees the rest; returns the charge."""
    await _loop_holds().settle(
        organization_id=organization_id, hold_id=hold_id, actual_units=to_units(cost, round_up=True)
    )
    return min(cost, Decimal(held_units) / UNITS_PER_CREDIT)
