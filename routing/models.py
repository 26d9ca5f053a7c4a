"""The routing app's views of other apps' tables for the admin (proxy models):
deployment health, route results and the operator overview."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.db import models

from billing.models import UsageRollup
from providers.models import Deployment, PublicModel

if TYPE_CHECKING:
    from gateway.breakers import Health


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
