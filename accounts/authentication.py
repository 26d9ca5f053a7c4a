"""DRF authentication by OneFlow API key (``Authorization: Bearer`` or ``x-api-key``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.models import ApiKeySecret
from accounts.services import api_key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    """Sets ``request.auth`` to the matching ``ApiKeySecret`` (its key and org loaded).

    Every failure is a 401 with code ``invalid_api_key`` and one message, so a
    caller cannot tell a wrong key from a revoked or expired one.
    """

    www_authenticate_realm = "oneflow"

    def authenticate(self, request: Request) -> tuple[None, ApiKeySecret] | None:
        raw = self._raw_key(request)
        if raw is None:
            return None
        secret = api_key_authenticate(raw=raw)
        if secret is None:
            raise exceptions.AuthenticationFailed(
                f"Incorrect API key provided: {raw[:12]}****. You can find your API keys in the OneFlow dashboard.",
                code="invalid_api_key",
            )
        return None, secret

    def authenticate_header(self, request: Request) -> str:
        # Without this DRF answers 403 instead of 401 when no key is sent.
        return f'Bearer realm="{self.www_authenticate_realm}"'

    @staticmethod
    def _raw_key(request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        api_key = request.headers.get("x-api-key", "").strip()
        return api_key or None


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes OneFlow keys in the OpenAPI schema (drf-spectacular finds it by class)."""

    target_class = ApiKeyAuthentication
    name = "OneFlowApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A OneFlow API key (of_live_...)."}
