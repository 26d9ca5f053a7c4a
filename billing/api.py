"""Billing over the REST API: balance, statement, usage (from rollups), CSV export."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.selectors import membership_get
from billing import selectors, services
from oneflow.lib import money


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


class LedgerApi(APIView):
    class LedgerEntryOutput(serializers.Serializer):
        created_at = serializers.DateTimeField()
        kind = serializers.CharField()
        amount = serializers.DecimalField(max_digits=38, decimal_places=10)
        request_id = serializers.CharField()
        note = serializers.CharField()

    @extend_schema(responses=LedgerEntryOutput(many=True))
    def get(self, request: Request, org_id: int) -> Response:
        paginator = PageNumberPagination()
        entries = selectors.ledger_of(organization_id=_organization_id(request, org_id))
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(self.LedgerEntryOutput(page, many=True).data)


class UsageQuery(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(selectors.USAGE_GROUPS), default="day")
    start = serializers.DateField(required=False)
    end = serializers.DateField(required=False, help_text="Exclusive.")

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
    prompt_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
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
