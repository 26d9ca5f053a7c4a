"""Usage, credits and prices. (Prices, ledger and holds arrive with the billing issue.)"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from billing.budgets import PERIODS, budget_window, parse_thresholds
from billing.pricing import CACHE_WRITE_1H_MULTIPLE, CACHE_WRITE_5M_MULTIPLE
from oneflow.lib import money
from oneflow.lib.config_version import GatewayConfig


class UsageEvent(models.Model):
    """One proxied request, as the gateway saw it. Written once, by the usage drain."""

    class Source(models.TextChoices):
        REPORTED = "reported", "Reported by the provider"
        ESTIMATED = "estimated", "Estimated by tokenizer"
        VOID = "void", "Void (nothing was generated)"

    # The gateway's x-request-id: the idempotency key of the drain.
    request_id = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    endpoint = models.CharField(max_length=32)
    public_model = models.CharField(max_length=200)
    # The name the client asked for when it named no model it may use (unknown,
    # hidden, not allowed): shown in its request log; never grouped or priced by.
    requested_model = models.CharField(max_length=200, blank=True, default="")
    # Deployment and provider as they were: billing does not depend on the providers app.
    deployment_id = models.PositiveIntegerField(null=True)
    provider = models.CharField(max_length=100, blank=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    # Token classes, as the internal usage reports them: prompt_tokens counts every
    # input token, cache reads (cached_tokens) and writes included; completion_tokens
    # every output token, reasoning included (billed as output, shown apart).
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    # Server tools that ran at the provider (Anthropic's web search and fetch): recorded, not
    # priced yet (docs/billing.md says why).
    server_tool_requests = models.PositiveIntegerField(default=0)
    usage_source = models.CharField(max_length=10, choices=Source.choices)
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, help_text="Time to first token, streams only.")
    attempts = models.PositiveSmallIntegerField(default=1)
    # Each upstream attempt: deployment_id, provider, status, error class, ms.
    attempt_log = models.JSONField(default=list, blank=True)
    client_disconnected = models.BooleanField(default=False)
    # What the provider charges OneFlow for this request, USD (margin = cost - provider_cost).
    provider_cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=Decimal(0))
    # Priced by the drain at the version in force when the request arrived.
    price = models.ForeignKey("billing.Price", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Credits, at money.INTERNAL_PLACES.
    cost = models.DecimalField(max_digits=38, decimal_places=10, default=Decimal(0))
    # Credits, at money.INTERNAL_PLACES: what budgets count.
    charged = models.DecimalField(
        max_digits=38,
        decimal_places=10,
        default=Decimal(0),
        help_text="Credits the ledger took for this request (never more than its hold).",
    )
    created_at = models.DateTimeField(default=timezone.now, help_text="When the request arrived.")

    class Meta:
        indexes: ClassVar = [
            # The request log: one organization's newest requests first.
            # Also budget_spent() of an organization's budget: its charges in a window.
            models.Index(fields=["organization", "-created_at"], name="billing_usage_org_recent"),
            # budget_spent() of a key's budget: the key's charges in a window.
            models.Index(fields=["api_key", "created_at"], name="billing_usage_key_recent"),
            # Retention: dropping detail older than the window.
            models.Index(fields=["created_at"], name="billing_usage_created"),
            # The admin's usage list filtered to 4xx or 5xx: failures are few, so
            # walking the whole time index to find them would read most of the table.
            models.Index(fields=["created_at"], name="billing_usage_failed", condition=models.Q(status_code__gte=400)),
            # The dashboard's request log filtered to 4xx or 5xx, for the same reason per organization.
            models.Index(
                fields=["organization", "-created_at"],
                name="billing_usage_org_failed",
                condition=models.Q(status_code__gte=400),
            ),
        ]

    def __str__(self) -> str:
        return self.request_id

    @property
    def cache_write_tokens(self) -> int:
        """Cache writes of both lifetimes: the request log shows them as one figure."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens


