"""Budget windows: calendar days, weeks (from Monday) and months, in the
organization's time zone, so a budget resets at the customer's midnight."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

PERIODS = ("daily", "weekly", "monthly")


def budget_window(period: str, *, time_zone: str, moment: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the budget period containing ``moment``, as UTC datetimes.

    Computed on local calendar dates and converted back, so daylight-saving
    days are 23 or 25 hours long, as the customer's clock says.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    local = moment.astimezone(zone)
    day = local.date()
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}; expected one of {', '.join(PERIODS)}")

    def midnight(date: dt.date) -> datetime:
        return datetime.combine(date, datetime.min.time(), tzinfo=zone).astimezone(UTC)

    return midnight(start), midnight(end)


THRESHOLD_RANGE = range(1, 101)  # percent of the limit; the hold stops spending at 100
MAX_THRESHOLDS = 10


def parse_thresholds(text: str) -> tuple[int, ...]:
    """Alert thresholds from their stored form ("50,80,100"), ascending and without repeats."""
    values = set()
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value = int(part.strip())
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not a whole percentage") from None
        if value not in THRESHOLD_RANGE:
            raise ValueError(f"{value} is not a percentage between 1 and 100")
        values.add(value)
    if len(values) > MAX_THRESHOLDS:
        raise ValueError(f"at most {MAX_THRESHOLDS} thresholds")
    return tuple(sorted(values))


def format_thresholds(values: Iterable[int]) -> str:
    """The stored form of thresholds; raises ValueError for one outside 1..100."""
    return ",".join(str(value) for value in parse_thresholds(",".join(str(int(value)) for value in values)))
