"""The customer dashboard's billing pages."""

from django.urls import path

from billing import views, views_billing

urlpatterns = [
    path("dashboard/", views.overview, name="dashboard-overview"),
    path("dashboard/usage", views.usage, name="dashboard-usage"),
    path("dashboard/usage.csv", views.usage_csv, name="dashboard-usage-csv"),
    path("dashboard/requests", views.requests_log, name="dashboard-requests"),
    path("dashboard/requests/<str:request_id>", views.request_detail, name="dashboard-request-detail"),
]

urlpatterns += [
    path("dashboard/billing", views_billing.billing, name="dashboard-billing"),
    path("dashboard/billing/budgets/<id:budget_id>", views_billing.budget_update, name="dashboard-budget-update"),
    path(
        "dashboard/billing/budgets/<id:budget_id>/delete", views_billing.budget_delete, name="dashboard-budget-delete"
    ),
]
