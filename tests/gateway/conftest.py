"""Gateway fixtures: a live OneFlow with a tenant, a key and a catalog."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from accounts import services as accounts_services
from billing.models import UsageEvent
from billing.services import credits_grant, usage_drain
from providers.models import Deployment, Provider, PublicModel
from providers.services import catalog_seed_demo
from tests.conftest import LiveAsgiServer


@dataclass
class Gateway:
    server: LiveAsgiServer
    key: accounts_services.IssuedSecret

    @property
    def url(self) -> str:
        return self.server.url + "/v1"

    def events(self) -> list[UsageEvent]:
        usage_drain()
        return list(UsageEvent.objects.order_by("created_at", "pk"))


@pytest.fixture
def gateway(live_asgi: LiveAsgiServer, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """OneFlow serving the demo catalog through its simulator, and Acme's key."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    catalog_seed_demo()
    alice = accounts_services.user_create(email="alice@example.com", password="correct horse battery staple")
    acme = accounts_services.organization_create(name="Acme", owner=alice)
    key = accounts_services.api_key_create(organization=acme, name="ci", created_by=alice)
    credits_grant(organization=acme, amount=Decimal(1000), idempotency_key="test-credits")
    return Gateway(server=live_asgi, key=key)


def simulator_settings(**settings: object) -> None:
    Provider.objects.filter(kind=Provider.Kind.SIMULATOR).update(simulator=settings)


def add_model(name: str, provider: Provider, *, upstream: str | None = None, **fields: object) -> PublicModel:
    model, _ = PublicModel.objects.get_or_create(name=name, defaults=fields)
    Deployment.objects.create(public_model=model, provider=provider, upstream_model=upstream or name)
    return model
