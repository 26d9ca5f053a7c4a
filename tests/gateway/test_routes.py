"""Routes through the live gateway: strategies, fallback models and the
request's provider preferences decide which deployment answers."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from providers.models import Deployment, Provider, PublicModel
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route

MESSAGES: Any = [{"role": "user", "content": "Hello"}]


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def add_simulator_deployment(model_name: str, *, priority: int) -> None:
    simulator = Provider.objects.get(name="Simulator")
    model = PublicModel.objects.get(name=model_name)
    Deployment.objects.create(public_model=model, provider=simulator, upstream_model="sim", priority=priority)


def test_the_response_says_which_route_and_provider_answered(gateway: Gateway) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-oneflow-route"] == "strategy:priority"
    assert raw.headers["x-oneflow-provider"] == "Simulator"
    assert raw.headers["x-oneflow-attempts"] == "1"


def test_provider_preferences_pick_the_deployment_and_never_reach_upstream(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    route(upstream, Provider.Kind.OPENAI)  # "smart" on fake-openai, priority 1
    add_simulator_deployment("smart", priority=2)
    client = sdk(gateway)

    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, extra_body={"provider": {"only": ["simulator"]}}
    )
    assert raw.headers["x-oneflow-provider"] == "Simulator"
    assert not upstream.requests

    raw = client.chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, extra_body={"provider": {"order": ["fake-openai"]}}
    )
    assert raw.headers["x-oneflow-provider"] == "fake-openai"
    assert raw.headers["x-oneflow-route"] == "provider:order"
    assert "provider" not in upstream.requests[0].json, "OneFlow's parameter is not the provider's"


def test_a_bad_provider_object_is_refused_in_the_api_format(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_body={"provider": {"sort": "vibes"}}
        )
    error: Any = refused.value
    assert (error.param, error.code) == ("provider", "invalid_provider_preferences")


def test_a_failing_model_falls_back_to_its_fallback_model(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    PublicModel.objects.filter(name="smart").update(fallback_models=["gpt-4o-mini"])
    upstream.script(Behave(status=401))  # the deployment's credential is refused: not retried there

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.headers["x-oneflow-provider"] == "Simulator"
    assert raw.headers["x-oneflow-attempts"] == "2"
    assert raw.parse().model == "smart", "the client asked for smart; the fallback is OneFlow's business"
    [event] = gateway.events()
    assert [a["provider"] for a in event.attempt_log] == ["fake-openai", "Simulator"]
    assert [a["status"] for a in event.attempt_log] == [502, 200]
