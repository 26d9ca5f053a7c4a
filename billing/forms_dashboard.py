"""Forms of billing's customer dashboard pages: they parse and validate query strings."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from billing.selectors import STATUS_CLASSES, USAGE_FIRST_DAY, USAGE_GROUPS, USAGE_LAST_DAY

USAGE_DEFAULT_DAYS = 30
USAGE_MAX_DAYS = 366  # a year, leap or not: the widest range the rollup read allows
_USAGE_DAY_BOUNDS = [MinValueValidator(USAGE_FIRST_DAY), MaxValueValidator(USAGE_LAST_DAY)]


class UsageRangeForm(forms.Form):
    """A range of whole UTC days, both ends included, and a grouping; last 30 days by default."""

    start = forms.DateField(label="From", validators=_USAGE_DAY_BOUNDS, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(
        label="To", help_text="Included.", validators=_USAGE_DAY_BOUNDS, widget=forms.DateInput(attrs={"type": "date"})
    )
    group_by = forms.ChoiceField(label="Group by", choices=[(group, group.capitalize()) for group in USAGE_GROUPS])

    @classmethod
    def from_query(cls, query: Any, *, today: date) -> UsageRangeForm:
        """Bound to the query string, with the defaults filling what it leaves out."""
        defaults = {
            "start": (today - timedelta(days=USAGE_DEFAULT_DAYS - 1)).isoformat(),
            "end": today.isoformat(),
            "group_by": "day",
        }
        return cls({**defaults, **{name: query[name] for name in defaults if query.get(name)}})

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                self.add_error("end", "The end must not be before the start.")
            elif (end - start).days + 1 > USAGE_MAX_DAYS:
                self.add_error("start", f"Pick at most {USAGE_MAX_DAYS} days.")
        return data


class RequestFilterForm(forms.Form):
    key = forms.CharField(
        label="Key id", required=False, max_length=24, widget=forms.TextInput(attrs={"placeholder": "key_…"})
    )
    model = forms.CharField(label="Model", required=False, max_length=200)
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any"), *[(name, name) for name in STATUS_CLASSES]]
    )
