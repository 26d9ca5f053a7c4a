"""The customer dashboard's billing pages (HTML, session auth)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.views import Dashboard, dashboard_view
from billing import selectors
from oneflow.lib import money

OVERVIEW_DAYS = 30


@dashboard_view
def overview(request: HttpRequest, dashboard: Dashboard) -> HttpResponse:
    balance = selectors.credits_balance(organization_id=dashboard.organization_id)
    usage = selectors.usage_overview(
        organization_id=dashboard.organization_id, days=OVERVIEW_DAYS, today=datetime.now(UTC).date()
    )
    chart = {
        "labels": [day.day.isoformat() for day in usage.days],
        "requests": [day.requests for day in usage.days],
        # Strings keep the exact amounts; the chart parses them for drawing only.
        "spend": [money.display_text(day.cost) for day in usage.days],
    }
    return dashboard.render(
        request,
        "dashboard/overview.html",
        {
            "balance": money.display_text(balance),
            "low_balance": balance < settings.DASHBOARD_LOW_BALANCE_CREDITS,
            "low_balance_threshold": money.display_text(settings.DASHBOARD_LOW_BALANCE_CREDITS),
            "usage": usage,
            "spend": money.display_text(usage.cost),
            "error_rate": None if usage.error_rate is None else f"{usage.error_rate:.1%}",
            "top_models": [{**row, "cost": money.display_text(row["cost"] or 0)} for row in usage.top_models],
            "chart": chart,
            "days": OVERVIEW_DAYS,
        },
    )
