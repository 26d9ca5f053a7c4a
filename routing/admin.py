from __future__ import annotations

from django.contrib import admin

from providers.admin import ConfigAdmin
from routing.models import ModelAccess


@admin.register(ModelAccess)
class ModelAccessAdmin(ConfigAdmin):
    list_display = ("public_model", "organization", "created_at")
    search_fields = ("public_model__name", "organization__name")
    list_select_related = ("public_model", "organization")
    autocomplete_fields = ("public_model", "organization")
