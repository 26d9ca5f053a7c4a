"""The customer dashboard's billing pages."""

from django.urls import path

from billing import views

urlpatterns = [
    path("dashboard/", views.overview, name="dashboard-overview"),
]
