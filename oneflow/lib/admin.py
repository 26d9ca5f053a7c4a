"""Admin pieces for tables too large to count or list whole: a million usage
events, the ledger, a hundred thousand API keys.

Django's changelist counts every matching row on each page load, and its
related-object filters list every row of the related table; at that size both
read whole tables. These pieces keep each page to a few index range reads.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from oneflow.lib.converters import ID_MAX

# Rows a changelist counts at most: 50 pages of 100. Past it the list says
# "5000+" and searches or filters narrow it down.
COUNT_CAP = 5_000


class BoundedPaginator(Paginator):
    """Counts at most ``cap`` rows (reading one more to know there are more),
    so a page costs an index read of a few thousand entries, not a COUNT(*) of
    the table. ``capped`` tells the templates to say "5000+"."""

    cap = COUNT_CAP

    @cached_property
    def _seen(self) -> int:
        rows = self.object_list
        return rows[: self.cap + 1].count() if isinstance(rows, QuerySet) else len(rows)

    @cached_property
    def count(self) -> int:
        return min(self._seen, self.cap)

    @property
    def capped(self) -> bool:
        return self._seen > self.cap


class LargeTableAdmin:
    """Mixin for the ModelAdmin of a table that grows with traffic or customers:
    a bounded count, no count of the unfiltered table, and no per-filter counts
    ("facets": one COUNT per filter choice)."""

    paginator: ClassVar[type[Paginator]] = BoundedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


class ViewOnlyAdmin:
    """Mixin for pages that only show: records of what happened, reports. Nothing
    is added, changed or deleted through them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RelatedIdFilter(admin.SimpleListFilter):
    """Filters by one related row, given by id in the URL: the related pages
    link here with it. Only the chosen row is listed, as listing every
    organization or key would read a whole large table on each page load."""

    related_model: ClassVar[type[Model]]
    field_path: ClassVar[str]  # the lookup from the listed model to the related row's id

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chosen = self.chosen()
        if chosen is None:
            return []
        row = self.related_model._default_manager.filter(pk=chosen).first()
        return [(str(chosen), str(row) if row is not None else f"#{chosen} (deleted)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        chosen = self.chosen()
        return queryset if chosen is None else queryset.filter(**{self.field_path: chosen})

    def chosen(self) -> int | None:
        value = self.value()
        # ASCII digits of a bigint only: "²" is a digit to isdigit(), and a longer id fails in the database.
        if not (value and value.isascii() and value.isdigit() and int(value) <= ID_MAX):
            return None
        return int(value)


def related_id_filter(model: type[Model], path: str, *, parameter: str | None = None) -> type[RelatedIdFilter]:
    """A RelatedIdFilter on ``path`` (e.g. ``account__organization``) named after ``model``."""
    name = parameter or model._meta.model_name or path
    attributes = {
        "title": str(model._meta.verbose_name),
        "parameter_name": name,
        "related_model": model,
        "field_path": path,
    }
    return type(f"{model.__name__}IdFilter", (RelatedIdFilter,), attributes)


RECENT_WINDOWS = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(days=1)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}


class RecentFilter(admin.SimpleListFilter):
    """Rows of a recent window, a range the time index serves. Its choices
    need no query, unlike a date hierarchy, which first reads the whole table
    for the years and months it offers."""

    title = "when"
    parameter_name = "when"
    field_name: ClassVar[str] = "created_at"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in RECENT_WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = RECENT_WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(**{f"{self.field_name}__gte": timezone.now() - window[1]})