# What a person may write (REST, dashboard, admin). Redis counts credits in integer
# units of 1e-6 (billing.holds); a hold multiplies a price by tokens and the markup,
# and a budget window sums holds. These bounds keep every such figure far inside a
# signed 64-bit integer (9.2e18 units) and inside the Decimal columns below.
CREDITS_MAX = Decimal(10**9)  # credits: one budget limit, grant or refund
PRICE_MAX = Decimal(10**6)  # USD per 1M tokens (1 USD a token), or per request
MARKUP_MAX = Decimal(100)

_USD_PER_1M = {
    "max_digits": 16,
    "decimal_places": 6,
    "validators": [MinValueValidator(0), MaxValueValidator(PRICE_MAX)],
}
# Cache-write rates default to 1.25x and 2x the input rate, so they take the 1-hour
# multiple of the input bound, and two more places: 1.25x a rate of 6 places has 8,
# and the default must be exact (0.000001 x 1.25 = 0.00000125).
CACHE_WRITE_PRICE_MAX = PRICE_MAX * CACHE_WRITE_1H_MULTIPLE
CACHE_WRITE_PLACES = 8
_CACHE_WRITE_USD_PER_1M = {
    "max_digits": 16,
    "decimal_places": CACHE_WRITE_PLACES,
    "validators": [MinValueValidator(0), MaxValueValidator(CACHE_WRITE_PRICE_MAX)],
    "blank": True,
}


class InputMultipleField(models.DecimalField):
    """A rate that, left empty, is saved as a multiple of the same row's input rate.

    Filled in ``pre_save``, as ``auto_now`` fills a date, so every way a price is
    written gets it alike: the admin's form, a price import (``bulk_create``),
    ``objects.create()`` in a test. The column is never NULL; an empty form field
    means "the provider's rule", not "free".
    """

    def __init__(self, *args: Any, multiple: Decimal, **kwargs: Any) -> None:
        self.multiple = multiple
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        return name, path, args, {**kwargs, "multiple": self.multiple}

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = getattr(model_instance, self.attname)
        input_per_1m = getattr(model_instance, "input_per_1m")  # noqa: B009 - any model with an input rate
        if value is None and input_per_1m is not None:  # no input rate: the database refuses the row
            value = input_multiple(input_per_1m, self.multiple)
            setattr(model_instance, self.attname, value)
        return value


def input_multiple(input_per_1m: Decimal | int | str, multiple: Decimal) -> Decimal:
    """``multiple`` x an input rate, exact at the cache-write columns' places."""
    return (money.to_decimal(input_per_1m) * multiple).quantize(
        Decimal(1).scaleb(-CACHE_WRITE_PLACES), context=money.CONTEXT
    )


class Price(GatewayConfig):
    """One version of a public model's price, in force from ``effective_from``
    until the next version of the same model. History is never edited: a price
    change is a new version, so every usage row keeps the price it was charged at.
    """

    # The per-token rates, one per token class, in the order every page and file shows them.
    RATES = (
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "cache_write_5m_per_1m",
        "cache_write_1h_per_1m",
    )

    public_model = models.CharField(max_length=200)
    effective_from = models.DateTimeField(default=timezone.now)
    # USD per 1M tokens, as providers list them; CREDITS_PER_USD converts.
    input_per_1m = models.DecimalField(**_USD_PER_1M)  # type: ignore[arg-type]
    # Cache reads, and OpenAI's cached input (the same class).
    cached_input_per_1m = models.DecimalField(**_USD_PER_1M)  # type: ignore[arg-type]
    output_per_1m = models.DecimalField(**_USD_PER_1M)  # type: ignore[arg-type]
    # Anthropic's cache writes, by the cache's lifetime.
    cache_write_5m_per_1m = InputMultipleField(
        multiple=CACHE_WRITE_5M_MULTIPLE,
        help_text="USD per 1M tokens written to a 5-minute cache. Empty: 1.25x the input price (Anthropic's rule).",
        **_CACHE_WRITE_USD_PER_1M,
    )
    cache_write_1h_per_1m = InputMultipleField(
        multiple=CACHE_WRITE_1H_MULTIPLE,
        help_text="USD per 1M tokens written to a 1-hour cache. Empty: 2x the input price (Anthropic's rule).",
        **_CACHE_WRITE_USD_PER_1M,
    )
    # USD per request, on top of tokens.
    request_fee = models.DecimalField(default=Decimal(0), **_USD_PER_1M)  # type: ignore[arg-type]
    is_free = models.BooleanField(
        default=False, help_text="Serve this model at no charge (an explicit choice: a missing price is refused)."
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["public_model", "effective_from"], name="billing_price_one_version_at_a_time"
            ),
            models.CheckConstraint(
                condition=models.Q(input_per_1m__gte=0)
                & models.Q(cached_input_per_1m__gte=0)
                & models.Q(output_per_1m__gte=0)
                & models.Q(cache_write_5m_per_1m__gte=0)
                & models.Q(cache_write_1h_per_1m__gte=0)
                & models.Q(request_fee__gte=0),
                name="billing_price_not_negative",
            ),
        ]
        indexes: ClassVar = [
            # price_at(): the newest version of a model not after a moment.
            models.Index(fields=["public_model", "-effective_from"], name="billing_price_lookup"),
        ]

    def __str__(self) -> str:
        return f"{self.public_model} from {self.effective_from:%Y-%m-%d %H:%M}"


