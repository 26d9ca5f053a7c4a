"""Budget windows reset on calendar boundaries in the organization's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import Organization
from billing.budgets import PERIODS, budget_window

PARIS = "Europe/Paris"


def test_a_daily_budget_resets_at_local_midnight() -> None:
    # 23:30 UTC on 14 March is 00:30 on 15 March in Paris (UTC+1).
    start, end = budget_window("daily", time_zone=PARIS, moment=datetime(2026, 3, 14, 23, 30, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 3, 14, 23, 0, tzinfo=UTC), datetime(2026, 3, 15, 23, 0, tzinfo=UTC))
    just_before = budget_window("daily", time_zone=PARIS, moment=datetime(2026, 3, 14, 22, 59, 59, tzinfo=UTC))
    assert just_before[1] == start


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    moment = datetime(2026, 11, 28, 12, tzinfo=UTC)  # a Saturday
    week = budget_window("weekly", time_zone="UTC", moment=moment)
    month = budget_window("monthly", time_zone="UTC", moment=moment)
    assert week == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    assert month == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    december = budget_window("monthly", time_zone="UTC", moment=datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert december == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_a_daylight_saving_day_is_23_hours_long() -> None:
    start, end = budget_window("daily", time_zone=PARIS, moment=datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert end - start == timedelta(hours=23)


@given(
    st.sampled_from(PERIODS),
    st.sampled_from(["UTC", PARIS, "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]),
    # hypothesis takes naive bounds and attaches the time zone itself
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
)
def test_every_moment_lies_in_exactly_one_window(period: str, time_zone: str, moment: datetime) -> None:
    start, end = budget_window(period, time_zone=time_zone, moment=moment)
    assert start <= moment < end
    assert budget_window(period, time_zone=time_zone, moment=end)[0] == end
    assert budget_window(period, time_zone=time_zone, moment=start - timedelta(microseconds=1))[1] == start


def test_unknown_periods_and_time_zones_are_refused(db: None) -> None:
    with pytest.raises(ValueError, match="unknown budget period"):
        budget_window("hourly", time_zone="UTC", moment=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError):
        Organization(name="x", slug="x", time_zone="Mars/Olympus").full_clean()
