"""Billing over the REST API: balance, statement, usage (from rollups), CSV export, budgets."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey, Membership, Organization, User
from accounts.selectors import api_key_get, membership_get
from billing import selectors, services
from billing.models import CREDITS_MAX, Budget
from oneflow.lib import money
from oneflow.lib.errors import InvalidInput, NotAllowed, NotFound
from oneflow.lib.serializers import StrictCharField, page_of


def _organization_id(request: Request, org_id: int) -> int:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - IsAuthenticated guarantees it
    return membership_get(user=user, organization_id=org_id).organization_id


class BalanceApi(APIView):
    class BalanceOutput(serializers.Serializer):
        balance = serializers.DecimalField(max_digits=38, decimal_places=10)
        balance_display = serializers.CharField()
        markup = serializers.DecimalField(max_digits=8, decimal_places=4)

    @extend_schema(responses=BalanceOutput)
    def get(self, request: Request, org_id: int) -> Response:
        user = request.user
        assert isinstance(user, User)  # noqa: S101 - IsAuthenticated guarantees it
        account = services.billing_account(organization=membership_get(user=user, organization_id=org_id).organization)
        data = {
            "balance": account.balance,
            "balance_display": money.display_text(account.balance),
            "markup": account.markup,
        }
        return Response(self.BalanceOutput(data).data)


_PAGE = OpenApiParameter("page", int, description="Page number, from 1.")


class LedgerEntryOutput(serializers.Serializer):
    created_at = serializers.DateTimeField()
    kind = serializers.CharField()
    amount = serializers.DecimalField(max_digits=38, decimal_places=10)
    request_id = serializers.CharField()
    note = serializers.CharField()


LedgerPage = page_of(LedgerEntryOutput(many=True), "LedgerPage")


class LedgerApi(APIView):
    """The statement, newest first, a page at a time."""

    @extend_schema(parameters=[_PAGE], responses=LedgerPage)
    def get(self, request: Request, org_id: int) -> Response:
        paginator = PageNumberPagination()
        entries = selectors.ledger_of(organization_id=_organization_id(request, org_id))
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(LedgerEntryOutput(page, many=True).data)


_USAGE_DAY_BOUNDS = [
    MinValueValidator(selectors.USAGE_FIRST_DAY),
    MaxValueValidator(selectors.USAGE_LAST_DAY),
]


class UsageQuery(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(selectors.USAGE_GROUPS), default="day")
    start = serializers.DateField(required=False, validators=_USAGE_DAY_BOUNDS)
    end = serializers.DateField(required=False, help_text="Exclusive.", validators=_USAGE_DAY_BOUNDS)

    def window(self) -> tuple[datetime, datetime]:
        today = datetime.now(UTC).date()
        end = self.validated_data.get("end") or today + timedelta(days=1)
        start = self.validated_data.get("start") or end - timedelta(days=30)
        return (
            datetime(start.year, start.month, start.day, tzinfo=UTC),
            datetime(end.year, end.month, end.day, tzinfo=UTC),
        )


class UsageRowOutput(serializers.Serializer):
    group = serializers.CharField(allow_null=True)
    requests = serializers.IntegerField()
    failed = serializers.IntegerField(source="errors", help_text="Requests that ended in an error.")
    prompt_tokens = serializers.IntegerField(help_text="Every input token, cache reads and writes included.")
    cached_tokens = serializers.IntegerField(help_text="Cache reads (cached input), part of prompt_tokens.")
    cache_write_5m_tokens = serializers.IntegerField(help_text="Writes to a 5-minute cache, part of prompt_tokens.")
    cache_write_1h_tokens = serializers.IntegerField(help_text="Writes to a 1-hour cache, part of prompt_tokens.")
    completion_tokens = serializers.IntegerField(help_text="Every output token, reasoning included.")
    reasoning_tokens = serializers.IntegerField(help_text="Reasoning, part of completion_tokens (billed as output).")
    cost = serializers.DecimalField(max_digits=38, decimal_places=10)


def _usage_rows(request: Request, org_id: int) -> list[dict[str, Any]]:
    query = UsageQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    start, end = query.window()
    return selectors.usage_summary(
        organization_id=_organization_id(request, org_id),
        start=start,
        end=end,
        group_by=query.validated_data["group_by"],
    )


class UsageApi(APIView):
    @extend_schema(parameters=[UsageQuery], responses=UsageRowOutput(many=True))
    def get(self, request: Request, org_id: int) -> Response:
        return Response(UsageRowOutput(_usage_rows(request, org_id), many=True).data)


class UsageCsvApi(APIView):
    @extend_schema(parameters=[UsageQuery], responses={(200, "text/csv"): str}, description="The usage summary as CSV.")
    def get(self, request: Request, org_id: int) -> HttpResponse:
        rows = _usage_rows(request, org_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="oneflow-usage.csv"'
        data = UsageRowOutput(rows, many=True).data
        writer = csv.DictWriter(response, fieldnames=list(UsageRowOutput().fields))
        writer.writeheader()
        for row in data:
            # Amounts a person reads: rounded half-up to 2 places, once.
            writer.writerow({**row, "cost": money.display_text(row["cost"] or "0")})
        return response


# --- Budgets -----------------------------------------------------------------------------


def _membership(request: Request, org_id: int) -> Membership:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - IsAuthenticated guarantees it
    return membership_get(user=user, organization_id=org_id)


def _managing_membership(request: Request, org_id: int) -> Membership:
    membership = _membership(request, org_id)
    if not membership.can_manage:
        raise NotAllowed("Only owners and admins may change budgets.")
    return membership


def _api_key(organization: Organization, public_id: str | None) -> ApiKey | None:
    if public_id is None:
        return None
    try:
        return api_key_get(organization=organization, public_id=public_id)
    except NotFound:
        raise InvalidInput("No such API key in this organization.", param="api_key") from None


class BudgetOutput(serializers.Serializer):
    id = serializers.IntegerField()
    api_key = serializers.CharField(allow_null=True, help_text="The budgeted key's id; null: the whole organization.")
    period = serializers.ChoiceField(choices=Budget.Period.choices)
    limit = serializers.DecimalField(max_digits=38, decimal_places=10, help_text="Credits per window.")
    limit_display = serializers.CharField()
    alert_thresholds = serializers.ListField(child=serializers.IntegerField(), help_text="Percentages of the limit.")
    enabled = serializers.BooleanField()
    window_start = serializers.DateTimeField(help_text="The current window, in the organization's time zone.")
    window_end = serializers.DateTimeField()
    spent = serializers.DecimalField(
        max_digits=38, decimal_places=10, help_text="Credits charged in the current window (drained usage)."
    )
    spent_display = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def _budget_data(budget: Budget) -> dict[str, Any]:
    start, end = budget.window(timezone.now())
    spent = selectors.budget_spent(budget=budget, start=start, end=end)
    return {
        "id": budget.pk,
        "api_key": budget.api_key.public_id if budget.api_key else None,
        "period": budget.period,
        "limit": budget.limit,
        "limit_display": money.display_text(budget.limit),
        "alert_thresholds": list(budget.thresholds),
        "enabled": budget.enabled,
        "window_start": start,
        "window_end": end,
        "spent": spent,
        "spent_display": money.display_text(spent),
        "created_at": budget.created_at,
        "updated_at": budget.updated_at,
    }


_THRESHOLDS_HELP = "Whole percentages of the limit (1-100) that email the owners once per window."


class BudgetCreateInput(serializers.Serializer):
    api_key = StrictCharField(
        allow_null=True,
        default=None,
        help_text="A key's id (key_...) to budget that key alone; null: the organization.",
    )
    period = serializers.ChoiceField(choices=Budget.Period.choices)
    limit = serializers.DecimalField(
        max_digits=38,
        decimal_places=10,
        max_value=CREDITS_MAX,
        help_text="Credits per window, more than 0.",
    )
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(), max_length=10, required=False, help_text=_THRESHOLDS_HELP
    )
    enabled = serializers.BooleanField(default=True)


class BudgetUpdateInput(serializers.Serializer):
    limit = serializers.DecimalField(
        max_digits=38,
        decimal_places=10,
        max_value=CREDITS_MAX,
        required=False,
        help_text="Credits per window.",
    )
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(), max_length=10, required=False, help_text=_THRESHOLDS_HELP
    )
    enabled = serializers.BooleanField(required=False)


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class BudgetListApi(APIView):
    """Budgets of an organization and of its keys; owners and admins may add one."""

    @extend_schema(responses=BudgetOutput(many=True))
    def get(self, request: Request, org_id: int) -> Response:
        budgets = selectors.budgets_of(organization_id=_membership(request, org_id).organization_id)
        return Response(BudgetOutput([_budget_data(budget) for budget in budgets], many=True).data)

    @extend_schema(request=BudgetCreateInput, responses={201: BudgetOutput})
    def post(self, request: Request, org_id: int) -> Response:
        organization = _managing_membership(request, org_id).organization
        data = _valid(BudgetCreateInput, request)
        api_key = _api_key(organization, data.pop("api_key"))
        budget = services.budget_create(organization=organization, api_key=api_key, **data)
        return Response(BudgetOutput(_budget_data(budget)).data, status=status.HTTP_201_CREATED)


class BudgetDetailApi(APIView):
    @extend_schema(responses=BudgetOutput)
    def get(self, request: Request, org_id: int, budget_id: int) -> Response:
        organization_id = _membership(request, org_id).organization_id
        budget = selectors.budget_get(organization_id=organization_id, budget_id=budget_id)
        return Response(BudgetOutput(_budget_data(budget)).data)

    @extend_schema(request=BudgetUpdateInput, responses=BudgetOutput)
    def patch(self, request: Request, org_id: int, budget_id: int) -> Response:
        organization_id = _managing_membership(request, org_id).organization_id
        budget = selectors.budget_get(organization_id=organization_id, budget_id=budget_id)
        services.budget_update(budget=budget, **_valid(BudgetUpdateInput, request))
        budget = selectors.budget_get(organization_id=organization_id, budget_id=budget_id)
        return Response(BudgetOutput(_budget_data(budget)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, org_id: int, budget_id: int) -> Response:
        organization_id = _managing_membership(request, org_id).organization_id
        services.budget_delete(budget=selectors.budget_get(organization_id=organization_id, budget_id=budget_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BudgetAlertOutput(serializers.Serializer):
    id = serializers.IntegerField()
    budget_id = serializers.IntegerField()
    api_key = serializers.CharField(source="budget.api_key.public_id", allow_null=True)
    period = serializers.CharField(source="budget.period")
    threshold = serializers.IntegerField(help_text="Percent of the limit.")
    spent = serializers.DecimalField(max_digits=38, decimal_places=10, help_text="Credits spent when it fired.")
    limit = serializers.DecimalField(max_digits=38, decimal_places=10, help_text="The limit then, in credits.")
    window_start = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


BudgetAlertPage = page_of(BudgetAlertOutput(many=True), "BudgetAlertPage")


class BudgetAlertListApi(APIView):
    """Alerts that budgets raised, newest first."""

    @extend_schema(parameters=[_PAGE], responses=BudgetAlertPage)
    def get(self, request: Request, org_id: int) -> Response:
        paginator = PageNumberPagination()
        alerts = selectors.budget_alerts_of(organization_id=_membership(request, org_id).organization_id)
        page = paginator.paginate_queryset(alerts, request, view=self)
        return paginator.get_paginated_response(BudgetAlertOutput(page, many=True).data)
