"""Writes for billing, one module per concern: ``ledger`` (credits: grants, refunds,
reconciliation), ``usage`` (the usage drain, rollups, retention), ``budgets``
(budgets and their alerts) and ``prices`` (price imports and changes).

Callers import from here (``from billing import services``); the names below are
the package's public surface, with the errors its services raise.
"""

from __future__ import annotations

from billing.services.budgets import (
    BUDGET_UPDATABLE,
    budget_alerts_check,
    budget_create,
    budget_delete,
    budget_update,
)
from billing.services.ledger import (
    InsufficientCredits,
    billing_account,
    credits_grant,
    credits_reconcile,
    ledger_post,
    ledger_reconcile,
    ledger_reconcile_all,
    refund_issue,
)
from billing.services.prices import prices_import
from billing.services.usage import (
    BATCH,
    CLAIM_IDLE_MS,
    DRAIN_LOCK_SECONDS,
    RETENTION_BATCH,
    ROLLUP_LOOKBACK,
    usage_drain,
    usage_retention_apply,
    usage_rollup,
)
from oneflow.lib.errors import Conflict, InvalidInput, ServiceError

__all__ = [
    "BATCH",
    "BUDGET_UPDATABLE",
    "CLAIM_IDLE_MS",
    "DRAIN_LOCK_SECONDS",
    "RETENTION_BATCH",
    "ROLLUP_LOOKBACK",
    "Conflict",
    "InsufficientCredits",
    "InvalidInput",
    "ServiceError",
    "billing_account",
    "budget_alerts_check",
    "budget_create",
    "budget_delete",
    "budget_update",
    "credits_grant",
    "credits_reconcile",
    "ledger_post",
    "ledger_reconcile",
    "ledger_reconcile_all",
    "prices_import",
    "refund_issue",
    "usage_drain",
    "usage_retention_apply",
    "usage_rollup",
]
