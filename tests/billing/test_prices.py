"""Effective-dated prices: a scheduled change applies exactly from its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing.models import Price
from billing.selectors import price_at
from tests.factories import PriceFactory

CHANGE = datetime(2027, 1, 1, tzinfo=UTC)


def test_the_catalog_is_seeded_with_list_prices(db: None) -> None:
    mini = price_at(public_model="gpt-4o-mini", moment=datetime(2026, 6, 1, tzinfo=UTC))
    assert mini is not None
    assert (mini.input_per_1m, mini.cached_input_per_1m, mini.output_per_1m) == (
        Decimal("0.15"),
        Decimal("0.075"),
        Decimal("0.60"),
    )
    assert {"claude-sonnet-4", "gemini-2.5-flash", "mistral-large-latest"} <= set(
        Price.objects.values_list("public_model", flat=True)
    )


def test_a_scheduled_price_applies_exactly_from_its_time(db: None) -> None:
    PriceFactory.create(public_model="gpt-4o-mini", effective_from=CHANGE, input_per_1m=Decimal("0.20"))
    before = price_at(public_model="gpt-4o-mini", moment=CHANGE - timedelta(microseconds=1))
    at = price_at(public_model="gpt-4o-mini", moment=CHANGE)
    assert before is not None
    assert at is not None
    assert before.input_per_1m == Decimal("0.15")
    assert at.input_per_1m == Decimal("0.20")


def test_a_model_without_a_price_has_none(db: None) -> None:
    assert price_at(public_model="my-private-model", moment=CHANGE) is None


def test_negative_prices_and_two_versions_at_one_moment_are_refused(db: None) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceFactory.create(public_model="x", input_per_1m=Decimal(-1))
    PriceFactory.create(public_model="y", effective_from=CHANGE)
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceFactory.create(public_model="y", effective_from=CHANGE, input_per_1m=Decimal(2))
