from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

import routing.admin_overview  # noqa: F401 - registers the operator overview
from accounts.admin import organization_filter
from audit.models import AuditEntry
from audit.services import audit_record
from gateway import breakers
from oneflow.lib import money
from oneflow.lib.admin import LargeTableAdmin, ViewOnlyAdmin
from providers.admin import ConfigAdmin
from providers.models import ModelAccess
from routing import health_display, selectors
from routing.models import DeploymentHealth, RouteResults


@admin.register(ModelAccess)
class ModelAccessAdmin(LargeTableAdmin, ConfigAdmin):
    list_display = ("public_model", "organization", "created_at")
    list_filter = ("public_model", organization_filter())  # public models are few; organizations are not
    search_fields = ("public_model__name", "organization__name")
    list_select_related = ("public_model", "organization")
    autocomplete_fields = ("public_model", "organization")


class _HealthChangeList(ChangeList):
    """Reads the health of the page's deployments from Redis in one round trip, not one per row."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        found = breakers.deployments_health(deployment_ids=[row.pk for row in self.result_list])
        for row in self.result_list:
            row.health = found.get(row.pk)


@admin.register(DeploymentHealth)
class DeploymentHealthAdmin(admin.ModelAdmin):
    """Breaker state and live health per deployment, with the operator's breaker switches.

    The breaker is not the deployment's enabled switch: closing a breaker
    never enables a disabled deployment (that is done in Providers).
    """

    list_display = ("__str__", "provider", "enabled", "breaker", "latency", "ttft", "error_rate")
    list_filter = ("enabled", "provider")
    search_fields = ("public_model__name", "upstream_model", "provider__name")
    list_select_related = ("public_model", "provider")
    fields = ("public_model", "provider", "upstream_model", "enabled", "breaker", "latency", "ttft", "error_rate")
    readonly_fields = fields
    actions = ("open_breakers", "close_breakers")
    show_full_result_count = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _HealthChangeList

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        row = super().get_object(request, object_id, from_field)
        if row is not None:
            row.health = breakers.deployments_health(deployment_ids=[row.pk]).get(row.pk)
        return row

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deployments are added under Providers

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The page of one deployment only shows; the breaker actions need the permission.
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="breaker")
    def breaker(self, row: DeploymentHealth) -> str:
        return health_display.breaker_text(row.health)

    @admin.display(description="latency (EWMA)")
    def latency(self, row: DeploymentHealth) -> str:
        return health_display.milliseconds(row.health.latency_ms if row.health else None)

    @admin.display(description="time to first token (EWMA)")
    def ttft(self, row: DeploymentHealth) -> str:
        return health_display.milliseconds(row.health.ttft_ms if row.health else None)

    @admin.display(description="errors (last minute)")
    def error_rate(self, row: DeploymentHealth) -> str:
        return health_display.error_rate_text(row.health)

    @admin.action(description="Open breaker (held open until closed here)", permissions=["change"])
    def open_breakers(self, request: HttpRequest, queryset: QuerySet[DeploymentHealth]) -> None:
        rows = _rows(queryset)
        moved = breakers.breakers_force_open(deployment_ids=list(rows))
        _audit_forced(request, AuditEntry.Action.BREAKER_FORCE_OPEN, rows, moved)
        self.message_user(request, f"Opened {len(moved)} breaker(s): the gateway skips them.", messages.WARNING)

    @admin.action(description="Close breaker (the enabled switch is left as it is)", permissions=["change"])
    def close_breakers(self, request: HttpRequest, queryset: QuerySet[DeploymentHealth]) -> None:
        rows = _rows(queryset)
        moved = breakers.breakers_force_close(deployment_ids=list(rows))
        _audit_forced(request, AuditEntry.Action.BREAKER_FORCE_CLOSE, rows, moved)
        self.message_user(request, f"Closed {len(moved)} breaker(s).")


def _rows(queryset: QuerySet[DeploymentHealth]) -> dict[int, DeploymentHealth]:
    return {row.pk: row for row in queryset.select_related("public_model", "provider")}


def _audit_forced(
    request: HttpRequest, action: str, rows: dict[int, DeploymentHealth], moved: list[breakers.Transition]
) -> None:
    """Records each forced breaker, also one already in that state: the force holds it there."""
    for transition in moved:
        changes = {"breaker": {"before": transition.before.value, "after": transition.after.value}}
        audit_record(actor=request.user, action=action, obj=rows[transition.deployment_id], changes=changes)


@admin.register(RouteResults)
class RouteResultsAdmin(ViewOnlyAdmin, admin.ModelAdmin):
    """A/B results: for one model, each deployment's requests, failures, latency and
    cost over the last hour, day or week, next to the share its weight asks for.

    The list is every public model; a model's page is its results (read-only: the
    model itself is edited under Providers).
    """

    list_display = ("name", "strategy", "kind", "is_public")
    list_filter = ("strategy", "kind")
    search_fields = ("name",)
    ordering = ("name",)
    show_full_result_count = False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])  # the page only reads
        model = self.get_object(request, unquote(object_id))
        if model is None:
            raise Http404("No such public model.")
        if not self.has_view_permission(request, model):
            raise PermissionDenied
        window = request.GET.get("window", "")
        report = selectors.route_report(
            model=model, window=window if window in selectors.WINDOWS else selectors.DEFAULT_WINDOW, now=timezone.now()
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": model,
            "title": f"A/B results of {model.name}",
            "report": report,
            "strategy": model.get_strategy_display(),
            "windows": list(selectors.WINDOWS),
            "rows": [_arm_row(arm) for arm in report.arms],
            "sample_per_arm": f"{selectors.SAMPLE_PER_ARM:,}",
        }
        return TemplateResponse(request, "admin/routing/routeresults/results.html", context)


def _arm_row(arm: selectors.Arm) -> dict[str, Any]:
    """One arm as the page shows it: percentages to 0.1, milliseconds whole, money half-up to 2 places."""
    deployment = arm.deployment
    return {
        "id": arm.deployment_id,
        "label": f"{deployment.provider.name}: {deployment.upstream_model}" if deployment else "deleted deployment",
        "url": reverse("admin:providers_deployment_change", args=[arm.deployment_id]) if deployment else "",
        "serves": "" if arm.own or deployment is None else deployment.public_model.name,
        "enabled": deployment is not None and deployment.enabled and deployment.provider.enabled,
        "priority": deployment.priority if deployment else health_display.NONE,
        "weight": deployment.weight if deployment else health_display.NONE,
        "weight_share": _percent(arm.weight_share),
        "traffic_share": _percent(arm.traffic_share),
        "requests": arm.requests,
        "errors": arm.errors,
        "error_rate": _percent(arm.error_rate),
        "p50": health_display.milliseconds(arm.latency.p50),
        "p95": health_display.milliseconds(arm.latency.p95),
        "p99": health_display.milliseconds(arm.latency.p99),
        "ttft_p50": health_display.milliseconds(arm.latency.ttft_p50),
        "cost": _money(arm.cost_per_request),
        "provider_cost": _money(arm.provider_cost_per_request),
        "margin": _money(arm.margin_per_request),
    }


def _percent(value: float | None) -> str:
    return health_display.NONE if value is None else f"{value:.1%}"


def _money(value: Decimal | None) -> str:
    return health_display.NONE if value is None else money.display_text(value)
