"""The customer dashboard's billing page: balance, statement, budgets with alerts, price list.

Owners and admins manage budgets through billing.services; members read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import selectors as account_selectors
from accounts.forms import ServiceErrorsMixin
from accounts.models import ApiKey
from accounts.views import Dashboard, dashboard_view
from billing import selectors, services
from billing.budgets import parse_thresholds
from billing.models import CREDITS_MAX, Budget, LedgerEntry, Price
from oneflow.lib import money
from oneflow.lib.errors import NotFound, ServiceError

LEDGER_PER_PAGE = 25
LEDGER_MAX_PAGE = 1_000_000  # 25 million entries: far past any statement, far below an offset overflow
# The spend of the shown budgets takes two queries however many; an organization rarely has more.
BUDGETS_SHOWN = 20
ALERTS_SHOWN = 10


# --- Forms --------------------------------------------------------------------------


def _thresholds(text: str) -> tuple[int, ...]:
    try:
        values = parse_thresholds(text)
    except ValueError as exc:
        raise forms.ValidationError(f"{exc}.") from None
    if not values:
        raise forms.ValidationError("Give at least one percentage, e.g. 50,80,100.")
    return values


class BudgetUpdateForm(ServiceErrorsMixin, forms.Form):
    limit = forms.DecimalField(
        label="Limit (credits)",
        min_value=money.INTERNAL_QUANTUM,
        max_value=CREDITS_MAX,
        decimal_places=money.INTERNAL_PLACES,
    )
    alert_thresholds = forms.CharField(
        label="Alert at (% of the limit)", max_length=100, initial="50,80,100", help_text="Comma-separated, 1 to 100."
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def clean_alert_thresholds(self) -> tuple[int, ...]:
        return _thresholds(self.cleaned_data["alert_thresholds"])


class BudgetCreateForm(BudgetUpdateForm):
    period = forms.ChoiceField(choices=Budget.Period.choices)
    # A key id, not a list of keys: an organization may have very many.
    api_key = forms.CharField(
        label="Key id",
        required=False,
        max_length=40,
        help_text="Empty: the whole organization. Otherwise a key id (key_…) from the API keys page.",
    )
    field_order = ("period", "limit", "api_key", "alert_thresholds", "enabled")


# --- Page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRow:
    budget: Budget
    spent: str
    percent: int  # of the limit spent in the current window
    resets_at: datetime  # the current window's end
    form: BudgetUpdateForm


@dataclass(frozen=True)
class PriceRow:
    model: str
    is_free: bool
    input: str
    cached: str
    output: str
    request_fee: str | None


def _budget_rows(dashboard: Dashboard) -> list[BudgetRow]:
    now = timezone.now()
    budgets = list(selectors.budgets_of(organization_id=dashboard.organization_id)[:BUDGETS_SHOWN])
    spent_by_budget = selectors.budgets_spent(budgets=budgets, now=now)
    rows = []
    for budget in budgets:
        end = budget.window(now)[1]
        spent = spent_by_budget[budget.pk]
        initial = {"limit": money.display(budget.limit), "alert_thresholds": budget.alert_thresholds}
        form = BudgetUpdateForm(initial={**initial, "enabled": budget.enabled}, prefix=f"budget-{budget.pk}")
        percent = int(spent * 100 / budget.limit) if budget.limit else 0
        rows.append(BudgetRow(budget, money.display_text(spent), percent, end, form))
    return rows


def _per_1m(usd: Decimal, markup: Decimal) -> str:
    return money.display_text(usd * markup * settings.CREDITS_PER_USD)


def _price_rows(organization_id: int) -> list[PriceRow]:
    book = selectors.price_book()
    markup = book.markup(organization_id)
    now = timezone.now()
    rows = []
    for model in sorted(book.versions):
        price: Price | None = book.at(model, now)
        if price is None:
            continue  # announced, not yet in force
        fee = _per_1m(price.request_fee, markup) if price.request_fee else None
        rows.append(
            PriceRow(
                model=model,
                is_free=price.is_free,
                input=_per_1m(price.input_per_1m, markup),
                cached=_per_1m(price.cached_input_per_1m, markup),
                output=_per_1m(price.output_per_1m, markup),
                request_fee=fee,
            )
        )
    return rows


def _ledger_page(request: HttpRequest, dashboard: Dashboard) -> tuple[list[LedgerEntry], int, bool]:
    """One page of the statement and whether another follows: no count of all entries."""
    try:
        # Clamped: an offset past a 64-bit integer fails in the database, not here.
        number = min(max(1, int(request.GET.get("page", "1"))), LEDGER_MAX_PAGE)
    except ValueError:
        number = 1
    start = (number - 1) * LEDGER_PER_PAGE
    entries = list(selectors.ledger_of(organization_id=dashboard.organization_id)[start : start + LEDGER_PER_PAGE + 1])
    return entries[:LEDGER_PER_PAGE], number, len(entries) > LEDGER_PER_PAGE


def _render(
    request: HttpRequest, dashboard: Dashboard, form: BudgetCreateForm | None = None, status: int = 200
) -> HttpResponse:
    entries, number, has_next = _ledger_page(request, dashboard)
    alerts = selectors.budget_alerts_of(organization_id=dashboard.organization_id)[:ALERTS_SHOWN]
    context = {
        "balance": money.display_text(selectors.credits_balance(organization_id=dashboard.organization_id)),
        # Amounts rounded half-up once, here, by the money rule (not the template's floats).
        "entries": [(entry, money.display_text(entry.amount)) for entry in entries],
        "page_number": number,
        "has_next": has_next,
        "budgets": _budget_rows(dashboard),
        "budgets_limit": BUDGETS_SHOWN,
        "alerts": [(a, money.display_text(a.spent), money.display_text(a.limit)) for a in alerts],
        "prices": _price_rows(dashboard.organization_id),
        "form": form or BudgetCreateForm(),
        "can_manage": dashboard.membership.can_manage,
    }
    return dashboard.render(request, "dashboard/billing.html", context, status=status)


def _api_key(dashboard: Dashboard, public_id: str) -> ApiKey | None:
    if not public_id:
        return None
    return account_selectors.api_key_get(organization=dashboard.membership.organization, public_id=public_id)


@dashboard_view
def billing(request: HttpRequest, dashboard: Dashboard) -> HttpResponseBase:
    if request.method != "POST":
        return _render(request, dashboard)
    dashboard.require_manager("budgets")
    form = BudgetCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            api_key = _api_key(dashboard, data["api_key"].strip())
        except NotFound:
            form.add_error("api_key", "No key of this organization has this id.")
        else:
            try:
                services.budget_create(
                    organization=dashboard.membership.organization,
                    period=data["period"],
                    limit=data["limit"],
                    api_key=api_key,
                    alert_thresholds=data["alert_thresholds"],
                    enabled=data["enabled"],
                )
            except ServiceError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "Budget created.")
                return redirect("dashboard-billing")
    return _render(request, dashboard, form, status=400)


@require_POST
@dashboard_view
def budget_update(request: HttpRequest, dashboard: Dashboard, budget_id: int) -> HttpResponseBase:
    dashboard.require_manager("budgets")
    budget = selectors.budget_get(organization_id=dashboard.organization_id, budget_id=budget_id)
    form = BudgetUpdateForm(request.POST, prefix=f"budget-{budget.pk}")
    if not form.is_valid():
        errors = "; ".join(
            f"{form.fields[name].label if name in form.fields else 'Budget'}: {' '.join(str(e) for e in errs)}"
            for name, errs in form.errors.items()
        )
        messages.error(request, f"The budget was not changed. {errors}")
        return redirect("dashboard-billing")
    try:
        services.budget_update(budget=budget, **form.cleaned_data)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Budget updated.")
    return redirect("dashboard-billing")


@require_POST
@dashboard_view
def budget_delete(request: HttpRequest, dashboard: Dashboard, budget_id: int) -> HttpResponseBase:
    dashboard.require_manager("budgets")
    budget = selectors.budget_get(organization_id=dashboard.organization_id, budget_id=budget_id)
    services.budget_delete(budget=budget)
    messages.success(request, "Budget deleted.")
    return redirect("dashboard-billing")
