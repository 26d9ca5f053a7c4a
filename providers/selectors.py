"""Reads for providers: the catalog of public models and their deployments.

The gateway holds the catalog in process (gateway.snapshots) and rebuilds it
when the configuration version changes, so no request reads these tables.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from oneflow.lib.crypto import unseal
from oneflow.lib.secrets import ReferenceRefused, provider_reference_policy
from providers.adapters.base import Target
from providers.models import Credential, Deployment, ModelAccess, Provider, PublicModel, Strategy

logger = logging.getLogger(__name__)


class CredentialUnavailable(Exception):
    pass


def credential_resolve(credential: Credential) -> str:
    """The secret itself: unsealed, or read from an allowed ``env:``/``file:`` reference.

    A reference outside PROVIDER_SECRET_ENV_PREFIX/ALLOWED or PROVIDER_SECRETS_DIR is
    refused here too, whatever was saved: its value would go to the provider's host.
    The error names the reference and the rule, never a value.
    """
    if credential.reference:
        try:
            return provider_reference_policy().read(credential.reference.strip())
        except ReferenceRefused as exc:
            raise CredentialUnavailable(f"credential {credential.pk}: {exc}") from None
    value = (unseal(credential.sealed_secret) or "") if credential.sealed_secret else ""
    if not value:
        raise CredentialUnavailable(f"credential {credential.pk} has no readable secret")
    return value


@dataclass(frozen=True, slots=True)
class DeploymentView:
    id: int
    target: Target
    priority: int
    weight: int
    capabilities: tuple[str, ...]
    # USD per 1M tokens: what the provider charges OneFlow.
    cost_input_per_1m: Decimal
    cost_cached_input_per_1m: Decimal
    cost_output_per_1m: Decimal
    rpm_quota: int | None
    tpm_quota: int | None
    quality_score: int = 50
    model_name: str = ""  # the public model it serves: a fallback's deployment serves another
    credential_id: int | None = None  # to flag it when the provider refuses it; None for the simulator
    context_window: int | None = None  # tokens; None when the operator did not say
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ModelView:
    id: int
    name: str
    kind: str
    owned_by: str
    is_public: bool
    created: int
    deployments: tuple[DeploymentView, ...]
    strategy: str = Strategy.PRIORITY.value
    max_latency_ms: int | None = None
    fallback_models: tuple[str, ...] = ()
    # What clients are told (/v1/models): the smallest figure among the deployments
    # that state one (model_limits), None when none does.
    context_window: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class Catalog:
    by_name: dict[str, ModelView]  # names and aliases
    listed: tuple[ModelView, ...]  # each model once, by name

    def find(self, name: str) -> ModelView | None:
        return self.by_name.get(name)


def _target(deployment: Deployment, api_key: str) -> Target:
    provider = deployment.provider
    return Target(
        deployment_id=deployment.pk,
        provider_name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        upstream_model=deployment.upstream_model,
        api_key=api_key,
        api_version=provider.api_version,
        extra_headers={str(k): str(v) for k, v in (provider.extra_headers or {}).items()},
        connect_timeout=provider.connect_timeout,
        read_timeout=provider.read_timeout,
        simulator=dict(provider.simulator or {}),
        propagate_trace_context=provider.propagate_trace_context,
    )


def deployment_view(deployment: Deployment) -> DeploymentView | None:
    api_key = ""
    if deployment.credential is not None:
        if deployment.credential.status != Credential.Status.ACTIVE:
            return None
        try:
            api_key = credential_resolve(deployment.credential)
        except CredentialUnavailable as exc:
            logger.warning(
                "deployment skipped: credential unreadable", extra={"deployment_id": deployment.pk, "reason": str(exc)}
            )
            return None
    elif deployment.provider.kind != Provider.Kind.SIMULATOR:
        return None
    return DeploymentView(
        id=deployment.pk,
        target=_target(deployment, api_key),
        priority=deployment.priority,
        weight=deployment.weight,
        capabilities=tuple(deployment.capabilities or ()),
        cost_input_per_1m=deployment.cost_input_per_1m,
        cost_cached_input_per_1m=deployment.cost_cached_input_per_1m,
        cost_output_per_1m=deployment.cost_output_per_1m,
        rpm_quota=deployment.rpm_quota,
        tpm_quota=deployment.tpm_quota,
        quality_score=deployment.quality_score,
        model_name=deployment.public_model.name,
        credential_id=deployment.credential_id,
        context_window=deployment.context_window or None,
        max_output_tokens=deployment.max_output_tokens or None,
    )


def model_limits(deployments: tuple[DeploymentView, ...]) -> tuple[int | None, int | None]:
    """The context window and longest answer a client may count on, whichever deployment
    serves it: the smallest each deployment states (one that states nothing does not
    count). Fallback models' deployments are left out: they are a rescue, and a model
    would otherwise advertise another's limits."""
    window = min((d.context_window for d in deployments if d.context_window), default=None)
    output = min((d.max_output_tokens for d in deployments if d.max_output_tokens), default=None)
    if window is not None and output is not None:
        output = min(output, window)  # an answer never outgrows the context it is part of
    return window, output


def catalog_build() -> Catalog:
    """Every public model with its callable deployments, in two queries whatever their number."""
    deployments = (
        Deployment.objects.filter(enabled=True, provider__enabled=True)
        .select_related("public_model", "provider", "credential")
        .order_by("priority", "-weight", "pk")
    )
    by_model: dict[int, list[DeploymentView]] = {}
    for deployment in deployments:
        view = deployment_view(deployment)
        if view is not None:
            by_model.setdefault(deployment.public_model_id, []).append(view)
    listed = []
    by_name: dict[str, ModelView] = {}
    for model in PublicModel.objects.order_by("name"):
        served_by = tuple(by_model.get(model.pk, ()))
        context_window, max_output_tokens = model_limits(served_by)
        model_view = ModelView(
            id=model.pk,
            name=model.name,
            kind=model.kind,
            owned_by=model.owned_by,
            is_public=model.is_public,
            created=int(model.created_at.timestamp()),
            deployments=served_by,
            strategy=model.strategy,
            max_latency_ms=model.max_latency_ms,
            fallback_models=tuple(str(name) for name in model.fallback_models or ()),
            context_window=context_window,
            max_output_tokens=max_output_tokens,
        )
        listed.append(model_view)
        for alias in [*(model.aliases or []), model.name]:
            by_name[str(alias)] = model_view
    return Catalog(by_name=by_name, listed=tuple(listed))


def model_grants() -> dict[int, frozenset[int]]:
    """Organization id -> ids of the non-public models it was granted."""
    grants: defaultdict[int, set[int]] = defaultdict(set)
    for organization_id, model_id in ModelAccess.objects.values_list("organization_id", "public_model_id"):
        grants[organization_id].add(model_id)
    return {organization_id: frozenset(ids) for organization_id, ids in grants.items()}
