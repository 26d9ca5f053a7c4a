"""Reads for accounts. Every read of an organization's data goes through a membership."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, Plan, User
from oneflow.lib.errors import NotFound


def memberships_of(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")


def membership_get(*, user: User, organization_id: int) -> Membership:
    """The user's membership in the organization; 404 (not 403) hides that it exists."""
    membership = (
        Membership.objects.select_related("organization").filter(user=user, organization_id=organization_id).first()
    )
    if membership is None:
        raise NotFound("No such organization.", code="organization_not_found")
    return membership


def members_of(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by("created_at", "pk")


def member_get(*, organization: Organization, membership_id: int) -> Membership:
    membership = members_of(organization=organization).filter(pk=membership_id).first()
    if membership is None:
        raise NotFound("No such member.", code="member_not_found")
    return membership


def _with_secrets(keys: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    live = ApiKeySecret.objects.filter(revoked_at__isnull=True).order_by("-rotation")
    return keys.prefetch_related(Prefetch("secrets", queryset=live, to_attr="live_secrets"))


def api_keys_of(*, organization: Organization) -> QuerySet[ApiKey]:
    return _with_secrets(ApiKey.objects.filter(organization=organization).order_by("-created_at", "-pk"))


def api_key_get(*, organization: Organization, public_id: str) -> ApiKey:
    key = api_keys_of(organization=organization).select_related("organization").filter(public_id=public_id).first()
    if key is None:
        raise NotFound("No such API key.", code="api_key_not_found")
    return key


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits of one scope (a key, or an organization with all its keys); None means none."""

    rpm: int | None = None
    rph: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    concurrency: int | None = None


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def organization_limits(*, organization: Organization) -> RateLimits:
    """The organization's own limit, else its plan's, else the platform default (requests only)."""
    plan = organization.plan or Plan()
    return RateLimits(
        rpm=_first(organization.limit_rpm, plan.rpm, settings.RATE_LIMIT_DEFAULT_RPM),
        rph=_first(organization.limit_rph, plan.rph, settings.RATE_LIMIT_DEFAULT_RPH),
        input_tpm=_first(organization.limit_input_tpm, plan.input_tpm),
        output_tpm=_first(organization.limit_output_tpm, plan.output_tpm),
        concurrency=_first(organization.limit_concurrency, plan.concurrency),
    )


def api_key_limits(*, key: ApiKey) -> RateLimits:
    """What the key itself sets: checked besides its organization's limits, so it can only narrow them."""
    return RateLimits(
        rpm=key.limit_rpm,
        rph=key.limit_rph,
        input_tpm=key.limit_input_tpm,
        output_tpm=key.limit_output_tpm,
        concurrency=key.limit_concurrency,
    )


@dataclass(frozen=True, slots=True)
class KeyCredentials:
    """What the gateway needs to authenticate one secret, without the database."""

    secret_hash: str = field(repr=False)
    secret_id: int
    rotation: int
    valid_until: datetime | None
    revoked_at: datetime | None
    key_id: int
    public_id: str
    key_name: str
    key_active: bool
    expires_at: datetime | None
    organization_id: int
    allowed_models: tuple[str, ...]
    key_limits: RateLimits  # counted per key
    org_limits: RateLimits  # counted per organization, across its keys

    def matches(self, raw: str) -> bool:
        # Constant time: response timing says nothing about how close a guess was.
        return hmac.compare_digest(self.secret_hash, keys.hash_raw_key(raw))

    def usable_at(self, moment: datetime) -> bool:
        if not self.key_active or (self.expires_at is not None and moment >= self.expires_at):
            return False
        if self.revoked_at is not None and self.revoked_at <= moment:
            return False
        return self.valid_until is None or moment < self.valid_until


def api_key_credentials(*, prefix: str) -> KeyCredentials | None:
    secret = ApiKeySecret.objects.select_related("key__organization__plan").filter(prefix=prefix).first()
    if secret is None:
        return None
    key = secret.key
    return KeyCredentials(
        secret_hash=secret.secret_hash,
        secret_id=secret.pk,
        rotation=secret.rotation,
        valid_until=secret.valid_until,
        revoked_at=secret.revoked_at,
        key_id=key.pk,
        public_id=key.public_id,
        key_name=key.name,
        key_active=key.status == ApiKey.Status.ACTIVE,
        expires_at=key.expires_at,
        organization_id=key.organization_id,
        allowed_models=tuple(key.allowed_models or ()),
        key_limits=api_key_limits(key=key),
        org_limits=organization_limits(organization=key.organization),
    )


def api_key_authenticate(*, raw: str, now: datetime | None = None) -> KeyCredentials | None:
    """The key ``raw`` proves, if it may be used now; None for anything else.

    The gateway applies the same rule to its cached credentials (gateway.snapshots).
    """
    prefix = keys.raw_key_prefix(raw)
    credentials = api_key_credentials(prefix=prefix) if prefix else None
    if credentials is None or not credentials.matches(raw):
        return None
    return credentials if credentials.usable_at(now or timezone.now()) else None
