"""Reads for billing, one module per concern: ``prices`` (price versions and the price
book), ``ledger`` (balances, the ledger, refundable amounts), ``budgets`` (the budget
book, spending, budgets and alerts), ``usage`` (one organization's usage and request
log) and ``platform`` (the whole platform's usage, for operators).

Callers import from here (``from billing import selectors``); the names below are
the package's public surface.
"""

from __future__ import annotations

from billing.selectors.budgets import (
    BudgetBook,
    BudgetView,
    budget_alerts_of,
    budget_book,
    budget_get,
    budget_spent,
    budgets_of,
    budgets_spent,
)
from billing.selectors.ledger import Refundable, credits_balance, ledger_of, ledger_sum, refundable
from billing.selectors.platform import (
    PLATFORM_DEFAULT_WINDOW,
    PLATFORM_TOP,
    PLATFORM_WINDOWS,
    PlatformUsage,
    UsageLeader,
    UsageSums,
    platform_usage,
)
from billing.selectors.prices import PriceBook, price_at, price_book
from billing.selectors.usage import (
    STATUS_CLASSES,
    USAGE_FIRST_DAY,
    USAGE_GROUPS,
    USAGE_LAST_DAY,
    RequestCursor,
    RequestPage,
    UsageDay,
    UsageOverview,
    usage_event_get,
    usage_events_page,
    usage_key_names,
    usage_overview,
    usage_summary,
)

__all__ = [
    "PLATFORM_DEFAULT_WINDOW",
    "PLATFORM_TOP",
    "PLATFORM_WINDOWS",
    "STATUS_CLASSES",
    "USAGE_FIRST_DAY",
    "USAGE_GROUPS",
    "USAGE_LAST_DAY",
    "BudgetBook",
    "BudgetView",
    "PlatformUsage",
    "PriceBook",
    "Refundable",
    "RequestCursor",
    "RequestPage",
    "UsageDay",
    "UsageLeader",
    "UsageOverview",
    "UsageSums",
    "budget_alerts_of",
    "budget_book",
    "budget_get",
    "budget_spent",
    "budgets_of",
    "budgets_spent",
    "credits_balance",
    "ledger_of",
    "ledger_sum",
    "platform_usage",
    "price_at",
    "price_book",
    "refundable",
    "usage_event_get",
    "usage_events_page",
    "usage_key_names",
    "usage_overview",
    "usage_summary",
]
