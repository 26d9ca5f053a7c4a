"""Credits and budgets in the hot path (DESIGN.md steps 3 and 7): before calling
upstream, hold the request's worst-case cost; after, settle to the actual
cost, never more than the hold, and record the usage event with it.

Overspending is impossible, not unlikely: the hold is one atomic Redis script
checking the free credits and every budget window of the key and its
organization, whatever the number of workers and replicas. The same script
reads the configuration version, so the hot path makes two Redis round trips
in all: hold, then settle-and-record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from opentelemetry.trace import Span, SpanKind
from redis.exceptions import LockError

from billing import holds
from billing.holds import MAX_UNITS, RELEASE, BudgetSlot, Event, HoldResult, HoldStatus, to_credits, to_units
from billing.selectors import BudgetView, PriceBook, budget_spent, credits_balance
from gateway.errors import GatewayError
from oneflow.lib import money, redis_keys, scripts, tracing
from oneflow.lib.db import in_thread
from oneflow.lib.scripts import Invocation
from providers import tokens
from providers.selectors import ModelView

if TYPE_CHECKING:
    from gateway.core import Gateway

BUDGET_KEY_GRACE_SECONDS = 3600  # a window's counter outlives it by this much
SEED_LOCK_SECONDS = 10  # a seeding request waits this long for the drain's batch in progress


@dataclass(frozen=True, slots=True)
class Reservation:
    units: int | None  # None: nothing held (a free model, or a refusal)
    budget_keys: tuple[str, ...]
    version: bytes | None  # the configuration version when the hold was made
    refusal: GatewayError | None = None  # why the credits or a budget could not cover the request


@dataclass(frozen=True, slots=True)
class Bounds:
    """The most a request can use, known before any tokenizer ran."""

    prompt: int  # its prompt's UTF-8 bytes: no tokenizer counts more tokens than that
    completion: int  # every output token it may ask for: max_tokens (or the default) times n


def request_bounds(*, body: dict[str, Any], endpoint: str) -> Bounds:
    prompt = tokens.prompt_upper_bound(body)
    if endpoint == "embeddings":
        return Bounds(prompt, 0)
    # Both factors are bounded at the edge (gateway.validation: MAX_OUTPUT_TOKENS, MAX_CHOICES), so the
    # product stays under 2**27 tokens, as the prompt bound stays under the body's size in bytes.
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return Bounds(prompt, int(limit or settings.HOLD_DEFAULT_MAX_OUTPUT_TOKENS) * int(body.get("n") or 1))


def worst_case_cost(*, bounds: Bounds, model: ModelView, organization_id: int, prices: PriceBook) -> Decimal:
    """The most a request can cost: its prompt in its dearest token class (a cache
    write costs more than plain input), and every output token it may ask for."""
    return prices.worst_case(
        public_model=model.name,
        organization_id=organization_id,
        moment=datetime.now(UTC),
        prompt=bounds.prompt,
        completion=bounds.completion,
    )


def budget_slots(budgets: Sequence[BudgetView], now: datetime) -> list[BudgetSlot]:
    slots = []
    for budget in budgets:
        start, end = budget.window(now)
        slots.append(
            BudgetSlot(
                key=redis_keys.budget_window(budget.id, int(start.timestamp())),
                limit_units=to_units(budget.limit, round_up=False),
                ttl_seconds=int((end - now).total_seconds()) + BUDGET_KEY_GRACE_SECONDS,
                organization_id=budget.organization_id,
                api_key_id=budget.api_key_id,
                start=int(start.timestamp()),
                end=int(end.timestamp()),
            )
        )
    return slots


def _redis_phase(span: Span, phase: str) -> None:
    """Describes a recorded span of one of the hot path's Redis phases (one script call each)."""
    span.set_attributes({"db.system.name": "redis", "db.operation.name": "EVALSHA", "oneflow.redis.phase": phase})


async def reserve(
    gateway: Gateway,
    *,
    organization_id: int,
    hold_id: str,
    cost: Decimal,
    budgets: Sequence[BudgetView],
    extra: Sequence[Invocation[Any]] = (),
) -> tuple[Reservation, list[Any]]:
    """Holds ``cost`` (rounded up to units) against the credits and budgets,
    running ``extra`` scripts in the same round trip; returns the reservation
    (with its refusal when it does not fit) and the extra scripts' replies."""
    with tracing.span("redis admission", kind=SpanKind.CLIENT) as span:
        reservation, replies = await _reserve(
            gateway, organization_id=organization_id, hold_id=hold_id, cost=cost, budgets=budgets, extra=extra
        )
        if span.is_recording():
            _redis_phase(span, "admission")
            span.set_attribute("oneflow.hold.granted", reservation.refusal is None)
        return reservation, replies


