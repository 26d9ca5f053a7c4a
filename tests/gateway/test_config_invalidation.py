"""Every write to a model the gateway caches reaches the next request, whatever
path made it (issue 12: the version used to be bumped by hand in some services
and admin mixins, so a shell edit or a bulk update waited out the cache)."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, models
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey, Organization
from accounts.selectors import api_key_credentials
from billing.models import BillingAccount, Budget
from billing.selectors import budget_book, price_book
from billing.services import credits_grant
from oneflow.lib import config_version, redis
from providers.models import Deployment, Provider, PublicModel
from providers.selectors import catalog_build, model_grants
from tests.factories import BudgetFactory, CredentialFactory, ModelAccessFactory, PlanFactory
from tests.gateway.conftest import Gateway
from tests.http import call

Capture = Callable[..., Any]


def version() -> int:
    return int(redis.sync_client().get(config_version.KEY) or 0)


def cached_models() -> set[type[models.Model]]:
    return {
        model._meta.concrete_model
        for model in apps.get_models()
        if issubclass(model, config_version.GatewayConfig) and model._meta.concrete_model is not None
    }


def tables_read(load: Callable[[], Any]) -> set[str]:
    with CaptureQueriesContext(connection) as queries:
        load()
    return {name for query in queries for name in re.findall(r'(?:FROM|JOIN) "(\w+)"', query["sql"])}


@pytest.fixture
def everything(gateway: Gateway) -> Gateway:
    """A row in every table the gateway reads: the demo catalog, Acme and its key, a budget, a grant."""
    acme = gateway.key.key.organization
    BudgetFactory.create(organization=acme)
    ModelAccessFactory.create(public_model=PublicModel.objects.earliest("pk"), organization=acme)
    CredentialFactory.create(provider=Provider.objects.earliest("pk"))
    Organization.objects.filter(pk=acme.pk).update(plan=PlanFactory.create())
    return gateway


def test_every_table_the_gateway_caches_is_a_watched_model(everything: Gateway) -> None:
    prefix = everything.key.raw.split("_")[2]
    loads = [catalog_build, model_grants, price_book, budget_book, lambda: api_key_credentials(prefix=prefix)]
    read = set().union(*(tables_read(load) for load in loads))
    watched = {model._meta.db_table for model in cached_models()}

    assert read, "the loaders read something"
    assert read <= watched, f"cached but not watched: {sorted(read - watched)}"


def write(path: str, model: type[models.Model], row: models.Model) -> None:
    """Writes ``row`` back unchanged by one path: the version must move anyway."""
    ignored: frozenset[str] = getattr(model, "config_ignored_fields", frozenset())
    field = next(f.attname for f in model._meta.concrete_fields if not f.primary_key and f.name not in ignored)
    if path == "save":
        row.save()
    elif path == "save_fields":
        row.save(update_fields=[field])
    elif path == "update":
        model._default_manager.filter(pk=row.pk).update(**{field: getattr(row, field)})
    else:
        model._default_manager.bulk_update([row], [field])


@pytest.mark.parametrize("path", ["save", "save_fields", "update", "bulk_update"])
def test_every_write_path_advances_the_version(
    everything: Gateway, django_capture_on_commit_callbacks: Capture, path: str
) -> None:
    for model in sorted(cached_models(), key=lambda m: m.__name__):
        row = model._default_manager.first()
        assert row is not None, f"no {model.__name__} row to write"
        before = version()
        with django_capture_on_commit_callbacks(execute=True):
            write(path, model, row)
        assert version() > before, f"{model.__name__}: {path} left the version as it was"


def test_writes_the_gateway_does_not_read_leave_it_alone(
    everything: Gateway, django_capture_on_commit_callbacks: Capture
) -> None:
    key = everything.key.key
    account = BillingAccount.objects.get(organization=key.organization)
    before = version()
    with django_capture_on_commit_callbacks(execute=True):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=key.created_at)
        credits_grant(organization=key.organization, amount=Decimal(1), idempotency_key="one more")
        account.save(update_fields=["balance", "updated_at"])
    assert version() == before


def ask(gateway: Gateway) -> int:
    body = b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}'
    headers = {"Authorization": f"Bearer {gateway.key.raw}", "Content-Type": "application/json"}
    return call(gateway.server.url, "POST", "/v1/chat/completions", body=body, headers=headers).status


def test_a_bulk_update_from_the_shell_reaches_the_next_request(gateway: Gateway) -> None:
    assert ask(gateway) == 200
    Deployment.objects.filter(public_model__name="gpt-4o-mini").update(enabled=False)
    assert ask(gateway) == 503
    Deployment.objects.filter(public_model__name="gpt-4o-mini", provider__kind="simulator").update(enabled=True)
    assert ask(gateway) == 200
    Budget.objects.filter(organization=gateway.key.key.organization).delete()
    Organization.objects.filter(pk=gateway.key.key.organization_id).update(limit_rph=1)
    assert ask(gateway) == 429
    ApiKey.objects.filter(pk=gateway.key.key.pk).update(status=ApiKey.Status.REVOKED)
    assert ask(gateway) == 401


def test_a_migrate_run_advances_the_version(transactional_db: None) -> None:
    """Data migrations write through historical models, which carry no signals."""
    before = version()
    call_command("migrate", verbosity=0)
    assert version() > before
