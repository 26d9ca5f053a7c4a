"""What /v1/models tells clients about a model's limits (issue 13, item 6): its context
window and longest answer, the smallest its deployments state, in OpenAI's list for
OpenAI clients and in Anthropic's Models API shape for Anthropic ones."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from gateway import validation
from providers.adapters.base import Target
from providers.models import OUTPUT_TOKENS_MAX, Deployment, Provider, PublicModel
from providers.selectors import DeploymentView, catalog_build, model_limits
from providers.services import catalog_seed_demo
from tests.gateway.conftest import Gateway


def deployment(context_window: int | None, max_output_tokens: int | None) -> DeploymentView:
    target = Target(0, "p", "simulator", "", "m", "")
    zero = Decimal(0)
    return DeploymentView(
        1, target, 1, 100, (), zero, zero, zero, None, None,
        context_window=context_window, max_output_tokens=max_output_tokens,
    )  # fmt: skip


def state_limits(model: str, *limits: tuple[int | None, int | None]) -> None:
    """The model's deployments, in order, state these (context window, max output)."""
    deployments = list(Deployment.objects.filter(public_model__name=model).order_by("pk"))
    simulator = Provider.objects.get(name="Simulator")
    for index, (window, output) in enumerate(limits):
        if index >= len(deployments):
            deployments.append(Deployment(public_model=PublicModel.objects.get(name=model), provider=simulator))
        found = deployments[index]
        found.upstream_model, found.context_window, found.max_output_tokens = "sim", window, output
        found.save()


# --- The figures a model says ----------------------------------------------------------


def test_a_model_says_the_smallest_limits_its_deployments_state() -> None:
    deployments = (deployment(200_000, 64_000), deployment(128_000, None), deployment(None, 16_384))
    assert model_limits(deployments) == (128_000, 16_384)


def test_a_model_whose_deployments_state_nothing_says_nothing() -> None:
    assert model_limits((deployment(None, None), deployment(None, None))) == (None, None)
    assert model_limits(()) == (None, None)


def test_an_answer_is_never_said_to_outgrow_the_window() -> None:
    # One deployment states only a window, another only an output longer than it.
    assert model_limits((deployment(8_000, None), deployment(None, 32_000))) == (8_000, 8_000)


@pytest.mark.django_db
def test_only_the_deployments_that_can_serve_the_model_count(gateway_catalog: None) -> None:
    state_limits("gpt-4o-mini", (128_000, 16_384), (32_000, 4_096))
    Deployment.objects.filter(public_model__name="gpt-4o-mini", context_window=32_000).update(enabled=False)
    PublicModel.objects.filter(name="gpt-4o-mini").update(fallback_models=["tiny"])
    tiny = PublicModel.objects.create(name="tiny")
    Deployment.objects.create(
        public_model=tiny, provider=Provider.objects.get(name="Simulator"), upstream_model="t", context_window=1_000
    )
    model = catalog_build().find("gpt-4o-mini")
    assert model is not None
    # The disabled deployment never serves it; the fallback model is a rescue, not a promise.
    assert (model.context_window, model.max_output_tokens) == (128_000, 16_384)


@pytest.fixture
def gateway_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo catalog on the simulator, as the gateway fixture builds it."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    catalog_seed_demo()


# --- What the database and the admin accept ---------------------------------------------


def test_the_output_bound_is_the_most_a_client_may_ask_for() -> None:
    assert OUTPUT_TOKENS_MAX == validation.MAX_OUTPUT_TOKENS


