"""The operator overview in the admin: the platform's requests, errors and money over
a recent window, its biggest spenders, and every deployment's breaker and health.

Who may open it: active staff with the view permission on usage rollups
(``billing.view_usagerollup``; superusers have it), since the page shows every
organization's usage and spend. The overview's own model permissions are not used.

It reads the rollups and Redis, never the usage events: a fixed number of
queries (billing.selectors.platform_usage, routing.selectors.health_board)
however many requests the platform has served.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from billing import selectors as billing_selectors
from billing.models import UsageRollup
from billing.selectors import PlatformUsage, UsageLeader, UsageSums
from oneflow.lib import money
from oneflow.lib.admin import ViewOnlyAdmin
from routing import health_display, selectors
from routing.models import Overview

VIEW_PERMISSION = "billing.view_usagerollup"


@admin.register(Overview)
class OverviewAdmin(ViewOnlyAdmin, admin.ModelAdmin):
    """Its changelist is the overview; it has no rows to add, change or delete."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def has_module_permission(self, request: HttpRequest) -> bool:
        # Listed under Routing on the index for whoever may open it, routing permissions or not.
        return self.has_view_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])  # the page only reads
        if not self.has_view_permission(request):
            raise PermissionDenied
        window = request.GET.get("window", "")
        if window not in billing_selectors.PLATFORM_WINDOWS:
            window = billing_selectors.PLATFORM_DEFAULT_WINDOW
        usage = billing_selectors.platform_usage(window=window, now=timezone.now())
        board = selectors.health_board()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Operator overview",
            "windows": list(billing_selectors.PLATFORM_WINDOWS),
            "window": window,
            "usage": usage,
            "hourly": usage.period == UsageRollup.Period.HOUR,
            "totals": _sums_row(usage.totals),
            "buckets": [_bucket_row(start, sums, usage) for start, sums in usage.buckets],
            "chart": _chart(usage),
            "top_tables": [
                {
                    "id": "top-organizations",
                    "noun": "organization",
                    "rows": [_leader_row(row, _organization_url(row)) for row in usage.top_organizations],
                },
                {"id": "top-models", "noun": "model", "rows": [_leader_row(row, "") for row in usage.top_models]},
            ],
            "credits_outstanding": money.display_text(usage.credits_outstanding),
            "board": board,
            "deployments": [_health_row(row) for row in board.rows],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/routing/overview.html", context)


def _sums_row(sums: UsageSums) -> dict[str, Any]:
    """Money half-up to 2 places, rounded once from the exact sums; rates to 0.1 %."""
    return {
        "requests": sums.requests,
        "errors": sums.errors,
        "error_rate": _percent(sums.error_rate),
        "cost": money.display_text(sums.cost),
        "provider_cost": money.display_text(sums.provider_cost_usd),
        "margin": money.display_text(sums.margin_usd),
    }


def _bucket_row(start: datetime, sums: UsageSums, usage: PlatformUsage) -> dict[str, Any]:
    hourly = usage.period == UsageRollup.Period.HOUR
    return {"label": start.strftime("%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"), **_sums_row(sums)}


def _chart(usage: PlatformUsage) -> dict[str, list[str] | list[int]]:
    """What dashboard.js draws: labels, credits as exact strings (never floats), requests."""
    hourly = usage.period == UsageRollup.Period.HOUR
    return {
        "labels": [start.strftime("%H:00" if hourly else "%m-%d") for start, _ in usage.buckets],
        "spend": [money.display_text(sums.cost) for _, sums in usage.buckets],
        "requests": [sums.requests for _, sums in usage.buckets],
    }


def _leader_row(leader: UsageLeader, url: str) -> dict[str, Any]:
    return {"key": leader.key, "name": leader.name, "url": url, **_sums_row(leader.sums)}


def _organization_url(leader: UsageLeader) -> str:
    return reverse("admin:accounts_organization_change", args=[leader.key])


def _health_row(row: selectors.DeploymentStatus) -> dict[str, Any]:
    deployment, health = row.deployment, row.health
    return {
        "id": deployment.pk,
        "label": f"{deployment.provider.name}: {deployment.upstream_model}",
        "model": deployment.public_model.name,
        "url": reverse("admin:routing_deploymenthealth_change", args=[deployment.pk]),
        "enabled": deployment.enabled and deployment.provider.enabled,
        "state": health.state.value if health else "unknown",
        "breaker": health_display.breaker_text(health, unknown="unknown"),
        "latency": health_display.milliseconds(health.latency_ms if health else None),
        "ttft": health_display.milliseconds(health.ttft_ms if health else None),
        "error_rate": health_display.error_rate_text(health),
    }


def _percent(value: float | None) -> str:
    return health_display.NONE if value is None else f"{value:.1%}"
