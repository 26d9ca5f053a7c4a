"""Test data builders (factory_boy), one per model that tests build by hand.

Personas (alice, bob, carol, operator, Acme) live in tests/conftest.py and are built
with these; a test asks for a persona, and for a factory only for a variation.

Where a service holds an invariant that a plain INSERT would skip, the factory
calls the service: users get a validated, hashed password; API keys a hashed
secret (the factory returns the ``IssuedSecret``, whose ``raw`` exists nowhere
else); credentials a sealed secret; budgets their validation and money rounding;
credit grants a ledger entry that moves the balance with it. Everything else is a
plain row with the fewest fields that make it valid.

Call ``XFactory.create(...)`` (or ``create_batch``): it is typed, returning the
model, where calling the class itself is not.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone
from django.utils.text import slugify
from factory.django import DjangoModelFactory

from accounts import services as account_services
from accounts.models import Membership, Organization, Plan, User
from billing import services as billing_services
from billing.models import Budget, LedgerEntry, Price, UsageEvent, UsageRollup
from billing.usage import UsageRecord
from providers.models import Credential, Deployment, ModelAccess, Provider, PublicModel
from providers.services import credential_set_secret

PASSWORD = "correct horse battery staple"
OPERATOR_PASSWORD = "operator password 123"


class UserFactory(DjangoModelFactory[User]):
    """A person who signed up (accounts.services.user_create): validated, bcrypt-hashed password."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password: str | None = PASSWORD
    full_name = factory.Faker("name")
    is_staff = False

    class Params:
        # Invited by an owner and yet to choose a password: no usable one (and no bcrypt round).
        invited = factory.Trait(password=None)

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **fields: Any) -> User:
        if fields["password"] is None:
            return model_class.objects.create_user(**fields)
        return account_services.user_create(**fields)


class OperatorFactory(UserFactory):
    """A superuser of the operator admin."""

    email = factory.Sequence(lambda n: f"ops{n}@oneflow.local")
    password = OPERATOR_PASSWORD

    @classmethod
    def _create(cls, model_class: type[User], *args: Any, **fields: Any) -> User:
        fields.pop("is_staff")
        return model_class.objects.create_superuser(**fields)


class PlanFactory(DjangoModelFactory[Plan]):
    class Meta:
        model = Plan

    name = factory.Sequence(lambda n: f"Plan {n}")


def _add_owner(organization: Organization, create: bool, owner: User | None, **kwargs: Any) -> None:
    if create and owner is not None:
        MembershipFactory.create(organization=organization, user=owner, role=Membership.Role.OWNER)


class OrganizationFactory(DjangoModelFactory[Organization]):
    """A tenant; ``owner=user`` also makes that user its owner, as
    accounts.services.organization_create does."""

    class Meta:
        model = Organization
        skip_postgeneration_save = True  # the owner's membership is its own row

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.LazyAttribute(lambda org: slugify(org.name))

    owner = factory.PostGeneration(_add_owner)


class MembershipFactory(DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER


class ApiKeyFactory(factory.Factory[account_services.IssuedSecret]):
    """An API key with its first secret, issued by accounts.services.api_key_create.

    Builds the ``IssuedSecret`` (``.key``, ``.secret``, ``.raw``): the raw key is
    stored nowhere, so this is the only way a test gets one. Extra keyword
    arguments are the key's fields (``allowed_models``, ``limit_rpm``...).
    """

    class Meta:
        model = account_services.IssuedSecret

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"key-{n}")
    created_by = None

    @classmethod
    def _create(cls, model_class: type[Any], *args: Any, **fields: Any) -> account_services.IssuedSecret:
        return account_services.api_key_create(**fields)


class ProviderFactory(DjangoModelFactory[Provider]):
    """A simulator unless told otherwise: it needs no URL, credential or network."""

    class Meta:
        model = Provider

    name = factory.Sequence(lambda n: f"Test provider {n}")
    kind = Provider.Kind.SIMULATOR


def _seal_secret(credential: Credential, create: bool, secret: str | None, **kwargs: Any) -> None:
    if create and secret is not None:
        credential_set_secret(credential=credential, secret=secret)


class CredentialFactory(DjangoModelFactory[Credential]):
    """An upstream credential; ``secret="sk-..."`` seals one through
    providers.services.credential_set_secret, as the admin does."""

    class Meta:
        model = Credential
        skip_postgeneration_save = True  # credential_set_secret saves what it changes

    provider = factory.SubFactory(ProviderFactory)
    name = factory.Sequence(lambda n: f"credential-{n}")

    secret = factory.PostGeneration(_seal_secret)


