from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from oneflow.lib import config_version
from routing.models import ModelAccess


@admin.register(ModelAccess)
class ModelAccessAdmin(admin.ModelAdmin):
    list_display = ("public_model", "organization", "created_at")
    search_fields = ("public_model__name", "organization__name")
    list_select_related = ("public_model", "organization")
    autocomplete_fields = ("public_model", "organization")
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        config_version.bump()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        config_version.bump()
