"""Billing in the admin: prices are versioned, money tables are read-only, and
credits move only through the ledger services.

Usage events, ledger entries and rollups grow with traffic (a million rows is an
ordinary month): their lists read one index range a page. They are ordered by
an indexed time, count at most oneflow.lib.admin.COUNT_CAP rows, search by exact
ids only, and filter by choices that need no query (status class, recent window)
or by one organization or key given by id (a row's organization links to it).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar
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

from accounts.admin import api_key_filter, changelist_links, filter_link, organization_filter
from audit.admin import AuditedAdmin
from audit.models import AuditEntry
from audit.services import audit_record, row_changes
from billing import price_imports, selectors, services
from billing.forms import PriceFileForm, PriceForm, PriceImportConfirmForm, RefundForm
from billing.models import (
    CREDITS_MAX,
    BillingAccount,
    Budget,
    BudgetAlert,
    LedgerEntry,
    Price,
    UsageEvent,
    UsageRollup,
)
from oneflow.lib import money
from oneflow.lib.admin import LargeTableAdmin, RecentFilter, ViewOnlyAdmin
from oneflow.lib.errors import ServiceError


class ReadOnlyAdmin(ViewOnlyAdmin, LargeTableAdmin, admin.ModelAdmin):
    """For records of what happened: viewable, never edited or deleted here."""


def _audit_posting(request: HttpRequest, action: str, entry: LedgerEntry, since: datetime) -> None:
    """Records a grant or refund the ledger posted since ``since``. A replay (a double
    submit, given the first entry back for its idempotency key) is not recorded twice."""
    if entry.created_at >= since:
        audit_record(actor=request.user, action=action, obj=entry, changes=row_changes(entry))


class StatusClassFilter(admin.SimpleListFilter):
    """Answers by class, served by the time index (2xx) or the failures' (4xx, 5xx).
    Listing each status code seen would read the whole table (SELECT DISTINCT)."""

    title = "status"
    parameter_name = "status"
    CLASSES: ClassVar = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in self.CLASSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageEvent]) -> QuerySet[UsageEvent]:
        if (bounds := self.CLASSES.get(self.value() or "")) is None:
            return queryset
        return queryset.filter(status_code__gte=bounds[0], status_code__lt=bounds[1])


class RecentBucketFilter(RecentFilter):
    field_name = "bucket"


class LedgerOrganizationFilter(organization_filter("account__organization")):  # type: ignore[misc]
    """Filters by the organization's account id, looked up first. Given the id
    itself, the planner knows how many entries the account has and reads them
    newest first through the statement index; through a join or a subquery it
    guesses a few, and reads and sorts all of a large account's entries."""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if (chosen := self.chosen()) is None:
            return queryset
        account_id = BillingAccount.objects.filter(organization_id=chosen).values_list("pk", flat=True).first()
        return queryset.none() if account_id is None else queryset.filter(account_id=account_id)


def _organization(row: UsageEvent | UsageRollup | LedgerEntry) -> str:
    organization = row.account.organization if isinstance(row, LedgerEntry) else row.organization
    return filter_link(organization, organization=organization.pk)


