"""Reads for the routing app's admin pages: A/B route results and deployment health."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from redis.exceptions import RedisError

from billing.models import UsageEvent
from gateway import breakers
from gateway.breakers import Health, State
from oneflow.lib import money
from providers.models import Deployment, PublicModel, Strategy

# --- A/B results: a model's traffic per deployment ----------------------------------------

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "24h"
# Without percentile_cont (SQLite), latency percentiles come from each arm's newest
# requests only, so Python sorts a bounded number of rows whatever the traffic.
SAMPLE_PER_ARM = 10_000
# What an operator counts against an arm: the provider failed or throttled, not the caller's input.
FAILED = Q(status_code__gte=500) | Q(status_code=429)


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont``: the value at ``fraction`` of the group's
    sorted values, interpolated between neighbours; NULLs are left out."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)r) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, *, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        # A float from code, never from a request: %r is its exact SQL literal.
        super().__init__(expression, fraction=float(fraction))


@dataclass(frozen=True, slots=True)
class Latency:
    """Milliseconds; None where the arm has no request to measure."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    ttft_p50: float | None = None  # time to first token, streams only


@dataclass(frozen=True, slots=True)
class Arm:
    """One deployment's share of a model's traffic in a window.

    Money is summed at internal precision; the per-request figures divide the
    sums, and only the page rounds them.
    """

    deployment_id: int
    deployment: Deployment | None  # None once deleted
    own: bool  # False: a fallback model's deployment, or a deleted one
    requests: int = 0
    errors: int = 0  # answered 429 or 5xx
    cost: Decimal = money.ZERO  # credits, at list price
    provider_cost_usd: Decimal = money.ZERO
    latency: Latency = Latency()
    traffic_share: float | None = None  # of the model's requests that reached a deployment
    weight_share: float | None = None  # what the weights ask for; None when the strategy, not weight, decides

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def cost_per_request(self) -> Decimal | None:
        """Credits."""
        return _per_request(self.cost, self.requests)

    @property
    def provider_cost_per_request(self) -> Decimal | None:
        """USD."""
        return _per_request(self.provider_cost_usd, self.requests)

    @property
    def margin_per_request(self) -> Decimal | None:
        """USD: what the customer paid, converted from credits, less what the provider charged."""
        revenue_usd = money.CONTEXT.divide(self.cost, Decimal(settings.CREDITS_PER_USD))
        return _per_request(revenue_usd - self.provider_cost_usd, self.requests)


@dataclass(frozen=True, slots=True)
class RouteReport:
    model: PublicModel
    window: str
    since: datetime
    until: datetime
    arms: tuple[Arm, ...]
    unrouted: int  # requests refused before any deployment was tried
    exact_percentiles: bool  # False: from the newest SAMPLE_PER_ARM requests of each arm

    @property
    def requests(self) -> int:
        return sum(arm.requests for arm in self.arms)


def route_report(*, model: PublicModel, window: str = DEFAULT_WINDOW, now: datetime) -> RouteReport:
    """Each deployment that served ``model`` in the ``window`` before ``now``, with its
    requests, failures, latency percentiles and cost, next to its configured weight.

    The model's own deployments come first, in routing order, idle ones included;
    then deployments of other models that answered for it as fallbacks. Two
    queries (three without percentile_cont), whatever the number of rows or arms:
    the database computes the sums and percentiles over the window's rows, found
    through the created_at index.
    """
    since = now - WINDOWS[window]
    events = UsageEvent.objects.filter(public_model=model.name, created_at__gt=since, created_at__lte=now)
    exact = connection.vendor == "postgresql"
    totals, unrouted = _arm_totals(events, exact=exact)
    deployments = list(
        Deployment.objects.filter(Q(public_model=model) | Q(pk__in=list(totals)))
        .select_related("provider", "public_model")
        .order_by("priority", "-weight", "pk")
    )
    sampled = {} if exact else _sampled_latency(events)
    routed = sum(row["requests"] for row in totals.values())
    weights = _weight_shares([d for d in deployments if d.public_model_id == model.pk], model.strategy)
    found = {d.pk: d for d in deployments}
    own = [d.pk for d in deployments if d.public_model_id == model.pk]
    others = sorted((pk for pk in totals if pk not in own), key=lambda pk: (-totals[pk]["requests"], pk))
    arms = []
    for pk in [*own, *others]:
        arm = Arm(deployment_id=pk, deployment=found.get(pk), own=pk in own, weight_share=weights.get(pk))
        if (row := totals.get(pk)) is not None:
            latency = _latency(row) if exact else sampled.get(pk, Latency())
            arm = _measured(arm, row, latency=latency, routed=routed)
        arms.append(arm)
    return RouteReport(
        model=model,
        window=window,
        since=since,
        until=now,
        arms=tuple(arms),
        unrouted=unrouted,
        exact_percentiles=exact,
    )


def _arm_totals(events: QuerySet[UsageEvent], *, exact: bool) -> tuple[dict[int, dict[str, Any]], int]:
    """Per deployment id, its requests and sums (and percentiles); and the requests that reached none."""
    stats: dict[str, Aggregate] = {
        "requests": Count("pk"),
        "errors": Count("pk", filter=FAILED),
        "cost": Sum("cost", default=money.ZERO),
        "provider_cost_usd": Sum("provider_cost_usd", default=money.ZERO),
    }
    if exact:
        stats |= {
            "p50": PercentileCont("latency_ms", fraction=0.5),
            "p95": PercentileCont("latency_ms", fraction=0.95),
            "p99": PercentileCont("latency_ms", fraction=0.99),
            "ttft_p50": PercentileCont("ttft_ms", fraction=0.5),
        }
    rows = cast("list[dict[str, Any]]", list(events.order_by().values("deployment_id").annotate(**stats)))
    unrouted = sum(row["requests"] for row in rows if row["deployment_id"] is None)
    return {row["deployment_id"]: row for row in rows if row["deployment_id"] is not None}, unrouted


