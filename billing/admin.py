"""Usage is read-only in the admin: it records what happened."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import UsageEvent


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "request_id",
        "organization",
        "public_model",
        "provider",
        "status_code",
        "prompt_tokens",
        "completion_tokens",
        "usage_source",
        "latency_ms",
    )
    list_filter = ("status_code", "usage_source", "stream", "endpoint")
    search_fields = ("request_id", "public_model", "provider")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
