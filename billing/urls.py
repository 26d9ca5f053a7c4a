from django.urls import path

from billing import api

urlpatterns = [
    path("organizations/<id:org_id>/billing/balance", api.BalanceApi.as_view(), name="billing-balance"),
    path("organizations/<id:org_id>/billing/ledger", api.LedgerApi.as_view(), name="billing-ledger"),
    path("organizations/<id:org_id>/billing/budgets", api.BudgetListApi.as_view(), name="budgets"),
    path("organizations/<id:org_id>/billing/budgets/<id:budget_id>", api.BudgetDetailApi.as_view(), name="budget"),
    path("organizations/<id:org_id>/billing/budget-alerts", api.BudgetAlertListApi.as_view(), name="budget-alerts"),
    path("organizations/<id:org_id>/usage", api.UsageApi.as_view(), name="usage"),
    path("organizations/<id:org_id>/usage.csv", api.UsageCsvApi.as_view(), name="usage-csv"),
]
