"""Usage, credits and prices. (Prices, ledger and holds arrive with the billing issue.)"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone


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
    # Deployment and provider as they were: billing does not depend on the providers app.
    deployment_id = models.PositiveIntegerField(null=True)
    provider = models.CharField(max_length=100, blank=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usage_source = models.CharField(max_length=10, choices=Source.choices)
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, help_text="Time to first token, streams only.")
    attempts = models.PositiveSmallIntegerField(default=1)
    client_disconnected = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, help_text="When the request arrived.")

    class Meta:
        indexes: ClassVar = [
            # The request log: one organization's newest requests first.
            models.Index(fields=["organization", "-created_at"], name="billing_usage_org_recent"),
            # Retention: dropping detail older than the window.
            models.Index(fields=["created_at"], name="billing_usage_created"),
        ]

    def __str__(self) -> str:
        return self.request_id
