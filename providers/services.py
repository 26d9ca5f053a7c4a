"""Writes for providers. Every change advances the configuration version, so
gateways pick it up on their next request."""

from __future__ import annotations

import logging
import os
import time
from decimal import Decimal

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from oneflow.lib import http
from oneflow.lib.crypto import seal
from oneflow.lib.errors import InvalidInput
from providers.adapters import UpstreamError, adapter_for
from providers.models import Credential, Deployment, Provider, PublicModel
from providers.selectors import CredentialUnavailable, credential_resolve, deployment_view

logger = logging.getLogger(__name__)


def credential_set_secret(*, credential: Credential, secret: str) -> Credential:
    """Stores a new secret, sealed; the old one is gone (secrets are write-only)."""
    if not secret.strip():
        raise InvalidInput("The secret is empty.", param="secret")
    credential.sealed_secret = seal(secret.strip())
    credential.reference = ""
    credential.status = Credential.Status.ACTIVE
    credential.status_reason = ""
    credential.save(update_fields=["sealed_secret", "reference", "status", "status_reason"])
    return credential


def credential_flag(*, credential_id: int, reason: str) -> bool:
    """Marks a credential its provider refused, for an operator to look at; returns
    whether this call flagged it (False: already flagged, or gone).

    Idempotent: a flagged credential keeps the time and reason of its first
    refusal until ``credential_unflag``. ``reason`` is a short note of our own
    ("refused by provider: 401"), never a secret or an upstream body. Routing
    is unaffected (no configuration change): the flag is for people.
    """
    # One conditional UPDATE: atomic on its own, and concurrent refusals
    # (many requests, a probe) flag it once.
    flagged = Credential.objects.filter(pk=credential_id, flagged_at__isnull=True).update(
        flagged_at=timezone.now(), flag_reason=reason[:100]
    )
    if flagged:
        logger.warning("credential refused by its provider", extra={"credential_id": credential_id, "reason": reason})
    return bool(flagged)


def credential_unflag(*, credential_id: int) -> bool:
    """Clears the flag (an operator fixed the credential); returns whether it was flagged."""
    return bool(
        Credential.objects.filter(pk=credential_id, flagged_at__isnull=False).update(flagged_at=None, flag_reason="")
    )


def deployments_set_enabled(*, deployments: QuerySet[Deployment], enabled: bool) -> int:
    """Enables or disables deployments by hand; routing never re-enables one by itself."""
    count = deployments.update(enabled=enabled)
    return count


DEMO_CHAT_MODEL = "gpt-4o-mini"
DEMO_EMBEDDING_MODEL = "text-embedding-3-small"


def _deployment(model: PublicModel, provider: Provider, credential: Credential | None, *, enabled: bool) -> None:
    Deployment.objects.update_or_create(
        public_model=model,
        provider=provider,
        upstream_model=model.name,
        defaults={
            "credential": credential,
            "enabled": enabled,
            "cost_input_per_1m": Decimal("0.15") if model.kind == PublicModel.Kind.CHAT else Decimal("0.02"),
            "cost_output_per_1m": Decimal("0.60") if model.kind == PublicModel.Kind.CHAT else Decimal(0),
        },
    )


def catalog_seed_demo() -> bool:
    """A simulator serving the demo models, or OpenAI when ``OPENAI_API_KEY`` is set.

    Returns whether OpenAI serves them. Re-running only adjusts which one is enabled.
    """
    use_openai = bool(os.environ.get("OPENAI_API_KEY"))
    with transaction.atomic(durable=True):
        simulator, _ = Provider.objects.get_or_create(
            name="Simulator", defaults={"kind": Provider.Kind.SIMULATOR, "simulator": {"ttft_ms": 20}}
        )
        models = [
            PublicModel.objects.get_or_create(name=DEMO_CHAT_MODEL, defaults={"owned_by": "openai"})[0],
            PublicModel.objects.get_or_create(
                name=DEMO_EMBEDDING_MODEL, defaults={"kind": PublicModel.Kind.EMBEDDING, "owned_by": "openai"}
            )[0],
        ]
        openai = credential = None
        if use_openai:
            openai, _ = Provider.objects.get_or_create(
                name="OpenAI", defaults={"kind": Provider.Kind.OPENAI, "base_url": "https://api.openai.com/v1"}
            )
            credential, _ = Credential.objects.get_or_create(
                provider=openai, name="OPENAI_API_KEY", defaults={"reference": "env:OPENAI_API_KEY"}
            )
        for model in models:
            _deployment(model, simulator, None, enabled=not use_openai)
            if openai is not None:
                _deployment(model, openai, credential, enabled=True)
        Deployment.objects.filter(provider__name="OpenAI", public_model__in=models).update(enabled=use_openai)
    return use_openai


def deployment_test_connection(*, deployment: Deployment) -> tuple[bool, str]:
    """Sends the smallest real request to the deployment; returns (ok, what happened).

    For the admin's "test connection" action; it never runs on the hot path.
    """
    view = deployment_view(deployment)
    if view is None:
        reason = "the deployment has no usable credential"
        if deployment.credential is not None:
            try:
                credential_resolve(deployment.credential)
            except CredentialUnavailable as exc:
                reason = str(exc)  # names the reference and the rule, never a value
        return False, f"Not callable: {reason}."
    adapter = adapter_for(view.target.kind)
    if deployment.public_model.kind == PublicModel.Kind.EMBEDDING:
        request: dict[str, object] = {"input": "ping"}
    else:
        request = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}

    async def probe(client: http.HttpClient) -> None:
        if deployment.public_model.kind == PublicModel.Kind.EMBEDDING:
            await adapter.embeddings(client, view.target, request)
        else:
            await adapter.chat(client, view.target, request)

    started = time.perf_counter()
    try:
        http.run_apart(probe)
    except UpstreamError as error:
        return False, f"{error.message} (HTTP {error.upstream_status or error.status})"
    return True, f"Answered in {(time.perf_counter() - started) * 1000:.0f} ms."
