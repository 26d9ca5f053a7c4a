from django.urls import path

from routing import api

urlpatterns = [
    path("v1/models", api.ModelListApi.as_view(), name="v1-models"),
]
