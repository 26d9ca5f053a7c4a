"""Price reads: the version of a model in force at a moment, and the price book the
gateway and the usage drain price requests with, without a query per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import CharField
from django.db.models.functions import Cast

from billing.models import (
    MARKUP_MAX,
    BillingAccount,
    Price,
)
from billing.pricing import Terms, Tokens, cost_credits, dearest_split
from billing.selectors.broken_rows import _decimal, _log_broken
from oneflow.lib import money
from oneflow.lib.db import readable_rows


def price_at(*, public_model: str, moment: datetime) -> Price | None:
    """The price version of a model in force at ``moment``: the newest one not after it."""
    return (
        Price.objects.filter(public_model=public_model, effective_from__lte=moment).order_by("-effective_from").first()
    )


@dataclass(frozen=True)
class PriceBook:
    """Every price version by model, for pricing without a query per request."""

    versions: dict[str, tuple[Price, ...]]  # oldest first
    markups: dict[int, Decimal]  # organizations whose markup is not 1
    # Stored rows that cannot be used (unreadable, or out of bounds), and why:
    # they degrade their own model or organization, never the whole book.
    broken_models: Mapping[str, str] = field(default_factory=dict)
    broken_organizations: Mapping[int, str] = field(default_factory=dict)

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
        self,
        *,
        public_model: str,
        organization_id: int,
        moment: datetime,
        prompt: int,
        cached: int,
        completion: int,
        cache_write_5m: int = 0,
        cache_write_1h: int = 0,
    ) -> tuple[Price | None, Decimal]:
        """The price version in force at ``moment`` and what the usage costs in credits under it.

        The one rule the gateway (the cost it shows) and the usage drain (the charge
        it stores) both price by: the counts are made consistent first
        (``Tokens.reported``), so the two always agree, however odd the report.
        Reasoning tokens are output tokens: ``completion`` already counts them.
        """
        price = self.at(public_model, moment)
        if price is None or price.is_free:
            return price, money.ZERO
        tokens = Tokens.reported(
            prompt=prompt,
            cached=cached,
            completion=completion,
            cache_write_5m=cache_write_5m,
            cache_write_1h=cache_write_1h,
        )
        return price, self._credits(price_terms(price), organization_id, tokens)

    def worst_case(
        self, *, public_model: str, organization_id: int, moment: datetime, prompt: int, completion: int
    ) -> Decimal:
        """The most ``prompt`` input and ``completion`` output tokens can cost in credits:
        every input token in its dearest class (a 1-hour cache write, at the default rates)."""
        price = self.at(public_model, moment)
        if price is None or price.is_free:
            return money.ZERO
        terms = price_terms(price)
        tokens = dearest_split(terms, prompt=max(prompt, 0), completion=max(completion, 0))
        return self._credits(terms, organization_id, tokens)

    def _credits(self, terms: Terms, organization_id: int, tokens: Tokens) -> Decimal:
        markup = self.markup(organization_id)
        return cost_credits(terms, tokens, markup=markup, credits_per_usd=settings.CREDITS_PER_USD)


def price_terms(price: Price) -> Terms:
    """A price version's rates, as the pricing arithmetic takes them."""
    return Terms(
        input_per_1m=price.input_per_1m,
        cached_input_per_1m=price.cached_input_per_1m,
        output_per_1m=price.output_per_1m,
        cache_write_5m_per_1m=price.cache_write_5m_per_1m,
        cache_write_1h_per_1m=price.cache_write_1h_per_1m,
        request_fee=price.request_fee,
    )


def price_book(*, models: set[str] | None = None) -> PriceBook:
    prices = Price.objects.order_by("public_model", "effective_from")
    if models is not None:
        prices = prices.filter(public_model__in=models)
    readable, unreadable = readable_rows(prices)
    versions: dict[str, list[Price]] = {}
    for price in readable:
        versions.setdefault(price.public_model, []).append(price)
    broken_models = dict.fromkeys(
        Price.objects.filter(pk__in=unreadable).values_list("public_model", flat=True),
        "a stored price version of this model cannot be read",
    )
    markups, broken_organizations = _markups()
    _log_broken("price", {**broken_models, **broken_organizations})
    return PriceBook(
        versions={model: tuple(rows) for model, rows in versions.items()},
        markups=markups,
        broken_models=broken_models,
        broken_organizations=broken_organizations,
    )


def _markups() -> tuple[dict[int, Decimal], dict[int, str]]:
    """Markups other than 1, read as text: one the column cannot hold breaks its organization only."""
    rows = BillingAccount.objects.exclude(markup=Decimal(1)).values_list(
        "organization_id", Cast("markup", output_field=CharField())
    )
    markups, broken = {}, {}
    for organization_id, text in rows:
        markup = _decimal(text)
        if markup is None or not 0 <= markup <= MARKUP_MAX:
            broken[organization_id] = "the organization's price markup is not a number between 0 and 100"
        else:
            markups[organization_id] = markup
    return markups, broken
