"""Reads for accounts. Every read of an organization's data goes through a membership."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, User
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