def _latency(row: dict[str, Any]) -> Latency:
    return Latency(p50=row["p50"], p95=row["p95"], p99=row["p99"], ttft_p50=row["ttft_p50"])


def _measured(arm: Arm, row: dict[str, Any], *, latency: Latency, routed: int) -> Arm:
    return replace(
        arm,
        requests=row["requests"],
        errors=row["errors"],
        cost=row["cost"],
        provider_cost_usd=row["provider_cost_usd"],
        latency=latency,
        traffic_share=row["requests"] / routed,
    )


def _sampled_latency(events: QuerySet[UsageEvent]) -> dict[int, Latency]:
    """Percentiles of each arm's newest SAMPLE_PER_ARM requests, in one query."""
    newest_first = Window(
        RowNumber(), partition_by=[F("deployment_id")], order_by=[F("created_at").desc(), F("pk").desc()]
    )
    rows = (
        events.exclude(deployment_id=None)
        .annotate(recency=newest_first)
        .filter(recency__lte=SAMPLE_PER_ARM)
        .values_list("deployment_id", "latency_ms", "ttft_ms")
    )
    latencies: defaultdict[int, list[int]] = defaultdict(list)
    ttfts: defaultdict[int, list[int]] = defaultdict(list)
    for deployment_id, latency_ms, ttft_ms in rows:
        if deployment_id is None:  # excluded above; for the type checker
            continue
        latencies[deployment_id].append(latency_ms)
        if ttft_ms is not None:
            ttfts[deployment_id].append(ttft_ms)
    return {
        pk: Latency(
            p50=percentile_cont(values, 0.5),
            p95=percentile_cont(values, 0.95),
            p99=percentile_cont(values, 0.99),
            ttft_p50=percentile_cont(ttfts[pk], 0.5),
        )
        for pk, values in latencies.items()
    }


def percentile_cont(values: Iterable[int], fraction: float) -> float | None:
    """What PostgreSQL's percentile_cont answers for these values (None for none)."""
    ordered: Sequence[int] = sorted(values)
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _weight_shares(deployments: list[Deployment], strategy: str) -> dict[int, float]:
    """The share of first choices each deployment's weight asks for (gateway.strategies).

    Weighted splits among all live deployments; priority among the live ones of
    the best priority (the rest only take failovers). The other strategies rank
    by price, latency or quality and use weight only to break ties: no share.
    """
    live = [d for d in deployments if d.enabled and d.provider.enabled]
    if strategy == Strategy.WEIGHTED:
        pool = live
    elif strategy == Strategy.PRIORITY:
        best = min((d.priority for d in live), default=None)
        pool = [d for d in live if d.priority == best]
    else:
        return {}
    total = sum(d.weight for d in pool)
    shares = {d.pk: 0.0 for d in deployments}
    shares |= {d.pk: d.weight / total for d in pool if total}
    return shares


def _per_request(total: Decimal, requests: int) -> Decimal | None:
    return money.CONTEXT.divide(total, Decimal(requests)) if requests else None


# --- Operator overview: every deployment's breaker and health ------------------------------

# Deployments are operator configuration (tens, not thousands); the cap keeps the page
# bounded should that ever change. The health page lists the rest.
HEALTH_BOARD_LIMIT = 200
_STATE_ORDER = {State.OPEN: 0, State.HALF_OPEN: 1, State.CLOSED: 2}


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    deployment: Deployment
    health: Health | None  # None when Redis did not answer


@dataclass(frozen=True, slots=True)
class HealthBoard:
    rows: tuple[DeploymentStatus, ...]  # open breakers first, then half-open, then closed
    open: int  # among the rows
    half_open: int
    limit: int  # the most deployments the board shows
    more: bool  # more deployments exist than the board shows
    redis_ok: bool  # False: breaker states are unknown, not closed


def health_board(*, limit: int = HEALTH_BOARD_LIMIT) -> HealthBoard:
    """Every deployment (up to ``limit``) with its breaker state and live health figures:
    one query and one Redis round trip, whatever the traffic."""
    found = list(
        Deployment.objects.select_related("provider", "public_model").order_by(
            "provider__name", "public_model__name", "pk"
        )[: limit + 1]
    )
    deployments, more = found[:limit], len(found) > limit
    try:
        health: dict[int, Health] | None = breakers.deployments_health(deployment_ids=[d.pk for d in deployments])
    except RedisError:
        health = None  # the page still shows traffic and spend while Redis is down
    rows = [DeploymentStatus(d, None if health is None else health.get(d.pk)) for d in deployments]
    rows.sort(key=lambda row: _STATE_ORDER[row.health.state] if row.health else len(_STATE_ORDER))
    states = [row.health.state for row in rows if row.health]
    return HealthBoard(
        rows=tuple(rows),
        open=states.count(State.OPEN),
        half_open=states.count(State.HALF_OPEN),
        limit=limit,
        more=more,
        redis_ok=health is not None,
    )
