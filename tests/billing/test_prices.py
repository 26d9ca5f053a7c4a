"""Effective-dated prices: a scheduled change applies exactly from its time; cache-write
rates follow Anthropic's rule unless a version names its own."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import IntegrityError, transaction
from django.forms import modelform_factory

from billing.models import CACHE_WRITE_PRICE_MAX, Price
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


# --- Cache-write rates ---------------------------------------------------------------------


def test_the_seeded_catalog_carries_anthropics_cache_write_rates(db: None) -> None:
    sonnet = price_at(public_model="claude-sonnet-4", moment=datetime(2026, 6, 1, tzinfo=UTC))
    assert sonnet is not None
    assert (sonnet.input_per_1m, sonnet.cached_input_per_1m, sonnet.cache_write_5m_per_1m) == (
        Decimal(3),
        Decimal("0.30"),
        Decimal("3.75"),
    )
    assert sonnet.cache_write_1h_per_1m == Decimal(6)


@pytest.mark.parametrize(
    ("input_per_1m", "write_5m", "write_1h"),
    [
        (Decimal(3), Decimal("3.75"), Decimal(6)),
        (Decimal("0.15"), Decimal("0.1875"), Decimal("0.30")),
        # 1.25x a rate of 6 places has 8: the columns keep them, the default is exact.
        (Decimal("0.000001"), Decimal("0.00000125"), Decimal("0.000002")),
        (Decimal(0), Decimal(0), Decimal(0)),
    ],
)
def test_cache_write_rates_left_out_are_anthropics_rule_exactly(
    db: None, input_per_1m: Decimal, write_5m: Decimal, write_1h: Decimal
) -> None:
    created = Price.objects.create(
        public_model="m", input_per_1m=input_per_1m, cached_input_per_1m=Decimal(0), output_per_1m=Decimal(1)
    )
    [bulk] = Price.objects.bulk_create(
        [Price(public_model="n", input_per_1m=input_per_1m, cached_input_per_1m=0, output_per_1m=1)]
    )
    for price in (created, bulk):
        stored = Price.objects.get(pk=price.pk)
        assert (stored.cache_write_5m_per_1m, stored.cache_write_1h_per_1m) == (write_5m, write_1h)


def test_cache_write_rates_given_are_kept(db: None) -> None:
    price = PriceFactory.create(
        input_per_1m=Decimal(3), cache_write_5m_per_1m=Decimal(0), cache_write_1h_per_1m=Decimal("4.5")
    )
    price.refresh_from_db()
    assert (price.cache_write_5m_per_1m, price.cache_write_1h_per_1m) == (Decimal(0), Decimal("4.5"))


def test_existing_versions_get_the_rule_from_the_migration(db: None) -> None:
    """billing/migrations/0016 fills versions stored before the columns existed, exactly."""
    migration = importlib.import_module("billing.migrations.0016_token_classes")
    old = PriceFactory.create(input_per_1m=Decimal("0.000003"), cache_write_5m_per_1m=9, cache_write_1h_per_1m=9)

    migration.fill_cache_write_rates(django_apps, None)

    old.refresh_from_db()
    assert (old.cache_write_5m_per_1m, old.cache_write_1h_per_1m) == (Decimal("0.00000375"), Decimal("0.000006"))
    for price in Price.objects.all():
        assert price.cache_write_5m_per_1m == price.input_per_1m * Decimal("1.25")
        assert price.cache_write_1h_per_1m == price.input_per_1m * 2


def test_the_admin_form_takes_cache_write_rates_as_optional_and_bounded(db: None) -> None:
    fields = ["public_model", "effective_from", "input_per_1m", "cached_input_per_1m", "output_per_1m"]
    form_class = modelform_factory(Price, fields=[*fields, "cache_write_5m_per_1m", "cache_write_1h_per_1m"])
    data = {
        "public_model": "m",
        "effective_from": "2030-01-01 00:00",
        "input_per_1m": "2",
        "cached_input_per_1m": "0.2",
        "output_per_1m": "8",
    }
    form = form_class({**data, "cache_write_1h_per_1m": "3"})
    assert form.is_valid(), form.errors
    price = form.save()
    assert (price.cache_write_5m_per_1m, price.cache_write_1h_per_1m) == (Decimal("2.5"), Decimal(3))
    too_dear = form_class({**data, "public_model": "n", "cache_write_1h_per_1m": str(CACHE_WRITE_PRICE_MAX + 1)})
    assert not too_dear.is_valid()
    assert "cache_write_1h_per_1m" in too_dear.errors


@pytest.mark.parametrize("field", ["cache_write_5m_per_1m", "cache_write_1h_per_1m"])
def test_a_negative_cache_write_rate_is_refused_by_the_database(db: None, field: str) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        PriceFactory.create(**{field: Decimal(-1)})