async def _reserve(
    gateway: Gateway,
    *,
    organization_id: int,
    hold_id: str,
    cost: Decimal,
    budgets: Sequence[BudgetView],
    extra: Sequence[Invocation[Any]],
) -> tuple[Reservation, list[Any]]:
    client = gateway.redis
    if cost <= 0:
        version: Any = await client.get(redis_keys.CONFIG_VERSION)
        return Reservation(None, (), version), await scripts.arun_all(client, extra)
    now = datetime.now(UTC)
    slots = budget_slots(budgets, now)
    units = to_units(cost, round_up=True)
    if units > MAX_UNITS:
        version = await client.get(redis_keys.CONFIG_VERSION)
        refusal = _refusal(HoldResult(HoldStatus.CREDITS_SHORT, 0, version), cost=cost, budgets=budgets, now=now)
        return Reservation(None, (), version, refusal), await scripts.arun_all(client, extra)
    hold = holds.hold(organization_id=organization_id, hold_id=hold_id, units=units, budgets=slots)
    replies: list[Any] | None = None
    for _ in range(1 + 1 + len(slots)):  # at most one seeding of each counter
        result, *more = await scripts.arun_all(client, [hold, *(extra if replies is None else ())])
        replies = more if replies is None else replies
        if result.granted:
            return Reservation(units, tuple(slot.key for slot in slots), result.version), replies
        seeded = await _seed_missing(
            gateway, result, organization_id=organization_id, budgets=budgets, slots=slots, now=now
        )
        if not seeded:
            refusal = _refusal(result, cost=cost, budgets=budgets, now=now)
            return Reservation(None, (), result.version, refusal), replies
    error = GatewayError(503, "Credits could not be reserved; try again.", code="hold_unavailable")
    return Reservation(None, (), None, error), replies or []


async def _seed_missing(
    gateway: Gateway,
    result: HoldResult,
    *,
    organization_id: int,
    budgets: Sequence[BudgetView],
    slots: list[BudgetSlot],
    now: datetime,
) -> bool:
    """Seeds the counter the script found missing from PostgreSQL; False when nothing was missing.

    Under the drain's lock: a batch stored after the query read the database
    and acknowledged (gone from Redis) before the script ran would be counted
    nowhere, letting the organization spend it twice.
    """
    if not result.status.needs_seed:
        return False
    client = gateway.redis
    try:
        async with client.lock(redis_keys.DRAIN_LOCK, timeout=SEED_LOCK_SECONDS, blocking_timeout=SEED_LOCK_SECONDS):
            if result.status is HoldStatus.CREDITS_NOT_SEEDED:
                balance = await in_thread(lambda: credits_balance(organization_id=organization_id))
                units = to_units(balance, round_up=False)
                await scripts.arun(client, holds.seed(organization_id=organization_id, ledger_units=units))
            else:
                budget, slot = budgets[result.value - 1], slots[result.value - 1]
                start, end = budget.window(now)
                spent = await in_thread(lambda: budget_spent(budget=budget, start=start, end=end))
                await scripts.arun(client, holds.seed_budget(slot=slot, stored_units=to_units(spent, round_up=True)))
    except LockError:
        raise GatewayError(503, "Credits could not be reserved; try again.", code="hold_unavailable") from None
    return True


def _refusal(result: HoldResult, *, cost: Decimal, budgets: Sequence[BudgetView], now: datetime) -> GatewayError:
    if result.status is HoldStatus.BUDGET_SHORT:
        budget = budgets[result.value - 1]
        _, end = budget.window(now)
        scope = "this API key" if budget.api_key_id else "your organization"
        return GatewayError(
            429,
            f"The {budget.period} budget of {scope} ({money.display_text(budget.limit)} credits) cannot cover "
            f"this request (up to {cost.normalize():f} credits). It resets at {end.isoformat()}.",
            type="insufficient_quota",
            code="budget_exceeded",
            retryable=False,
        )
    return GatewayError(
        429,
        "You exceeded your current quota: the credits left cannot cover this request "
        f"(up to {cost.normalize():f} credits). Top up, or lower max_tokens.",
        type="insufficient_quota",
        code="insufficient_quota",
        retryable=False,
    )


def charge_of(reservation: Reservation | None, cost: Decimal | None) -> tuple[Decimal, int]:
    """What the ledger takes for a request (never more than its hold), and the units Redis takes."""
    if reservation is None or reservation.units is None or not cost:
        return Decimal(0), 0
    held = reservation.units
    return min(money.internal(cost), to_credits(held)), min(held, to_units(cost, round_up=True))


async def record(
    gateway: Gateway,
    *,
    organization_id: int,
    hold_id: str,
    reservation: Reservation | None,
    charged_units: int,
    event: Event,
    extra: Sequence[Invocation[Any]] = (),
) -> list[Any]:
    """Settles the hold to ``charged_units`` (releasing the rest) and appends the
    usage event, in one script; ``extra`` scripts ride in the same round trip
    and their replies come back."""
    held = reservation is not None and reservation.units is not None
    with tracing.span("redis settlement", kind=SpanKind.CLIENT) as span:
        replies = await gateway.journal.record(
            organization_id=organization_id,
            hold_id=hold_id if held else "",
            charged_units=charged_units,
            budget_keys=reservation.budget_keys if reservation is not None else (),
            event=event,
            extra=extra,
        )
        if span.is_recording():
            _redis_phase(span, "settlement")
            if len(replies) < len(extra):  # the journal keeps the event to send later
                tracing.failed(span, "redis_unavailable")
        return replies


async def release(
    gateway: Gateway,
    *,
    organization_id: int,
    hold_id: str,
    reservation: Reservation,
    extra: Sequence[Invocation[Any]] = (),
) -> None:
    """Gives a hold back whole, recording nothing (the request is refused, or
    will be admitted again); ``extra`` scripts ride in the same round trip."""
    calls = list(extra)
    if reservation.units is not None:
        settle = holds.settle(
            organization_id=organization_id,
            hold_id=hold_id,
            charged_units=0,
            event=RELEASE,
            budget_keys=reservation.budget_keys,
        )
        calls.insert(0, settle)
    with tracing.span("redis release", kind=SpanKind.CLIENT) as span:
        if span.is_recording():
            _redis_phase(span, "release")
        await scripts.arun_all(gateway.redis, calls)
