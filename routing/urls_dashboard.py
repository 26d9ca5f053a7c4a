"""The customer dashboard's gateway pages: the playground."""

from django.urls import path

from routing import playground

urlpatterns = [
    path("dashboard/playground", playground.page, name="dashboard-playground"),
    path("dashboard/playground/chat", playground.chat, name="dashboard-playground-chat"),
]
