"""The factories build valid, related rows, through the services where those hold an invariant."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts import selectors, services
from accounts.models import Membership, Organization, User
from billing import selectors as billing_selectors
from billing.models import Budget, LedgerEntry
from providers.selectors import credential_resolve
from tests.factories import (
    PASSWORD,
    ApiKeyFactory,
    BudgetFactory,
    CredentialFactory,
    CreditGrantFactory,
    DeploymentFactory,
    OperatorFactory,
    OrganizationFactory,
    UsageEventFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_it_gives_personas_their_roles(acme: Organization, alice: User, bob: User, carol: User) -> None:
    roles = dict(Membership.objects.filter(organization=acme).values_list("user__email", "role"))
    assert roles == {alice.email: Membership.Role.OWNER, bob.email: Membership.Role.MEMBER}
    assert not carol.memberships.exists()
    assert alice.check_password(PASSWORD)


def test_it_builds_an_operator_who_may_use_the_admin() -> None:
    operator = OperatorFactory.create()
    assert operator.is_staff and operator.is_superuser


def test_an_invited_user_has_no_password_yet() -> None:
    invited = UserFactory.create(invited=True)
    assert not invited.has_usable_password()
    assert UserFactory.create().check_password(PASSWORD)


def test_it_gives_an_organization_its_owner() -> None:
    owner = UserFactory.create()
    organization = OrganizationFactory.create(owner=owner)
    assert organization.memberships.get().user == owner
    assert organization.memberships.get().role == Membership.Role.OWNER


def test_it_issues_an_api_key_whose_raw_secret_authenticates(acme: Organization) -> None:
    issued: services.IssuedSecret = ApiKeyFactory.create(organization=acme, allowed_models=["gpt-4o-mini"])
    credentials = selectors.api_key_credentials(prefix=issued.secret.prefix)
    assert credentials is not None and credentials.matches(issued.raw)
    assert credentials.organization_id == acme.pk
    assert credentials.allowed_models == ("gpt-4o-mini",)
    assert selectors.api_key_authenticate(raw=issued.raw) is not None


def test_it_serves_a_deployment_of_a_public_model_from_a_provider() -> None:
    deployment = DeploymentFactory.create()
    assert deployment.public_model.deployments.get() == deployment
    assert deployment.provider.deployments.get() == deployment
    assert deployment.upstream_model == deployment.public_model.name


def test_it_seals_a_credential_secret() -> None:
    credential = CredentialFactory.create(secret="sk-test-0123456789")
    assert "sk-test-0123456789" not in credential.sealed_secret
    assert credential_resolve(credential) == "sk-test-0123456789"


def test_it_grants_credits_through_the_ledger(acme: Organization) -> None:
    grant = CreditGrantFactory.create(organization=acme, amount=Decimal("12.5"))
    assert grant.kind == LedgerEntry.Kind.GRANT
    assert billing_selectors.credits_balance(organization_id=acme.pk) == Decimal("12.5")


def test_it_scopes_a_budget_to_a_key_of_its_organization(acme: Organization) -> None:
    key = ApiKeyFactory.create(organization=acme).key
    budget = BudgetFactory.create(organization=acme, api_key=key, period=Budget.Period.DAILY)
    assert (budget.organization, budget.api_key, budget.period) == (acme, key, "daily")


def test_it_records_usage_of_the_key_organization(acme_key: services.IssuedSecret) -> None:
    event = UsageEventFactory.create(organization=acme_key.key.organization, api_key=acme_key.key)
    assert event.organization.name == "Acme"
    assert event.status_code == 200
