"""Budget writes: creating, changing and deleting budgets, and the alerts (recorded
once per threshold and window, emailed to the owners) when spending reaches them.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from smtplib import SMTPException
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization
from billing import selectors
from billing.budgets import format_thresholds
from billing.models import Budget, BudgetAlert
from oneflow.lib import money
from oneflow.lib.db import readable_rows
from oneflow.lib.errors import Conflict, InvalidInput

logger = logging.getLogger(__name__)


BUDGET_UPDATABLE = frozenset({"limit", "alert_thresholds", "enabled"})


def _thresholds(values: Iterable[int]) -> str:
    try:
        return format_thresholds(values)
    except ValueError as exc:
        raise InvalidInput(f"Alert thresholds: {exc}.", param="alert_thresholds") from None


def _budget_validate(budget: Budget) -> None:
    """Model validation (limit, thresholds, the key's organization, one budget per
    scope and period) as a ServiceError the APIs render."""
    try:
        budget.full_clean()
    except ValidationError as exc:
        if any(error.code == "budget_exists" for error in exc.error_dict.get(NON_FIELD_ERRORS, [])):
            raise Conflict(" ".join(exc.message_dict[NON_FIELD_ERRORS]), code="budget_exists") from None
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(" ".join(messages), param=None if field == NON_FIELD_ERRORS else field) from None


def budget_create(
    *,
    organization: Organization,
    period: str,
    limit: Decimal,
    api_key: ApiKey | None = None,
    alert_thresholds: Iterable[int] = (50, 80, 100),
    enabled: bool = True,
) -> Budget:
    """Creates the budget of an organization (``api_key`` None) or of one of its keys.

    One budget per scope and period: another is a 409 ``budget_exists``, also
    when two requests race (the database constraint decides).
    """
    budget = Budget(
        organization=organization,
        api_key=api_key,
        period=period,
        limit=money.internal(limit),
        alert_thresholds=_thresholds(alert_thresholds),
        enabled=enabled,
    )
    _budget_validate(budget)
    try:
        with transaction.atomic(durable=True):
            budget.save()
    except IntegrityError:
        raise Conflict("A budget for this scope and period already exists.", code="budget_exists") from None
    logger.info("budget created", extra={"budget_id": budget.pk, "org_id": organization.pk})
    return budget


def budget_update(*, budget: Budget, **fields: Any) -> Budget:
    """Changes a budget's limit, alert thresholds or enabled flag.

    Scope and period are what a budget is: to change them, create another.
    """
    unknown = sorted(set(fields) - BUDGET_UPDATABLE)
    if unknown:
        raise InvalidInput(f"A budget's {', '.join(unknown)} cannot change; create another budget.", param=unknown[0])
    if "alert_thresholds" in fields:
        fields["alert_thresholds"] = _thresholds(fields["alert_thresholds"])
    if fields.get("limit") is not None:
        fields["limit"] = money.internal(fields["limit"])
    with transaction.atomic(durable=True):
        # Locked, so two partial updates at once both land.
        budget = Budget.objects.select_for_update().get(pk=budget.pk)
        for name, value in fields.items():
            setattr(budget, name, value)
        _budget_validate(budget)
        budget.save()
    logger.info("budget updated", extra={"budget_id": budget.pk, "fields": sorted(fields)})
    return budget


def budget_delete(*, budget: Budget) -> None:
    """Deletes a budget and its alerts; gateways stop enforcing it at once."""
    with transaction.atomic(durable=True):
        Budget.objects.filter(pk=budget.pk).delete()
    logger.info("budget deleted", extra={"budget_id": budget.pk, "org_id": budget.organization_id})


def _owner_emails(organization_id: int) -> list[str]:
    owners = Membership.objects.filter(
        organization_id=organization_id, role=Membership.Role.OWNER, user__is_active=True
    ).order_by("user__email")
    return list(owners.values_list("user__email", flat=True))


def _budget_alerts_record(*, budget: Budget, window_start: datetime, spent: Decimal) -> list[BudgetAlert]:
    """The alerts of the thresholds ``spent`` reaches that were not recorded yet in this window."""
    reached = [threshold for threshold in budget.thresholds if spent * 100 >= budget.limit * threshold]
    created = []
    with transaction.atomic(durable=True):
        for threshold in reached:
            # The unique (budget, window_start, threshold) decides between racing
            # checks: the loser's insert fails and it finds the winner's row.
            alert, is_new = BudgetAlert.objects.get_or_create(
                budget=budget,
                window_start=window_start,
                threshold=threshold,
                defaults={"spent": spent, "limit": budget.limit},
            )
            if is_new:
                created.append(alert)
    return created


def _budget_alert_email(*, budget: Budget, alert: BudgetAlert, window_end: datetime, recipients: list[str]) -> None:
    organization = budget.organization
    scope = organization.name if budget.api_key is None else f'{organization.name} (key "{budget.api_key.name}")'
    # A line break in a name must not reach the header (send_mail would refuse it).
    subject = " ".join(f"OneFlow: {scope} reached {alert.threshold}% of its {budget.period} budget".split())
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    lines = [
        f"{scope} has spent {money.display_text(alert.spent)} of its {budget.period} budget of "
        f"{money.display_text(alert.limit)} credits ({alert.threshold}% alert).",
        "",
        f"The budget window started {alert.window_start.astimezone(zone):%Y-%m-%d %H:%M} and resets "
        f"{window_end.astimezone(zone):%Y-%m-%d %H:%M} ({organization.time_zone}).",
    ]
    if alert.threshold >= 100:
        lines.append("Requests that would go over the budget are refused until then.")
    try:
        send_mail(subject, "\n".join(lines) + "\n", None, recipients)
    except (SMTPException, OSError):
        # The alert stays recorded (at most one email per threshold and window);
        # the other budgets still get theirs.
        logger.exception("budget alert email failed", extra={"budget_alert_id": alert.pk})


def budget_alerts_check(*, organization_ids: Iterable[int], now: datetime | None = None) -> list[BudgetAlert]:
    """Records each alert threshold that the enabled budgets of these organizations
    reached in their current window, and emails the organizations' owners; returns
    the alerts recorded by this call.

    A threshold alerts once per window, however often or concurrently this runs
    (a unique constraint decides). When one check finds several new thresholds of a
    budget, they are all recorded and one email names the highest. Spending is
    read from drained usage events, so alerts trail the gateway by the drain's
    delay. Emails go out after the alerts are committed, never inside a transaction.
    """
    now = now or timezone.now()
    budgets, unreadable = readable_rows(
        Budget.objects.filter(organization_id__in=list(organization_ids), enabled=True)
        .select_related("organization", "api_key")
        .order_by("pk")
    )
    for budget_id in unreadable:
        logger.warning("budget row cannot be read; no alerts for it", extra={"budget_id": budget_id})
    created: list[BudgetAlert] = []
    owners: dict[int, list[str]] = {}
    for budget in budgets:
        try:
            created += _budget_alerts_of(budget, now=now, owners=owners)
        except Exception:
            # One budget that cannot be checked must not stop the others' alerts.
            logger.exception("budget alerts could not be checked", extra={"budget_id": budget.pk})
    return created


def _budget_alerts_of(budget: Budget, *, now: datetime, owners: dict[int, list[str]]) -> list[BudgetAlert]:
    start, end = budget.window(now)
    spent = selectors.budget_spent(budget=budget, start=start, end=end)
    alerts = _budget_alerts_record(budget=budget, window_start=start, spent=spent)
    if not alerts:
        return []
    for alert in alerts:
        logger.info(
            "budget alert",
            extra={
                "budget_id": budget.pk,
                "org_id": budget.organization_id,
                "api_key_id": budget.api_key_id,
                "period": budget.period,
                "threshold": alert.threshold,
                "window_start": start.isoformat(),
                "spent": str(spent),
                "limit": str(budget.limit),
            },
        )
    if budget.organization_id not in owners:
        owners[budget.organization_id] = _owner_emails(budget.organization_id)
    recipients = owners[budget.organization_id]
    if recipients:
        _budget_alert_email(budget=budget, alert=alerts[-1], window_end=end, recipients=recipients)
    return alerts
