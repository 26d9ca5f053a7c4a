"""Upstream providers, their credentials, the public models customers call, and
the deployments that serve them.

A public model ("gpt-4o-mini") is what a customer names; each of its
deployments is one way to serve it (a provider + an upstream model + a
credential). Routing picks among deployments; billing prices public models.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from oneflow.lib.config_version import GatewayConfig
from oneflow.lib.secrets import ReferenceRefused, provider_reference_policy


class Provider(GatewayConfig):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama, Groq, Mistral, ...)"
        AZURE_OPENAI = "azure_openai", "Azure OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        GEMINI = "gemini", "Google Gemini"
        SIMULATOR = "simulator", "Simulator (demos and load tests)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(
        blank=True,
        help_text="e.g. https://api.openai.com/v1, https://api.anthropic.com, "
        "https://generativelanguage.googleapis.com, https://NAME.openai.azure.com",
    )
    api_version = models.CharField(
        max_length=40, blank=True, help_text="Azure api-version or anthropic-version; empty for the default."
    )
    extra_headers = models.JSONField(default=dict, blank=True, help_text="Sent with every upstream request.")
    # Off by default: a third-party provider learns OneFlow's trace ids only when an operator says so.
    propagate_trace_context = models.BooleanField(
        default=False,
        help_text="Send the W3C traceparent of each upstream attempt to this provider (when the request is "
        "traced), so its own traces join OneFlow's.",
    )
    connect_timeout = models.FloatField(default=10.0, validators=[MinValueValidator(0.1)], help_text="Seconds.")
    read_timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1)], help_text="Seconds of silence allowed between bytes."
    )
    # Simulator only: latency_ms, ttft_ms, tokens_per_second, failure_rate (0-1).
    simulator = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Credential(GatewayConfig):
    """An upstream secret, sealed at rest or referenced (``env:NAME``, ``file:/path``)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        FLAGGED = "flagged", "Flagged (the provider refused it)"
        DISABLED = "disabled", "Disabled"

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=100)
    sealed_secret = models.TextField(blank=True, editable=False)
    reference = models.CharField(
        max_length=300, blank=True, help_text="env:VARIABLE or file:/path/to/secret, instead of a stored secret."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=300, blank=True)
    # Set by providers.services.credential_flag when the provider refuses the
    # credential (HTTP 401/403), from a health probe or live traffic. Advisory:
    # routing keeps using it (the breaker already keeps traffic off a refusing
    # deployment), so one spurious refusal cannot take it out of service for good.
    flagged_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the provider first refused this credential (HTTP 401/403), seen by a health probe or "
        "live traffic. Never cleared automatically, not even when probes succeed again: once the credential is "
        'fixed, clear it with the "Clear flag" action.',
    )
    flag_reason = models.CharField(max_length=100, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["provider", "name"], name="providers_credential_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider.name} / {self.name}"

    def clean(self) -> None:
        # Checked again on use (providers.selectors.credential_resolve): settings may
        # change, and rows may come from elsewhere than a form.
        if self.reference:
            try:
                provider_reference_policy().check(self.reference.strip())
            except ReferenceRefused as exc:
                raise ValidationError({"reference": str(exc)}) from None


class Strategy(models.TextChoices):
    """How a public model orders its deployments; gateway.strategies applies it."""

    PRIORITY = "priority", "Priority (lowest first; weighted among equals)"
    WEIGHTED = "weighted", "Weighted (A/B split, sticky per key)"
    CHEAPEST = "cheapest", "Cheapest (provider cost)"
    FASTEST = "fastest", "Fastest (latency EWMA; time to first token for streams)"
    QUALITY = "quality", "Best quality (operator score)"


class PublicModel(GatewayConfig):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDING = "embedding", "Embedding"

    name = models.CharField(max_length=200, unique=True, help_text="What customers send as `model`.")
    aliases = models.JSONField(default=list, blank=True, help_text="Other names that resolve to this model.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CHAT)
    owned_by = models.CharField(max_length=100, default="oneflow")
    # Hidden models are callable only by keys that list them in allowed_models.
    is_public = models.BooleanField(default=True, help_text="Listed and callable for every organization.")
    strategy = models.CharField(
        max_length=10,
        choices=Strategy.choices,
        default=Strategy.PRIORITY,
        help_text="How the gateway orders this model's deployments (gateway.strategies).",
    )
    max_latency_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Cheapest only: deployments slower than this (latency EWMA, ms) are tried after the others.",
    )
    # Names of other public models, tried in this order once this model's own
    # deployments are exhausted; not followed further (a fallback's fallbacks are
    # ignored), so a cycle cannot make a request loop.
    fallback_models = models.JSONField(
        default=list, blank=True, help_text="Other public models to try, in order, when this one's deployments fail."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=models.Q(strategy__in=Strategy.values),
                name="providers_publicmodel_strategy_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        names = self.fallback_models
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
            raise ValidationError({"fallback_models": "A list of public model names."})
        if self.name in names:
            raise ValidationError({"fallback_models": "A model cannot fall back to itself."})
        if len(set(names)) != len(names):
            raise ValidationError({"fallback_models": "Each fallback model may be listed once."})
        kinds = dict(PublicModel.objects.filter(name__in=names).values_list("name", "kind"))
        if missing := [name for name in names if name not in kinds]:
            raise ValidationError({"fallback_models": f"No public model is named {', '.join(missing)}."})
        if other := [name for name in names if kinds[name] != self.kind]:
            raise ValidationError({"fallback_models": f"Not a {self.kind} model: {', '.join(other)}."})


_PER_MILLION = {"max_digits": 14, "decimal_places": 6, "default": Decimal(0), "validators": [MinValueValidator(0)]}

# What a deployment may say about its limits, in tokens. The output bound is the most a
# client may ask for (gateway.validation.MAX_OUTPUT_TOKENS, tested equal); the window's
# is far above any model's, and both stay inside a PostgreSQL integer.
CONTEXT_WINDOW_MAX = 100_000_000
OUTPUT_TOKENS_MAX = 1_000_000


class Deployment(GatewayConfig):
    """One way to serve a public model: provider + upstream model + credential."""

    public_model = models.ForeignKey(PublicModel, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    credential = models.ForeignKey(Credential, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    upstream_model = models.CharField(max_length=200, help_text="The model name the provider expects.")
    priority = models.PositiveSmallIntegerField(default=1, help_text="Lower is tried first.")
    weight = models.PositiveSmallIntegerField(default=100, help_text="Share among deployments of equal priority.")
    quality_score = models.PositiveSmallIntegerField(
        default=50,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="The operator's judgement, 0-100; the best-quality strategy tries higher first.",
    )
    # Clients read both in /v1/models: a public model says the smallest of its deployments'
    # (providers.selectors.catalog_build), so no deployment that serves it is overflowed.
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(CONTEXT_WINDOW_MAX)],
        help_text="Tokens the upstream model accepts, prompt and answer together; empty if unknown.",
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(OUTPUT_TOKENS_MAX)],
        help_text="Most tokens the upstream model writes in one answer; empty if unknown.",
    )
    capabilities = models.JSONField(
        default=list, blank=True, help_text='e.g. ["tools", "vision", "json_mode"]; empty means all.'
    )
    # What the provider charges OneFlow, in USD per 1M tokens (margin = price - cost).
    cost_input_per_1m = models.DecimalField(**_PER_MILLION)  # type: ignore[arg-type]
    cost_cached_input_per_1m = models.DecimalField(**_PER_MILLION)  # type: ignore[arg-type]
    cost_output_per_1m = models.DecimalField(**_PER_MILLION)  # type: ignore[arg-type]
    rpm_quota = models.PositiveIntegerField(null=True, blank=True, help_text="Provider's requests per minute.")
    tpm_quota = models.PositiveIntegerField(null=True, blank=True, help_text="Provider's tokens per minute.")
    enabled = models.BooleanField(default=True, help_text="A manual disable is never undone automatically.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar = ["public_model", "priority", "-weight", "pk"]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=models.Q(quality_score__lte=100), name="providers_deployment_quality_score_at_most_100"
            ),
            models.CheckConstraint(
                condition=models.Q(max_output_tokens__isnull=True)
                | models.Q(max_output_tokens__gte=1, max_output_tokens__lte=OUTPUT_TOKENS_MAX),
                name="providers_deployment_max_output_tokens_bounded",
            ),
            # An answer is part of the context, so it cannot be longer than the window.
            models.CheckConstraint(
                condition=models.Q(max_output_tokens__isnull=True)
                | models.Q(context_window__isnull=True)
                | models.Q(max_output_tokens__lte=models.F("context_window")),
                name="providers_deployment_output_within_context",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_model.name} → {self.provider.name}:{self.upstream_model}"


class ModelAccess(GatewayConfig):
    """Makes a public model that is not public to all visible to one organization."""

    public_model = models.ForeignKey("providers.PublicModel", on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Born in the routing app; the gateway reads it with the catalog, so it lives here now.
        db_table = "routing_modelaccess"
        verbose_name_plural = "model access grants"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["public_model", "organization"], name="routing_modelaccess_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.organization} may use {self.public_model}"
