"""Reads for billing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, Sum

from billing.models import BillingAccount, LedgerEntry, Price, UsageRollup
from billing.pricing import Terms, Tokens, cost_credits
from oneflow.lib import money


def price_at(*, public_model: str, moment: datetime) -> Price | None:
    """The price version of a model in force at ``moment``: the newest one not after it."""
    return (
        Price.objects.filter(public_model=public_model, effective_from__lte=moment).order_by("-effective_from").first()
    )


def ledger_sum(*, account: BillingAccount) -> Decimal:
    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"))["total"]
    return money.internal(total or money.ZERO)


USAGE_GROUPS = {"day": "bucket", "model": "public_model", "key": "api_key__public_id", "provider": "provider"}


def usage_summary(*, organization_id: int, start: datetime, end: datetime, group_by: str) -> list[dict[str, Any]]:
    """Usage per day, model, key or provider in [start, end), from the daily rollups."""
    field = USAGE_GROUPS[group_by]
    rows = (
        UsageRollup.objects.filter(
            organization_id=organization_id, period=UsageRollup.Period.DAY, bucket__gte=start, bucket__lt=end
        )
        .values(field)
        .annotate(
            requests=Sum("requests"),
            errors=Sum("errors"),
            prompt_tokens=Sum("prompt_tokens"),
            cached_tokens=Sum("cached_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by(field)
    )
    return [{"group": row.pop(field), **row} for row in rows]


def ledger_of(*, organization_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__organization_id=organization_id).order_by("-created_at", "-pk")


@dataclass(frozen=True)
class PriceBook:
    """Every price version by model, for pricing without a query per request."""

    versions: dict[str, tuple[Price, ...]]  # oldest first
    markups: dict[int, Decimal]  # organizations whose markup is not 1

    def at(self, public_model: str, moment: datetime) -> Price | None:
        found = None
        for version in self.versions.get(public_model, ()):
            if version.effective_from > moment:
                break
            found = version
        return found

    def markup(self, organization_id: int) -> Decimal:
        return self.markups.get(organization_id, Decimal(1))

    def cost(
        self, *, public_model: str, organization_id: int, moment: datetime, prompt: int, cached: int, completion: int
    ) -> tuple[Price | None, Decimal]:
        """The price version in force at ``moment`` and what the usage costs in credits under it."""
        price = self.at(public_model, moment)
        if price is None or price.is_free:
            return price, money.ZERO
        tokens = Tokens(prompt=prompt, cached=min(cached, prompt), completion=completion)
        terms = Terms(price.input_per_1m, price.cached_input_per_1m, price.output_per_1m, price.request_fee)
        markup = self.markup(organization_id)
        return price, cost_credits(terms, tokens, markup=markup, credits_per_usd=settings.CREDITS_PER_USD)


def price_book(*, models: set[str] | None = None) -> PriceBook:
    prices = Price.objects.order_by("public_model", "effective_from")
    if models is not None:
        prices = prices.filter(public_model__in=models)
    versions: dict[str, list[Price]] = {}
    for price in prices:
        versions.setdefault(price.public_model, []).append(price)
    markups = dict(BillingAccount.objects.exclude(markup=Decimal(1)).values_list("organization_id", "markup"))
    return PriceBook(versions={model: tuple(rows) for model, rows in versions.items()}, markups=markups)


def credits_balance(*, organization_id: int) -> Decimal:
    balance = BillingAccount.objects.filter(organization_id=organization_id).values_list("balance", flat=True).first()
    return balance if balance is not None else money.ZERO
