from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest

from providers.admin import ConfigAdmin
from routing import breakers
from routing.breakers import Health, State
from routing.models import DeploymentHealth, ModelAccess


@admin.register(ModelAccess)
class ModelAccessAdmin(ConfigAdmin):
    list_display = ("public_model", "organization", "created_at")
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


_NONE = "—"


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
        health = row.health
        if health is None:
            return _NONE
        label = {State.CLOSED: "closed", State.HALF_OPEN: "half-open", State.OPEN: "open"}[health.state]
        return f"{label} (forced)" if health.forced else label

    @admin.display(description="latency (EWMA)")
    def latency(self, row: DeploymentHealth) -> str:
        return _milliseconds(row.health.latency_ms if row.health else None)

    @admin.display(description="time to first token (EWMA)")
    def ttft(self, row: DeploymentHealth) -> str:
        return _milliseconds(row.health.ttft_ms if row.health else None)

    @admin.display(description="errors (last minute)")
    def error_rate(self, row: DeploymentHealth) -> str:
        health: Health | None = row.health
        if health is None or health.error_rate is None:
            return _NONE
        return f"{health.error_rate:.0%} of {health.calls}"

    @admin.action(description="Open breaker (held open until closed here)", permissions=["change"])
    def open_breakers(self, request: HttpRequest, queryset: QuerySet[DeploymentHealth]) -> None:
        moved = breakers.breakers_force_open(deployment_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Opened {len(moved)} breaker(s): the gateway skips them.", messages.WARNING)

    @admin.action(description="Close breaker (the enabled switch is left as it is)", permissions=["change"])
    def close_breakers(self, request: HttpRequest, queryset: QuerySet[DeploymentHealth]) -> None:
        moved = breakers.breakers_force_close(deployment_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Closed {len(moved)} breaker(s).")


def _milliseconds(value: float | None) -> str:
    return _NONE if value is None else f"{value:.0f} ms"
