"""The OpenAI-compatible proxy API (``/v1/*``).

Errors here use OpenAI's shape exactly as the official SDKs expect it (see
PROTOCOLS.md §1.4), including ``invalid_request_error`` for a bad key.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication
from accounts.models import ApiKeySecret
from oneflow.lib.errors import api_exception_handler


class HasApiKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKeySecret)


def proxy_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, exceptions.NotAuthenticated):
        exc = exceptions.AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key'.",
            code="invalid_api_key",
        )
    response = api_exception_handler(exc, context)
    if response is not None and response.status_code == 401:
        # OpenAI reports a bad key as an invalid request, with the code saying why.
        response.data["error"]["type"] = "invalid_request_error"
        response.data["error"]["code"] = "invalid_api_key"
    return response


class ProxyApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    def get_exception_handler(self) -> Any:
        return proxy_exception_handler


class ModelListApi(ProxyApiView):
    """Public models this key may call. Providers and routes arrive with the gateway."""

    @extend_schema(
        responses=inline_serializer(
            "ModelList",
            {"object": serializers.CharField(), "data": serializers.ListField(child=serializers.DictField())},
        ),
    )
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": []})