class BillingAccount(GatewayConfig):
    """An organization's credits. ``balance`` is the sum of its ledger entries,
    kept in one row so that a database constraint can refuse a negative one."""

    # The drain writes the balance on every charge; the gateway caches only the markup.
    config_ignored_fields = frozenset({"balance", "updated_at"})

    organization = models.OneToOneField("accounts.Organization", on_delete=models.PROTECT, related_name="+")
    # Credits, at money.INTERNAL_PLACES.
    balance = models.DecimalField(max_digits=38, decimal_places=10, default=Decimal(0))
    # Multiplies every price for this organization (1 = list price).
    markup = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        default=Decimal(1),
        validators=[MinValueValidator(0), MaxValueValidator(MARKUP_MAX)],
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="billing_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"credits of {self.organization_id}"


class LedgerEntry(models.Model):
    """An append-only balance change. Corrections are new entries, never edits."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        GRANT = "grant", "Grant"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"
        EXPIRY = "expiry", "Expiry"

    account = models.ForeignKey(BillingAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # Credits, signed: positive adds to the balance.
    amount = models.DecimalField(max_digits=38, decimal_places=10)
    # Makes a retried operation (a webhook, a drained usage event) count once.
    idempotency_key = models.CharField(max_length=128, unique=True)
    price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    request_id = models.CharField(max_length=64, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes: ClassVar = [
            # The statement: one account's entries, newest first.
            models.Index(fields=["account", "-created_at"], name="billing_ledger_statement"),
            # The admin's ledger list: every account's entries, newest first.
            models.Index(fields=["created_at"], name="billing_ledger_created"),
            # refundable() and the admin's search: a request's charge and refunds.
            models.Index(fields=["request_id"], name="billing_ledger_request"),
            # The admin's ledger filtered to a kind other than charges (grants, refunds...): they
            # are few among the charges, which the time index would make it walk through.
            models.Index(fields=["created_at"], name="billing_ledger_not_charge", condition=~models.Q(kind="charge")),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class UsageRollup(models.Model):
    """Usage summed per organization, key, model and provider for one hour or day.

    Dashboards and the usage API read these, never the raw events.
    """

    class Period(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    public_model = models.CharField(max_length=200)
    provider = models.CharField(max_length=100, blank=True)
    period = models.CharField(max_length=4, choices=Period.choices)
    bucket = models.DateTimeField(help_text="Start of the hour or (UTC) day.")
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=38, decimal_places=10, default=Decimal(0))  # credits
    provider_cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=Decimal(0))

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "public_model", "provider", "period", "bucket"],
                # Rows of deleted keys (api_key NULL) are kept apart by the
                # single rollup job, not by this constraint: SQLite cannot
                # treat NULLs as equal here.
                name="billing_rollup_one_row_per_bucket",
            ),
        ]
        indexes: ClassVar = [
            # The usage API: one organization's buckets of one period in a date range.
            models.Index(fields=["organization", "period", "bucket"], name="billing_rollup_range"),
            # Every organization's buckets in a range: the admin's rollup list and the operator overview.
            models.Index(fields=["bucket"], name="billing_rollup_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.public_model} {self.period} {self.bucket:%Y-%m-%d %H:00}"


def validate_positive(value: Decimal) -> None:
    if value is not None and value <= 0:
        raise ValidationError("Must be more than zero.", code="not_positive")


def validate_thresholds(value: str) -> None:
    try:
        parse_thresholds(value)
    except ValueError as exc:
        raise ValidationError(f"Thresholds are whole percentages, e.g. 50,80,100: {exc}.", code="invalid") from None


class Budget(GatewayConfig):
    """A spending limit of an organization, or of one of its keys, per calendar
    day, week or month in the organization's time zone.

    The gateway enforces it through the same holds as the balance (it reads
    budgets from ``selectors.budget_book``); ``budget_alerts_check`` warns the
    owners as spending crosses each alert threshold. Every change goes through
    ``billing.services`` (or the admin), which advances the config version.
    """

    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: the budget covers the whole organization.",
    )
    period = models.CharField(max_length=7, choices=Period.choices)
    # Credits, at money.INTERNAL_PLACES, per window.
    limit = models.DecimalField(
        max_digits=38, decimal_places=10, validators=[validate_positive, MaxValueValidator(CREDITS_MAX)]
    )
    alert_thresholds = models.CharField(
        max_length=40,
        blank=True,
        default="50,80,100",
        validators=[validate_thresholds],
        help_text="Percentages of the limit that email the owners once per window, e.g. 50,80,100.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=models.Q(limit__gt=0),
                name="billing_budget_limit_positive",
                violation_error_message="The limit must be more than zero.",
            ),
            models.CheckConstraint(condition=models.Q(period__in=PERIODS), name="billing_budget_period_known"),
            # Two partial constraints, as NULL keys are distinct in a plain one.
            models.UniqueConstraint(
                fields=["organization", "api_key", "period"],
                condition=models.Q(api_key__isnull=False),
                name="billing_budget_one_per_key_period",
                violation_error_code="budget_exists",
                violation_error_message="This key already has a budget for this period.",
            ),
            models.UniqueConstraint(
                fields=["organization", "period"],
                condition=models.Q(api_key__isnull=True),
                name="billing_budget_one_per_org_period",
                violation_error_code="budget_exists",
                violation_error_message="This organization already has a budget for this period.",
            ),
        ]

    def __str__(self) -> str:
        key = f", key {self.api_key.name}" if self.api_key is not None else ""
        return f"{self.period} budget of {self.organization}{key}"

    def clean(self) -> None:
        if self.api_key is None or self.organization_id is None:
            return  # a missing organization is reported by its field
        if self.api_key.organization_id != self.organization_id:
            raise ValidationError({"api_key": "This key belongs to another organization."}, code="foreign_key")

    @property
    def thresholds(self) -> tuple[int, ...]:
        return parse_thresholds(self.alert_thresholds)

    def window(self, moment: datetime) -> tuple[datetime, datetime]:
        """The [start, end) of this budget's period containing ``moment``, in UTC."""
        return budget_window(self.period, time_zone=self.organization.time_zone, moment=moment)


class BudgetAlert(models.Model):
    """A threshold of a budget that was reached in one window: owners were told once."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    window_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the limit.")
    # Credits, at money.INTERNAL_PLACES: spent in the window when the alert fired,
    # and the limit then (a later edit of the budget does not rewrite history).
    spent = models.DecimalField(max_digits=38, decimal_places=10)
    limit = models.DecimalField(max_digits=38, decimal_places=10)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            # Each threshold alerts once per window, however many checks race.
            models.UniqueConstraint(
                fields=["budget", "window_start", "threshold"], name="billing_budget_alert_once_per_window"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.threshold}% of budget {self.budget_id} from {self.window_start:%Y-%m-%d}"
