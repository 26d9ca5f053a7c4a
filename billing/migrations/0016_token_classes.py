"""Every token class providers bill: cache-write rates on prices, and cache writes and
reasoning tokens on usage events and rollups.

Existing price versions get Anthropic's rule, exactly: 1.25x their input rate for
5-minute writes and 2x for 1-hour ones (the columns are added nullable, filled in
Python, where Decimal is exact on every database, then made NOT NULL).
"""

from decimal import Decimal

import django.core.validators
from django.db import migrations, models

import billing.models

_VALIDATORS = [
    django.core.validators.MinValueValidator(0),
    django.core.validators.MaxValueValidator(Decimal("2000000")),
]
# column -> (multiple of the input rate, help text)
_RULES = {
    "cache_write_5m_per_1m": (
        Decimal("1.25"),
        "USD per 1M tokens written to a 5-minute cache. Empty: 1.25x the input price (Anthropic's rule).",
    ),
    "cache_write_1h_per_1m": (
        Decimal("2"),
        "USD per 1M tokens written to a 1-hour cache. Empty: 2x the input price (Anthropic's rule).",
    ),
}
_QUANTUM = Decimal("0.00000001")  # the columns' 8 places: 1.25 x a 6-place rate fits exactly


def _rate(name, *, null):
    multiple, help_text = _RULES[name]
    return billing.models.InputMultipleField(
        blank=True,
        null=null,
        decimal_places=8,
        max_digits=16,
        multiple=multiple,
        validators=_VALIDATORS,
        help_text=help_text,
    )


def fill_cache_write_rates(apps, schema_editor):
    Price = apps.get_model("billing", "Price")
    prices = list(Price.objects.all())
    for price in prices:
        for name, (multiple, _) in _RULES.items():
            setattr(price, name, (Decimal(price.input_per_1m) * multiple).quantize(_QUANTUM))
    Price.objects.bulk_update(prices, list(_RULES), batch_size=500)


def _token_counts(model_name, field_class):
    return [
        migrations.AddField(model_name=model_name, name=name, field=field_class(default=0))
        for name in ("cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0015_usage_requested_model"),
    ]

    operations = [
        *[migrations.AddField(model_name="price", name=name, field=_rate(name, null=True)) for name in _RULES],
        migrations.RunPython(fill_cache_write_rates, migrations.RunPython.noop),
        *[migrations.AlterField(model_name="price", name=name, field=_rate(name, null=False)) for name in _RULES],
        migrations.RemoveConstraint(model_name="price", name="billing_price_not_negative"),
        migrations.AddConstraint(
            model_name="price",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("input_per_1m__gte", 0),
                    ("cached_input_per_1m__gte", 0),
                    ("output_per_1m__gte", 0),
                    ("cache_write_5m_per_1m__gte", 0),
                    ("cache_write_1h_per_1m__gte", 0),
                    ("request_fee__gte", 0),
                ),
                name="billing_price_not_negative",
            ),
        ),
        *_token_counts("usageevent", models.PositiveIntegerField),
        *_token_counts("usagerollup", models.PositiveBigIntegerField),
    ]
