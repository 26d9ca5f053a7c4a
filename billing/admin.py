"""Billing in the admin: prices are versioned, money tables are read-only, and
credits move only through the ledger services."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing import price_imports, selectors, services
from billing.forms import PriceFileForm, PriceImportConfirmForm, RefundForm
from billing.models import BillingAccount, Budget, BudgetAlert, LedgerEntry, Price, UsageEvent
from oneflow.lib import money
from oneflow.lib.errors import ServiceError


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
    """Entries are never edited; a charge is corrected by refunding it, through the refund service."""

    list_display = ("created_at", "account", "kind", "amount", "request_id", "note", "created_by", "refund_link")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "request_id", "account__organization__name")
    list_select_related = ("account__organization", "created_by")
    ordering = ("-created_at",)
    actions = ("refund_charges",)

    def has_refund_permission(self, request: HttpRequest) -> bool:
        # Entries are never added by hand here, so the add permission is free to mean "may refund".
        return request.user.has_perm("billing.add_ledgerentry")

    def get_urls(self) -> list[URLPattern]:
        refund = self.admin_site.admin_view(self.refund_view)
        return [path("<int:entry_id>/refund/", refund, name="billing_ledgerentry_refund"), *super().get_urls()]

    @admin.display(description="refund")
    def refund_link(self, entry: LedgerEntry) -> str:
        if entry.kind != LedgerEntry.Kind.CHARGE or not entry.request_id:
            return ""
        return format_html('<a href="{}">Refund…</a>', reverse("admin:billing_ledgerentry_refund", args=[entry.pk]))

    @admin.action(description="Refund selected charges", permissions=["refund"])
    def refund_charges(self, request: HttpRequest, queryset: models.QuerySet[LedgerEntry]) -> None:
        refunded, total, already, not_charges = 0, money.ZERO, 0, 0
        for entry in queryset.select_related("account__organization").order_by("pk"):
            if entry.kind != LedgerEntry.Kind.CHARGE or not entry.request_id:
                not_charges += 1
                continue
            try:
                refund = services.refund_issue(
                    organization=entry.account.organization,
                    request_id=entry.request_id,
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except ServiceError as exc:
                if exc.code == "already_refunded":
                    already += 1
                else:
                    self.message_user(request, f"{entry.request_id}: {exc.message}", level=messages.ERROR)
                continue
            refunded += 1
            total += refund.amount
        summary = f"Refunded {refunded} charge(s), {money.display_text(total)} credits in all."
        if already:
            summary += f" Skipped {already} already fully refunded."
        if not_charges:
            summary += f" Skipped {not_charges} entries that are not refundable charges."
        self.message_user(request, summary, level=messages.SUCCESS if refunded else messages.WARNING)

    def refund_view(self, request: HttpRequest, entry_id: int) -> HttpResponse:
        """Refunds part (or the rest) of one charge."""
        if not self.has_refund_permission(request):
            raise PermissionDenied
        charges = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE).exclude(request_id="")
        entry = get_object_or_404(charges.select_related("account__organization"), pk=entry_id)
        organization = entry.account.organization
        state = selectors.refundable(organization_id=organization.pk, request_id=entry.request_id)
        form = RefundForm(request.POST or None, initial={"refunds_seen": state.refunds})
        if request.method == "POST" and form.is_valid():
            try:
                refund = services.refund_issue(
                    organization=organization,
                    request_id=entry.request_id,
                    amount=form.cleaned_data["amount"],
                    refunds_seen=form.cleaned_data["refunds_seen"],
                    note=form.cleaned_data["note"],
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except ServiceError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                message = f"Refunded {money.display_text(refund.amount)} credits of request {entry.request_id}."
                self.message_user(request, message, level=messages.SUCCESS)
                changelist = reverse("admin:billing_ledgerentry_changelist")
                return redirect(f"{changelist}?{urlencode({'q': entry.request_id})}")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Refund request {entry.request_id}",
            "entry": entry,
            "organization": organization,
            "charged": money.display_text(state.charged),
            "refunded": money.display_text(state.refunded),
            "remaining": money.display_text(state.remaining),
            "form": form,
        }
        return TemplateResponse(request, "admin/billing/ledgerentry/refund.html", context)


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """A price change is a new version with its own effective time; versions in
    force are history and cannot be edited or deleted. Versions come one at a
    time or from a file (import), and a model's versions can be compared side by side."""

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
    change_list_template = "admin/billing/price/change_list.html"

    def has_change_permission(self, request: HttpRequest, obj: Price | None = None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or not self._in_force(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Price | None = None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or not self._in_force(obj))

    @staticmethod
    def _in_force(price: Price) -> bool:
        return price.effective_from <= timezone.now()

    def save_model(self, request: HttpRequest, obj: Price, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.prices_changed()

    def delete_model(self, request: HttpRequest, obj: Price) -> None:
        super().delete_model(request, obj)
        services.prices_changed()

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Price]) -> None:
        super().delete_queryset(request, queryset)
        services.prices_changed()

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="billing_price_import"),
            path("compare/", wrap(self.compare_view), name="billing_price_compare"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        base = {**self.admin_site.each_context(request), "opts": self.opts, "title": title}
        return TemplateResponse(request, f"admin/billing/price/{template}", {**base, **context})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a file, see each row next to the price in force, confirm: all rows are imported or none."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST" and "rows" in request.POST:
            return self._import_confirmed(request)
        form = PriceFileForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            rows = form.cleaned_data["rows"]
            try:
                preview = price_imports.import_preview(rows=rows, now=timezone.now())
            except ServiceError as exc:
                return self._page(request, "import.html", "Import prices", form=form, errors=self._errors(exc))
            confirm = PriceImportConfirmForm(initial={"rows": rows})
            return self._page(request, "import_preview.html", "Check the prices", preview=preview, confirm=confirm)
        return self._page(request, "import.html", "Import prices", form=form, errors=[])

    def _import_confirmed(self, request: HttpRequest) -> HttpResponse:
        confirm = PriceImportConfirmForm(request.POST)
        if not confirm.is_valid():
            errors = [error for errors in confirm.errors.values() for error in errors]
            return self._page(request, "import.html", "Import prices", form=PriceFileForm(), errors=errors)
        try:
            created = services.prices_import(rows=confirm.cleaned_data["rows"], created_by=request.user)  # type: ignore[arg-type]
        except ServiceError as exc:
            return self._page(request, "import.html", "Import prices", form=PriceFileForm(), errors=self._errors(exc))
        self.message_user(request, f"Imported {len(created)} price version(s).", level=messages.SUCCESS)
        return redirect("admin:billing_price_changelist")

    def compare_view(self, request: HttpRequest) -> HttpResponse:
        """One model's versions side by side, each with its changes from the one before."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        model = request.GET.get("model", "")
        versions = price_imports.versions_compare(public_model=model, now=timezone.now()) if model else []
        return self._page(
            request,
            "compare.html",
            f"Price versions of {model}" if model else "Compare price versions",
            model_names=price_imports.price_models(),
            model=model,
            versions=versions,
            lines=price_imports.versions_by_field(versions),
        )

    @staticmethod
    def _errors(exc: ServiceError) -> list[str]:
        return exc.errors if isinstance(exc, price_imports.PriceRowsInvalid) else [exc.message]


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


# --- Budgets ------------------------------------------------------------------------------


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Budgets are gateway configuration: every change here reaches the gateways at once."""

    list_display = ("organization", "api_key", "period", "limit", "alert_thresholds", "enabled", "updated_at")
    list_filter = ("period", "enabled")
    search_fields = ("organization__name", "organization__slug", "api_key__name", "api_key__public_id")
    list_select_related = ("organization", "api_key")
    autocomplete_fields = ("organization", "api_key")
    readonly_fields = ("created_at", "updated_at")
    ordering = ("organization__name", "api_key_id", "period")
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.budget_config_changed()

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        super().delete_model(request, obj)
        services.budget_config_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        super().delete_queryset(request, queryset)
        services.budget_config_changed()


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "budget", "threshold", "spent", "limit", "window_start")
    list_filter = ("threshold",)
    search_fields = ("budget__organization__name", "budget__organization__slug", "budget__api_key__public_id")
    list_select_related = ("budget__organization", "budget__api_key")
    ordering = ("-created_at",)