class PublicModelFactory(DjangoModelFactory[PublicModel]):
    class Meta:
        model = PublicModel

    name = factory.Sequence(lambda n: f"test-model-{n}")


class DeploymentFactory(DjangoModelFactory[Deployment]):
    """One way to serve a public model; by default a simulator serving it under its own name."""

    class Meta:
        model = Deployment

    public_model = factory.SubFactory(PublicModelFactory)
    provider = factory.SubFactory(ProviderFactory)
    upstream_model = factory.LazyAttribute(lambda deployment: deployment.public_model.name)


class ModelAccessFactory(DjangoModelFactory[ModelAccess]):
    class Meta:
        model = ModelAccess

    public_model = factory.SubFactory(PublicModelFactory, is_public=False)
    organization = factory.SubFactory(OrganizationFactory)


class PriceFactory(DjangoModelFactory[Price]):
    """A price version in force from now; figures are USD per 1M tokens."""

    class Meta:
        model = Price

    public_model = factory.Sequence(lambda n: f"test-model-{n}")
    effective_from = factory.LazyFunction(timezone.now)
    input_per_1m = Decimal(1)
    cached_input_per_1m = Decimal(1)
    output_per_1m = Decimal(1)


class BudgetFactory(DjangoModelFactory[Budget]):
    """A budget created by billing.services.budget_create: validated, its limit in credits
    at the internal precision. ``api_key=issued.key`` scopes it to one key."""

    class Meta:
        model = Budget

    organization = factory.SubFactory(OrganizationFactory)
    period = Budget.Period.MONTHLY
    limit = Decimal(10)

    @classmethod
    def _create(cls, model_class: type[Budget], *args: Any, **fields: Any) -> Budget:
        return billing_services.budget_create(**fields)


class CreditGrantFactory(DjangoModelFactory[LedgerEntry]):
    """Credits granted by billing.services.credits_grant: a ledger entry, and the balance moved with it."""

    class Meta:
        model = LedgerEntry

    organization = factory.SubFactory(OrganizationFactory)
    amount = Decimal(100)
    idempotency_key = factory.Sequence(lambda n: f"test-grant-{n}")

    @classmethod
    def _create(cls, model_class: type[LedgerEntry], *args: Any, **fields: Any) -> LedgerEntry:
        return billing_services.credits_grant(**fields)


class UsageEventFactory(DjangoModelFactory[UsageEvent]):
    """One request as the drain writes it: a reported, successful chat completion, now."""

    class Meta:
        model = UsageEvent

    request_id = factory.Sequence(lambda n: f"req_{n:06d}")
    organization = factory.SubFactory(OrganizationFactory)
    endpoint = "chat"
    public_model = "gpt-4o-mini"
    status_code = 200
    usage_source = UsageEvent.Source.REPORTED
    latency_ms = 20
    created_at = factory.LazyFunction(timezone.now)


class UsageRollupFactory(DjangoModelFactory[UsageRollup]):
    """A day of one model's usage for an organization, starting at today's UTC midnight."""

    class Meta:
        model = UsageRollup

    organization = factory.SubFactory(OrganizationFactory)
    public_model = "gpt-4o-mini"
    period = UsageRollup.Period.DAY
    bucket = factory.LazyFunction(lambda: timezone.now().replace(hour=0, minute=0, second=0, microsecond=0))


def usage_record(organization_id: int, **fields: Any) -> UsageRecord:
    """A usage event as the gateway appends it to the journal: a served chat call, unless
    ``fields`` say otherwise."""
    defaults: dict[str, Any] = {
        "request_id": f"req_{uuid.uuid4().hex}",
        "api_key_id": None,
        "endpoint": "chat",
        "public_model": "gpt-4o-mini",
        "deployment_id": None,
        "provider": "Simulator",
        "stream": False,
        "status_code": 200,
        "error_type": "",
        "prompt_tokens": 12,
        "cached_tokens": 0,
        "completion_tokens": 30,
        "usage_source": "reported",
        "latency_ms": 15,
        "ttft_ms": None,
        "attempts": 1,
        "client_disconnected": False,
        "created_at": time.time(),
    }
    return UsageRecord(organization_id=organization_id, **(defaults | fields))
