"""Routing's own configuration, and its view of the deployments."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.db import models
from django.utils import timezone

from billing.models import UsageRollup
from oneflow.lib.config_version import GatewayConfig
from providers.models import Deployment, PublicModel

if TYPE_CHECKING:
    from routing.breakers import Health


class ModelAccess(GatewayConfig):
    """Makes a public model that is not public to all visible to one organization."""

    public_model = models.ForeignKey("providers.PublicModel", on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "model access grants"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["public_model", "organization"], name="routing_modelaccess_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.organization} may use {self.public_model}"


class DeploymentHealth(Deployment):
    """Deployments as the gateway sees them: breaker state and health, read from Redis (routing.admin)."""

    health: Health | None = None  # filled from Redis by the admin, a page at a time

    class Meta:
        proxy = True
        verbose_name = "deployment health"
        verbose_name_plural = "deployment health"


class RouteResults(PublicModel):
    """Public models as A/B arms: each deployment's traffic, errors, latency and cost
    over a recent window, read from usage events (routing.admin, routing.selectors)."""

    class Meta:
        proxy = True
        verbose_name = "route results"
        verbose_name_plural = "route results"


class _NoRows(models.Manager["Overview"]):
    def get_queryset(self) -> models.QuerySet[Overview]:
        return super().get_queryset().none()


class Overview(UsageRollup):
    """The operator overview: a page, not a table (routing.admin_overview). Its
    figures are sums of the usage rollups; it lists no row of its own, so the
    admin has no change page to offer for it."""

    objects: ClassVar[_NoRows] = _NoRows()

    class Meta:
        proxy = True
        verbose_name = "operator overview"
        verbose_name_plural = "operator overview"
