"""The customer dashboard's billing pages (HTML, session auth): overview, usage, request log."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.views import Dashboard, dashboard_view
from billing import selectors
from billing.api import UsageRowOutput
from billing.forms_dashboard import RequestFilterForm, UsageRangeForm
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
            "daily": [{"day": day, "cost": money.display_text(day.cost)} for day in usage.days],
            "spend": money.display_text(usage.cost),
            "error_rate": None if usage.error_rate is None else f"{usage.error_rate:.1%}",
            "top_models": [{**row, "cost": money.display_text(row["cost"] or 0)} for row in usage.top_models],
            "chart": chart,
            "days": OVERVIEW_DAYS,
        },
    )


# --- Usage ---------------------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _usage_rows(dashboard: Dashboard, form: UsageRangeForm) -> list[dict[str, Any]]:
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    return selectors.usage_summary(
        organization_id=dashboard.organization_id,
        start=_midnight(start),
        end=_midnight(end + timedelta(days=1)),
        group_by=form.cleaned_data["group_by"],
    )


def _usage_table(dashboard: Dashboard, group_by: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    if group_by == "key":
        ids = {row["group"] for row in rows if row["group"]}
        names = selectors.usage_key_names(organization_id=dashboard.organization_id, public_ids=ids) if ids else {}
    table = []
    for row in rows:
        group = row["group"]
        if group_by == "day":
            label = group.date().isoformat()
        elif group_by == "key":
            label = f"{names.get(group, '')} ({group})" if group else "Deleted keys"
        else:
            label = group or "(none)"
        # Writes of both lifetimes in one column, to keep the table narrow; the CSV and the API split them.
        writes = (row["cache_write_5m_tokens"] or 0) + (row["cache_write_1h_tokens"] or 0)
        cost = money.display_text(row["cost"] or money.ZERO)
        table.append({**row, "label": label, "cache_write_tokens": writes, "cost": cost})
    return table


@dashboard_view
def usage(request: HttpRequest, dashboard: Dashboard) -> HttpResponse:
    form = UsageRangeForm.from_query(request.GET, today=datetime.now(UTC).date())
    if not form.is_valid():
        return dashboard.render(request, "dashboard/usage.html", {"form": form}, status=400)
    start, end, group_by = (form.cleaned_data[name] for name in ("start", "end", "group_by"))
    rows = _usage_rows(dashboard, form)
    daily = selectors.usage_overview(
        organization_id=dashboard.organization_id, days=(end - start).days + 1, today=end, top=1
    )
    chart = {
        "labels": [day.day.isoformat() for day in daily.days],
        "requests": [day.requests for day in daily.days],
        "spend": [money.display_text(day.cost) for day in daily.days],
    }
    return dashboard.render(
        request,
        "dashboard/usage.html",
        {
            "form": form,
            "group_by": group_by,
            "rows": _usage_table(dashboard, group_by, rows),
            "total_requests": daily.requests,
            "total_errors": daily.errors,
            "total_cost": money.display_text(daily.cost),
            "chart": chart,
            "csv_query": urlencode({"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by}),
        },
    )


@dashboard_view
def usage_csv(request: HttpRequest, dashboard: Dashboard) -> HttpResponse:
    """The usage table as CSV, with the columns of the REST API's export."""
    form = UsageRangeForm.from_query(request.GET, today=datetime.now(UTC).date())
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain; charset=utf-8")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="oneflow-usage.csv"'
    writer = csv.DictWriter(response, fieldnames=list(UsageRowOutput().fields))
    writer.writeheader()
    for row in UsageRowOutput(_usage_rows(dashboard, form), many=True).data:
        # Amounts a person reads: rounded half-up to 2 places, once.
        writer.writerow({**row, "cost": money.display_text(row["cost"] or "0")})
    return response


# --- Request log -----------------------------------------------------------------------------

REQUESTS_PER_PAGE = 50
# Filters by model or status scan the organization's index for matches: they
# look this far back, so a rare match cannot make a page read the whole table.
REQUEST_FILTER_DAYS = 30


@dashboard_view
def requests_log(request: HttpRequest, dashboard: Dashboard) -> HttpResponse:
    form = RequestFilterForm(request.GET)
    if not form.is_valid():
        return dashboard.render(request, "dashboard/requests.html", {"form": form, "rows": []}, status=400)
    key, model, status = (form.cleaned_data[name] for name in ("key", "model", "status"))
    bounded = bool(model or status)
    page = selectors.usage_events_page(
        organization_id=dashboard.organization_id,
        after=selectors.RequestCursor.decode(request.GET.get("after", "")),
        limit=REQUESTS_PER_PAGE,
        since=timezone.now() - timedelta(days=REQUEST_FILTER_DAYS) if bounded else None,
        api_key=key or None,
        public_model=model or None,
        status_class=status or None,
    )
    filters = {name: value for name, value in (("key", key), ("model", model), ("status", status)) if value}
    return dashboard.render(
        request,
        "dashboard/requests.html",
        {
            "form": form,
            "rows": [{"event": event, "cost": money.display_text(event.cost)} for event in page.events],
            "next_query": urlencode({**filters, "after": page.next.encode()}) if page.next else None,
            "first_query": urlencode(filters),
            "is_first_page": "after" not in request.GET,
            "bounded": bounded,
            "filter_days": REQUEST_FILTER_DAYS,
        },
    )


ATTEMPT_FIELDS = ("deployment_id", "provider", "status", "error", "ms")


@dashboard_view
def request_detail(request: HttpRequest, dashboard: Dashboard, request_id: str) -> HttpResponse:
    event = selectors.usage_event_get(organization_id=dashboard.organization_id, request_id=request_id)
    attempts = [
        {name: entry.get(name) for name in ATTEMPT_FIELDS} for entry in event.attempt_log if isinstance(entry, dict)
    ]
    return dashboard.render(
        request,
        "dashboard/request_detail.html",
        {"event": event, "cost": money.display_text(event.cost), "attempts": attempts},
    )
