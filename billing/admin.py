"""Billing in the admin: prices are versioned, money tables are read-only, and
credits move only through the ledger services."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from billing import services
from billing.models import BillingAccount, LedgerEntry, Price, UsageEvent
from oneflow.lib import money


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records of what happened: viewable, never edited or deleted here."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
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
    ordering = ("-created_at",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "account", "kind", "amount", "request_id", "note", "created_by")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "request_id", "account__organization__name")
    list_select_related = ("account__organization", "created_by")
    ordering = ("-created_at",)


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """A price change is a new version with its own effective time; versions in
    force are history and cannot be edited or deleted."""

    list_display = (
        "public_model",
        "effective_from",
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "request_fee",
        "is_free",
    )
    list_filter = ("is_free",)
    search_fields = ("public_model",)
    ordering = ("public_model", "-effective_from")
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj: Price | None = None) -> bool:
        return obj is None or not self._in_force(obj)

    def has_delete_permission(self, request: HttpRequest, obj: Price | None = None) -> bool:
        return obj is None or not self._in_force(obj)

    @staticmethod
    def _in_force(price: Price) -> bool:
        return price.effective_from <= timezone.now()


class GrantForm(forms.ModelForm):
    grant = forms.DecimalField(
        required=False,
        min_value=money.INTERNAL_QUANTUM,
        decimal_places=money.INTERNAL_PLACES,
        help_text="Credits to add.",
    )
    note = forms.CharField(required=False, max_length=300)
    # One key per rendered form: a double submit grants once.
    grant_key = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = BillingAccount
        fields = ("markup",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["grant_key"].initial = f"admin-grant:{uuid.uuid4()}"


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    form = GrantForm
    list_display = ("organization", "balance_display", "markup", "updated_at")
    search_fields = ("organization__name", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "balance_display")
    show_full_result_count = False

    @admin.display(description="balance (credits)")
    def balance_display(self, account: BillingAccount) -> str:
        return money.display_text(account.balance)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: BillingAccount, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        amount = form.cleaned_data.get("grant")
        if amount:
            key = form.cleaned_data["grant_key"] or f"admin-grant:{uuid.uuid4()}"
            note = form.cleaned_data.get("note") or "granted by an operator"
            # The admin saves inside its own transaction; the ledger service
            # owns a durable one, so it runs once the admin's has committed.
            transaction.on_commit(lambda: self._grant(request, obj, amount, key, note))

    def _grant(self, request: HttpRequest, account: BillingAccount, amount: Any, key: str, note: str) -> None:
        services.credits_grant(
            organization=account.organization,
            amount=amount,
            idempotency_key=key,
            note=note,
            created_by=request.user,  # type: ignore[arg-type]
        )
        self.message_user(request, f"Granted {money.display_text(amount)} credits.", level=messages.SUCCESS)
