"""The audit log in the admin, read-only, and the mixin that writes to it.

AuditedAdmin records every add, change and delete made through a model's admin
page. Staff actions that are not a form save (an admin action, a custom view:
a credit grant, a refund, a breaker forced open) record themselves through
audit.services.audit_record.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from audit.models import AuditEncoder, AuditEntry
from audit.services import audit_record, form_changes, row_changes
from oneflow.lib.admin import LargeTableAdmin, RecentFilter, ViewOnlyAdmin, related_id_filter

Action = AuditEntry.Action


class AuditedAdmin(admin.ModelAdmin):
    """Records each add, change and delete made on this admin's pages, inline rows
    included, in the audit log. The admin runs those views in a transaction, so
    a change and its record are stored together or not at all. A save that
    changes no field records nothing."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        changes = form_changes(form)  # before the save: the form's initial values are the "before"
        super().save_model(request, obj, form, change)
        if changes or not change:
            audit_record(actor=request.user, action=Action.CHANGE if change else Action.ADD, obj=obj, changes=changes)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        deleted = set(formset.deleted_forms)
        pending = [_inline_entry(row, row in deleted) for row in formset.forms if row in deleted or row.has_changed()]
        super().save_formset(request, form, formset, change)
        for row, action, object_id, changes in filter(None, pending):
            audit_record(actor=request.user, action=action, obj=row.instance, object_id=object_id, changes=changes)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(actor=request.user, action=Action.DELETE, obj=obj, changes=row_changes(obj, deleted=True))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # "Delete selected" runs outside the admin's transactions: this one keeps the records with the deletion.
        with transaction.atomic():
            for obj in queryset:
                audit_record(actor=request.user, action=Action.DELETE, obj=obj, changes=row_changes(obj, deleted=True))
            super().delete_queryset(request, queryset)


def _inline_entry(row: Any, deleted: bool) -> tuple[Any, str, Any, dict[str, Any]] | None:
    """What an inline row's save will record: (form, action, id if it is deleted, changes), or None."""
    if row.instance._state.adding:
        return None if deleted else (row, Action.ADD, None, form_changes(row))
    if deleted:  # its id is gone once deleted: taken now
        return row, Action.DELETE, row.instance.pk, row_changes(row.instance, deleted=True)
    changes = form_changes(row)
    return (row, Action.CHANGE, None, changes) if changes else None


class ModelFilter(admin.SimpleListFilter):
    """The models with an admin page, named without a query (a SELECT DISTINCT would read the whole log)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        models = {model._meta.concrete_model._meta for model in model_admin.admin_site._registry}
        return sorted((meta.label_lower, str(meta.verbose_name).capitalize()) for meta in models)

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        app_label, _, model = (self.value() or "").partition(".")
        return queryset.filter(app_label=app_label, model=model) if model else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ViewOnlyAdmin, LargeTableAdmin, admin.ModelAdmin):
    """Who did what to which row, before and after, and when. Only shown: entries are
    never added, changed or deleted here."""

    list_display = ("created_at", "actor_link", "action", "model_label", "object_link", "object_repr", "summary")
    # By one actor given by id (a row's actor links to it), never listing the users: they are the customers too.
    list_filter = ("action", ModelFilter, related_id_filter(get_user_model(), "actor", parameter="actor"), RecentFilter)
    # Exact, served by the object_id index: one row's history.
    search_fields = ("object_id__exact",)
    search_help_text = "The id of the row acted on, exactly."
    ordering = ("-created_at",)  # index audit_entry_created
    sortable_by = ("created_at",)
    fields = (
        "created_at",
        "actor",
        "actor_email",
        "action",
        "model_label",
        "object_link",
        "object_repr",
        "changes_display",
    )
    readonly_fields = fields

    @admin.display(description="actor")
    def actor_link(self, entry: AuditEntry) -> str:
        if entry.actor_id is None:
            return entry.actor_email or "-"
        return format_html('<a href="?{}">{}</a>', urlencode({"actor": entry.actor_id}), entry.actor_email)

    @admin.display(description="model")
    def model_label(self, entry: AuditEntry) -> str:
        return f"{entry.app_label}.{entry.model}"

    @admin.display(description="object id")
    def object_link(self, entry: AuditEntry) -> str:
        try:
            url = reverse(f"admin:{entry.app_label}_{entry.model}_change", args=[entry.object_id])
        except NoReverseMatch:  # no admin page, or no id (a row of a model without one)
            return entry.object_id
        return format_html('<a href="{}">{}</a>', url, entry.object_id)

    @admin.display(description="changed")
    def summary(self, entry: AuditEntry) -> str:
        return ", ".join(entry.changes) if isinstance(entry.changes, dict) else ""

    @admin.display(description="changes")
    def changes_display(self, entry: AuditEntry) -> str:
        text = json.dumps(entry.changes, cls=AuditEncoder, indent=2, sort_keys=True)
        return format_html("<pre>{}</pre>", text)