def _api_key(row: UsageEvent | UsageRollup) -> str:
    return "-" if row.api_key is None else filter_link(row.api_key.name, apikey=row.api_key_id)


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "request_id",
        "organization_link",
        "api_key_link",
        "public_model",
        "provider",
        "status_code",
        "prompt_tokens",
        "cache_reads",
        "cache_writes",
        "completion_tokens",
        "reasoning",
        "usage_source",
        "latency_ms",
        "cost_display",
    )
    # Each filter is served by an index. None by usage source or stream: no index
    # serves them, and a rare value would make the list read the whole table.
    list_filter = (RecentFilter, StatusClassFilter, organization_filter(), api_key_filter())
    # Exact (case-sensitive: "=" would compare UPPER()s, which no index serves): one probe
    # of the unique index. A substring search would read every row.
    search_fields = ("request_id__exact",)
    search_help_text = "A request id (the x-request-id header), exactly."
    list_select_related = ("organization", "api_key")
    # The created_at index serves this order (and the organization's or key's index once filtered by them).
    ordering = ("-created_at",)
    sortable_by = ("created_at",)

    @admin.display(description="organization")
    def organization_link(self, event: UsageEvent) -> str:
        return _organization(event)

    @admin.display(description="key")
    def api_key_link(self, event: UsageEvent) -> str:
        return _api_key(event)

    # Token classes apart, each a part of the prompt or completion column beside it.
    @admin.display(description="cache reads")
    def cache_reads(self, event: UsageEvent) -> int:
        return event.cached_tokens

    @admin.display(description="cache writes 5m / 1h")
    def cache_writes(self, event: UsageEvent) -> str:
        return f"{event.cache_write_5m_tokens} / {event.cache_write_1h_tokens}"

    @admin.display(description="reasoning")
    def reasoning(self, event: UsageEvent) -> int:
        return event.reasoning_tokens

    @admin.display(description="cost (credits)")
    def cost_display(self, event: UsageEvent) -> str:
        return money.display_text(event.cost)


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    """What dashboards and the usage API read: usage summed per hour or day. Written by the rollup job only."""

    list_display = (
        "bucket",
        "period",
        "organization_link",
        "api_key_link",
        "public_model",
        "provider",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_display",
    )
    list_filter = ("period", RecentBucketFilter, organization_filter(), api_key_filter())
    search_fields = ("public_model__exact",)
    search_help_text = "A public model's name, exactly."
    list_select_related = ("organization", "api_key")
    ordering = ("-bucket",)  # index billing_rollup_bucket
    sortable_by = ("bucket",)

    @admin.display(description="organization")
    def organization_link(self, rollup: UsageRollup) -> str:
        return _organization(rollup)

    @admin.display(description="key")
    def api_key_link(self, rollup: UsageRollup) -> str:
        return _api_key(rollup)

    @admin.display(description="cost (credits)")
    def cost_display(self, rollup: UsageRollup) -> str:
        return money.display_text(rollup.cost)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Entries are never edited; a charge is corrected by refunding it, through the refund service."""

    list_display = (
        "created_at",
        "organization_link",
        "kind",
        "amount_display",
        "request_id",
        "note",
        "created_by",
        "refund_link",
    )
    list_filter = ("kind", RecentFilter, LedgerOrganizationFilter)
    # Exact only, each served by an index (billing_ledger_request, the unique idempotency key).
    search_fields = ("request_id__exact", "idempotency_key__exact")
    search_help_text = "A request id or an idempotency key, exactly."
    list_select_related = ("account__organization", "created_by")
    # Index billing_ledger_created; once filtered by organization, the statement index.
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    actions = ("refund_charges",)

    @admin.display(description="organization")
    def organization_link(self, entry: LedgerEntry) -> str:
        return _organization(entry)

    @admin.display(description="amount (credits)")
    def amount_display(self, entry: LedgerEntry) -> str:
        return money.display_text(entry.amount)

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
            since = timezone.now()
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
            _audit_posting(request, AuditEntry.Action.REFUND, refund, since)
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
            since = timezone.now()
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
                _audit_posting(request, AuditEntry.Action.REFUND, refund, since)
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
class PriceAdmin(AuditedAdmin):
    """A price change is a new version with its own effective time; versions in
    force are history and cannot be edited or deleted. Versions come one at a
    time or from a file (import), and a model's versions can be compared side by side."""

    list_display = (
        "public_model",
        "effective_from",
        *Price.RATES,
        "request_fee",
        "is_free",
    )
    form = PriceForm
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
        for price in created:
            audit_record(
                actor=request.user, action=AuditEntry.Action.PRICE_IMPORT, obj=price, changes=row_changes(price)
            )
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
        max_value=CREDITS_MAX,
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
class BillingAccountAdmin(LargeTableAdmin, AuditedAdmin):
    form = GrantForm
    list_display = ("organization", "balance_display", "markup", "updated_at")
    search_fields = ("organization__name", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "balance_display", "related")
    ordering = ("-pk",)

    @admin.display(description="see also")
    def related(self, account: BillingAccount) -> str:
        # Links, not inlines: an organization's usage and ledger run to millions of rows.
        query = {"organization": account.organization_id}
        return changelist_links(
            [
                ("Ledger", "admin:billing_ledgerentry_changelist", query),
                ("Usage events", "admin:billing_usageevent_changelist", query),
                ("Usage rollups", "admin:billing_usagerollup_changelist", query),
                ("Budgets", "admin:billing_budget_changelist", query),
                ("Budget alerts", "admin:billing_budgetalert_changelist", query),
            ]
        )

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
        since = timezone.now()
        grant = services.credits_grant(
            organization=account.organization,
            amount=amount,
            idempotency_key=key,
            note=note,
            created_by=request.user,  # type: ignore[arg-type]
        )
        _audit_posting(request, AuditEntry.Action.CREDITS_GRANT, grant, since)
        self.message_user(request, f"Granted {money.display_text(amount)} credits.", level=messages.SUCCESS)


# --- Budgets ------------------------------------------------------------------------------


@admin.register(Budget)
class BudgetAdmin(LargeTableAdmin, AuditedAdmin):
    """Budgets are gateway configuration: every change here reaches the gateways at once."""

    list_display = ("organization", "api_key", "period", "limit", "alert_thresholds", "enabled", "updated_at")
    list_filter = ("period", "enabled", organization_filter(), api_key_filter())
    search_fields = ("organization__name", "organization__slug", "api_key__public_id__exact")
    list_select_related = ("organization", "api_key")
    autocomplete_fields = ("organization", "api_key")
    readonly_fields = ("created_at", "updated_at")
    ordering = ("-pk",)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "budget", "threshold", "spent", "limit", "window_start")
    list_filter = ("budget__period", organization_filter("budget__organization"))
    search_fields = ("budget__organization__name", "budget__organization__slug", "budget__api_key__public_id__exact")
    list_select_related = ("budget__organization", "budget__api_key")
    ordering = ("-pk",)