@pytest.mark.django_db
def test_the_database_refuses_an_answer_longer_than_the_window(gateway_catalog: None) -> None:
    found = Deployment.objects.filter(public_model__name="gpt-4o-mini").first()
    assert found is not None
    found.context_window, found.max_output_tokens = 8_000, 16_000
    with pytest.raises(ValidationError) as refused:
        found.full_clean()
    assert "providers_deployment_output_within_context" in str(refused.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        found.save()
    found.context_window, found.max_output_tokens = None, OUTPUT_TOKENS_MAX + 1
    with pytest.raises(IntegrityError), transaction.atomic():
        found.save()


@pytest.mark.django_db
def test_a_form_refuses_limits_out_of_bounds(gateway_catalog: None) -> None:
    found = Deployment.objects.filter(public_model__name="gpt-4o-mini").first()
    assert found is not None
    found.context_window, found.max_output_tokens = 0, 0
    with pytest.raises(ValidationError) as refused:
        found.full_clean()
    assert set(refused.value.message_dict) >= {"context_window", "max_output_tokens"}


@pytest.mark.django_db
def test_the_admin_shows_and_edits_the_limits(admin_client: Client, gateway_catalog: None) -> None:
    found = Deployment.objects.filter(public_model__name="gpt-4o-mini").first()
    assert found is not None
    change = admin_client.get(reverse("admin:providers_deployment_change", args=[found.pk])).content.decode()
    assert 'name="context_window"' in change and 'name="max_output_tokens"' in change
    listing = admin_client.get(reverse("admin:providers_deployment_changelist")).content.decode()
    assert "column-context_window" in listing and "column-max_output_tokens" in listing
    model = admin_client.get(reverse("admin:providers_publicmodel_change", args=[found.public_model_id]))
    assert 'name="deployments-0-max_output_tokens"' in model.content.decode()


# --- OpenAI clients ------------------------------------------------------------------------


def openai_client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def test_the_openai_sdk_reads_the_limits_in_the_model_list(gateway: Gateway) -> None:
    state_limits("gpt-4o-mini", (128_000, 16_384), (200_000, 32_000))
    listed = {model.id: model for model in openai_client(gateway).models.list()}
    chat, embedding = listed["gpt-4o-mini"], listed["text-embedding-3-small"]
    assert (chat.context_window, chat.max_output_tokens) == (128_000, 16_384)  # type: ignore[attr-defined]
    # Unknown is left out, not null: a client never reads "null tokens" as zero.
    assert embedding.model_extra == {}
    retrieved = openai_client(gateway).models.retrieve("gpt-4o-mini")
    assert retrieved.model_extra == {"context_window": 128_000, "max_output_tokens": 16_384}


# --- Anthropic clients ---------------------------------------------------------------------


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.key.raw, max_retries=0)


def test_the_anthropic_sdk_lists_models_in_its_own_shape(gateway: Gateway) -> None:
    state_limits("gpt-4o-mini", (200_000, 64_000))
    raw = anthropic_client(gateway).models.with_raw_response.list()
    page = raw.parse()
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert [model.id for model in page.data] == ["gpt-4o-mini", "text-embedding-3-small"]
    chat, embedding = page.data
    assert (chat.type, chat.display_name) == ("model", "gpt-4o-mini")
    assert (chat.max_input_tokens, chat.max_tokens) == (200_000, 64_000)
    assert (embedding.max_input_tokens, embedding.max_tokens) == (None, None)
    created = PublicModel.objects.get(name="gpt-4o-mini").created_at
    assert chat.created_at == created.replace(microsecond=0).astimezone(UTC)
    assert isinstance(chat.created_at, datetime)
    assert (page.has_more, page.first_id, page.last_id) == (False, "gpt-4o-mini", "text-embedding-3-small")


def test_the_anthropic_sdk_pages_through_the_list(gateway: Gateway) -> None:
    for name in ("a-model", "b-model", "c-model"):
        PublicModel.objects.create(name=name)
    sdk = anthropic_client(gateway)
    first = sdk.models.list(limit=2)
    assert [m.id for m in first.data] == ["a-model", "b-model"]
    assert first.has_more is True
    # The SDK follows last_id with after_id, page after page, to the end.
    assert [m.id for m in sdk.models.list(limit=2)] == [
        "a-model", "b-model", "c-model", "gpt-4o-mini", "text-embedding-3-small",
    ]  # fmt: skip
    before = sdk.models.list(before_id="c-model", limit=1)
    assert ([m.id for m in before.data], before.has_more) == (["b-model"], True)


def test_the_anthropic_sdk_retrieves_one_model(gateway: Gateway) -> None:
    state_limits("gpt-4o-mini", (200_000, 64_000))
    model = anthropic_client(gateway).models.retrieve("gpt-4o-mini")
    assert (model.id, model.max_input_tokens, model.max_tokens) == ("gpt-4o-mini", 200_000, 64_000)
    with pytest.raises(anthropic.NotFoundError) as missing:
        anthropic_client(gateway).models.retrieve("gpt-nope")
    body: Any = missing.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_a_bad_page_size_is_refused_in_anthropic_shape(gateway: Gateway) -> None:
    for limit in (0, 1001):
        with pytest.raises(anthropic.BadRequestError) as refused:
            anthropic_client(gateway).models.list(limit=limit)
        body: Any = refused.value.body
        assert body["error"]["type"] == "invalid_request_error"
    for odd in ("²", "1" * 5000, "-1", "ten"):
        with pytest.raises(anthropic.BadRequestError):
            anthropic_client(gateway).models.list(extra_query={"limit": odd})
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(gateway).models.list(after_id="gpt-nope")
